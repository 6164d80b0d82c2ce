//! Domain types that validate on construction. Handlers convert transport objects into these
//! at the edge, so everything past the edge holds only valid values.

mod email;
mod image_urls;
mod price;
mod price_range;
mod product_text;
mod user_id;
mod username;

pub use email::Email;
pub use image_urls::ImageUrls;
pub use price::Price;
pub use price_range::PriceRange;
pub use product_text::{ProductDescription, ProductName};
pub use user_id::UserId;
pub use username::Username;

/// One field that failed validation, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field (or query parameter) at fault, e.g. `product_images[2]`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// Collects field errors while a request is validated, so the client sees all of them at once.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Keeps the value if it parsed, records the error under `field` otherwise.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.push(FieldError {
                    field: field.to_owned(),
                    message,
                });
                None
            }
        }
    }

    /// Records errors whose field names the parser chose (for lists).
    pub fn extend(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    /// All errors so far; `Ok` when there were none.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// True for characters that have no place in a single-line text field.
pub(crate) fn is_forbidden_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t' && c != '\r'
}
