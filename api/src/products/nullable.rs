//! A value a response may hold as JSON `null`, documented as `nullable` in the schema.
//!
//! poem-openapi renders `Option<T>` inside an array as the schema of `T`, so a generated client
//! would reject the `null` entries of `compressed_product_images`. This wrapper says so in the
//! document instead.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// `Some(value)` is `value`, `None` is `null`. `T` must have an inline schema (a string, a
/// number...), which is marked `nullable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable<{}>", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                ..*schema
            })),
            MetaSchemaRef::Reference(name) => {
                unreachable!("Nullable<{name}>: only inline schemas can be marked nullable")
            }
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(T::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Self(None)),
            value => T::parse_from_json(value)
                .map(|v| Self(Some(v)))
                .map_err(ParseError::propagate),
        }
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.as_ref().and_then(T::to_json).unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_null_and_the_schema_says_nullable() {
        assert_eq!(Nullable::<String>(None).to_json(), Some(Value::Null));
        assert_eq!(
            Nullable(Some("a".to_owned())).to_json(),
            Some(Value::String("a".into()))
        );
        let MetaSchemaRef::Inline(schema) = Nullable::<String>::schema_ref() else {
            panic!("inline schema expected");
        };
        assert!(schema.nullable);
        assert_eq!(schema.ty, "string");
    }
}
