//! The change feed: every committed change of a product is also a record on the compacted
//! `products` topic, whose value is the product exactly as `GET /products/{id}` shows it
//! after the change, and a deleted product's last record is a tombstone (no value).
//!
//! The record is written into the transactional outbox by the same transaction as the change
//! (create, update, delete, and the projector applying image results: all in
//! [`crate::products::store`]), after the product's row is locked, so the outbox order of one
//! product's records is its commit order; the relay publishes them in that order (see
//! [`crate::outbox::relay`]). A subscriber that reads
//! the topic from the beginning and keeps the last value per key has what the API shows.
//! [`backfill`] republishes every product's current state, for a new subscriber or after
//! the topic lost records (a retention change, a new cluster).

pub mod backfill;

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use poem_openapi::types::ToJSON;
    use rust_decimal::Decimal;

    use crate::products::{Product, ProductRow};

    /// A row with every optional part of the document present: a compressed image, a failed
    /// one and a pending one.
    fn row() -> ProductRow {
        ProductRow {
            id: 42,
            user_id: 7,
            name: "Lamp".into(),
            description: "Brass".into(),
            images: vec![
                "https://img.example/a.jpg".into(),
                "https://img.example/b.jpg".into(),
                "https://img.example/c.jpg".into(),
            ],
            compressed_images: vec![Some("https://cdn.example/a.webp".into()), None, None],
            price: Decimal::new(1999, 2),
            image_revision: 2,
            image_status: serde_json::from_value(serde_json::json!([
                {"status": "compressed", "compressed_url": "https://cdn.example/a.webp",
                 "bytes_before": 1000, "bytes_after": 300, "width": 640, "height": 480,
                 "format": "image/webp"},
                {"status": "failed", "failure_reason": "HTTP 404 from the image server"},
                {"status": "pending"},
            ]))
            .unwrap(),
            version: 5,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    /// The record value is the API's own document; the subscriber-facing type in `events`
    /// (and so the published JSON Schema) must read it without losing anything.
    #[test]
    fn the_state_schema_reads_the_api_document_whole() {
        let row = row();
        let (created_at, updated_at) = (row.created_at, row.updated_at);
        let mut document = Product::from(row).to_json().unwrap();
        let state: events::ProductState = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(
            (state.created_at, state.updated_at),
            (created_at, updated_at)
        );
        // The same instants; chrono writes the offset as `+00:00` where poem writes `Z`.
        document["created_at"] = serde_json::to_value(state.created_at).unwrap();
        document["updated_at"] = serde_json::to_value(state.updated_at).unwrap();
        assert_eq!(serde_json::to_value(&state).unwrap(), document);
    }

    /// Every field of the API's product is in the state schema, and no other: a field added
    /// to one is added to the other.
    #[test]
    fn the_state_schema_has_the_fields_of_the_api_product() {
        let openapi: serde_json::Value =
            serde_json::from_str(&crate::docs::openapi_json()).unwrap();
        let schema = events::schema::of(events::EventType::ProductState);
        for (api, feed) in [
            (&openapi["components"]["schemas"]["Product"], &schema),
            (
                &openapi["components"]["schemas"]["ImageState"],
                &schema["$defs"]["ImageState"],
            ),
        ] {
            let names = |s: &serde_json::Value| {
                let mut names: Vec<String> = s["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                names.sort();
                names
            };
            assert_eq!(names(api), names(feed));
            let required = |s: &serde_json::Value| {
                let mut names: Vec<String> = s["required"]
                    .as_array()
                    .map(|r| r.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                names.sort();
                names
            };
            assert_eq!(required(api), required(feed));
        }
    }
}
