//! Verifying an access token: its header first (only `alg`, `kid` and `typ` are read, and
//! only to pick a key), then the signature with that key, then the claims. Every refusal
//! has a reason from a fixed list, for the log line and the metric; the token and its
//! claims are never logged.

use std::{collections::BTreeSet, sync::Arc};

use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use super::{
    keys::{KeySet, NoKey},
    settings::AuthSettings,
};

/// The longest token accepted: real access tokens are 1–2 KB.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

/// Who a verified token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub issuer: String,
    pub subject: String,
    scopes: BTreeSet<String>,
}

/// The scope that lets a caller register and change its own products.
pub const WRITE: &str = "catalog:write";
/// The scope that lets a caller act on anyone's products and see every e-mail.
pub const ADMIN: &str = "catalog:admin";

impl Caller {
    pub fn new(issuer: String, subject: String, scopes: impl IntoIterator<Item = String>) -> Self {
        Self {
            issuer,
            subject,
            scopes: scopes.into_iter().collect(),
        }
    }

    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has(ADMIN)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answered 401; the reason is a metric label and a log field, never echoed.
    Invalid(&'static str),
    /// No key set was ever loaded: the token may be valid, so 503, not 401.
    KeysUnavailable,
}

/// The claims read from a verified token. `exp`, `nbf` and `aud` are checked by
/// [`Validation`]; `iss` is a string here so an array naming several issuers is refused.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Verifies tokens of one issuer.
pub struct Verifier {
    settings: AuthSettings,
    keys: Arc<KeySet>,
}

impl Verifier {
    pub fn new(settings: AuthSettings, keys: Arc<KeySet>) -> Self {
        Self { settings, keys }
    }

    /// What it demands of a token, and where the issuer is.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// The caller `token` acts for, or why it does not.
    pub async fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        use Refusal::Invalid;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Invalid("too_long"));
        }
        let header = decode_header(token).map_err(|_| Invalid("malformed"))?;
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            self.settings
                .token_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(typ))
        });
        if !typ_ok {
            return Err(Invalid("token_type"));
        }
        // A key named inside the token is the attacker's own: only the issuer's set counts.
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
            || header.enc.is_some()
            || header.zip.is_some()
        {
            return Err(Invalid("header"));
        }
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(Invalid("algorithm"));
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|kid| !kid.is_empty() && kid.len() <= 256)
            .ok_or(Invalid("key_id"))?;
        let key = self.keys.key(kid).await.map_err(|missing| match missing {
            NoKey::Unknown => Invalid("unknown_key"),
            NoKey::NeverLoaded => Refusal::KeysUnavailable,
        })?;
        if key.alg != header.alg {
            return Err(Invalid("algorithm"));
        }
        let claims = decode::<Claims>(token, &key.key, &self.validation(key.alg))
            .map_err(|error| Invalid(reason(&error)))?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        if claims
            .iat
            .is_some_and(|iat| iat > now + self.settings.leeway.as_secs())
        {
            return Err(Invalid("issued_in_future"));
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(Invalid("subject"));
        }
        let scopes = scopes(claims.other.get(&self.settings.scope_claim));
        Ok(Caller::new(claims.iss, claims.sub, scopes))
    }

    fn validation(&self, alg: jsonwebtoken::Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation
    }
}

/// The scopes of a claim: a space-separated string or an array of strings.
fn scopes(claim: Option<&serde_json::Value>) -> Vec<String> {
    match claim {
        Some(serde_json::Value::String(text)) => {
            text.split_whitespace().map(str::to_owned).collect()
        }
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A refusal reason for a verification error (a bounded label).
fn reason(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => "claims",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scopes_come_as_a_string_or_an_array() {
        assert_eq!(
            scopes(Some(&json!("catalog:write  openid"))),
            ["catalog:write", "openid"]
        );
        assert_eq!(
            scopes(Some(&json!(["catalog:admin", 7]))),
            ["catalog:admin"]
        );
        assert!(scopes(Some(&json!(42))).is_empty());
        assert!(scopes(None).is_empty());
    }
}
