//! The memory budget of decoding and compressing.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Semaphore;

/// The memory budget of decoding and compressing, shared by all consumers: a source is
/// admitted with its estimated peak memory, in MiB permits, so a few large sources or many
/// small ones decode at once, never more than the budget (`IMAGE_DECODE_MEMORY_MB`). A source
/// larger than the whole budget waits for all of it and then runs alone.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    mebibytes: u32,
    /// Sources waiting to be admitted.
    waiting: Arc<AtomicUsize>,
}

/// Counts a source as waiting while it lives (also when its wait is dropped).
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whole MiB (rounded up, at least one), as permits count them.
fn permits_for(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1 << 20))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl DecodeBudget {
    pub fn new(bytes: u64) -> Self {
        let mebibytes = permits_for(bytes);
        Self {
            permits: Arc::new(Semaphore::new(mebibytes as usize)),
            mebibytes,
            waiting: Arc::default(),
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and holds them until the
    /// permit is dropped.
    pub async fn admit(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let wanted = permits_for(bytes).min(self.mebibytes);
        let _waiting = Waiting::new(&self.waiting);
        self.permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the semaphore is never closed")
    }

    /// Whether a source waits for memory now.
    pub fn source_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// MiB not held by any source now.
    #[cfg(test)]
    fn available_mebibytes(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn sources_are_admitted_while_their_memory_fits_the_budget() {
        let budget = DecodeBudget::new(512 * MIB);
        let first = budget.admit(300 * MIB).await;
        let second = budget.admit(200 * MIB).await;
        assert_eq!(budget.available_mebibytes(), 12);
        // A third that does not fit waits until enough is released.
        let third = tokio::spawn({
            let budget = budget.clone();
            async move { budget.admit(100 * MIB).await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        assert!(budget.source_waiting());
        drop(second);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("admitted once the second released its memory")
            .unwrap();
        assert!(!budget.source_waiting());
        drop((first, third));
        assert_eq!(budget.available_mebibytes(), 512);
    }

    #[tokio::test]
    async fn a_source_larger_than_the_budget_runs_alone() {
        let budget = DecodeBudget::new(512 * MIB);
        let huge = budget.admit(2048 * MIB).await;
        assert_eq!(budget.available_mebibytes(), 0);
        drop(huge);
        assert_eq!(budget.available_mebibytes(), 512);
    }
}
