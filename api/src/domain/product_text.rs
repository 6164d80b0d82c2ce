//! The product's name and description.

use super::is_forbidden_control;

/// A product name: 1 to 255 characters after trimming, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err("must not be empty or only whitespace".into());
        }
        if chars > Self::MAX_CHARS {
            return Err(format!(
                "must be at most {} characters, got {chars}",
                Self::MAX_CHARS
            ));
        }
        if trimmed.chars().any(|c| c.is_control()) {
            return Err("must be a single line without control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product description: up to 5,000 characters, may be empty, may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDescription(String);

impl ProductDescription {
    pub const MAX_CHARS: usize = 5_000;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(format!(
                "must be at most {} characters, got {chars}",
                Self::MAX_CHARS
            ));
        }
        if trimmed.chars().any(is_forbidden_control) {
            return Err("must not contain control characters other than newlines and tabs".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed() {
        assert_eq!(ProductName::parse("  Lamp ").unwrap().as_str(), "Lamp");
    }

    #[test]
    fn an_empty_or_blank_name_is_rejected() {
        assert!(ProductName::parse("").is_err());
        assert!(ProductName::parse(" \t ").is_err());
    }

    #[test]
    fn a_name_of_255_characters_is_accepted_and_256_rejected() {
        assert!(ProductName::parse(&"é".repeat(255)).is_ok());
        let err = ProductName::parse(&"é".repeat(256)).unwrap_err();
        assert!(err.contains("255"), "{err}");
    }

    #[test]
    fn a_name_with_a_newline_is_rejected() {
        assert!(ProductName::parse("two\nlines").is_err());
    }

    #[test]
    fn a_description_may_be_empty_and_span_lines() {
        assert_eq!(ProductDescription::parse("").unwrap().as_str(), "");
        assert!(ProductDescription::parse("a\nb\tc").is_ok());
    }

    #[test]
    fn a_description_over_the_cap_is_rejected() {
        assert!(ProductDescription::parse(&"x".repeat(5_001)).is_err());
        assert!(ProductDescription::parse("bell\u{7}").is_err());
    }
}
