//! A JSON request body whose type errors name the field at fault.
//!
//! poem-openapi's `Json<T>` reports `failed to parse "UserIdInput"` without saying which field
//! held the wrong type. `JsonBody<T>` parses the same way and documents the same schema, but on
//! checks the JSON against that schema first and answers 400 with one entry per field, e.g.
//! `product_images[1]: expected a string, got a number`.

use poem::{Request, RequestBody};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::Value;

use super::number_or_string::json_type;
use crate::{domain::FieldError, error::ApiError};

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        let value: Value = serde_json::from_slice(&data)
            .map_err(|e| ApiError::bad_request(format!("The body is not valid JSON: {e}.")))?;
        // The schema is the contract: check it first, so that a number where a string belongs
        // is refused (poem-openapi would quietly turn it into text).
        let mut registry = Registry::new();
        T::register(&mut registry);
        let mut errors = Vec::new();
        check(&value, &T::schema_ref(), &registry, "", &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::invalid_body(errors).into());
        }
        T::parse_from_json(Some(value)).map(Self).map_err(|error| {
            ApiError::invalid_body(vec![FieldError {
                field: "body".into(),
                message: error.into_message(),
            }])
            .into()
        })
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

fn resolve<'a>(schema: &'a MetaSchemaRef, registry: &'a Registry) -> Option<&'a MetaSchema> {
    match schema {
        MetaSchemaRef::Inline(schema) => Some(schema),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn matches(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

/// Records a field error wherever `value` does not have the shape `schema` asks for.
fn check(
    value: &Value,
    schema: &MetaSchemaRef,
    registry: &Registry,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(schema) = resolve(schema, registry) else {
        return;
    };
    let field = if path.is_empty() { "body" } else { path };
    let mut fail = |expected: String| {
        out.push(FieldError {
            field: field.to_owned(),
            message: format!("expected {expected}, got {}", json_type(value)),
        })
    };
    if !schema.one_of.is_empty() {
        let kinds: Vec<&str> = schema
            .one_of
            .iter()
            .filter_map(|s| resolve(s, registry))
            .map(|s| s.ty)
            .collect();
        if !kinds.iter().any(|ty| matches(value, ty)) {
            fail(kinds.join(" or "));
        }
        return;
    }
    if !matches(value, schema.ty) {
        let article = if schema.ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        fail(format!("{article} {}", schema.ty));
        return;
    }
    match value {
        Value::Object(object) => {
            for required in &schema.required {
                if !object.contains_key(*required) {
                    out.push(FieldError {
                        field: join(path, required),
                        message: "is required".into(),
                    });
                }
            }
            for (name, property) in &schema.properties {
                match object.get(*name) {
                    Some(Value::Null) if !schema.required.contains(name) => {}
                    Some(inner) => check(inner, property, registry, &join(path, name), out),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, registry, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}
