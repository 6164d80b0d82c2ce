//! The transactional outbox: an event is written in the same transaction as the change it
//! describes, and the [`relay`] publishes it after commit. A crash between the two loses
//! nothing: the row waits until a relay (of any replica) publishes it. The [`prune`]r deletes
//! published rows once they are old.

pub mod prune;
pub mod relay;

use std::sync::Arc;

use events::{Envelope, EventType};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_postgres::Transaction;

/// What the events say they come from (`ce_source`).
pub const SOURCE: &str = "/catalog/api";

/// Wakes the relay right after a commit that wrote events, so publishing does not wait for
/// the next poll. Cheap to clone; a no-op when no relay runs.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    /// Call after the transaction that wrote events has committed.
    pub fn committed(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn wait(&self) {
        self.0.notified().await;
    }
}

/// Writes one event about `product_id` into the outbox, inside `tx`.
pub async fn enqueue<T: Serialize>(
    tx: &Transaction<'_>,
    product_id: i64,
    event_type: EventType,
    payload: &T,
) -> Result<(), tokio_postgres::Error> {
    let mut envelope = Envelope::new(event_type, SOURCE, product_id.to_string());
    envelope.traceparent = platform::telemetry::current_traceparent();
    let payload = serde_json::to_value(payload).expect("event payloads serialise");
    tx.execute(
        "INSERT INTO outbox (product_id, event_id, event_type, payload, traceparent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &product_id,
            &envelope.id,
            &envelope.event_type.as_str(),
            &payload,
            &envelope.traceparent,
            &envelope.time,
        ],
    )
    .await?;
    Ok(())
}
