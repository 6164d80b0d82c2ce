//! `GET /products/{id}` over real HTTP on loopback, against real PostgreSQL and Redis:
//! - `hit`: served from the replica's memory (the near cache Redis keeps coherent);
//! - `hit_redis`: served from Redis, the near cache off;
//! - `miss`: the same server code with the cache off, so every request reads PostgreSQL;
//! - `baseline`: a route of the same server, behind the same middleware, returning a constant
//!   body of the same size: the ceiling a cache hit can reach.
//!
//! Each is measured one request at a time (latency) and as batches of 32 concurrent requests
//! (throughput). Beside them, what sign-in costs a write:
//! - `authenticated/patch`: `PATCH /products/{id}` by its owner, with a bearer token;
//! - `authenticated/verify`: verifying that token alone (signature, claims; keys cached), in
//!   process: its share of the PATCH's latency is what sign-in costs.
//!
//! Run with `make bench`; figures in docs/benchmarks.md.

use std::{net::SocketAddr, time::Duration};

use api::{
    cache::{CacheSettings, ProductCache},
    db,
    metrics::ApiMetrics,
    routes::AppState,
    startup,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use poem::{EndpointExt, Route, get, handler, web::Data};
use serde_json::json;

const BATCH: usize = 32;

#[derive(Clone)]
struct Constant(Vec<u8>);

#[handler]
fn baseline(body: Data<&Constant>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(body.0.0.clone())
}

/// Serves the api (with `cache`) plus `/baseline` on a free loopback port; returns where,
/// and the verifier of its tokens.
async fn serve(
    database_url: &str,
    cache: ProductCache,
    constant: Vec<u8>,
) -> (SocketAddr, std::sync::Arc<api::auth::Verifier>) {
    let pool = db::pool(&db::DatabaseSettings::for_url(database_url)).unwrap();
    db::migrate(&pool).await.unwrap();
    let metrics = ApiMetrics::new(&cache.stats());
    let auth = api::auth::Auth::new(
        system_tests::auth::TestIssuer::shared().settings(),
        metrics.auth_keys.clone(),
        metrics.auth_refusals.clone(),
    )
    .unwrap();
    let verifier = auth.verifier.clone();
    let state = AppState {
        pool,
        max_images_per_product: 10,
        outbox: Default::default(),
        cache,
        metrics: metrics.clone(),
        consumers: Default::default(),
        auth,
    };
    let route: Route =
        startup::routes(state, None).at("/baseline", get(baseline).data(Constant(constant)));
    let app = startup::with_middleware(route, 64 * 1024, Duration::from_secs(30), metrics);
    // The api's own accept loop (timeouts, connection cap), as deployed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::server::serve(
        listener,
        app,
        api::server::HttpSettings::default(),
        tokio_util::sync::CancellationToken::new(),
        Duration::from_secs(1),
    ));
    (addr, verifier)
}

struct Setup {
    /// The product's URL on the uncached server, for its owner's PATCH.
    patch_url: String,
    /// The owner's token, and the verifier that checks it.
    token: String,
    verifier: std::sync::Arc<api::auth::Verifier>,
    hit_url: String,
    hit_redis_url: String,
    miss_url: String,
    baseline_url: String,
}

