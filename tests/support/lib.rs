//! Helpers shared by the whole-system tests: each test gets its own database and its own api
//! on a random port, so tests run in parallel without seeing each other's data.

pub mod auth;
pub mod broker;
pub mod feed;
pub mod images;
pub mod pipeline;
pub mod poll;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod s3;
pub mod tls;

use std::time::Duration;

use api::{settings::Settings, startup::Application};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The PostgreSQL server the tests use (`POSTGRES_URL`, database part ignored).
fn server_url() -> String {
    let url = std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/catalog".to_owned());
    url.rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .unwrap_or(url)
}

/// Creates an empty database for one test and returns its URL.
pub async fn create_database() -> String {
    let name = format!("catalog_test_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server_url()), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL is reachable at POSTGRES_URL (run `make test`, which starts it)");
    tokio::spawn(connection);
    client
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .expect("the test may create databases");
    format!("{}/{name}", server_url())
}

/// A running api with a database of its own; stopped when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `http://127.0.0.1:PORT/metrics`, on the api's metrics listener (`METRICS_ADDR`).
    pub metrics_url: String,
    /// The test's own database.
    pub database_url: String,
    /// A client that follows no redirects, has a timeout and is signed in as an admin (a
    /// token with `catalog:write` and `catalog:admin`), for the requests a test builds
    /// itself; an `Authorization` header the request sets wins.
    pub http: reqwest::Client,
    /// The same client without a token.
    pub anonymous: reqwest::Client,
    /// The cache's counters (database loads, hits, misses, Redis errors).
    pub cache_stats: std::sync::Arc<api::cache::CacheStats>,
    /// The app's cache, for forcing interleavings.
    pub cache: api::cache::ProductCache,
    /// The issuer whose tokens the app trusts.
    pub issuer: std::sync::Arc<auth::TestIssuer>,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the api on port 0 against a fresh, migrated database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(create_database().await, configure).await
}

/// A further api replica on an existing (migrated) database, e.g. a second one beside
/// another test app.
pub async fn spawn_app_on(database_url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::from_env().expect("default settings are valid");
    settings.addr = "127.0.0.1:0".parse().expect("a valid address");
    settings.metrics_addr = "127.0.0.1:0".parse().expect("a valid address");
    settings.database.url = database_url.clone();
    settings.database.pool_size = 4;
    settings.shutdown_grace = Duration::from_secs(1);
    // The HTTP API alone; the pipeline tests configure Kafka.
    settings.kafka = None;
    settings.serve_images_from = None;
    // No cache unless the test asks for one (see `cache_settings`).
    settings.cache = None;
    let issuer = auth::TestIssuer::shared();
    settings.auth = Some(issuer.settings());
    configure(&mut settings);
    let app = Application::build(&settings).await.expect("the api starts");
    let base = format!("http://{}", app.addr());
    let metrics_url = format!("http://{}/metrics", app.metrics_addr());
    let (cache_stats, cache) = (app.cache_stats(), app.cache());
    let shutdown = CancellationToken::new();
    let running = Some(tokio::spawn(app.run_until(shutdown.clone())));
    TestApp {
        base,
        metrics_url,
        database_url,
        http: client(Some(
            &issuer.token("test-admin", &[api::auth::WRITE, api::auth::ADMIN]),
        )),
        anonymous: client(None),
        cache_stats,
        cache,
        issuer,
        shutdown,
        running,
    }
}

