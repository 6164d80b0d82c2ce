//! The issuer's signing keys: found through discovery (or `AUTH_JWKS_URL`), kept in memory,
//! fetched again on a schedule to learn rotations, and at once when a token names a key
//! not seen yet, at most once per cooldown. While the issuer is unreachable the keys in
//! hand keep verifying; until a key set was loaded once, nothing can be verified and
//! protected routes answer 503.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse},
};
use platform::{backoff::Backoff, metrics::OutcomeLabels};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tokio_util::sync::CancellationToken;

use super::settings::AuthSettings;

/// The largest discovery document or key set read.
const MAX_BODY: usize = 256 << 10;
/// The most keys kept from one set.
const MAX_KEYS: usize = 32;

/// A key that verifies tokens of one algorithm.
pub struct VerifyKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// The set was loaded and holds no such key (after a refetch, or within the cooldown).
    Unknown,
    /// No key set was ever loaded: nothing can be verified yet.
    NeverLoaded,
}

/// The key set's counters (clones of [`crate::metrics::ApiMetrics`]' own).
#[derive(Clone, Default)]
pub struct KeyMetrics {
    /// Fetches by outcome (`ok`, `failed`).
    pub fetches: Family<OutcomeLabels, Counter>,
    /// Keys in hand.
    pub keys: Gauge,
}

/// The issuer's keys; cheap to share.
pub struct KeySet {
    settings: AuthSettings,
    http: reqwest::Client,
    keys: RwLock<Option<HashMap<String, Arc<VerifyKey>>>>,
    /// The key set's URL, once discovery found it.
    jwks_url: Mutex<Option<String>>,
    /// When a token naming an unknown key last made the set be fetched; one such fetch at a
    /// time, and a caller that waited finds the keys it brought.
    refetched: tokio::sync::Mutex<Option<Instant>>,
    /// Held by the fetch that would load the first set; a request that finds no set waits
    /// for it rather than failing while the api starts, and tries itself at most once a
    /// second while the issuer is away.
    first_load: tokio::sync::Mutex<Option<Instant>>,
    metrics: KeyMetrics,
}

impl KeySet {
    pub fn new(settings: AuthSettings, metrics: KeyMetrics) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("Failed to build the key set's HTTP client")?;
        Ok(Self {
            jwks_url: Mutex::new(settings.jwks_url.clone()),
            settings,
            http,
            keys: RwLock::new(None),
            refetched: tokio::sync::Mutex::new(None),
            first_load: tokio::sync::Mutex::new(None),
            metrics,
        })
    }

    /// Whether a key set was ever loaded.
    pub fn loaded(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn lookup(&self, kid: &str) -> Result<Arc<VerifyKey>, NoKey> {
        match &*self.keys.read().unwrap_or_else(|e| e.into_inner()) {
            None => Err(NoKey::NeverLoaded),
            Some(keys) => keys.get(kid).cloned().ok_or(NoKey::Unknown),
        }
    }

    /// The key named `kid`, fetching the set again when it is unknown and the last fetch is
    /// older than the cooldown.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyKey>, NoKey> {
        match self.lookup(kid) {
            Ok(key) => return Ok(key),
            Err(NoKey::NeverLoaded) => return self.first_key(kid).await,
            Err(NoKey::Unknown) => {}
        }
        let mut last = self.refetched.lock().await;
        // Another caller may have fetched while this one waited.
        if let Ok(key) = self.lookup(kid) {
            return Ok(key);
        }
        if last.is_none_or(|at| at.elapsed() >= self.settings.refetch_cooldown) {
            *last = Some(Instant::now());
            if let Err(error) = self.fetch().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Failed to fetch the issuer's keys for a token naming an unknown key."
                );
            }
        }
        self.lookup(kid)
    }

    /// The key named `kid` while no set was loaded: after the load under way, or after one
    /// of this request's own (at most one a second).
    async fn first_key(&self, kid: &str) -> Result<Arc<VerifyKey>, NoKey> {
        let mut last = self.first_load.lock().await;
        if !self.loaded() && last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
        {
            *last = Some(Instant::now());
            let _ = self.fetch().await;
        }
        self.lookup(kid)
    }

    /// Loads the keys until it succeeds, then fetches them again every `refresh_every`,
    /// until `shutdown`. A failure keeps the keys in hand and is logged and counted.
    pub async fn keep_fresh(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let fetched = if self.loaded() {
                self.fetch().await
            } else {
                let mut last = self.first_load.lock().await;
                *last = Some(Instant::now());
                self.fetch().await
            };
            let wait = match fetched {
                Ok(()) => {
                    backoff.reset();
                    self.settings.refresh_every
                }
                Err(error) => {
                    let wait = backoff.upcoming();
                    if self.loaded() {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            retry_in_ms = wait.as_millis() as u64,
                            "Failed to refresh the issuer's keys; the keys in hand keep verifying."
                        );
                    } else {
                        tracing::error!(error = format!("{error:#}"), retry_in_ms = wait.as_millis() as u64, issuer = %self.settings.issuer, "Failed to load the issuer's keys; routes that need a token answer 503 until they load.");
                    }
                    backoff.advance();
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Fetches the key set (finding its URL first if needed) and replaces the keys in hand.
    async fn fetch(&self) -> anyhow::Result<()> {
        let fetched = self.fetch_keys().await;
        let outcome = if fetched.is_ok() { "ok" } else { "failed" };
        self.metrics
            .fetches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let keys = fetched?;
        self.metrics.keys.set(keys.len() as i64);
        tracing::info!(keys = keys.len(), "Loaded the issuer's keys.");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(keys);
        Ok(())
    }

    async fn fetch_keys(&self) -> anyhow::Result<HashMap<String, Arc<VerifyKey>>> {
        let known = self
            .jwks_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let url = match known {
            Some(url) => url,
            None => {
                let url = self.discover().await?;
                *self.jwks_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
                url
            }
        };
        let set: serde_json::Value = self.get_json(&url).await?;
        let Some(entries) = set.get("keys").and_then(|k| k.as_array()) else {
            bail!("{url} is not a JWK set: it has no `keys` array");
        };
        Ok(accept_keys(entries))
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name the same issuer.
    async fn discover(&self) -> anyhow::Result<String> {
        let issuer = &self.settings.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document: serde_json::Value = self.get_json(&url).await?;
        if document.get("issuer").and_then(|i| i.as_str()) != Some(issuer.as_str()) {
            bail!("{url} names another issuer than AUTH_ISSUER ({issuer})");
        }
        let jwks = document
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .with_context(|| format!("{url} has no jwks_uri"))?;
        let parsed = url::Url::parse(jwks).with_context(|| format!("jwks_uri {jwks:?}"))?;
        if parsed.scheme() != "https" && !super::settings::is_loopback(&parsed) {
            bail!("jwks_uri {jwks} must be https");
        }
        Ok(jwks.to_owned())
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("Failed to reach {url}"))?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                bail!("{url} answered more than {MAX_BODY} bytes");
            }
        }
        serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
    }
}

