//! The in-process near cache in front of Redis: hot products from memory, dropped on Redis's
//! invalidation pushes, and never trusted while those pushes may have been lost.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{
    TestApp, cache_settings, poll::poll_until, redis::OwnRedis, redis_url, spawn_app_with,
};

/// Two api replicas on one database and one Redis key prefix, as in a deployment.
async fn two_replicas(redis: &str) -> (TestApp, TestApp) {
    let settings = cache_settings(redis);
    let first = {
        let settings = settings.clone();
        spawn_app_with(move |s| s.cache = Some(settings)).await
    };
    let database = first.database_url.clone();
    let second = spawn_app_with(move |s| {
        s.database.url = database;
        s.cache = Some(settings);
    })
    .await;
    (first, second)
}

async fn name_of(app: &TestApp, id: &str) -> (String, Value) {
    let response = app.get(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 200);
    let source = response.headers()["x-cache"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    (source, body["product_name"].clone())
}

/// Reads until `app` answers from its own memory (tracking starts in the background).
async fn poll_until_local_hit(app: &TestApp, id: &str) {
    poll_until(
        "a hit from the replica's memory",
        Duration::from_secs(20),
        || async {
            let before = app.cache_stats.local_hits.get();
            let (source, _) = name_of(app, id).await;
            let after = app.cache_stats.local_hits.get();
            if source == "hit" && after > before {
                Ok(())
            } else {
                Err((source, after))
            }
        },
    )
    .await;
}

/// Reads through `app` until the product's name is `name`.
async fn poll_until_name(app: &TestApp, id: &str, name: &str, deadline: Duration) {
    poll_until(
        &format!("the name {name} through this replica"),
        deadline,
        || async {
            match name_of(app, id).await {
                (_, seen) if seen == name => Ok(()),
                seen => Err(seen),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_hot_product_is_served_from_memory_without_redis_or_the_database() {
    let app = {
        let settings = cache_settings(&redis_url());
        spawn_app_with(move |s| s.cache = Some(settings)).await
    };
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    poll_until_local_hit(&app, &id).await;

    let (loads, local) = (
        app.cache_stats.db_loads.get(),
        app.cache_stats.local_hits.get(),
    );
    for _ in 0..10 {
        assert_eq!(name_of(&app, &id).await, ("hit".into(), json!("Lamp")));
    }
    assert_eq!(app.cache_stats.local_hits.get(), local + 10);
    assert_eq!(app.cache_stats.db_loads.get(), loads);
    assert_eq!(app.cache.local_entries(), 1);
}

#[tokio::test]
async fn a_write_through_one_replica_reaches_the_memory_of_the_other() {
    let (writer, reader) = two_replicas(&redis_url()).await;
    let user = writer.create_user("alice").await;
    let id = writer.create_product(&user, "Lamp", 10.0).await;
    poll_until_local_hit(&reader, &id).await;

    writer
        .patch(
            &format!("/products/{id}"),
            &json!({"product_name": "Brass lamp"}),
        )
        .await;
    // The writer reads its own write at once...
    assert_eq!(name_of(&writer, &id).await.1, "Brass lamp");
    // ...the other replica as soon as Redis's push arrives: well before the entry's TTL
    // (60 s), which is all that would end it without the push.
    poll_until_name(&reader, &id, "Brass lamp", Duration::from_secs(5)).await;

    assert_eq!(
        writer.delete(&format!("/products/{id}")).await.status(),
        204
    );
    poll_until(
        "the other replica to see the deletion",
        Duration::from_secs(5),
        || async {
            match reader
                .get(&format!("/products/{id}"))
                .await
                .status()
                .as_u16()
            {
                404 => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_write_while_the_tracking_connection_is_down_is_not_hidden_by_memory() {
    let redis = OwnRedis::start().await;
    let (writer, reader) = two_replicas(&redis.url()).await;
    let user = writer.create_user("alice").await;
    let id = writer.create_product(&user, "Lamp", 10.0).await;
    poll_until_local_hit(&reader, &id).await;
    poll_until(
        "the writer's tracking to be on too",
        Duration::from_secs(20),
        || async {
            match writer.cache_stats.local_tracking.get() {
                1 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    let flushes = reader.cache_stats.local_flushes.get();

    // Redis drops both replicas' tracking connections; the push for this write, made before
    // they reconnect (after half a second), reaches nobody.
    assert_eq!(redis.kill_tracking_connections(), 2);
    writer
        .patch(
            &format!("/products/{id}"),
            &json!({"product_name": "Brass lamp"}),
        )
        .await;

    // Without the push, only dropping everything on losing the connection ends the old
    // entry before its TTL (60 s).
    poll_until_name(&reader, &id, "Brass lamp", Duration::from_secs(10)).await;
    assert!(
        reader.cache_stats.local_flushes.get() > flushes,
        "losing the connection emptied the reader's memory"
    );
    // Tracking comes back, and with it hits from memory.
    poll_until_local_hit(&reader, &id).await;
    assert_eq!(name_of(&reader, &id).await.1, "Brass lamp");
}

#[tokio::test]
async fn with_the_near_cache_off_hits_come_from_redis() {
    let app = {
        let mut settings = cache_settings(&redis_url());
        settings.local_max_bytes = 0;
        spawn_app_with(move |s| s.cache = Some(settings)).await
    };
    app.wait_for_cache_connection().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    name_of(&app, &id).await;
    for _ in 0..5 {
        assert_eq!(name_of(&app, &id).await.0, "hit");
    }
    assert_eq!(app.cache_stats.local_hits.get(), 0);
}