/// A client that follows no redirects and has a timeout, sending `token` when given.
fn client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("a header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// A user id as a body gives it: a string of digits or a number.
fn user_id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// Cache settings for `redis_url` with a key prefix of the test's own.
pub fn cache_settings(redis_url: &str) -> api::cache::CacheSettings {
    api::cache::CacheSettings {
        url: redis_url.to_owned(),
        key_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
        ttl: Duration::from_secs(60),
        timeout: Duration::from_millis(200),
        pool_size: 4,
        tls_ca_file: None,
        local_max_bytes: 16 << 20,
        load_timeout: Duration::from_secs(30),
    }
}

/// The Redis server the tests use (`REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl TestApp {
    /// Waits until every connection of the app's Redis cache is up (they connect in the
    /// background, and reads skip Redis until then).
    pub async fn wait_for_cache_connection(&self) {
        poll::poll_until(
            "the cache to connect to Redis",
            Duration::from_secs(20),
            || async {
                match self.cache.connections() {
                    (up, all) if up == all => Ok(()),
                    seen => Err(seen),
                }
            },
        )
        .await;
    }

    /// Stops the api and waits until its relay and projector have let go of the broker.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET` without a token, as a storefront reads.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.anonymous
            .get(self.url(path))
            .send()
            .await
            .expect("the api answers")
    }

    /// `GET` with `token` as the bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the api answers")
    }

    /// The body of `url` (any server, e.g. the processor's /metrics) as text.
    pub async fn text_of(&self, url: &str) -> String {
        let response = self.http.get(url).send().await.expect("the server answers");
        response.text().await.expect("a text body")
    }

    /// `POST` as the caller a test means: a new user registering (`/users`), a product's
    /// owner (`/products` with `user_id`), an admin otherwise.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        let token = match path {
            "/users" => {
                let name = body["username"].as_str().unwrap_or("user");
                let subject = format!("{name}#{}", uuid::Uuid::new_v4().simple());
                self.issuer.token(&subject, &[api::auth::WRITE])
            }
            "/products" => match user_id_of(&body["user_id"]) {
                Some(id) => self.token_of_user(&id).await,
                None => self.admin_token(),
            },
            _ => self.admin_token(),
        };
        self.post_as(path, body, &token).await
    }

    /// `POST` with `token` as the bearer token.
    pub async fn post_as(&self, path: &str, body: &Value, token: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the api answers")
    }

    /// `PATCH` as the owner of the product the path names (an admin when it has none).
    pub async fn patch(&self, path: &str, body: &Value) -> reqwest::Response {
        let token = self.token_of_owner(path).await;
        self.patch_as(path, body, &token).await
    }

    pub async fn patch_as(&self, path: &str, body: &Value, token: &str) -> reqwest::Response {
        self.http
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the api answers")
    }

    /// `DELETE` as the owner of the product the path names (an admin when it has none).
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        let token = self.token_of_owner(path).await;
        self.delete_as(path, &token).await
    }

    pub async fn delete_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the api answers")
    }

    /// A token with `catalog:write` and `catalog:admin`.
    pub fn admin_token(&self) -> String {
        self.issuer
            .token("test-admin", &[api::auth::WRITE, api::auth::ADMIN])
    }

    /// A `catalog:write` token of user `user_id` (the identity it registered with); an
    /// admin's when it has none.
    pub async fn token_of_user(&self, user_id: &str) -> String {
        let Ok(id) = user_id.parse::<i64>() else {
            return self.admin_token();
        };
        let row = self
            .db()
            .await
            .query_opt("SELECT subject FROM users WHERE id = $1", &[&id])
            .await
            .expect("users can be read");
        match row.and_then(|r| r.get::<_, Option<String>>(0)) {
            Some(subject) => self.issuer.token(&subject, &[api::auth::WRITE]),
            None => self.admin_token(),
        }
    }

    /// The token of the owner of the product `/products/{id}` names.
    async fn token_of_owner(&self, path: &str) -> String {
        let id = path
            .strip_prefix("/products/")
            .and_then(|rest| rest.split(['?', '/']).next())
            .and_then(|id| id.parse::<i64>().ok());
        let Some(id) = id else {
            return self.admin_token();
        };
        let owner = self
            .db()
            .await
            .query_opt("SELECT user_id FROM products WHERE id = $1", &[&id])
            .await
            .expect("products can be read");
        match owner {
            Some(row) => self.token_of_user(&row.get::<_, i64>(0).to_string()).await,
            None => self.admin_token(),
        }
    }

    /// `GET /products/{id}` as JSON.
    pub async fn product(&self, id: &str) -> Value {
        self.get(&format!("/products/{id}"))
            .await
            .json()
            .await
            .expect("a JSON product")
    }

    /// Registers a user and returns its id.
    pub async fn create_user(&self, username: &str) -> String {
        let response = self
            .post(
                "/users",
                &json!({"username": username, "email": format!("{username}@example.com")}),
            )
            .await;
        assert_eq!(response.status(), 201, "creating user {username}");
        let body: Value = response.json().await.expect("JSON");
        body["user_id"]
            .as_str()
            .expect("user_id is a string")
            .to_owned()
    }

    /// Creates a product and returns its id.
    pub async fn create_product(&self, user_id: &str, name: &str, price: f64) -> String {
        let response = self
            .post(
                "/products",
                &json!({
                    "user_id": user_id,
                    "product_name": name,
                    "product_description": "A test product.",
                    "product_images": ["https://images.example.com/a.jpg"],
                    "product_price": price,
                }),
            )
            .await;
        assert_eq!(response.status(), 201, "creating product {name}");
        let body: Value = response.json().await.expect("JSON");
        body["product_id"]
            .as_str()
            .expect("product_id is a string")
            .to_owned()
    }

    /// A direct connection to the test's database, for checking what was (not) written.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .expect("the test database is reachable");
        tokio::spawn(connection);
        client
    }

    /// How many rows `table` holds.
    pub async fn count(&self, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

/// Asserts a problem+json response with `status`, and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("a JSON problem body");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type:?}, body {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a detail in {body}"
    );
    body
}

/// The `field` of every entry of a problem's `errors`.
pub fn problem_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
