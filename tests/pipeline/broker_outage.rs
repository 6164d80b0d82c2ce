use std::time::Duration;

use serde_json::Value;
use system_tests::{
    broker::OwnBroker,
    pipeline::{ladders_complete, spawn_pipeline_on},
};

#[tokio::test]
async fn products_created_while_the_broker_is_down_are_processed_once_it_is_back() {
    let mut broker = OwnBroker::start().await;
    let mut pipeline = spawn_pipeline_on(&broker.brokers).await;
    // A first product proves the pipeline runs before the outage.
    let warm = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg")])
        .await;
    pipeline.wait_until_processed(&warm).await;

    broker.kill();
    let mut ids = Vec::new();
    for source in ["chelsea.png", "coffee.png", "astronaut.png"] {
        // The API keeps accepting products: their events wait in the outbox.
        ids.push(
            pipeline
                .create_product(&[pipeline.images.url(&format!("/img/{source}"))])
                .await,
        );
    }
    let pending: Vec<(String, i64)> = pipeline
        .app
        .db()
        .await
        .query(
            "SELECT event_type, count(*) FROM outbox \
             WHERE published_at IS NULL AND product_id = ANY($1) \
             GROUP BY event_type ORDER BY event_type",
            &[&ids
                .iter()
                .map(|id| id.parse::<i64>().unwrap())
                .collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        pending,
        [
            ("com.catalog.product.created.v1".to_owned(), 3),
            ("com.catalog.product.state.v1".to_owned(), 3),
        ],
        "the events and the products' states wait in the outbox while the broker is down"
    );

    broker.resume().await;
    for id in &ids {
        let product: Value = pipeline
            .wait_for(
                id,
                "processing after the broker returned, the whole ladder",
                Duration::from_secs(90),
                |p| p["processing_status"] == "done" && ladders_complete(p),
            )
            .await;
        assert!(product["compressed_product_images"][0].is_string());
    }
    for source in ["chelsea.png", "coffee.png", "astronaut.png"] {
        assert_eq!(
            pipeline.images.hits(&format!("/img/{source}")),
            1,
            "{source} processed exactly once"
        );
    }
    pipeline.stop().await;
}
