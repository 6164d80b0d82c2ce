//! What a consumer does with the errors `recv` hands it: log them, never wait on them.
//!
//! librdkafka reports trouble (every broker down, a request timed out, a connection reset)
//! as events in the consumer's queue, one per occurrence, and recovers by itself. Each event
//! comes out of `recv` as an error. A consumer that paused after each one would fall behind
//! its own queue: a broker away for 20 s leaves hundreds of such events, and at one every
//! half second the consumer was still draining stale errors minutes after the broker came
//! back, processing nothing. So errors are logged (the first at once, then a summary at most
//! every few seconds) and the consumer goes straight back to `recv`, which blocks while the
//! queue is empty.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

/// The longest time between two log lines about one consumer's receive errors.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Receive errors of one consumer, logged at a bounded rate.
#[derive(Debug)]
pub struct ReceiveErrors {
    /// The consumer, for the log (`projector`, `retry-2` …).
    consumer: String,
    last_logged: Option<Instant>,
    /// Errors since the last line.
    unlogged: u64,
}

impl ReceiveErrors {
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Counts `error` and logs it unless a line was written within the last few seconds.
    /// Returns whether it logged.
    pub fn record(&mut self, error: &KafkaError) -> bool {
        self.record_at(error, Instant::now())
    }

    fn record_at(&mut self, error: &KafkaError, now: Instant) -> bool {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return false;
        }
        tracing::warn!(
            consumer = self.consumer,
            %error,
            errors = self.unlogged,
            "Kafka consumer reported errors; librdkafka retries by itself."
        );
        self.last_logged = Some(now);
        self.unlogged = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn the_first_error_is_logged_and_a_burst_only_once_per_interval() {
        let mut errors = ReceiveErrors::new("test");
        let error = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        let start = Instant::now();
        assert!(errors.record_at(&error, start));
        for i in 1..100 {
            assert!(!errors.record_at(&error, start + Duration::from_millis(i * 10)));
        }
        assert_eq!(errors.unlogged, 99);
        assert!(errors.record_at(&error, start + LOG_EVERY));
        assert_eq!(errors.unlogged, 0);
    }
}
