//! Usernames.

/// 3 to 64 characters of letters, digits, `.`, `_` or `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(3..=64).contains(&len) {
            return Err(format!("must be 3 to 64 characters, got {len}"));
        }
        if !name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return Err("must start with a letter or a digit".into());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("may hold only letters, digits, '.', '_' and '-'".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_usernames_are_accepted() {
        assert_eq!(Username::parse(" alice_01 ").unwrap().as_str(), "alice_01");
        assert!(Username::parse("j.doe-2").is_ok());
    }

    #[test]
    fn short_long_and_odd_usernames_are_rejected() {
        for bad in ["ab", &"a".repeat(65), "_alice", "al ice", "alice!", "ålice"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }
}
