//! The Redis cache of GET /products/{id}, against the real Redis and PostgreSQL, each test
//! with a key prefix of its own.

use std::time::Duration;

use api::cache::Cached;
use serde_json::{Value, json};
use system_tests::{
    TestApp, cache_settings, poll::poll_until, redis::OwnRedis, redis_url, spawn_app_with,
    tls::TestPki,
};

/// An app caching in `redis`, once connected to it.
async fn cached_app(redis: &str) -> TestApp {
    let app = app_caching_in(redis).await;
    app.wait_for_cache_connection().await;
    app
}

async fn app_caching_in(redis: &str) -> TestApp {
    let settings = cache_settings(redis);
    spawn_app_with(move |s| s.cache = Some(settings)).await
}

async fn get(app: &TestApp, id: &str) -> (u16, String, Value) {
    let response = app.get(&format!("/products/{id}")).await;
    let status = response.status().as_u16();
    let source = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, source, body)
}

#[tokio::test]
async fn the_second_get_is_a_hit_that_makes_no_database_read() {
    let app = cached_app(&redis_url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;

    let (status, source, first) = get(&app, &id).await;
    assert_eq!((status, source.as_str()), (200, "miss"));
    let (status, source, second) = get(&app, &id).await;
    assert_eq!((status, source.as_str()), (200, "hit"));
    assert_eq!(first, second);
    assert_eq!(
        app.cache_stats.db_loads.get(),
        1,
        "the hit read nothing from PostgreSQL"
    );
}

#[tokio::test]
async fn an_update_or_delete_is_visible_on_the_very_next_get() {
    let app = cached_app(&redis_url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    get(&app, &id).await;
    assert_eq!(get(&app, &id).await.1, "hit");

    app.patch(
        &format!("/products/{id}"),
        &json!({"product_name": "Brass lamp"}),
    )
    .await;
    let (_, source, product) = get(&app, &id).await;
    assert_eq!(source, "miss");
    assert_eq!(product["product_name"], "Brass lamp");
    let (_, source, product) = get(&app, &id).await;
    assert_eq!(
        (source.as_str(), &product["product_name"]),
        ("hit", &json!("Brass lamp"))
    );

    assert_eq!(app.delete(&format!("/products/{id}")).await.status(), 204);
    assert_eq!(get(&app, &id).await.0, 404);
}

#[tokio::test]
async fn a_reader_that_loaded_before_a_write_cannot_put_the_old_value_back() {
    let app = cached_app(&redis_url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let numeric: i64 = id.parse().unwrap();
    // The slow reader: it read version 1 from the database...
    let stale = app
        .get(&format!("/products/{id}"))
        .await
        .bytes()
        .await
        .unwrap();
    // ...a writer commits version 2 and invalidates...
    app.patch(
        &format!("/products/{id}"),
        &json!({"product_name": "New name"}),
    )
    .await;
    // ...and only then does the reader try to store what it read.
    let stored = app
        .cache
        .store(
            numeric,
            &Cached {
                version: 1,
                body: stale,
            },
        )
        .await;
    assert!(!stored, "an entry older than the invalidation is refused");
    let (_, source, product) = get(&app, &id).await;
    assert_eq!(source, "miss");
    assert_eq!(product["product_name"], "New name");
    assert_eq!(get(&app, &id).await.2["product_name"], "New name");
}

#[tokio::test]
async fn concurrent_misses_for_one_product_read_the_database_once() {
    let app = cached_app(&redis_url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let requests = (0..20).map(|_| get(&app, &id));
    let results = futures_util::future::join_all(requests).await;
    assert!(
        results
            .iter()
            .all(|(status, _, body)| *status == 200 && body["product_name"] == "Lamp")
    );
    assert_eq!(app.cache_stats.db_loads.get(), 1);
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_a_304_until_the_product_changes() {
    let app = cached_app(&redis_url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let path = format!("/products/{id}");
    let etag = app.get(&path).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let again = app
        .http
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);

    app.patch(&path, &json!({"product_price": 11})).await;
    let changed = app
        .http
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn without_redis_reads_come_from_the_database_and_caching_resumes_when_it_returns() {
    let mut redis = OwnRedis::start().await;
    // A Redis timeout far above the test client's (10 s): a read that waited on Redis while
    // it is away would fail the request instead of falling back to the database.
    let mut settings = cache_settings(&redis.url());
    settings.timeout = Duration::from_secs(30);
    let app = spawn_app_with(move |s| s.cache = Some(settings)).await;
    app.wait_for_cache_connection().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    poll_until_hit(&app, &id).await;

    redis.kill();
    // Until its clients learn the connection is gone, commands would still be sent (and
    // wait); from then on reads skip Redis, and nothing cached in memory is trusted.
    poll_until(
        "the cache to notice Redis is away",
        Duration::from_secs(5),
        || async {
            match app.cache.connections() {
                (0, _) => Ok(()),
                seen => Err(seen),
            }
        },
    )
    .await;
    poll_until(
        "reads to come from the database",
        Duration::from_secs(5),
        || async {
            match get(&app, &id).await {
                (200, source, _) if source == "miss" => Ok(()),
                seen => Err(seen),
            }
        },
    )
    .await;
    for _ in 0..5 {
        let (status, source, product) = get(&app, &id).await;
        assert_eq!((status, source.as_str()), (200, "miss"));
        assert_eq!(product["product_name"], "Lamp");
    }
    assert!(
        app.cache_stats.errors.get() > 0,
        "the Redis failures were counted"
    );

    redis.resume().await;
    poll_until_hit(&app, &id).await;
}

async fn poll_until_hit(app: &TestApp, id: &str) {
    poll_until(
        "the cache to serve hits",
        Duration::from_secs(20),
        || async {
            let (status, source, _) = get(app, id).await;
            assert_eq!(status, 200);
            if source == "hit" { Ok(()) } else { Err(source) }
        },
    )
    .await;
}

/// The cache over TLS (`rediss://`): the server's certificate is verified against
/// REDIS_TLS_CA_FILE; a server those CAs do not vouch for gets no cache traffic, and reads
/// still come from the database.
#[tokio::test]
async fn a_rediss_url_caches_over_tls_only_with_a_trusted_certificate() {
    let pki = TestPki::new();
    let redis = OwnRedis::start_tls(&pki).await;

    let trusted = {
        let mut settings = cache_settings(&redis.url());
        settings.tls_ca_file = Some(pki.ca_file.clone());
        spawn_app_with(move |s| s.cache = Some(settings)).await
    };
    let user = trusted.create_user("alice").await;
    let id = trusted.create_product(&user, "Lamp", 10.0).await;
    poll_until_hit(&trusted, &id).await;

    // The same server, but trusting only another CA: every Redis command fails, reads work.
    let other_ca = TestPki::new();
    let untrusted = {
        let mut settings = cache_settings(&redis.url());
        settings.tls_ca_file = Some(other_ca.ca_file.clone());
        spawn_app_with(move |s| s.cache = Some(settings)).await
    };
    let user = untrusted.create_user("bob").await;
    let id = untrusted.create_product(&user, "Desk", 20.0).await;
    poll_until(
        "Redis failures to be counted by the app that does not trust the server",
        Duration::from_secs(20),
        || async {
            let (status, source, product) = get(&untrusted, &id).await;
            assert_eq!((status, source.as_str()), (200, "miss"));
            assert_eq!(product["product_name"], "Desk");
            match untrusted.cache_stats.errors.get() {
                0 => Err("no Redis error yet"),
                _ => Ok(()),
            }
        },
    )
    .await;
    assert_eq!(
        untrusted.cache_stats.hits.get(),
        0,
        "nothing was served from Redis"
    );
}

#[tokio::test]
async fn an_api_started_while_redis_is_down_caches_once_redis_is_up() {
    let mut redis = OwnRedis::start().await;
    redis.kill();
    let app = app_caching_in(&redis.url()).await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    assert_eq!(get(&app, &id).await.1, "miss");

    redis.resume().await;
    poll_until_hit(&app, &id).await;
}
