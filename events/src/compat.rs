//! Schema evolution: what a subscriber written against one version of a payload may rely on.
//!
//! Each event type's payload schema, as first published, is kept in
//! `schemas/published/<ce_type>.json` and never rewritten. A test compares every current schema
//! with its published one: adding an optional field or a field with a default is fine
//! (subscribers ignore fields they do not know); removing a field, changing its type, making
//! a required field optional or nullable, or widening a set of allowed values is breaking,
//! and takes a new `ce_type` version (`….v2`) with a schema published beside the old one.
//!
//! The rule is the reader's: every value valid under the new schema must still be valid
//! under the published one, as far as the parts compared here (types, properties, required
//! fields, closed objects, items, allowed values and alternatives) can tell. So a field may
//! be added only where the published schema leaves the object open: where it says
//! `additionalProperties: false` (a payload whose type refuses unknown fields, as the
//! projector's `ImagesCompressed` does), a subscriber built on it would refuse the event.

use serde_json::Value;

/// The ways `current` breaks a subscriber written against `published`, one sentence each,
/// naming the field (empty when compatible).
pub fn breaking_changes(published: &Value, current: &Value) -> Vec<String> {
    let mut found = Vec::new();
    compare(
        &Schema::root(published),
        &Schema::root(current),
        "$",
        &mut found,
    );
    found
}

/// A schema node together with the document its `$ref`s resolve in.
#[derive(Clone, Copy)]
struct Schema<'a> {
    node: &'a Value,
    root: &'a Value,
}

impl<'a> Schema<'a> {
    fn root(document: &'a Value) -> Self {
        Self {
            node: document,
            root: document,
        }
    }

    /// Follows `$ref`s (local ones: `#/$defs/…`, `#/definitions/…`).
    fn resolved(self) -> Self {
        let mut node = self.node;
        for _ in 0..32 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(path) = reference.strip_prefix("#/") else {
                break;
            };
            node = path
                .split('/')
                .fold(self.root, |at, key| &at[key.replace("~1", "/").as_str()]);
        }
        Self {
            node,
            root: self.root,
        }
    }

    fn at(self, node: &'a Value) -> Self {
        Self {
            node,
            root: self.root,
        }
        .resolved()
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.node.get(key)
    }

    /// The JSON types it allows; `None` when it does not say.
    fn types(self) -> Option<Vec<&'a str>> {
        match self.get("type")? {
            Value::String(t) => Some(vec![t.as_str()]),
            Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
            _ => None,
        }
    }

    /// The values it allows (`enum`, `const`, or alternatives that are all constants).
    fn allowed_values(self) -> Option<Vec<&'a Value>> {
        if let Some(values) = self.get("enum").and_then(Value::as_array) {
            return Some(values.iter().collect());
        }
        if let Some(value) = self.get("const") {
            return Some(vec![value]);
        }
        let alternatives = self.alternatives()?;
        alternatives
            .iter()
            .map(|a| self.at(a).get("const"))
            .collect()
    }

    fn alternatives(self) -> Option<&'a Vec<Value>> {
        self.get("oneOf")
            .or_else(|| self.get("anyOf"))
            .and_then(Value::as_array)
    }

    fn required(self) -> Vec<&'a str> {
        self.get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

