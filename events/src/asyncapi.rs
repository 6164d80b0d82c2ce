//! The AsyncAPI 3 document of every topic and event, built from the same types, topic names and
//! header names the services use, so it cannot describe a contract the code does not keep.
//! The committed copy (`asyncapi.json`) is what downstream teams read and generate code from;
//! a test fails when it drifts, and `make test` validates it with the AsyncAPI parser.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::{
    EventType,
    headers::{self as h},
    payloads::{
        ImagesCompressed, ProductCreated, ProductDeleted, ProductImagesChanged, ProductState,
    },
};

/// Version of the Kafka bindings used below.
const KAFKA_BINDING: &str = "0.5.0";

/// A message of the document: one event type with its payload type.
struct Event {
    id: &'static str,
    event_type: EventType,
    payload: &'static str,
    summary: &'static str,
}

const EVENTS: [Event; 5] = [
    Event {
        id: "productCreated",
        event_type: EventType::ProductCreated,
        payload: "ProductCreated",
        summary: "A product was created; its images are to be processed.",
    },
    Event {
        id: "productImagesChanged",
        event_type: EventType::ProductImagesChanged,
        payload: "ProductImagesChanged",
        summary: "A product's image list was replaced; results for older revisions are stale.",
    },
    Event {
        id: "productDeleted",
        event_type: EventType::ProductDeleted,
        payload: "ProductDeleted",
        summary: "A product was deleted.",
    },
    Event {
        id: "imagesCompressed",
        event_type: EventType::ImagesCompressed,
        payload: "ImagesCompressed",
        summary: "Some images of a product reached an outcome: the first step of compressed (the WebP ladder, with the AVIF in pending_formats), compressed with the whole ladder, or failed.",
    },
    Event {
        id: "productState",
        event_type: EventType::ProductState,
        payload: "ProductState",
        summary: "A product's state after a committed change, as GET /products/{id} shows it.",
    },
];

/// Whether a message of this type is a product event (the image-processor's input).
fn is_product_event(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::ProductCreated | EventType::ProductImagesChanged | EventType::ProductDeleted
    )
}

/// The document, as committed in `events/asyncapi.json`.
pub fn document() -> Value {
    let mut messages = Map::new();
    for event in &EVENTS {
        messages.insert(event.id.into(), message(event));
    }
    messages.insert("productTombstone".into(), tombstone_message());
    messages.insert("imageJobRetry".into(), retry_message());
    messages.insert("imageJobLater".into(), later_message());
    messages.insert("imageJobDeadLetter".into(), dead_letter_message());

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Product catalog events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
            "license": { "name": "MIT" },
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "`make run`: the tansu broker on this machine.",
            },
            "compose": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "deploy/docker-compose.yml: Apache Kafka in KRaft mode (`localhost:29092` from the host).",
            },
        },
        "channels": channels(),
        "operations": operations(),
        "components": {
            "messages": messages,
            "schemas": payload_schemas(),
            "parameters": {
                "prefix": {
                    "description": "KAFKA_TOPIC_PREFIX of the deployment.",
                    "default": crate::Topics::DEFAULT_PREFIX,
                    "examples": [crate::Topics::DEFAULT_PREFIX, "staging.catalog."],
                },
                "level": {
                    "description": "Retry level, 1 to the number of IMAGE_RETRY_DELAYS entries (3 by default: 5s, 30s, 120s).",
                    "examples": ["1", "2", "3"],
                },
            },
        },
    })
}

const DESCRIPTION: &str = "\
Events of the product catalog on Kafka.

Every record is a CloudEvent in the Kafka protocol binding's **binary content mode**: the record \
value is the JSON payload, the CloudEvents attributes travel as `ce_*` headers, and the record \
key is the product id, so all events of one product are on one partition, in order.

For subscribers:
- Deduplicate on `ce_id`: delivery is at least once (the outbox relay may publish an event \
again after a crash, and retries re-deliver).
- Dispatch on `ce_type`; it carries the version (`.v1`). A breaking change gets a new type; \
fields may be added to a version, so ignore unknown ones.
- `image_revision` grows each time a product's image list changes: ignore results whose \
revision is older than the newest you have seen for that product.
- `traceparent` (W3C trace context) continues the trace of the HTTP request that caused the \
event.
- To follow products rather than react to events, read the compacted `products` topic: the \
whole state of each product after every committed change (a tombstone after a delete), from \
which reading from the beginning rebuilds exactly what the API shows (docs/change-feed.md).

