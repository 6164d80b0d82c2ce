//! Bookkeeping for several records of one consumer in flight at once, without giving up
//! what one-at-a-time processing guaranteed:
//!
//! - **No offset passes an unfinished record.** A partition's offset is stored only up to
//!   the end of its longest run of finished records from the oldest one taken in, so a
//!   crash redelivers every record that was not finished (running or waiting), and nothing
//!   that was (beyond that run).
//! - **One product at a time.** Records with the same key (the product id) never overlap: a
//!   record whose key is busy waits, in arrival order, until the earlier ones are finished,
//!   so a product's events take effect in order (a deletion never races the creation
//!   before it). Records of other products go on meanwhile.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rdkafka::Message;

/// Records taken in and not yet stored, per partition, and the products they belong to.
#[derive(Debug)]
pub struct InFlight<M> {
    /// Per (topic, partition): offset → finished, for every record taken in (running or
    /// waiting) and not yet stored.
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
    /// Per key with a running record: the records of that key waiting behind it, in order.
    keys: HashMap<Vec<u8>, VecDeque<M>>,
    /// Records started and not finished.
    running: usize,
    /// Records taken in and waiting for an earlier record of their key.
    waiting: usize,
}

impl<M> Default for InFlight<M> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
            keys: HashMap::new(),
            running: 0,
            waiting: 0,
        }
    }
}

impl<M: Message> InFlight<M> {
    /// Records started and not finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Records waiting for an earlier record of their key.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Takes `message` in: returns it to be started now, or keeps it until the records of
    /// its key taken in before it are finished (keyless records never wait). Either way no
    /// offset passes it until it is finished.
    pub fn admit(&mut self, message: M) -> Option<M> {
        self.partitions
            .entry((message.topic().to_owned(), message.partition()))
            .or_default()
            .insert(message.offset(), false);
        if let Some(key) = message.key() {
            if let Some(queue) = self.keys.get_mut(key) {
                queue.push_back(message);
                self.waiting += 1;
                return None;
            }
            self.keys.insert(key.to_vec(), VecDeque::new());
        }
        self.running += 1;
        Some(message)
    }

    /// Notes that `message` finished (its outcome is durable). Returns the offset to store
    /// for its partition when the run of finished records from the oldest grew (the last
    /// record of that run), and the next record of its key, now started, if one waits.
    pub fn finish(&mut self, message: &M) -> (Option<i64>, Option<M>) {
        self.running = self.running.saturating_sub(1);
        let next = message.key().and_then(|key| {
            let queue = self.keys.get_mut(key)?;
            match queue.pop_front() {
                Some(next) => {
                    self.waiting -= 1;
                    self.running += 1;
                    Some(next)
                }
                None => {
                    self.keys.remove(key);
                    None
                }
            }
        });
        let Some(pending) = self
            .partitions
            .get_mut(&(message.topic().to_owned(), message.partition()))
        else {
            return (None, next);
        };
        if let Some(finished) = pending.get_mut(&message.offset()) {
            *finished = true;
        }
        let mut stored = None;
        while let Some(entry) = pending.first_entry() {
            if !*entry.get() {
                break;
            }
            stored = Some(entry.remove_entry().0);
        }
        (stored, next)
    }

    /// Notes that `message` stopped without a durable outcome (shutdown came first). The
    /// records of its key still waiting are dropped unstarted: like it, they stay unstored,
    /// and so does every offset after them, so all are redelivered.
    pub fn abandon(&mut self, message: &M) {
        self.running = self.running.saturating_sub(1);
        if let Some(queue) = message.key().and_then(|key| self.keys.remove(key)) {
            self.waiting -= queue.len();
        }
    }

    /// Forgets a partition this consumer no longer owns (revoked): its waiting records are
    /// dropped unstarted and its offsets are no longer tracked, so nothing of it is stored
    /// from here on. Its running records end as abandoned (see [`Self::abandon`]).
    pub fn forget_partition(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
        for queue in self.keys.values_mut() {
            let before = queue.len();
            queue.retain(|m| !(m.topic() == topic && m.partition() == partition));
            self.waiting -= before - queue.len();
        }
    }

