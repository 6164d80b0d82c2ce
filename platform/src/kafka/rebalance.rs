//! Rebalances handled explicitly. A consumer with several records in flight must not go on
//! with the records of a partition it no longer owns: the new owner starts from the last
//! committed offset and processes them too, and an offset stored after the revoke would be
//! committed past records nobody finished.
//!
//! Each assigned partition gets a cancellation token. When librdkafka revokes partitions it
//! calls [`RebalanceContext`]'s `pre_rebalance` before giving them up: their tokens are
//! cancelled there, synchronously, so every job of those partitions stops at its next await
//! as it would at shutdown (no outcome is made durable after that point, no offset stored),
//! and the consumer loop, told through [`PartitionGuard::take_revoked`], drops their waiting
//! records and bookkeeping. The records go to the new owner from the committed offset.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, ConsumerContext, Rebalance},
};
use tokio_util::sync::CancellationToken;

/// A partition: topic and number.
pub type TopicPartition = (String, i32);

/// The cancellation tokens of a consumer's partitions, and the partitions revoked since the
/// consumer loop last looked.
#[derive(Debug, Default)]
pub struct PartitionGuard {
    tokens: Mutex<HashMap<TopicPartition, CancellationToken>>,
    revoked: Mutex<Vec<TopicPartition>>,
}

impl PartitionGuard {
    /// The token of a partition's work, a child of `parent` (shutdown): cancelled when the
    /// partition is revoked, or by `parent`.
    pub fn token(
        &self,
        topic: &str,
        partition: i32,
        parent: &CancellationToken,
    ) -> CancellationToken {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| parent.child_token())
            .clone()
    }

    /// Cancels the partitions' work and notes them for the consumer loop.
    pub fn revoke(&self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        for partition in partitions {
            if let Some(token) = tokens.remove(&partition) {
                token.cancel();
            }
            revoked.push(partition);
        }
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<TopicPartition> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A consumer context that cancels the work of revoked partitions before they are given up.
pub struct RebalanceContext {
    /// For the log (`main`, `retry-1`, `projector` …).
    pub consumer: String,
    pub partitions: Arc<PartitionGuard>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let revoked: Vec<TopicPartition> = list
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(
                    consumer = self.consumer,
                    partitions = ?revoked,
                    "Partitions revoked; their records in flight are abandoned for the new owner."
                );
                self.partitions.revoke(revoked);
            }
            Rebalance::Assign(list) => {
                let assigned: Vec<TopicPartition> = list
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(consumer = self.consumer, partitions = ?assigned, "Partitions assigned.");
            }
            Rebalance::Error(error) => {
                tracing::warn!(consumer = self.consumer, %error, "Rebalance failed.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_a_partition_cancels_its_work_only_and_reports_it_once() {
        let guard = PartitionGuard::default();
        let shutdown = CancellationToken::new();
        let zero = guard.token("t", 0, &shutdown);
        let one = guard.token("t", 1, &shutdown);
        guard.revoke([("t".to_owned(), 0)]);
        assert!(zero.is_cancelled());
        assert!(!one.is_cancelled());
        assert_eq!(guard.take_revoked(), vec![("t".to_owned(), 0)]);
        assert!(guard.take_revoked().is_empty());
        // Assigned again later: a fresh token.
        assert!(!guard.token("t", 0, &shutdown).is_cancelled());
        shutdown.cancel();
        assert!(
            one.is_cancelled(),
            "shutdown cancels every partition's work"
        );
    }
}