Topic names start with the deployment's `KAFKA_TOPIC_PREFIX` (`catalog.` by default).";

/// The CloudEvents headers of every message, with `ce_type` fixed to `event_type`.
fn cloud_event_headers(event_type: Option<EventType>) -> (Map<String, Value>, Vec<Value>) {
    let ce_type = match event_type {
        Some(t) => {
            json!({ "type": "string", "const": t.as_str(), "description": "The versioned event type." })
        }
        None => json!({
            "type": "string",
            "enum": EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "description": "The versioned event type.",
        }),
    };
    let properties = [
        (
            h::CE_SPECVERSION,
            json!({ "type": "string", "const": "1.0", "description": "CloudEvents spec version." }),
        ),
        (
            h::CE_ID,
            json!({ "type": "string", "format": "uuid", "description": "Unique per event; deduplicate on it." }),
        ),
        (h::CE_TYPE, ce_type),
        (
            h::CE_SOURCE,
            json!({ "type": "string", "examples": ["/catalog/api", "/catalog/image-processor"], "description": "The emitting service." }),
        ),
        (
            h::CE_TIME,
            json!({ "type": "string", "format": "date-time", "description": "When the event happened (RFC 3339, UTC)." }),
        ),
        (
            h::CE_SUBJECT,
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "The product id (also the record key)." }),
        ),
        (
            h::CONTENT_TYPE,
            json!({ "type": "string", "const": "application/json", "description": "Media type of the record value." }),
        ),
        (
            h::TRACEPARENT,
            json!({
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C trace context of the request that caused the event; absent when there was none.",
            }),
        ),
        (
            h::CE_CAUSETIME,
            json!({
                "type": "string",
                "format": "date-time",
                "description": "On com.catalog.images.compressed.v1 only: when the change that asked for these images was committed (the ce_time of the event they answer), RFC 3339, UTC. A CloudEvents extension attribute; absent on other types.",
            }),
        ),
    ];
    let required = [
        h::CE_SPECVERSION,
        h::CE_ID,
        h::CE_TYPE,
        h::CE_SOURCE,
        h::CE_TIME,
        h::CE_SUBJECT,
        h::CONTENT_TYPE,
    ]
    .map(Value::from)
    .to_vec();
    (
        properties
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        required,
    )
}

/// The bookkeeping headers the image-processor adds to a job it sends to a retry topic or the
/// dead-letter topic (`x-not-before` and `x-images` on retries only).
fn bookkeeping_headers() -> [(&'static str, Value); 11] {
    [
        (
            h::ATTEMPT,
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "Attempts made so far, including the one being scheduled." }),
        ),
        (
            h::ERROR,
            json!({ "type": "string", "description": "Why the last attempt failed." }),
        ),
        (
            h::ERROR_KIND,
            json!({ "type": "string", "enum": ["transient", "permanent"], "description": "transient: worth retrying (retries ran out on a dead letter); permanent: the record can never succeed (unreadable, invalid)." }),
        ),
        (
            h::ORIGIN_TOPIC,
            json!({ "type": "string", "description": "Topic the job was first read from." }),
        ),
        (
            h::ORIGIN_PARTITION,
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "Its partition." }),
        ),
        (
            h::ORIGIN_OFFSET,
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "Its offset." }),
        ),
        (
            h::FIRST_FAILURE_AT,
            json!({ "type": "string", "format": "date-time", "description": "When the job first failed." }),
        ),
        (
            h::NOT_BEFORE,
            json!({ "type": "string", "format": "date-time", "description": "Retries: the earliest time the record may be processed." }),
        ),
        (
            h::IMAGES,
            json!({ "type": "string", "pattern": "^[0-9]+(,[0-9]+)*$", "description": "Retries and deferred second steps: positions in product_images still to process, comma-separated; absent means all." }),
        ),
        (
            h::SOURCES,
            json!({ "type": "string", "pattern": "^[0-9]+:[0-9a-f]+-[0-9]+(,[0-9]+:[0-9a-f]+-[0-9]+)*$", "description": "Deferred second steps and their retries: where each image's downloaded source was kept (`<index>:<content>`, comma-separated), so it is read from the object store instead of downloaded again." }),
        ),
        (
            h::STEP,
            json!({ "type": "string", "enum": ["later"], "description": "Deferred second steps: the images' first steps (WebP ladder, placeholders) are shown; the formats that follow (AVIF) are still to make." }),
        ),
    ]
}