    /// Drops every waiting record unstarted (shutdown): they stay unstored, for redelivery.
    pub fn drop_waiting(&mut self) {
        for queue in self.keys.values_mut() {
            queue.clear();
        }
        self.waiting = 0;
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{Timestamp, message::OwnedMessage};

    use super::*;

    fn record(partition: i32, offset: i64, key: Option<&str>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            key.map(|k| k.as_bytes().to_vec()),
            "t".to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    /// Finishes `record`: the offset to store, and the offset of the record started next.
    fn finish(
        in_flight: &mut InFlight<OwnedMessage>,
        record: &OwnedMessage,
    ) -> (Option<i64>, Option<i64>) {
        let (stored, next) = in_flight.finish(record);
        (stored, next.map(|r| r.offset()))
    }

    /// Takes every record in; returns the offsets started at once.
    fn admit_all(in_flight: &mut InFlight<OwnedMessage>, records: &[OwnedMessage]) -> Vec<i64> {
        records
            .iter()
            .filter_map(|r| in_flight.admit(r.clone()))
            .map(|r| r.offset())
            .collect()
    }

    #[test]
    fn an_offset_is_stored_only_once_every_earlier_record_finished() {
        let mut in_flight = InFlight::default();
        let records = [
            record(0, 10, None),
            record(0, 11, None),
            record(0, 12, None),
        ];
        assert_eq!(admit_all(&mut in_flight, &records), [10, 11, 12]);
        assert_eq!(
            finish(&mut in_flight, &records[2]).0,
            None,
            "10 and 11 still run"
        );
        assert_eq!(finish(&mut in_flight, &records[1]).0, None, "10 still runs");
        assert_eq!(
            finish(&mut in_flight, &records[0]).0,
            Some(12),
            "10 to 12 are done"
        );
        assert_eq!(in_flight.running(), 0);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut in_flight = InFlight::default();
        let records = [record(0, 5, None), record(1, 7, None), record(0, 6, None)];
        admit_all(&mut in_flight, &records);
        assert_eq!(finish(&mut in_flight, &records[1]).0, Some(7));
        assert_eq!(finish(&mut in_flight, &records[2]).0, None);
        assert_eq!(finish(&mut in_flight, &records[0]).0, Some(6));
    }

    #[test]
    fn records_of_one_key_run_one_after_another_in_order_while_others_go_on() {
        let mut in_flight = InFlight::default();
        let records = [
            record(0, 1, Some("42")),
            record(0, 2, Some("42")),
            record(0, 3, Some("7")),
            record(0, 4, Some("42")),
        ];
        assert_eq!(
            admit_all(&mut in_flight, &records),
            [1, 3],
            "2 and 4 wait for 1"
        );
        assert_eq!((in_flight.running(), in_flight.waiting()), (2, 2));

        let (stored, next) = finish(&mut in_flight, &records[2]);
        assert_eq!(
            (stored, next),
            (None, None),
            "3 is done, but 1 and 2 are not"
        );
        let (stored, next) = finish(&mut in_flight, &records[0]);
        assert_eq!(stored, Some(1));
        assert_eq!(next, Some(2), "then 2");
        let (stored, next) = finish(&mut in_flight, &records[1]);
        assert_eq!(stored, Some(3), "2 and the finished 3");
        assert_eq!(next, Some(4), "then 4");
        assert_eq!(finish(&mut in_flight, &records[3]), (Some(4), None));
        assert_eq!((in_flight.running(), in_flight.waiting()), (0, 0));
        assert_eq!(
            in_flight
                .admit(record(0, 5, Some("42")))
                .map(|r| r.offset()),
            Some(5),
            "the key is free again"
        );
    }

    #[test]
    fn no_offset_passes_a_waiting_record() {
        let mut in_flight = InFlight::default();
        let records = [
            record(0, 1, Some("a")),
            record(0, 2, Some("a")),
            record(0, 3, Some("b")),
        ];
        admit_all(&mut in_flight, &records);
        let (stored, next) = finish(&mut in_flight, &records[2]);
        assert_eq!(stored, None, "1 runs, 2 waits");
        assert!(next.is_none());
        in_flight.drop_waiting();
        assert_eq!(
            finish(&mut in_flight, &records[0]),
            (Some(1), None),
            "a dropped record is not started, and its offset stays unstored"
        );
        assert_eq!(in_flight.waiting(), 0);
    }

    #[test]
    fn an_abandoned_record_holds_back_every_later_offset_and_its_keys_waiting_records() {
        let mut in_flight = InFlight::default();
        let records = [
            record(0, 1, Some("a")),
            record(0, 2, Some("b")),
            record(0, 3, Some("a")),
        ];
        admit_all(&mut in_flight, &records);
        in_flight.abandon(&records[0]);
        assert_eq!(in_flight.waiting(), 0, "3 is dropped with it");
        assert_eq!(finish(&mut in_flight, &records[1]), (None, None));
        assert_eq!(in_flight.running(), 0);
    }

    #[test]
    fn a_revoked_partition_stores_nothing_more_and_its_waiting_records_go() {
        let mut flight = InFlight::default();
        let first = flight.admit(record(0, 10, Some("a"))).unwrap();
        assert!(
            flight.admit(record(0, 11, Some("a"))).is_none(),
            "waits behind 10"
        );
        let other = flight.admit(record(1, 5, Some("b"))).unwrap();
        flight.forget_partition("t", 0);
        assert_eq!(flight.waiting(), 0);
        // The running record of the revoked partition ends abandoned; the other partition
        // goes on as before.
        flight.abandon(&first);
        assert_eq!(flight.finish(&other).0, Some(5));
        assert_eq!(flight.running(), 0);
    }
}
