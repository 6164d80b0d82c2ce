//! An OpenID Connect issuer of the tests' own: a P-256 key made in-process, its discovery
//! document and key set served over real HTTP on a free port, and access tokens minted for
//! any subject. The api fetches the keys the way it fetches a real issuer's.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpAcceptor, web::Data};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The audience the api is configured with in tests.
pub const AUDIENCE: &str = "catalog-api";

/// A running test issuer.
pub struct TestIssuer {
    /// The issuer identifier (`iss`), also the base of its endpoints.
    pub url: String,
    kid: String,
    key: EncodingKey,
    /// The key set it serves; tests may replace it (a rotation, a hostile key).
    pub jwks: Arc<Mutex<Value>>,
    /// How often the key set was fetched.
    pub fetches: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A P-256 key pair: the signing key and its public JWK under `kid`.
pub fn es256_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    let key = EncodingKey::from_ec_der(pair.serialized_der());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("its public JWK");
    jwk.common.key_id = Some(kid.to_owned());
    let mut jwk = serde_json::to_value(&jwk).expect("a JWK serialises");
    jwk["use"] = json!("sig");
    (key, jwk)
}

#[handler]
fn discovery(issuer: Data<&IssuerUrl>) -> poem::web::Json<Value> {
    poem::web::Json(json!({
        "issuer": issuer.0.0,
        "jwks_uri": format!("{}/jwks", issuer.0.0),
    }))
}

#[handler]
fn key_set(
    jwks: Data<&Arc<Mutex<Value>>>,
    fetches: Data<&Arc<AtomicUsize>>,
) -> poem::web::Json<Value> {
    fetches.fetch_add(1, Ordering::SeqCst);
    poem::web::Json(jwks.lock().unwrap().clone())
}

#[derive(Clone)]
struct IssuerUrl(String);

impl TestIssuer {
    /// The issuer every api of this test process trusts (tests run one per process under
    /// nextest; under `cargo test` they share it, which is as good).
    pub fn shared() -> Arc<Self> {
        static SHARED: std::sync::OnceLock<Arc<TestIssuer>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Arc::new(Self::start())).clone()
    }

    /// Starts an issuer of its own on a free port of 127.0.0.1, served from a thread of its
    /// own so that it outlives any test's runtime.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let kid = format!("test-{}", uuid::Uuid::new_v4().simple());
        let (key, jwk) = es256_key(&kid);
        let jwks = Arc::new(Mutex::new(json!({ "keys": [jwk] })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let app = Route::new()
            .at("/.well-known/openid-configuration", get(discovery))
            .at("/jwks", get(key_set))
            .data(IssuerUrl(url.clone()))
            .data(jwks.clone())
            .data(fetches.clone());
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let acceptor = TcpAcceptor::from_tokio(listener).expect("an acceptor");
                let _ = Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(app, stop.cancelled_owned(), None)
                    .await;
            });
        });
        Self {
            url,
            kid,
            key,
            jwks,
            fetches,
            shutdown,
        }
    }

    /// The api's settings for this issuer.
    pub fn settings(&self) -> api::auth::AuthSettings {
        let mut settings = api::auth::AuthSettings::for_issuer(&self.url);
        settings.audience = AUDIENCE.to_owned();
        settings
    }

    /// A valid access token for `subject` with `scopes`, for an hour.
    pub fn token(&self, subject: &str, scopes: &[&str]) -> String {
        self.sign(&self.claims(subject, scopes))
    }

    /// The claims of [`TestIssuer::token`], for a test to change before signing.
    pub fn claims(&self, subject: &str, scopes: &[&str]) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 3600,
            "scope": scopes.join(" "), "client_id": "tests",
        })
    }

    /// `claims` signed with the issuer's key, under a header `at+jwt` naming its key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// The header [`TestIssuer::sign`] uses, for a test to change.
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    /// `claims` under `header`, signed with the issuer's key.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        encode(header, claims, &self.key).expect("a token signs")
    }

    /// The key id of the issuer's key.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An HTTP client that signs in as the seller `CATALOG_TOKEN` names (the measuring scripts
/// mint one from the local provider with `scripts/token.sh`), for the examples that run
/// against `make run`.
pub fn seller_client() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var("CATALOG_TOKEN") {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .expect("CATALOG_TOKEN is a token");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder().default_headers(headers)
}
