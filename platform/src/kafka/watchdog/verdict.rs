//! The watchdog's decision, pure and tested: from one look at the group's offsets, is any
//! lagging partition stuck, or is the member blind?

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// One partition of the group's topic: where the group is and where the log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset (the log start when the group never committed).
    pub committed: i64,
    /// The high watermark.
    pub high: i64,
}

impl PartitionOffsets {
    /// Records the group has not finished.
    pub fn lag(&self) -> i64 {
        (self.high - self.committed).max(0)
    }
}

/// A partition found stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckPartition {
    pub partition: i32,
    pub lag: i64,
    /// Whether this member holds it.
    pub held_here: bool,
    /// Time since its committed offset last moved (or it last had no lag).
    pub idle: Duration,
}

/// What the watch concluded from one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every lagging partition moves, or is held by this member while it progresses.
    Fine,
    /// Lagging partitions that made no progress for the limit.
    Stuck(Vec<StuckPartition>),
    /// Still stuck, but this member rejoined moments ago: the rebalance gets its time.
    Rejoining,
    /// The offsets could not be read just now, for less than the limit: nothing is known,
    /// and nothing changes.
    Unsure,
    /// The group's offsets could not be read for this long (at least the limit).
    Blind(Duration),
}

/// A partition's last committed offset and since when it has not moved.
#[derive(Debug, Clone, Copy)]
struct Progress {
    committed: i64,
    since: Instant,
}

/// The progress of one consumer group on one topic, as seen by one member.
#[derive(Debug)]
pub struct GroupWatch {
    limit: Duration,
    started: Instant,
    partitions: BTreeMap<i32, Progress>,
    blind_since: Option<Instant>,
    /// Set when this member left the group and joined it again: nothing is stuck before.
    quiet_until: Option<Instant>,
}

impl GroupWatch {
    /// A watch that calls a partition stuck after `limit` without progress.
    pub fn new(limit: Duration, now: Instant) -> Self {
        Self {
            limit,
            started: now,
            partitions: BTreeMap::new(),
            blind_since: None,
            quiet_until: None,
        }
    }

    /// This member left the group and joined it again because it was stuck: the rebalance
    /// gets a third of the limit before anything is called stuck again. The partitions'
    /// clocks keep running, so a group that is still stuck then is found stuck at once and
    /// the member rejoins again (a broker may need several rejoins to drop a dead member).
    pub fn rejoined(&mut self, now: Instant) {
        self.quiet_until = Some(now + self.limit / 3);
    }

    /// Takes one look: `offsets` is `None` when they could not be read; `held` are the
    /// partitions this member is assigned; `member_idle` is the time since this member last
    /// took in or finished a record.
    pub fn observe(
        &mut self,
        now: Instant,
        offsets: Option<&[PartitionOffsets]>,
        held: &[i32],
        member_idle: Duration,
    ) -> Verdict {
        let Some(offsets) = offsets else {
            let since = *self.blind_since.get_or_insert(now);
            let blind = now.duration_since(since);
            return if blind >= self.limit {
                Verdict::Blind(blind)
            } else {
                Verdict::Unsure
            };
        };
        if self.blind_since.take().is_some() {
            // What happened while nobody could see is unknown: every partition gets the
            // whole limit again, or every replica would rejoin at once when a broker that was
            // away for longer than the limit comes back.
            for progress in self.partitions.values_mut() {
                progress.since = now;
            }
        }
        let started = self.started;
        let mut stuck = Vec::new();
        for offsets in offsets {
            // A partition first seen now has had since the watch started to move.
            let progress = self
                .partitions
                .entry(offsets.partition)
                .or_insert(Progress {
                    committed: offsets.committed,
                    since: started,
                });
            if offsets.lag() == 0 || offsets.committed != progress.committed {
                *progress = Progress {
                    committed: offsets.committed,
                    since: now,
                };
                continue;
            }
            let idle = now.duration_since(progress.since);
            let held_here = held.contains(&offsets.partition);
            if idle >= self.limit && (!held_here || member_idle >= self.limit) {
                stuck.push(StuckPartition {
                    partition: offsets.partition,
                    lag: offsets.lag(),
                    held_here,
                    idle,
                });
            }
        }
        if stuck.is_empty() {
            Verdict::Fine
        } else if self.quiet_until.is_some_and(|until| now < until) {
            Verdict::Rejoining
        } else {
            Verdict::Stuck(stuck)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    fn at(partition: i32, committed: i64, high: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition,
            committed,
            high,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_lagging_partition_nobody_here_holds_is_stuck_after_the_limit() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        let offsets = [at(0, 10, 10), at(1, 4, 9)];
        assert_eq!(
            watch.observe(start + secs(29), Some(&offsets), &[], secs(0)),
            Verdict::Fine
        );
        assert_eq!(
            watch.observe(start + LIMIT, Some(&offsets), &[], secs(0)),
            Verdict::Stuck(vec![StuckPartition {
                partition: 1,
                lag: 5,
                held_here: false,
                idle: LIMIT
            }])
        );
    }

    #[test]
    fn a_member_holding_nothing_while_the_group_lags_is_stuck() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        let offsets = [at(0, 0, 3), at(1, 0, 3), at(2, 0, 3)];
        let verdict = watch.observe(start + LIMIT, Some(&offsets), &[], secs(0));
        assert!(matches!(verdict, Verdict::Stuck(p) if p.len() == 3));
    }

    #[test]
    fn a_moving_committed_offset_restarts_the_partitions_clock() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        watch.observe(start, Some(&[at(0, 1, 9)]), &[], secs(0));
        watch.observe(start + secs(20), Some(&[at(0, 2, 9)]), &[], secs(0));
        assert_eq!(
            watch.observe(start + secs(49), Some(&[at(0, 2, 9)]), &[], secs(0)),
            Verdict::Fine
        );
        assert!(matches!(
            watch.observe(start + secs(50), Some(&[at(0, 2, 9)]), &[], secs(0)),
            Verdict::Stuck(_)
        ));
    }

