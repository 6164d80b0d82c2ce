//! The `price_range` filter of the product list: `MIN-MAX`, either side optional.

use rust_decimal::Decimal;

use super::price::parse_decimal;

/// Inclusive bounds on the price; `None` is unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceRange {
    pub min: Option<Decimal>,
    pub max: Option<Decimal>,
}

impl PriceRange {
    /// Parses `20-50`, `20-` (at least 20), `-50` (at most 50) or a single `20` (exactly 20).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let hint = "use MIN-MAX with either side optional, e.g. 20-50, 20- or -50";
        let (min, max) = match raw.split_once('-') {
            Some((min, max)) => (min.trim(), max.trim()),
            None => (raw, raw),
        };
        if max.contains('-') {
            return Err(format!("{raw:?} has more than one '-'; {hint}"));
        }
        let bound = |text: &str| -> Result<Option<Decimal>, String> {
            if text.is_empty() {
                return Ok(None);
            }
            parse_decimal(text)
                .map(Some)
                .map_err(|_| format!("{text:?} is not a number; {hint}"))
        };
        let range = Self {
            min: bound(min)?,
            max: bound(max)?,
        };
        if range.min.is_none() && range.max.is_none() {
            return Err(format!("{raw:?} has no bound; {hint}"));
        }
        if let (Some(min), Some(max)) = (range.min, range.max) {
            if min > max {
                return Err(format!(
                    "the minimum {min} is greater than the maximum {max}"
                ));
            }
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn both_bounds_are_read() {
        assert_eq!(
            PriceRange::parse("20-50").unwrap(),
            PriceRange {
                min: Some(d("20")),
                max: Some(d("50"))
            }
        );
    }

    #[test]
    fn either_side_may_be_left_open() {
        assert_eq!(PriceRange::parse("20-").unwrap().max, None);
        assert_eq!(PriceRange::parse("-50").unwrap().min, None);
        assert_eq!(PriceRange::parse("-50").unwrap().max, Some(d("50")));
    }

    #[test]
    fn a_single_number_means_exactly_that_price() {
        assert_eq!(
            PriceRange::parse("19.99").unwrap(),
            PriceRange {
                min: Some(d("19.99")),
                max: Some(d("19.99"))
            }
        );
    }

    #[test]
    fn decimals_and_spaces_are_accepted() {
        assert_eq!(
            PriceRange::parse(" 9.5 - 10.25 ").unwrap().max,
            Some(d("10.25"))
        );
    }

    #[test]
    fn an_inverted_range_is_rejected() {
        assert!(PriceRange::parse("50-20").unwrap_err().contains("greater"));
    }

    #[test]
    fn malformed_ranges_are_rejected() {
        for raw in ["", "-", "abc", "10-x", "1-2-3", "--5"] {
            assert!(
                PriceRange::parse(raw).is_err(),
                "{raw:?} should be rejected"
            );
        }
    }
}
