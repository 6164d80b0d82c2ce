//! E-mail addresses, checked by the `email_address` crate (RFC 5322 syntax).

use std::str::FromStr;

/// A syntactically valid e-mail address of at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        // The crate accepts display names ("Alice <a@b.c>"); an account wants the bare address.
        if text.contains(['<', '>', ' ']) {
            return Err(format!(
                "must be a bare address such as alice@example.com, got {text:?}"
            ));
        }
        email_address::EmailAddress::from_str(text)
            .map(|_| Self(text.to_owned()))
            .map_err(|e| format!("is not a valid e-mail address ({e}): {text:?}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_address_is_accepted() {
        assert_eq!(
            Email::parse(" alice@example.com ").unwrap().as_str(),
            "alice@example.com"
        );
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "alice",
            "alice@",
            "@example.com",
            "Alice <alice@example.com>",
            "",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