/// The keys of a set that may verify access tokens, by key id. Each is read on its own, so
/// one key of a type this version does not know does not lose the others; a key id given
/// twice is dropped, as nobody can tell which is meant.
fn accept_keys(entries: &[serde_json::Value]) -> HashMap<String, Arc<VerifyKey>> {
    let mut keys = HashMap::new();
    let mut doubled = Vec::new();
    for entry in entries.iter().take(MAX_KEYS) {
        let Some((kid, key)) = serde_json::from_value::<Jwk>(entry.clone())
            .ok()
            .and_then(|jwk| accept(&jwk))
        else {
            continue;
        };
        if keys.insert(kid.clone(), Arc::new(key)).is_some() {
            doubled.push(kid);
        }
    }
    for kid in doubled {
        keys.remove(&kid);
    }
    keys
}

/// A key fit to verify signatures: an RSA key of 2048 bits or more, or a P-256 or P-384 key,
/// with a key id, meant for signatures. A symmetric (`oct`) key in a public set, or any key
/// whose declared algorithm does not match its type, is refused.
fn accept(jwk: &Jwk) -> Option<(String, VerifyKey)> {
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty() && k.len() <= 256)?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let declared = jwk.common.key_algorithm;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
            if !(256..=1024).contains(&modulus.len()) {
                return None;
            }
            match declared {
                None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(KeyAlgorithm::RS384) => Algorithm::RS384,
                Some(KeyAlgorithm::PS256) => Algorithm::PS256,
                Some(KeyAlgorithm::PS384) => Algorithm::PS384,
                _ => return None,
            }
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (alg, len) = match (&ec.curve, declared) {
                (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => (Algorithm::ES256, 32),
                (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => (Algorithm::ES384, 48),
                _ => return None,
            };
            let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c).ok().map(|b| b.len());
            if coordinate(&ec.x)? != len || coordinate(&ec.y)? != len {
                return None;
            }
            alg
        }
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, VerifyKey { alg, key }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn symmetric_keys_and_keys_not_meant_for_signatures_are_refused() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])});
        let mut encryption = ec.clone();
        encryption["kid"] = json!("enc");
        encryption["use"] = json!("enc");
        let mut mismatched = ec.clone();
        mismatched["kid"] = json!("mismatch");
        mismatched["alg"] = json!("RS256");
        let oct = json!({"kty": "oct", "kid": "oct", "k": URL_SAFE_NO_PAD.encode(b"secret")});
        let unknown = json!({"kty": "EC", "crv": "secp256k1", "kid": "k1", "x": "AA", "y": "AA"});
        let no_kid = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])});
        let keys = accept_keys(&[ec, encryption, mismatched, oct, unknown, no_kid]);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ec"]);
        assert_eq!(keys["ec"].alg, Algorithm::ES256);
    }

    #[test]
    fn a_key_id_given_twice_names_no_key() {
        let key = |x: u8| {
            json!({"kty": "EC", "crv": "P-256", "kid": "same",
                "x": URL_SAFE_NO_PAD.encode([x; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])})
        };
        assert!(accept_keys(&[key(1), key(3)]).is_empty());
    }
}
