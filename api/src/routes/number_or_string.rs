//! Request fields that accept a JSON number or a string holding one.
//!
//! The seed's clients send `user_id` as `"12345"` and others send `12345`; prices arrive as
//! `29.99` or `"29.99"`. Both are kept as their decimal text, so no float rounding happens
//! before the domain type parses it. A value of another JSON type is a 400; text that is not
//! a valid id or price is a 422 from the domain type, naming the field.

use std::{borrow::Cow, marker::PhantomData};

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// What a [`NumberOrString`] field is called and how its schema reads.
pub trait Flavour: Send + Sync + 'static {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    fn number_schema() -> MetaSchema;
    const STRING_PATTERN: &'static str;
}

/// A user id: a positive integer.
pub struct UserIdFlavour;

impl Flavour for UserIdFlavour {
    const NAME: &'static str = "UserIdInput";
    const DESCRIPTION: &'static str = "A positive integer, as a JSON number or a string of digits.";
    const STRING_PATTERN: &'static str = "^[0-9]*[1-9][0-9]*$";
    fn number_schema() -> MetaSchema {
        MetaSchema {
            minimum: Some(1.0),
            ..MetaSchema::new_with_format("integer", "int64")
        }
    }
}

/// A price: a non-negative decimal with at most two places.
pub struct PriceFlavour;

impl Flavour for PriceFlavour {
    const NAME: &'static str = "PriceInput";
    const DESCRIPTION: &'static str = "A non-negative decimal with at most 2 places and at most 1000000000, as a JSON number or a string.";
    const STRING_PATTERN: &'static str = r"^[0-9]+(\.[0-9]{1,2})?$";
    fn number_schema() -> MetaSchema {
        MetaSchema {
            minimum: Some(0.0),
            maximum: Some(1_000_000_000.0),
            multiple_of: Some(0.01),
            ..MetaSchema::new("number")
        }
    }
}

/// The decimal text of a JSON number or string, checked later by a domain type.
pub struct NumberOrString<F> {
    text: String,
    flavour: PhantomData<F>,
}

impl<F> std::fmt::Debug for NumberOrString<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NumberOrString").field(&self.text).finish()
    }
}

impl<F> NumberOrString<F> {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<F: Flavour> Type for NumberOrString<F> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        F::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(F::DESCRIPTION),
            one_of: vec![
                MetaSchemaRef::Inline(Box::new(F::number_schema())),
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    pattern: Some(F::STRING_PATTERN.to_owned()),
                    ..MetaSchema::new("string")
                })),
            ],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<F: Flavour> ParseFromJSON for NumberOrString<F> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let text = match value {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(ParseError::custom(format!(
                    "expected a number or a string, got {}",
                    json_type(&other)
                )));
            }
            None => return Err(ParseError::expected_input()),
        };
        Ok(Self {
            text,
            flavour: PhantomData,
        })
    }
}

impl<F: Flavour> ToJSON for NumberOrString<F> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.text.clone()))
    }
}

/// How a JSON value's type reads in an error message.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Price = NumberOrString<PriceFlavour>;

    #[test]
    fn a_number_keeps_its_shortest_decimal_text() {
        let p = Price::parse_from_json(Some(json!(29.99))).unwrap();
        assert_eq!(p.as_str(), "29.99");
    }

    #[test]
    fn a_string_is_kept_as_it_is() {
        let p = Price::parse_from_json(Some(json!("12345"))).unwrap();
        assert_eq!(p.as_str(), "12345");
    }

    #[test]
    fn other_json_types_are_refused_with_their_name() {
        let err = Price::parse_from_json(Some(json!([1]))).unwrap_err();
        assert!(err.message().contains("an array"), "{}", err.message());
        assert!(Price::parse_from_json(Some(Value::Null)).is_err());
    }
}
