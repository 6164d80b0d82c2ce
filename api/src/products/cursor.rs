//! The opaque cursor of the product list: the sort key of the last product on a page.
//!
//! Keyset pagination on `(product_price, id)` stays fast on any page and never skips or
//! repeats a product when others are inserted meanwhile, unlike OFFSET.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rust_decimal::Decimal;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub price: Decimal,
    pub id: i64,
}

impl Cursor {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.price, self.id))
    }

    pub fn decode(raw: &str) -> Result<Self, String> {
        let invalid =
            || "is not a cursor this API issued; use the value of X-Next-Cursor".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, ':');
        let (Some("v1"), Some(price), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        Ok(Self {
            price: price.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_round_trip() {
        let cursor = Cursor {
            price: "29.99".parse().unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn anything_else_is_rejected() {
        for raw in ["", "abc", "djE6eDox", &URL_SAFE_NO_PAD.encode("v2:1:2")] {
            assert!(Cursor::decode(raw).is_err(), "{raw:?}");
        }
    }
}
