//! User ids: positive 64-bit integers, accepted as a JSON number or a string of digits
//! (the seed's clients send `"12345"`).

use std::fmt;

/// A positive user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(i64);

impl UserId {
    pub fn new(id: i64) -> Result<Self, String> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err(format!("must be a positive integer, got {id}"))
        }
    }

    /// Parses a string of decimal digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("must be a positive integer, got {text:?}"));
        }
        let id = trimmed
            .parse::<i64>()
            .map_err(|_| format!("is too large: {trimmed}"))?;
        Self::new(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_of_digits_is_an_id() {
        assert_eq!(UserId::parse("12345").unwrap().get(), 12345);
        assert_eq!(UserId::parse(" 7 ").unwrap().get(), 7);
    }

    #[test]
    fn zero_negative_and_non_digits_are_rejected() {
        for bad in ["0", "-1", "+1", "1.0", "abc", "", "1e3"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UserId::new(0).is_err());
    }

    #[test]
    fn an_id_beyond_64_bits_is_rejected() {
        assert!(
            UserId::parse("9223372036854775808")
                .unwrap_err()
                .contains("too large")
        );
    }
}
