//! Whether a failure is worth retrying: the one function that decides retry versus a final
//! failure.

use std::fmt;

/// Why an image could not be processed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// A short reason for people: logged, put in headers and in the product's image status.
    pub reason: String,
}

/// Transient failures go to a retry topic; permanent ones are recorded at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Timeouts, connection errors, 5xx, 408, 429, storage hiccups.
    Transient,
    /// 4xx, refused addresses, not an image, too large, too many pixels.
    Permanent,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            reason: reason.into(),
        }
    }

    /// The failure for an HTTP status that is not a success.
    pub fn from_status(status: u16) -> Self {
        let reason = format!("HTTP {status} from the image server");
        if status >= 500 || status == 408 || status == 429 {
            Self::transient(reason)
        } else {
            Self::permanent(reason)
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_timeouts_and_throttling_are_retried() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(Failure::from_status(status).is_transient(), "{status}");
        }
    }

    #[test]
    fn client_errors_are_final() {
        for status in [400, 401, 403, 404, 410, 415, 451] {
            assert!(!Failure::from_status(status).is_transient(), "{status}");
        }
    }
}
