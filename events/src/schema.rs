//! JSON Schemas of the payloads, generated from the Rust types. The committed copies in
//! `schemas/` are what subscribers read; a test fails when they drift from the types.

use schemars::{JsonSchema, schema_for};
use serde_json::Value;

use crate::payloads::{ImagesCompressed, ProductCreated, ProductDeleted, ProductImagesChanged};

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
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
