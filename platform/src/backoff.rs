//! The retry pause of every loop that waits for something to come back (the outbox relay, the
//! projector, the supervisor, topic and consumer creation): it starts short, doubles with
//! each failure in a row up to a longest pause, and starts short again after a success.
//!
//! Written here rather than taken from a crate such as `backon`: those model retrying one
//! future, while these loops log each failure with the coming pause, wait on shutdown (and
//! the relay on new work) beside the pause, and decide themselves when a run was a success.
//! What they share is the arithmetic, a dozen lines.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A doubling pause between `first` and `longest`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    longest: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, longest: Duration) -> Self {
        Self {
            first,
            longest,
            next: first,
        }
    }

    /// The pause the next failure will take (for the log line that announces it).
    pub fn upcoming(&self) -> Duration {
        self.next
    }

    /// Takes the pause for this failure; the next one is twice as long, up to the longest.
    pub fn advance(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.longest);
        pause
    }

    /// A success: the next failure pauses briefly again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps this failure's pause; false if `shutdown` fired first.
    pub async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.advance();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_pause_doubles_up_to_the_longest_and_a_success_starts_it_again() {
        let mut backoff = Backoff::new(100 * MS, 500 * MS);
        let pauses: Vec<_> = (0..5).map(|_| backoff.advance()).collect();
        assert_eq!(pauses, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        assert_eq!(backoff.upcoming(), 500 * MS);
        backoff.reset();
        assert_eq!(backoff.advance(), 100 * MS);
    }

    #[tokio::test]
    async fn shutdown_ends_the_pause() {
        let mut backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(!backoff.pause(&shutdown).await);
    }
}
