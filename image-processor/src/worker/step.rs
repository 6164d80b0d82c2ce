//! The one decision of what follows a failed image: report it failed now, retry it later,
//! or give up on it. Pure, so that every case is a line of a table test; the worker only
//! carries the decision out.

use std::time::Duration;

use crate::failure::{Failure, FailureKind};

/// What happens to an image that failed on a job's `attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A failure no retry can help: the image is reported failed with this reason.
    Fail { reason: String },
    /// Tried again from retry topic `level` after about `delay` (jitter is the caller's).
    Retry { level: usize, delay: Duration },
    /// Retries used up: the record goes to the dead-letter topic and the image is reported
    /// failed with this reason.
    DeadLetter { reason: String },
}

/// The step after `failure` on attempt `attempt` (1 for the main topic, `n + 1` for retry
/// level `n`), with one delay per retry level in `delays`.
pub fn next_step(attempt: u32, failure: &Failure, delays: &[Duration]) -> Step {
    match failure.kind {
        FailureKind::Permanent => Step::Fail {
            reason: failure.reason.clone(),
        },
        // Attempt 1 failed: retry level 1, and so on.
        FailureKind::Transient => match delays.get(attempt.saturating_sub(1) as usize) {
            Some(&delay) if attempt > 0 => Step::Retry {
                level: attempt as usize,
                delay,
            },
            _ => Step::DeadLetter {
                reason: format!("gave up after {attempt} attempts: {failure}"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_on_each_attempt_has_one_step() {
        let delays = [Duration::from_secs(1), Duration::from_secs(10)];
        let timeout = Failure::transient("timed out");
        let not_found = Failure::permanent("HTTP 404 from the image server");
        let retry = |level, secs| Step::Retry {
            level,
            delay: Duration::from_secs(secs),
        };
        let cases = [
            (1, &timeout, &delays[..], retry(1, 1)),
            (2, &timeout, &delays[..], retry(2, 10)),
            (
                3,
                &timeout,
                &delays[..],
                Step::DeadLetter {
                    reason: "gave up after 3 attempts: timed out".into(),
                },
            ),
            (
                1,
                &timeout,
                &[][..],
                Step::DeadLetter {
                    reason: "gave up after 1 attempts: timed out".into(),
                },
            ),
            (
                1,
                &not_found,
                &delays[..],
                Step::Fail {
                    reason: "HTTP 404 from the image server".into(),
                },
            ),
            (
                3,
                &not_found,
                &delays[..],
                Step::Fail {
                    reason: "HTTP 404 from the image server".into(),
                },
            ),
        ];
        for (attempt, failure, delays, expected) in cases {
            assert_eq!(
                next_step(attempt, failure, delays),
                expected,
                "attempt {attempt}, {failure:?}, {} levels",
                delays.len()
            );
        }
    }
}