async fn setup() -> Setup {
    let database_url = system_tests::create_database().await;
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let settings = CacheSettings {
        url: redis,
        key_prefix: format!("bench:{}:", uuid::Uuid::new_v4().simple()),
        ttl: Duration::from_secs(600),
        timeout: Duration::from_millis(200),
        pool_size: 4,
        tls_ca_file: None,
        local_max_bytes: 64 << 20,
        load_timeout: Duration::from_secs(30),
    };
    let cache = ProductCache::connect(settings.clone()).unwrap();
    let stats = cache.stats();
    let redis_only = ProductCache::connect(CacheSettings {
        local_max_bytes: 0,
        load_timeout: Duration::from_secs(30),
        ..settings
    })
    .unwrap();
    // What keeps both caches connected and tracked, as the api's Application runs it.
    let keep = tokio_util::sync::CancellationToken::new();
    for task in cache.tasks().into_iter().chain(redis_only.tasks()) {
        tokio::spawn(task.supervised(keep.clone(), Default::default()));
    }
    // The cached server creates the data; its body fixes the baseline's size.
    let (cached, _) = serve(&database_url, cache, Vec::new()).await;
    let http = reqwest::Client::new();
    // The seller, signed in at the tests' own issuer.
    let token = system_tests::auth::TestIssuer::shared().token("bench", &[api::auth::WRITE]);
    let post = |path: &str, body: serde_json::Value| {
        let request = http
            .post(format!("http://{cached}{path}"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let answer = request.send().await.unwrap();
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let user = post(
        "/users",
        json!({"username": "bench", "email": "bench@example.com"}),
    )
    .await;
    let product = post(
        "/products",
        json!({
            "user_id": user["user_id"], "product_name": "Benchmark lamp",
            "product_description": "A product of typical size for the benchmark.",
            "product_images": ["https://images.example.com/a.jpg", "https://images.example.com/b.jpg"],
            "product_price": 29.99
        }),
    )
    .await;
    let id = product["product_id"].as_str().unwrap().to_owned();
    let body = http
        .get(format!("http://{cached}/products/{id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (uncached, verifier) = serve(&database_url, ProductCache::disabled(), body.to_vec()).await;
    let (from_redis, _) = serve(&database_url, redis_only, Vec::new()).await;
    // Warm both caches: from here on they answer hits, the first from its memory (once Redis
    // tracks its keys, which starts in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats.local_hits.get() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the near cache serves hits"
        );
        http.get(format!("http://{cached}/products/{id}"))
            .send()
            .await
            .unwrap();
    }
    http.get(format!("http://{from_redis}/products/{id}"))
        .send()
        .await
        .unwrap();
    let warm = http
        .get(format!("http://{from_redis}/products/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        warm.headers()["x-cache"],
        "hit",
        "the Redis cache serves hits"
    );
    Setup {
        patch_url: format!("http://{uncached}/products/{id}"),
        token: token.clone(),
        verifier,
        hit_url: format!("http://{cached}/products/{id}"),
        hit_redis_url: format!("http://{from_redis}/products/{id}"),
        miss_url: format!("http://{uncached}/products/{id}"),
        baseline_url: format!("http://{uncached}/baseline"),
    }
}

fn get_product(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(setup());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(BATCH)
        .build()
        .unwrap();
    let cases = [
        ("hit", &setup.hit_url),
        ("hit_redis", &setup.hit_redis_url),
        ("miss", &setup.miss_url),
        ("baseline", &setup.baseline_url),
    ];

    let mut latency = c.benchmark_group("get_product/latency");
    latency
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    for (name, url) in cases {
        latency.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = http.get(url.as_str()).send().await.unwrap();
                assert!(response.status().is_success());
                response.bytes().await.unwrap()
            })
        });
    }
    latency.finish();

    let mut throughput = c.benchmark_group("get_product/throughput");
    throughput
        .sample_size(30)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, url) in cases {
        throughput.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let requests = (0..BATCH).map(|_| async {
                    let response = http.get(url.as_str()).send().await.unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap()
                });
                futures_util::future::join_all(requests).await
            })
        });
    }
    throughput.finish();

    let mut authenticated = c.benchmark_group("authenticated");
    authenticated
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    let price = std::sync::atomic::AtomicU32::new(1);
    authenticated.bench_function("patch", |b| {
        b.to_async(&runtime).iter(|| async {
            // A new price each time: every PATCH writes the row, its event and its record.
            let cents = price.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let response = http
                .patch(setup.patch_url.as_str())
                .bearer_auth(&setup.token)
                .json(&json!({ "product_price": cents % 100_000 + 1 }))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap()
        })
    });
    authenticated.bench_function("verify", |b| {
        b.to_async(&runtime).iter(|| async {
            let caller = setup.verifier.verify(&setup.token).await;
            assert!(caller.is_ok());
            caller
        })
    });
    authenticated.finish();
}

criterion_group!(benches, get_product);
criterion_main!(benches);
