//! How the api trusts an OpenID Connect issuer: `AUTH_*` settings.

use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::Algorithm;
use platform::env;

/// The signature algorithms an access token may use; never `none`, never HMAC (a shared
/// secret has no place in a public key set).
const ASYMMETRIC: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The issuer the api trusts and what it demands of a token.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `AUTH_ISSUER`: the issuer identifier, compared with `iss` exactly (a trailing slash
    /// counts). Its `/.well-known/openid-configuration` names the key set.
    pub issuer: String,
    /// `AUTH_AUDIENCE`: this API's identifier, which `aud` must contain. An ID token (whose
    /// audience is a client id) is refused by it.
    pub audience: String,
    /// `AUTH_JWKS_URL`: the key set, when discovery is not to be used.
    pub jwks_url: Option<String>,
    /// `AUTH_ALGORITHMS`: accepted signature algorithms (default `RS256,ES256`).
    pub algorithms: Vec<Algorithm>,
    /// `AUTH_LEEWAY_SECS`: clock skew allowed on `exp`, `nbf` and `iat` (default 30).
    pub leeway: Duration,
    /// `AUTH_SCOPE_CLAIM`: the claim holding the scopes, a space-separated string (`scope`,
    /// the default: Keycloak, Auth0, Okta) or an array (Auth0's `permissions`, Entra's
    /// `scp` or `roles`).
    pub scope_claim: String,
    /// `AUTH_TOKEN_TYPES`: accepted `typ` headers (default `at+jwt,JWT`: RFC 9068's, and the
    /// plain one most issuers still write).
    pub token_types: Vec<String>,
    /// `AUTH_KEYS_REFETCH_SECS`: a token naming an unknown key fetches the key set again at
    /// most this often (default 30), so a flood of made-up key ids costs one fetch.
    pub refetch_cooldown: Duration,
    /// `AUTH_KEYS_REFRESH_SECS`: the key set is fetched again this often, to learn rotated
    /// keys before a token needs them (default 600).
    pub refresh_every: Duration,
    /// `AUTH_DOCS_CLIENT_ID`: a public client registered at the issuer for the docs page
    /// (authorization code with PKCE, redirect URI `<API>/docs/oauth-receiver.html`). Set,
    /// the page's Authorize button signs in at the issuer; unset, it takes a pasted token.
    pub docs_client_id: Option<String>,
    /// `AUTH_DOCS_SCOPES`: the scopes the docs page asks for (default
    /// `openid catalog:write`).
    pub docs_scopes: String,
}

impl AuthSettings {
    /// Settings for `issuer` with every default; tests start from it.
    pub fn for_issuer(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: "catalog-api".to_owned(),
            jwks_url: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: Duration::from_secs(30),
            scope_claim: "scope".to_owned(),
            token_types: vec!["at+jwt".to_owned(), "JWT".to_owned()],
            refetch_cooldown: Duration::from_secs(30),
            refresh_every: Duration::from_secs(600),
            docs_client_id: None,
            docs_scopes: "openid catalog:write".to_owned(),
        }
    }

    /// From the environment; `None` without `AUTH_ISSUER` (which serving requires, and the
    /// other commands do not).
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(issuer) = env::optional("AUTH_ISSUER") else {
            return Ok(None);
        };
        let defaults = Self::for_issuer(issuer);
        let settings = Self {
            audience: env::string("AUTH_AUDIENCE", &defaults.audience),
            jwks_url: env::optional("AUTH_JWKS_URL"),
            algorithms: env::parse_with("AUTH_ALGORITHMS", defaults.algorithms.clone(), |text| {
                env::list(text).map(parse_algorithm).collect()
            })?,
            leeway: Duration::from_secs(env::parse("AUTH_LEEWAY_SECS", 30)?),
            scope_claim: env::string("AUTH_SCOPE_CLAIM", &defaults.scope_claim),
            token_types: env::parse_with(
                "AUTH_TOKEN_TYPES",
                defaults.token_types.clone(),
                |text| Ok(env::list(text).map(str::to_owned).collect()),
            )?,
            refetch_cooldown: Duration::from_secs(env::parse("AUTH_KEYS_REFETCH_SECS", 30)?),
            refresh_every: Duration::from_secs(env::parse("AUTH_KEYS_REFRESH_SECS", 600)?.max(10)),
            docs_client_id: env::optional("AUTH_DOCS_CLIENT_ID"),
            docs_scopes: env::string("AUTH_DOCS_SCOPES", &defaults.docs_scopes),
            ..defaults
        };
        settings.check()?;
        Ok(Some(settings))
    }

    fn check(&self) -> anyhow::Result<()> {
        for url in std::iter::once(&self.issuer).chain(&self.jwks_url) {
            let parsed = url::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
            if parsed.scheme() != "https" && !is_loopback(&parsed) {
                bail!("{url} must be https (plain http is accepted on loopback only)");
            }
        }
        if self.algorithms.is_empty() || self.token_types.is_empty() {
            bail!("AUTH_ALGORITHMS and AUTH_TOKEN_TYPES need at least one entry each");
        }
        Ok(())
    }
}

/// An accepted algorithm's name (`RS256`, `ES256`, …); `none` and `HS*` are refused.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    ASYMMETRIC
        .into_iter()
        .find(|alg| format!("{alg:?}") == name)
        .ok_or_else(|| {
            format!("{name:?} is not accepted: use RS256, RS384, PS256, PS384, ES256 or ES384")
        })
}

/// A URL on this machine: plain http to it never crosses a network.
pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
        for refused in ["none", "None", "HS256", "es256", ""] {
            assert!(parse_algorithm(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn an_issuer_off_this_machine_must_be_https() {
        assert!(
            AuthSettings::for_issuer("http://127.0.0.1:8090")
                .check()
                .is_ok()
        );
        assert!(
            AuthSettings::for_issuer("https://id.example.com/")
                .check()
                .is_ok()
        );
        assert!(
            AuthSettings::for_issuer("http://id.example.com")
                .check()
                .is_err()
        );
    }
}
