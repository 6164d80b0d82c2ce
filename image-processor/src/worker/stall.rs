//! Noticing a consumer that has stopped making progress: records wait (lag above zero) and
//! for a whole `limit` none was taken in and none finished. Whatever the cause (a client
//! wedged after a broker stall, a rebalance that never completes, a job that hangs past its
//! own timeouts), the consumer loop then reports it and the consumer is recreated.

use std::time::{Duration, Instant};

/// The progress of one consumer.
#[derive(Debug, Clone, Copy)]
pub struct StallWatch {
    limit: Duration,
    last_progress: Instant,
}

impl StallWatch {
    /// A consumer counts as stalled after `limit` without progress while records wait.
    pub fn new(limit: Duration, now: Instant) -> Self {
        Self {
            limit,
            last_progress: now,
        }
    }

    /// A record was taken in or finished.
    pub fn progressed(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// Whether the consumer is stalled, given the records behind its assigned partitions.
    /// Without lag there is nothing to make progress on, and the clock restarts.
    pub fn stalled(&mut self, lag: i64, now: Instant) -> bool {
        if lag <= 0 {
            self.last_progress = now;
            return false;
        }
        now.duration_since(self.last_progress) >= self.limit
    }

    /// Time since the last progress.
    pub fn idle(&self, now: Instant) -> Duration {
        now.duration_since(self.last_progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn waiting_records_and_no_progress_for_the_limit_is_a_stall() {
        let start = Instant::now();
        let mut watch = StallWatch::new(LIMIT, start);
        assert!(!watch.stalled(5, start + Duration::from_secs(59)));
        assert!(watch.stalled(5, start + LIMIT));
    }

    #[test]
    fn progress_restarts_the_clock() {
        let start = Instant::now();
        let mut watch = StallWatch::new(LIMIT, start);
        watch.progressed(start + Duration::from_secs(30));
        assert!(!watch.stalled(5, start + LIMIT));
        assert!(watch.stalled(5, start + Duration::from_secs(90)));
    }

    #[test]
    fn an_idle_consumer_without_lag_is_never_stalled() {
        let start = Instant::now();
        let mut watch = StallWatch::new(LIMIT, start);
        assert!(!watch.stalled(0, start + Duration::from_secs(600)));
        // Records arriving after a quiet hour get the whole limit.
        assert!(!watch.stalled(3, start + Duration::from_secs(630)));
        assert!(watch.stalled(3, start + Duration::from_secs(660)));
    }
}
