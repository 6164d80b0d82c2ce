//! Money: exact decimals, never floats.

use std::str::FromStr;

use rust_decimal::Decimal;

/// A product price: between 0 and [`Price::MAX`], with at most two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(Decimal);

impl Price {
    /// A sane upper bound; it also keeps every price exactly representable as a JSON number
    /// (an f64 holds 15 significant digits).
    pub const MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

    pub fn new(value: Decimal) -> Result<Self, String> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(format!("must not be negative, got {value}"));
        }
        if value > Self::MAX {
            return Err(format!("must be at most {}, got {value}", Self::MAX));
        }
        if value.normalize().scale() > 2 {
            return Err(format!("must have at most 2 decimal places, got {value}"));
        }
        Ok(Self(value.round_dp(2)))
    }

    /// Parses the decimal text of a JSON number or string (`"29.99"`, `"1e2"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::new(parse_decimal(text)?)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// Reads a plain or scientific decimal, rejecting anything else with a helpful message.
pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("must be a decimal number such as 29.99, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimal_places_are_accepted() {
        assert_eq!(Price::parse("29.99").unwrap().value().to_string(), "29.99");
        assert_eq!(Price::parse("0").unwrap().value().to_string(), "0");
    }

    #[test]
    fn trailing_zeros_do_not_count_as_decimal_places() {
        assert!(Price::parse("10.5000").is_ok());
    }

    #[test]
    fn three_decimal_places_are_rejected() {
        let err = Price::parse("1.999").unwrap_err();
        assert!(err.contains("2 decimal places"), "{err}");
    }

    #[test]
    fn a_negative_price_is_rejected() {
        assert!(Price::parse("-0.01").is_err());
    }

    #[test]
    fn negative_zero_is_zero() {
        assert!(Price::parse("-0").is_ok());
    }

    #[test]
    fn a_price_above_the_maximum_is_rejected() {
        assert!(Price::parse("1000000000").is_ok());
        assert!(Price::parse("1000000000.01").is_err());
        assert!(Price::parse("1e30").is_err());
    }

    #[test]
    fn scientific_notation_is_read() {
        assert_eq!(Price::parse("1.5e2").unwrap().value().to_string(), "150");
    }

    #[test]
    fn text_that_is_not_a_number_is_rejected() {
        assert!(Price::parse("ten").is_err());
        assert!(Price::parse("NaN").is_err());
        assert!(Price::parse("").is_err());
    }
}
