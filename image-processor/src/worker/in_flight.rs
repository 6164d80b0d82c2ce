//! Bookkeeping for several records of one consumer in flight at once, without giving up
//! what one-at-a-time processing guaranteed:
//!
//! - **No offset passes an unfinished record.** A partition's offset is stored only up to
//!   the end of its longest run of finished records from the oldest started one, so a crash
//!   redelivers every record that was not finished, and nothing that was (beyond that run).
//! - **One product at a time.** Records with the same key (the product id) never overlap: a
//!   record whose key is busy waits until the earlier one is finished, so a product's events
//!   take effect in order (a deletion never races the creation before it).

use std::collections::{BTreeMap, HashMap, HashSet};

/// Records started and not yet stored, per partition, and the keys they hold.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Per (topic, partition): offset → finished, for every started record not yet stored.
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
    /// Keys of the records started and not finished.
    keys: HashSet<Vec<u8>>,
    /// Records started and not finished.
    running: usize,
}

impl InFlight {
    /// Records started and not finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether a record with `key` is running (keyless records never wait).
    pub fn key_busy(&self, key: Option<&[u8]>) -> bool {
        key.is_some_and(|key| self.keys.contains(key))
    }

    /// Notes that the record at `offset` started.
    pub fn start(&mut self, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>) {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .insert(offset, false);
        if let Some(key) = key {
            self.keys.insert(key.to_vec());
        }
        self.running += 1;
    }

    /// Notes that the record at `offset` finished (its outcome is durable). Returns the
    /// offset to store for the partition when the run of finished records from the oldest
    /// grew: the last record of that run.
    pub fn finish(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
    ) -> Option<i64> {
        if let Some(key) = key {
            self.keys.remove(key);
        }
        self.running = self.running.saturating_sub(1);
        let pending = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        *pending.get_mut(&offset)? = true;
        let mut stored = None;
        while let Some(entry) = pending.first_entry() {
            if !*entry.get() {
                break;
            }
            stored = Some(entry.remove_entry().0);
        }
        stored
    }

    /// Notes that the record at `offset` stopped without a durable outcome (shutdown came
    /// first): its key is free, and no offset at or after it will be stored.
    pub fn abandon(&mut self, key: Option<&[u8]>) {
        if let Some(key) = key {
            self.keys.remove(key);
        }
        self.running = self.running.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_stored_only_once_every_earlier_record_finished() {
        let mut in_flight = InFlight::default();
        for offset in [10, 11, 12] {
            in_flight.start("t", 0, offset, None);
        }
        assert_eq!(
            in_flight.finish("t", 0, 12, None),
            None,
            "10 and 11 still run"
        );
        assert_eq!(in_flight.finish("t", 0, 11, None), None, "10 still runs");
        assert_eq!(
            in_flight.finish("t", 0, 10, None),
            Some(12),
            "10 to 12 are done"
        );
        assert_eq!(in_flight.running(), 0);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut in_flight = InFlight::default();
        in_flight.start("t", 0, 5, None);
        in_flight.start("t", 1, 7, None);
        in_flight.start("t", 0, 6, None);
        assert_eq!(in_flight.finish("t", 1, 7, None), Some(7));
        assert_eq!(in_flight.finish("t", 0, 6, None), None);
        assert_eq!(in_flight.finish("t", 0, 5, None), Some(6));
    }

    #[test]
    fn an_abandoned_record_holds_back_every_later_offset() {
        let mut in_flight = InFlight::default();
        in_flight.start("t", 0, 1, Some(b"a"));
        in_flight.start("t", 0, 2, Some(b"b"));
        in_flight.abandon(Some(b"a"));
        assert_eq!(in_flight.finish("t", 0, 2, Some(b"b")), None);
        assert_eq!(in_flight.running(), 0);
        assert!(!in_flight.key_busy(Some(b"a")));
    }

    #[test]
    fn a_key_is_busy_while_its_record_runs() {
        let mut in_flight = InFlight::default();
        in_flight.start("t", 0, 1, Some(b"42"));
        assert!(in_flight.key_busy(Some(b"42")));
        assert!(!in_flight.key_busy(Some(b"43")));
        assert!(!in_flight.key_busy(None), "keyless records never wait");
        in_flight.finish("t", 0, 1, Some(b"42"));
        assert!(!in_flight.key_busy(Some(b"42")));
    }
}
