//! Drills against one api: clients that give up mid-request while the database stalls,
//! made-up methods, clients that never finish their headers, and writes whose client leaves
//! right after the commit. Each asserts what must hold afterwards, within a stated bound.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use system_tests::{TestApp, cache_settings, poll::poll_until, redis_url, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn cached_app(configure: impl FnOnce(&mut api::settings::Settings)) -> TestApp {
    let cache = cache_settings(&redis_url());
    let app = spawn_app_with(move |s| {
        s.cache = Some(cache);
        configure(s);
    })
    .await;
    app.wait_for_cache_connection().await;
    app
}

/// HTTP/2 without TLS (h2c), as `curl --http2-prior-knowledge`: a client that gives up
/// resets its stream, and the server drops the request's future at once.
fn impatient_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// Takes an exclusive lock on `products` in a transaction of its own until `release`.
async fn lock_products(app: &TestApp) -> tokio_postgres::Client {
    let locker = app.db().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    locker
}

#[tokio::test]
async fn clients_giving_up_during_a_database_stall_leak_no_connection() {
    // Four pooled connections; twelve uncached products read while the table is locked.
    let app = cached_app(|_| {}).await;
    let user = app.create_user("stalled").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.create_product(&user, &format!("p{i}"), 10.0).await);
    }
    let unread = app.create_product(&user, "never read before", 10.0).await;

    let locker = lock_products(&app).await;
    let impatient = impatient_client(Duration::from_millis(500));
    let gave_up = join_all(
        ids.iter()
            .map(|id| impatient.get(app.url(&format!("/products/{id}"))).send()),
    )
    .await;
    assert!(
        gave_up
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.is_timeout())),
        "every read waits on the lock until its client gives up: {gave_up:?}"
    );
    locker.batch_execute("COMMIT").await.unwrap();

    // Once the stall ends, the pool has its connections back: new reads and the probe
    // answer, within a few seconds (the loads left behind finish as soon as the lock goes).
    poll_until(
        "a product nobody read yet to be served after the stall",
        Duration::from_secs(10),
        || async {
            let response = app.get(&format!("/products/{unread}")).await;
            match response.status().as_u16() {
                200 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "readiness after the stall");
}

#[tokio::test]
async fn a_request_stuck_on_the_database_answers_503_at_the_request_timeout() {
    let app = cached_app(|s| s.http.request_timeout = Duration::from_secs(1)).await;
    let user = app.create_user("slow").await;
    let id = app.create_product(&user, "locked", 10.0).await;
    let locker = lock_products(&app).await;
    let response = app.get(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("did not complete"),
        "{problem}"
    );
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.get(&format!("/products/{id}")).await.status(), 200);
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app_with(|_| {}).await;
    let before = app.text_of(&app.metrics_url).await.len();
    for i in 0..50 {
        let method =
            reqwest::Method::from_bytes(format!("M{i}{}", "X".repeat(2_000)).as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url("/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let metrics = app.text_of(&app.metrics_url).await;
    assert!(
        metrics.contains(r#"method="OTHER""#),
        "made-up methods count as OTHER"
    );
    assert!(
        metrics.len() < before + 10_000,
        "/metrics grew from {before} to {} bytes",
        metrics.len()
    );
}

/// Connects and sends half a request head.
async fn half_request(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_closed_and_others_served() {
    let app = spawn_app_with(|s| s.http.header_read_timeout = Duration::from_secs(2)).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(half_request(&app).await);
    }
    // Meanwhile everyone else is served.
    assert_eq!(app.get("/healthz").await.status(), 200);
    // Each half-sent request is closed by the server once the header timeout passes.
    for mut stream in slow {
        let mut rest = Vec::new();
        // Ends with EOF or a reset: either way the server let go.
        let _closed_or_reset =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("the server closes a connection whose headers never finish");
    }
}

#[tokio::test]
async fn a_trickling_client_is_closed_at_the_header_timeout_whatever_it_sends() {
    let app = spawn_app_with(|s| s.http.header_read_timeout = Duration::from_secs(2)).await;
    let mut stream = half_request(&app).await;
    let started = std::time::Instant::now();
    // One header byte every 300 ms keeps an idle timer alive, not the header timer.
    let closed = loop {
        if stream.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        let mut byte = [0_u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {} // a 408 answer before the close
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after 10 s of trickling"
        );
    };
    assert!(
        closed >= Duration::from_millis(1_500),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn the_connection_cap_queues_new_connections_until_one_closes() {
    let app = spawn_app_with(|s| s.http.max_connections = 2).await;
    let first = half_request(&app).await;
    let _second = half_request(&app).await;
    // A third connection waits in the kernel's accept queue while both slots are taken …
    let mut third = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/healthz"));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served past the cap of two"
    );
    // … and is served as soon as one of them closes.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the queued connection is served once a slot frees")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

/// A trigger that makes every COMMIT touching `products` take `ms` milliseconds (a
/// deferred constraint trigger runs at commit time).
async fn slow_commits(app: &TestApp, ms: u32) {
    app.db()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep({ms} / 1000.0); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE OR DELETE ON products
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_whose_client_leaves_during_the_commit_still_invalidates_the_cache() {
    let app = cached_app(|_| {}).await;
    let user = app.create_user("leaver").await;
    let patched = app.create_product(&user, "patched", 10.0).await;
    let deleted = app.create_product(&user, "deleted", 10.0).await;
    for id in [&patched, &deleted] {
        app.product(id).await;
        let again = app.get(&format!("/products/{id}")).await;
        assert_eq!(
            again.headers()["x-cache"],
            "hit",
            "cached before the writes"
        );
    }
    slow_commits(&app, 1_000).await;
    let impatient = impatient_client(Duration::from_millis(300));
    let patch = impatient
        .patch(app.url(&format!("/products/{patched}")))
        .bearer_auth(app.admin_token())
        .json(&json!({"product_price": 99.5}))
        .send()
        .await;
    let delete = impatient
        .delete(app.url(&format!("/products/{deleted}")))
        .bearer_auth(app.admin_token())
        .send()
        .await;
    assert!(patch.is_err() && delete.is_err(), "both clients left first");

    // The commits land; then the cache must not serve the old product for more than the
    // moment the invalidation takes (the entry's TTL is a minute).
    poll_until(
        "GET to show the patched price",
        Duration::from_secs(5),
        || async {
            let product = app.product(&patched).await;
            match product["product_price"].as_f64() {
                Some(99.5) => Ok(()),
                _ => Err(product),
            }
        },
    )
    .await;
    poll_until(
        "GET of the deleted product to answer 404",
        Duration::from_secs(5),
        || async {
            match app
                .get(&format!("/products/{deleted}"))
                .await
                .status()
                .as_u16()
            {
                404 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
}

/// An app caching through a proxy of the test's own in front of the shared Redis.
async fn app_behind_proxy() -> (TestApp, system_tests::proxy::StallProxy) {
    let upstream = redis_url()
        .trim_start_matches("redis://")
        .parse()
        .expect("REDIS_URL is redis://host:port here");
    let proxy = system_tests::proxy::StallProxy::start(upstream).await;
    let cache = cache_settings(&format!("redis://{}", proxy.addr));
    let app = spawn_app_with(move |s| s.cache = Some(cache)).await;
    app.wait_for_cache_connection().await;
    (app, proxy)
}

/// Creates a product and reads it until it is served from the cache.
async fn cached_product(app: &TestApp) -> String {
    let user = app.create_user("partitioned").await;
    let id = app.create_product(&user, "lamp", 10.0).await;
    app.product(&id).await;
    let cached = app.get(&format!("/products/{id}")).await;
    assert_eq!(cached.headers()["x-cache"], "hit");
    id
}

async fn price(app: &TestApp, id: &str) -> Option<f64> {
    app.product(id).await["product_price"].as_f64()
}

/// Black-holes the link to Redis and changes the product's price to 42 meanwhile.
async fn patch_during_partition(app: &TestApp, proxy: &system_tests::proxy::StallProxy, id: &str) {
    proxy.black_hole();
    let patched = app
        .patch(&format!("/products/{id}"), &json!({"product_price": 42}))
        .await;
    assert_eq!(
        patched.status(),
        200,
        "writes go on while Redis is unreachable"
    );
}

#[tokio::test]
async fn a_write_while_redis_is_black_holed_is_never_read_stale() {
    let (app, proxy) = app_behind_proxy().await;
    let id = cached_product(&app).await;

    patch_during_partition(&app, &proxy, &id).await;
    for _ in 0..5 {
        assert_eq!(
            price(&app, &id).await,
            Some(42.0),
            "a read during the partition"
        );
    }
    proxy.restore();
    for _ in 0..50 {
        assert_eq!(
            price(&app, &id).await,
            Some(42.0),
            "a read after the partition"
        );
    }
    poll_until(
        "reads to hit the cache again",
        Duration::from_secs(10),
        || async {
            let response = app.get(&format!("/products/{id}")).await;
            match response.headers()["x-cache"].to_str().unwrap() {
                "hit" => Ok(()),
                other => Err(other.to_owned()),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_partition_that_ends_in_resets_leaves_nothing_stale() {
    let (app, proxy) = app_behind_proxy().await;
    let id = cached_product(&app).await;

    // The invalidation after the write times out in the partition, and the partition ends
    // in resets that cut the connection holding it.
    patch_during_partition(&app, &proxy, &id).await;
    proxy.reset();
    proxy.restore();
    for _ in 0..50 {
        assert_eq!(
            price(&app, &id).await,
            Some(42.0),
            "a read after the partition"
        );
    }
}
