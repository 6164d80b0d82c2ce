//! The pruner: published outbox rows and applied-event records go once older than their
//! retention; unpublished rows stay whatever their age.

use std::time::Duration;

use api::{
    cache::CacheStats,
    db::{DatabaseSettings, pool},
    metrics::ApiMetrics,
    outbox::prune::{PruneSettings, Pruned, Pruner},
};
use system_tests::spawn_app_with;
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn only_records_older_than_their_retention_are_pruned_and_never_unpublished_events() {
    // The app's own pruner runs at start, maybe after the rows below are in: with a year's
    // retention it leaves them to the test's pruner.
    let app = spawn_app_with(|s| {
        s.prune.outbox_retention = 365 * DAY;
        s.prune.applied_events_retention = 365 * DAY;
    })
    .await;
    let db = app.db().await;
    // Outbox rows: (published how many days ago, or never; created how many days ago).
    let rows: [(Option<i32>, i32); 5] = [
        (Some(10), 10), // old and published: goes
        (Some(8), 9),   // old and published: goes
        (Some(1), 9),   // created long ago but published recently: stays
        (None, 30),     // never published: stays, it is still owed to Kafka
        (Some(0), 0),   // fresh: stays
    ];
    for (i, (published, created)) in rows.iter().enumerate() {
        db.execute(
            "INSERT INTO outbox (product_id, event_id, event_type, payload, created_at, published_at) \
             VALUES ($1, gen_random_uuid(), 'com.catalog.product.created.v1', '{}', \
                     now() - make_interval(days => $2), \
                     now() - make_interval(days => $3))",
            &[&(i as i64 + 1), created, published],
        )
        .await
        .unwrap();
    }
    for days in [20, 8, 2] {
        db.execute(
            "INSERT INTO applied_events (event_id, applied_at) \
             VALUES (gen_random_uuid(), now() - make_interval(days => $1))",
            &[&days],
        )
        .await
        .unwrap();
    }

    let metrics = ApiMetrics::new(&CacheStats::default());
    let pruner = Pruner {
        pool: pool(&DatabaseSettings::for_url(&app.database_url)).unwrap(),
        settings: PruneSettings {
            outbox_retention: 7 * DAY,
            applied_events_retention: 7 * DAY,
            interval: Duration::from_secs(600),
            // Smaller than what there is to delete: the round goes on batch after batch.
            batch_size: 1,
        },
        metrics: metrics.clone(),
    };
    let pruned = pruner.prune_once(&CancellationToken::new()).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            outbox: 2,
            applied_events: 2
        }
    );

    let left: Vec<i64> = db
        .query("SELECT product_id FROM outbox ORDER BY product_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [3, 4, 5], "the recent and the unpublished rows stay");
    assert_eq!(app.count("applied_events").await, 1);
    let exposed = metrics.render();
    assert!(
        exposed.contains(r#"pruned_rows_total{table="outbox"} 2"#),
        "{exposed}"
    );

    let again = pruner.prune_once(&CancellationToken::new()).await.unwrap();
    assert_eq!(again, Pruned::default(), "a second round finds nothing");
}
