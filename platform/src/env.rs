//! Typed access to environment variables, with errors that name the variable.
//!
//! Settings are read once at start; a missing or malformed value stops the binary with a
//! message saying which key is wrong and what it should look like.

use std::str::FromStr;

use anyhow::{Context, anyhow};
use url::Url;

/// Loads `.env` from the working directory when there is one. Variables already set in the
/// environment win, so `FOO=1 make run` overrides the file. Call before the runtime starts.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// The variable's value, or `default` when it is unset or empty.
pub fn string(key: &str, default: &str) -> String {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => default.to_owned(),
    }
}

/// The variable's value, or `None` when it is unset or empty.
pub fn optional(key: &str) -> Option<String> {
    Some(string(key, "")).filter(|v| !v.is_empty())
}

/// The items of a comma-separated setting (`320, 640,,1280` gives `320`, `640`, `1280`):
/// trimmed, empty ones skipped. Every list setting is read through it.
pub fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// The variable parsed as `T`, or `default` when unset; a value that does not parse is an error
/// naming the key.
pub fn parse<T>(key: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| anyhow!("{key}={v:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// The variable read by `parse` (a list, say), or `default` when unset; a value `parse`
/// refuses is an error naming the key.
pub fn parse_with<T>(
    key: &str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    match optional(key) {
        Some(v) => parse(&v).map_err(|e| anyhow!("{key}={v:?} is not valid: {e}")),
        None => Ok(default),
    }
}

/// The variable as a URL, or `default` when unset.
pub fn url(key: &str, default: &str) -> anyhow::Result<Url> {
    let raw = string(key, default);
    Url::parse(&raw).with_context(|| format!("{key} must be a URL, got {:?}", redact(&raw)))
}

/// The URL with its password replaced, for logs.
pub fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparseable>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_setting_is_trimmed_and_skips_empty_items() {
        assert_eq!(
            list(" 320, 640,,1280 ,").collect::<Vec<_>>(),
            ["320", "640", "1280"]
        );
        assert_eq!(list("").count(), 0);
    }

    #[test]
    fn redact_hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/catalog"),
            "postgres://app:***@db:5432/catalog"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn redact_never_echoes_an_unparseable_value() {
        assert_eq!(redact("not a url with s3cret"), "<unparseable>");
    }
}