    #[test]
    fn a_partition_without_lag_is_never_stuck_and_gets_the_whole_limit_when_records_come() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        assert_eq!(
            watch.observe(start + secs(600), Some(&[at(0, 5, 5)]), &[], secs(600)),
            Verdict::Fine
        );
        assert_eq!(
            watch.observe(start + secs(610), Some(&[at(0, 5, 8)]), &[], secs(610)),
            Verdict::Fine
        );
        assert_eq!(
            watch.observe(start + secs(629), Some(&[at(0, 5, 8)]), &[], secs(629)),
            Verdict::Fine
        );
        assert!(matches!(
            watch.observe(start + secs(630), Some(&[at(0, 5, 8)]), &[], secs(630)),
            Verdict::Stuck(_)
        ));
    }

    #[test]
    fn a_held_partition_waiting_while_this_member_progresses_elsewhere_is_busy_not_stuck() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        let offsets = [at(0, 0, 500), at(1, 0, 500)];
        assert_eq!(
            watch.observe(start + secs(300), Some(&offsets), &[0, 1], secs(1)),
            Verdict::Fine
        );
        let verdict = watch.observe(start + secs(301), Some(&offsets), &[0, 1], LIMIT);
        assert!(
            matches!(&verdict, Verdict::Stuck(p) if p.iter().all(|p| p.held_here)),
            "a member that itself stopped is stuck on what it holds: {verdict:?}"
        );
    }

    #[test]
    fn offsets_that_cannot_be_read_for_the_limit_are_blindness_not_health() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        assert_eq!(watch.observe(start, None, &[], secs(0)), Verdict::Unsure);
        assert_eq!(
            watch.observe(start + secs(29), None, &[], secs(0)),
            Verdict::Unsure
        );
        assert_eq!(
            watch.observe(start + LIMIT, None, &[], secs(0)),
            Verdict::Blind(LIMIT)
        );
        // One good look ends it, and the next outage gets the whole limit again.
        assert_eq!(
            watch.observe(start + secs(31), Some(&[at(0, 1, 1)]), &[], secs(0)),
            Verdict::Fine
        );
        assert_eq!(
            watch.observe(start + secs(32), None, &[], secs(0)),
            Verdict::Unsure
        );
        assert_eq!(
            watch.observe(start + secs(61), None, &[], secs(0)),
            Verdict::Unsure
        );
        assert_eq!(
            watch.observe(start + secs(62), None, &[], secs(0)),
            Verdict::Blind(LIMIT)
        );
    }

    #[test]
    fn when_the_broker_answers_again_every_partition_gets_the_whole_limit() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        let offsets = [at(0, 0, 9), at(1, 3, 9)];
        assert_eq!(
            watch.observe(start, Some(&offsets), &[], secs(0)),
            Verdict::Fine
        );
        // The broker is away for twice the limit …
        watch.observe(start + secs(1), None, &[], secs(0));
        assert!(matches!(
            watch.observe(start + secs(60), None, &[], secs(0)),
            Verdict::Blind(_)
        ));
        // … and when it answers, nobody has been stuck yet: the clocks start again.
        assert_eq!(
            watch.observe(start + secs(61), Some(&offsets), &[], secs(0)),
            Verdict::Fine
        );
        assert!(matches!(
            watch.observe(start + secs(91), Some(&offsets), &[], secs(0)),
            Verdict::Stuck(p) if p.len() == 2
        ));
    }

    #[test]
    fn after_rejoining_a_still_stuck_group_waits_a_third_of_the_limit_not_the_whole() {
        let start = Instant::now();
        let mut watch = GroupWatch::new(LIMIT, start);
        let offsets = [at(0, 0, 9)];
        assert!(matches!(
            watch.observe(start + LIMIT, Some(&offsets), &[], secs(0)),
            Verdict::Stuck(_)
        ));
        watch.rejoined(start + LIMIT);
        assert_eq!(
            watch.observe(start + secs(39), Some(&offsets), &[], secs(0)),
            Verdict::Rejoining
        );
        assert!(matches!(
            watch.observe(start + secs(40), Some(&offsets), &[], secs(0)),
            Verdict::Stuck(p) if p[0].idle == secs(40)
        ));
    }

    #[test]
    fn lag_never_counts_below_zero() {
        assert_eq!(at(0, 12, 10).lag(), 0);
        assert_eq!(at(0, 3, 10).lag(), 7);
    }
}