fn compare(published: &Schema, current: &Schema, path: &str, found: &mut Vec<String>) {
    let (published, current) = (published.resolved(), current.resolved());
    if let (Some(old), Some(new)) = (published.types(), current.types()) {
        let added: Vec<&str> = new.iter().filter(|t| !old.contains(t)).copied().collect();
        if !added.is_empty() {
            found.push(format!(
                "{path}: type was {old:?}, now also allows {added:?}"
            ));
            return;
        }
    }
    if let Some(old) = published.allowed_values() {
        match current.allowed_values() {
            Some(new) => {
                let added: Vec<String> = new
                    .iter()
                    .filter(|v| !old.contains(v))
                    .map(|v| v.to_string())
                    .collect();
                if !added.is_empty() {
                    found.push(format!("{path}: new values {}", added.join(", ")));
                }
            }
            None => found.push(format!("{path}: was a fixed set of values, now open")),
        }
        return;
    }
    match (published.alternatives(), current.alternatives()) {
        (Some(old), Some(new)) if old.len() == new.len() => {
            for (i, (old, new)) in old.iter().zip(new).enumerate() {
                compare(
                    &published.at(old),
                    &current.at(new),
                    &format!("{path}|{i}"),
                    found,
                );
            }
        }
        (Some(old), Some(new)) => found.push(format!(
            "{path}: {} alternatives, now {}",
            old.len(),
            new.len()
        )),
        (None, Some(_)) => found.push(format!("{path}: now one of several schemas")),
        _ => {}
    }
    if let Some(old) = published.get("properties").and_then(Value::as_object) {
        let new = current.get("properties").and_then(Value::as_object);
        let now_required = current.required();
        for name in published.required() {
            if !now_required.contains(&name) {
                found.push(format!("{path}.{name}: was required, now optional"));
            }
        }
        if published.get("additionalProperties") == Some(&Value::Bool(false)) {
            if current.get("additionalProperties") != Some(&Value::Bool(false)) {
                found.push(format!(
                    "{path}: allowed no other properties, now allows any"
                ));
            }
            for name in new.into_iter().flat_map(|n| n.keys()) {
                if !old.contains_key(name) {
                    found.push(format!(
                        "{path}.{name}: added where the published schema allows no other properties"
                    ));
                }
            }
        }
        for (name, old) in old {
            match new.and_then(|n| n.get(name)) {
                Some(new) => compare(
                    &published.at(old),
                    &current.at(new),
                    &format!("{path}.{name}"),
                    found,
                ),
                None => found.push(format!("{path}.{name}: removed")),
            }
        }
    }
    if let (Some(old), Some(new)) = (published.get("items"), current.get("items")) {
        compare(
            &published.at(old),
            &current.at(new),
            &format!("{path}[]"),
            found,
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn product() -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": { "type": "string" },
                "price": { "type": "number" },
                "status": { "$ref": "#/$defs/Status" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "note": { "type": ["string", "null"] },
            },
            "required": ["id", "price", "status"],
            "$defs": {
                "Status": { "oneOf": [{ "const": "pending" }, { "const": "done" }] },
            },
        })
    }

    #[test]
    fn the_same_schema_and_added_fields_are_compatible() {
        assert!(breaking_changes(&product(), &product()).is_empty());
        let mut grown = product();
        grown["properties"]["colour"] = json!({ "type": "string" });
        grown["required"] = json!(["id", "price", "status", "colour"]);
        assert!(breaking_changes(&product(), &grown).is_empty());
        // Narrowing is fine too: a nullable field that is now always a string.
        grown["properties"]["note"] = json!({ "type": "string" });
        assert!(breaking_changes(&product(), &grown).is_empty());
    }

    #[test]
    fn a_field_added_to_a_closed_object_or_opening_it_is_breaking() {
        let mut closed = product();
        closed["additionalProperties"] = json!(false);
        let mut grown = closed.clone();
        grown["properties"]["colour"] = json!({ "type": "string" });
        assert_eq!(
            breaking_changes(&closed, &grown),
            ["$.colour: added where the published schema allows no other properties"]
        );
        let mut opened = closed.clone();
        opened
            .as_object_mut()
            .unwrap()
            .remove("additionalProperties");
        assert_eq!(
            breaking_changes(&closed, &opened),
            ["$: allowed no other properties, now allows any"]
        );
        assert!(breaking_changes(&closed, &closed).is_empty());
    }

    #[test]
    fn a_removed_field_is_breaking() {
        let mut shrunk = product();
        shrunk["properties"].as_object_mut().unwrap().remove("tags");
        assert_eq!(breaking_changes(&product(), &shrunk), ["$.tags: removed"]);
    }

    #[test]
    fn a_retyped_field_is_breaking_however_deep() {
        let mut retyped = product();
        retyped["properties"]["price"] = json!({ "type": "string" });
        retyped["properties"]["tags"]["items"] = json!({ "type": "integer" });
        let found = breaking_changes(&product(), &retyped);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("$.price: type"), "{found:?}");
        assert!(found[1].starts_with("$.tags[]: type"), "{found:?}");
    }

    #[test]
    fn a_field_that_may_be_missing_or_null_or_take_new_values_is_breaking() {
        let mut loosened = product();
        loosened["required"] = json!(["id", "status"]);
        loosened["properties"]["id"] = json!({ "type": ["string", "null"] });
        loosened["$defs"]["Status"]["oneOf"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "const": "archived" }));
        let found = breaking_changes(&product(), &loosened);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|f| f == "$.price: was required, now optional")
        );
        assert!(found.iter().any(|f| f.starts_with("$.id: type")));
        assert!(
            found
                .iter()
                .any(|f| f == "$.status: new values \"archived\"")
        );
    }
}
