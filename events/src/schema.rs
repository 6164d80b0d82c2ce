//! JSON Schemas of the payloads, generated from the Rust types. The committed copies in
//! `schemas/` are what subscribers read; a test fails when they drift from the types.

use schemars::{JsonSchema, schema_for};
use serde_json::Value;

use crate::{
    EventType,
    payloads::{
        ImagesCompressed, ProductCreated, ProductDeleted, ProductImagesChanged, ProductState,
    },
};

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schema_for!(T)).expect("a schema is JSON")
}

/// Every payload's schema with the file name it is committed under.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("ProductCreated.json", schema::<ProductCreated>()),
        (
            "ProductImagesChanged.json",
            schema::<ProductImagesChanged>(),
        ),
        ("ProductDeleted.json", schema::<ProductDeleted>()),
        ("ImagesCompressed.json", schema::<ImagesCompressed>()),
        ("ProductState.json", schema::<ProductState>()),
    ]
}

/// The payload schema of an event type.
pub fn of(event_type: EventType) -> Value {
    match event_type {
        EventType::ProductCreated => schema::<ProductCreated>(),
        EventType::ProductImagesChanged => schema::<ProductImagesChanged>(),
        EventType::ProductDeleted => schema::<ProductDeleted>(),
        EventType::ImagesCompressed => schema::<ImagesCompressed>(),
        EventType::ProductState => schema::<ProductState>(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{EventType, compat::breaking_changes};

    /// Every event type's schema as first published stays readable by the current one
    /// (`crate::compat`). A new event type's schema is published by `make schemas`; a
    /// published file is never rewritten.
    /// Kafka records are kept for long and read by anyone with access to a topic: nothing
    /// that identifies a person may go into one. A field of such a name fails this test.
    #[test]
    fn no_event_carries_a_persons_email_name_or_sign_in_identity() {
        const PERSONAL: [&str; 8] = [
            "email",
            "e_mail",
            "username",
            "user_name",
            "subject",
            "sub",
            "issuer",
            "iss",
        ];
        use serde_json::Value;
        fn fields(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::Object(properties)) = map.get("properties") {
                        out.extend(properties.keys().cloned());
                    }
                    map.values().for_each(|v| fields(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| fields(v, out)),
                _ => {}
            }
        }
        for (name, schema) in super::all() {
            let mut found = Vec::new();
            fields(&schema, &mut found);
            assert!(!found.is_empty(), "{name} has fields");
            for field in found {
                assert!(
                    !PERSONAL.contains(&field.to_ascii_lowercase().as_str()),
                    "{name} carries {field}: personal data must not go into Kafka records"
                );
            }
        }
    }

    #[test]
    fn no_committed_published_schema_is_broken() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/published");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for event_type in EventType::ALL {
            let path = dir.join(format!("{}.json", event_type.as_str()));
            let current = super::of(event_type);
            let Ok(published) = std::fs::read_to_string(&path) else {
                assert!(
                    update,
                    "{} has no published schema; run `make schemas` and commit",
                    event_type.as_str()
                );
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&current).unwrap() + "\n",
                )
                .unwrap();
                continue;
            };
            let published = serde_json::from_str(&published).unwrap();
            let breaking = breaking_changes(&published, &current);
            assert!(
                breaking.is_empty(),
                "{} changed incompatibly since it was published: {breaking:#?}\n\
                 Keep the field (or make the change compatible), or publish the change as a \
                 new version of the type (.v2) beside this one.",
                event_type.as_str()
            );
        }
    }

    /// Set `UPDATE_SCHEMAS=1` (or run `make schemas`) to rewrite the committed files.
    #[test]
    fn the_committed_schemas_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for (file, schema) in super::all() {
            let path = dir.join(file);
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if update {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "events/schemas/{file} differs from the Rust type; run `make schemas` and commit"
            );
        }
    }
}