/// Headers of a job on a retry or dead-letter topic: the original record's, then bookkeeping.
/// The CloudEvents ones are required when the job was readable.
fn job_headers(readable: bool, required: &[&str]) -> Value {
    let (mut properties, mut all_required) = cloud_event_headers(None);
    if !readable {
        all_required.clear();
    }
    properties.extend(
        bookkeeping_headers()
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema)),
    );
    all_required.extend(required.iter().map(|&name| Value::from(name)));
    json!({ "type": "object", "properties": properties, "required": all_required })
}

const BOOKKEEPING_ALWAYS: [&str; 7] = [
    h::ATTEMPT,
    h::ERROR,
    h::ERROR_KIND,
    h::ORIGIN_TOPIC,
    h::ORIGIN_PARTITION,
    h::ORIGIN_OFFSET,
    h::FIRST_FAILURE_AT,
];

fn key_binding() -> Value {
    json!({
        "kafka": {
            "key": { "type": "string", "pattern": "^[0-9]+$", "description": "The product id." },
            "bindingVersion": KAFKA_BINDING,
        }
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn message(event: &Event) -> Value {
    let (mut properties, required) = cloud_event_headers(Some(event.event_type));
    if is_product_event(event.event_type) {
        properties.insert(
            h::REDRIVEN_AT.to_owned(),
            json!({
                "type": "string",
                "format": "date-time",
                "description": "Only on a record republished from the image-processor's dead-letter topic (`image-processor dlq redrive`): when it was. Such a record may be older than the product's latest event.",
            }),
        );
    }
    json!({
        "name": event.payload,
        "title": event.payload,
        "summary": event.summary,
        "contentType": "application/json",
        "headers": { "type": "object", "properties": properties, "required": required },
        "payload": schema_ref(event.payload),
        "bindings": key_binding(),
    })
}

/// The product events, as any of the three payloads.
fn product_event_payload() -> Value {
    json!({
        "oneOf": EVENTS
            .iter()
            .filter(|e| is_product_event(e.event_type))
            .map(|e| schema_ref(e.payload))
            .collect::<Vec<_>>(),
        "description": "The payload of the product event being retried; ce_type says which.",
    })
}

fn tombstone_message() -> Value {
    let (mut properties, mut required) = cloud_event_headers(Some(EventType::ProductState));
    properties.remove(h::CONTENT_TYPE);
    required.retain(|name| *name != h::CONTENT_TYPE);
    json!({
        "name": "ProductTombstone",
        "title": "Product tombstone",
        "summary": "The product was deleted: its key with no value.",
        "description": "The last record of a deleted product on the compacted products topic. Remove the product from your copy. Compaction keeps a tombstone for the topic's delete.retention.ms (a day by default), then drops the key altogether.",
        "headers": { "type": "object", "properties": properties, "required": required },
        "payload": { "type": "null", "description": "No value (a Kafka tombstone)." },
        "bindings": key_binding(),
    })
}

fn retry_message() -> Value {
    let mut required = BOOKKEEPING_ALWAYS.to_vec();
    required.push(h::NOT_BEFORE);
    json!({
        "name": "ImageJobRetry",
        "title": "Image job retry",
        "summary": "A product event whose images failed transiently, waiting for its next attempt.",
        "description": "Internal to the image-processor: the original record with retry bookkeeping headers. Not for subscribers.",
        "contentType": "application/json",
        "headers": job_headers(true, &required),
        "payload": product_event_payload(),
        "bindings": key_binding(),
    })
}

fn later_message() -> Value {
    json!({
        "name": "ImageJobLater",
        "title": "Deferred second step",
        "summary": "A product event whose images' first steps are shown, waiting for their AVIF ladders.",
        "description": "Internal to the image-processor: the original record with x-step: later, the images it is for, where their sources were kept, and where it came from. Sent instead of making the AVIF at once while other images wait for their first step (IMAGE_LATER_STEP). Not for subscribers.",
        "contentType": "application/json",
        "headers": job_headers(true, &[h::STEP, h::ATTEMPT, h::ORIGIN_TOPIC, h::ORIGIN_PARTITION, h::ORIGIN_OFFSET, h::IMAGES, h::SOURCES]),
        "payload": product_event_payload(),
        "bindings": key_binding(),
    })
}

fn dead_letter_message() -> Value {
    json!({
        "name": "ImageJobDeadLetter",
        "title": "Image job dead letter",
        "summary": "A job the image-processor gave up on, with why and where it came from.",
        "description": "The record as it was read (headers and value), so `image-processor dlq redrive` can send it again. A record that could not be read at all (no CloudEvents headers, a value that is not a product event) is dead-lettered as it came, so the ce_* headers and the payload schema hold only for readable jobs.",
        "contentType": "application/json",
        "headers": job_headers(false, &BOOKKEEPING_ALWAYS),
        "payload": product_event_payload(),
    })
}

fn channel(address: &str, summary: &str, messages: &[&str], level: bool) -> Value {
    let compacted = crate::Topics::new("{prefix}").is_compacted(address);
    let messages: Map<String, Value> = messages
        .iter()
        .map(|id| {
            (
                (*id).to_owned(),
                json!({ "$ref": format!("#/components/messages/{id}") }),
            )
        })
        .collect();
    let mut parameters = Map::new();
    parameters.insert(
        "prefix".into(),
        json!({ "$ref": "#/components/parameters/prefix" }),
    );
    if level {
        parameters.insert(
            "level".into(),
            json!({ "$ref": "#/components/parameters/level" }),
        );
    }
    json!({
        "address": address,
        "summary": summary,
        "messages": messages,
        "parameters": parameters,
        "bindings": {
            "kafka": {
                "partitions": 3,
                "replicas": 1,
                "topicConfiguration": {
                    "cleanup.policy": [if compacted { "compact" } else { "delete" }],
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    })
}

fn channels() -> Value {
    let topics = crate::Topics::new("{prefix}");
    json!({
        "productEvents": channel(
            &topics.product_events(),
            "Product lifecycle events, written by the api's transactional outbox. Partitions and replicas: KAFKA_TOPIC_PARTITIONS and KAFKA_REPLICATION_FACTOR.",
            &["productCreated", "productImagesChanged", "productDeleted"],
            false,
        ),
        "products": channel(
            &topics.products(),
            "The change feed: every product's current state, one record per committed change (create, each PATCH, each image result applied, delete), keyed by product id and compacted, so reading it from the beginning and keeping the last value per key gives exactly what the API shows. Records of one product are in commit order. Written by the api's transactional outbox, like product-events. See docs/change-feed.md.",
            &["productState", "productTombstone"],
            false,
        ),
        "imagesCompressed": channel(
            &topics.images_compressed(),
            "Results of image processing, written by the image-processor.",
            &["imagesCompressed"],
            false,
        ),
        "imageJobRetry": channel(
            &topics.image_retry(0).replace("retry-0", "retry-{level}"),
            "The image-processor's retry topics, one per delay of IMAGE_RETRY_DELAYS.",
            &["imageJobRetry"],
            true,
        ),
        "imageJobLater": channel(
            &topics.image_later(),
            "The image-processor's deferred second steps: images shown with their WebP ladder whose AVIF is made behind every first step.",
            &["imageJobLater"],
            false,
        ),
        "imageJobDeadLetters": channel(
            &topics.image_dead_letters(),
            "Jobs the image-processor gave up on; inspect and redrive with `image-processor dlq`.",
            &["imageJobDeadLetter"],
            false,
        ),
    })
}

fn operation(
    action: &str,
    channel: &str,
    messages: &[&str],
    summary: &str,
    group: Option<&str>,
) -> Value {
    let mut op = json!({
        "action": action,
        "channel": { "$ref": format!("#/channels/{channel}") },
        "summary": summary,
        "messages": messages
            .iter()
            .map(|id| json!({ "$ref": format!("#/channels/{channel}/messages/{id}") }))
            .collect::<Vec<_>>(),
    });
    if let Some(group) = group {
        op["bindings"] = json!({
            "kafka": {
                "groupId": { "type": "string", "enum": [group] },
                "bindingVersion": KAFKA_BINDING,
            }
        });
    }
    op
}

fn operations() -> Value {
    let product_events = ["productCreated", "productImagesChanged", "productDeleted"];
    json!({
        "publishProductEvents": operation(
            "send",
            "productEvents",
            &product_events,
            "The api's outbox relay publishes each product change after its transaction commits (idempotent producer, acks=all).",
            None,
        ),
        "processProductEvents": operation(
            "receive",
            "productEvents",
            &product_events,
            "The image-processor downloads, compresses and stores the images (consumer group IMAGE_PROCESSOR_GROUP).",
            Some("image-processor"),
        ),
        "publishProductState": operation(
            "send",
            "products",
            &["productState", "productTombstone"],
            "The api's outbox relay publishes the state written in each product change's transaction, after it commits (idempotent producer, acks=all); `api feed backfill` republishes every product's current state.",
            None,
        ),
        "publishImagesCompressed": operation(
            "send",
            "imagesCompressed",
            &["imagesCompressed"],
            "The image-processor reports each image in two steps: as soon as its WebP ladder and placeholders are stored, a result with pending_formats [\"image/avif\"] (the image is shown); then the result with the whole ladder, or with the AVIF's reason in failed_formats. Both are produced durably before the job's offset is stored; retries and dead letters apply to each step.",
            None,
        ),
        "projectImagesCompressed": operation(
            "receive",
            "imagesCompressed",
            &["imagesCompressed"],
            "The api's projector applies results to the product, once per ce_id, ignoring older revisions, and never lets a result with pending formats replace an image's whole ladder (consumer group PROJECTOR_GROUP).",
            Some("catalog-api-projector"),
        ),
        "scheduleRetry": operation(
            "send",
            "imageJobRetry",
            &["imageJobRetry"],
            "A transient failure sends the job to the next retry level with its not-before time.",
            None,
        ),
        "processRetry": operation(
            "receive",
            "imageJobRetry",
            &["imageJobRetry"],
            "Each retry level has its own consumer group, IMAGE_PROCESSOR_GROUP.retry-N, so waiting never blocks the main topic.",
            None,
        ),
        "deferSecondStep": operation(
            "send",
            "imageJobLater",
            &["imageJobLater"],
            "While other images wait for their first step, a job whose images' WebP ladders are shown hands their AVIF to the later topic and finishes, instead of making it at once (IMAGE_LATER_STEP).",
            None,
        ),
        "processSecondStep": operation(
            "receive",
            "imageJobLater",
            &["imageJobLater"],
            "Consumer group IMAGE_PROCESSOR_GROUP.later reads each kept source (downloading it again only when it is gone), decodes it, finds its first step stored and makes only the formats that follow, on cores left by first steps.",
            None,
        ),
        "deadLetter": operation(
            "send",
            "imageJobDeadLetters",
            &["imageJobDeadLetter"],
            "Retries exhausted, or the record can never succeed.",
            None,
        ),
    })
}

/// The payload schemas (JSON Schema draft 07, the base of AsyncAPI's schema format), with
/// the types they share, all under `components/schemas`.
fn payload_schemas() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    // Named types come back as references; their definitions, and those of the types they
    // use, are collected by the generator.
    generator.subschema_for::<ProductCreated>();
    generator.subschema_for::<ProductImagesChanged>();
    generator.subschema_for::<ProductDeleted>();
    generator.subschema_for::<ImagesCompressed>();
    generator.subschema_for::<ProductState>();
    let schemas = generator.take_definitions(true);
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Set `UPDATE_SCHEMAS=1` (or run `make schemas`) to rewrite the committed file.
    #[test]
    fn the_committed_asyncapi_document_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("asyncapi.json");
        let text = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "events/asyncapi.json differs from the code; run `make schemas` and commit"
        );
    }

    #[test]
    fn every_message_payload_and_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for event in &EVENTS {
            assert!(
                doc["components"]["schemas"][event.payload].is_object(),
                "{} has no schema",
                event.payload
            );
        }
        // Every local reference points at something in the document.
        for piece in text.split("\"$ref\":\"#/").skip(1) {
            let path = &piece[..piece.find('"').unwrap()];
            let target = path
                .split('/')
                .fold(&doc, |node, key| &node[key.replace("~1", "/").as_str()]);
            assert!(!target.is_null(), "#/{path} does not resolve");
        }
    }

    #[test]
    fn every_event_type_has_a_message_with_its_ce_type() {
        let doc = document();
        for t in EventType::ALL {
            let found = doc["components"]["messages"]
                .as_object()
                .unwrap()
                .values()
                .any(|m| m["headers"]["properties"][h::CE_TYPE]["const"] == t.as_str());
            assert!(found, "no message for {}", t.as_str());
        }
    }
}
