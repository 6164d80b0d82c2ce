//! The change feed's half in the database: every committed change writes exactly one state
//! record into the outbox, in its own transaction, and the backfill republishes every product
//! once per run, resuming where it stopped. (Publishing them is tested in tests/pipeline.)

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{feed::outbox_states, spawn_app};

/// The values of the product's state records, oldest first.
async fn states(app: &system_tests::TestApp, id: &str) -> Vec<Option<Value>> {
    outbox_states(app, id)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn every_committed_change_writes_one_state_record_equal_to_what_the_api_shows() {
    let app = spawn_app().await;
    let user = app.create_user("feeder").await;
    let id = app.create_product(&user, "Lamp", 19.99).await;
    let mut expected = vec![Some(app.product(&id).await)];
    assert_eq!(states(&app, &id).await, expected, "after the create");

    for change in [
        json!({"product_name": "Brass lamp"}),
        json!({"product_description": "Polished brass."}),
        json!({"product_price": 24.5}),
        json!({"product_images": ["https://images.example.com/b.jpg", "https://images.example.com/c.jpg"]}),
    ] {
        let response = app.patch(&format!("/products/{id}"), &change).await;
        assert_eq!(response.status(), 200, "{change}");
        expected.push(Some(app.product(&id).await));
        assert_eq!(states(&app, &id).await, expected, "after {change}");
    }
    let last = expected.last().unwrap().clone().unwrap();
    assert_eq!(last["product_name"], "Brass lamp");
    assert_eq!(last["image_revision"], 2);

    // A change that is refused commits nothing, so it writes no state.
    let refused = app
        .patch(&format!("/products/{id}"), &json!({"product_price": -1}))
        .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(states(&app, &id).await, expected, "after a refused change");

    assert_eq!(app.delete(&format!("/products/{id}")).await.status(), 204);
    expected.push(None);
    assert_eq!(
        states(&app, &id).await,
        expected,
        "after the delete: a tombstone"
    );
}

#[tokio::test]
async fn a_backfill_republishes_every_product_once_resumes_where_it_stopped_and_can_run_again() {
    let app = spawn_app().await;
    let user = app.create_user("backfiller").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            app.create_product(&user, &format!("p{i}"), 1.0 + i as f64)
                .await,
        );
    }
    let deleted = ids.pop().unwrap();
    assert_eq!(
        app.delete(&format!("/products/{deleted}")).await.status(),
        204
    );
    let pool = api::db::pool(&api::db::DatabaseSettings::for_url(&app.database_url)).unwrap();

    // Two products per batch at two products a second: a batch, a one-second pause, the
    // next batch... stopped after the first pause, as a Ctrl-C or a crash would stop it.
    let slow = api::feed::backfill::BackfillOptions {
        per_second: 2,
        batch: 2,
        restart: false,
    };
    let mut progress = Vec::new();
    let stopped = tokio::time::timeout(
        Duration::from_millis(1500),
        api::feed::backfill::run(&pool, &slow, &mut progress),
    )
    .await;
    assert!(stopped.is_err(), "the slow run was still going");
    let progress = String::from_utf8(progress).unwrap();
    assert!(
        progress.starts_with("backfill run 1: 2 of about 6 products republished (33%)"),
        "{progress}"
    );
    // What the run recorded as done is exactly what it wrote: those products have a second
    // state record, the others none yet.
    let recorded: i64 = app
        .db()
        .await
        .query_one("SELECT products FROM feed_backfills WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert!((2..6).contains(&recorded), "stopped midway: {recorded}");
    let mut counts = Vec::new();
    for id in &ids {
        counts.push(states(&app, id).await.len());
    }
    let expected: Vec<usize> = (0..6).map(|i| if i < recorded { 2 } else { 1 }).collect();
    assert_eq!(counts, expected, "products in id order");

    // The next invocation resumes the run: the rest, each product once.
    let fast = api::feed::backfill::BackfillOptions {
        per_second: 0,
        ..slow
    };
    let done = api::feed::backfill::run(&pool, &fast, &mut Vec::new())
        .await
        .unwrap();
    assert!(done.resumed);
    assert_eq!((done.run, done.products), (1, 6));
    for id in &ids {
        let states = states(&app, id).await;
        assert_eq!(states.len(), 2, "created, then backfilled once: {id}");
        assert_eq!(states[1], Some(app.product(id).await), "the current state");
    }
    // The deleted product stays deleted: a backfill writes states of products that exist.
    assert_eq!(states(&app, &deleted).await.last(), Some(&None));

    // Running it again is a new run that writes the same states again: harmless for a
    // subscriber, which keeps the last value per key.
    let again = api::feed::backfill::run(&pool, &fast, &mut Vec::new())
        .await
        .unwrap();
    assert!(!again.resumed);
    assert_eq!((again.run, again.products), (2, 6));
    for id in &ids {
        let states = states(&app, id).await;
        assert_eq!(states.len(), 3);
        assert_eq!(states[2], states[1]);
    }
}
