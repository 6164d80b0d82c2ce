//! The JSON bodies the product endpoints take, and their validation into
//! [`crate::products`]' inputs. (What they answer is [`crate::products::Product`].)

use poem_openapi::{Object, types::MaybeUndefined};

use crate::{
    domain::{FieldError, ImageUrls, Price, ProductDescription, ProductName, UserId, Validator},
    error::ApiError,
    products::{NewProduct, ProductChanges},
    routes::number_or_string::{NumberOrString, PriceFlavour, UserIdFlavour},
};

/// A new product.
#[derive(Object)]
pub struct CreateProduct {
    /// The owner, a number or a string of digits: the caller's own user when omitted. Only
    /// `catalog:admin` may name another user.
    pub user_id: MaybeUndefined<NumberOrString<UserIdFlavour>>,
    /// 1 to 255 characters after trimming.
    pub product_name: String,
    /// Up to 5,000 characters; empty when omitted.
    #[oai(default)]
    pub product_description: String,
    /// 1 to 10 distinct absolute http(s) URLs; they are fetched and compressed asynchronously.
    pub product_images: Vec<String>,
    /// Non-negative, at most 2 decimal places.
    pub product_price: NumberOrString<PriceFlavour>,
}

impl CreateProduct {
    /// The owner named (if any) and the product.
    pub fn validate(&self, max_images: usize) -> Result<(Option<UserId>, NewProduct), ApiError> {
        if self.user_id.is_null() {
            return Err(ApiError::invalid_body(vec![FieldError {
                field: "user_id".into(),
                message: "must not be null; omit it to create the product for yourself".into(),
            }]));
        }
        let mut v = Validator::default();
        let user_id = match self.user_id.value() {
            Some(id) => v.check("user_id", UserId::parse(id.as_str())).map(Some),
            None => Some(None),
        };
        let name = v.check("product_name", ProductName::parse(&self.product_name));
        let description = v.check(
            "product_description",
            ProductDescription::parse(&self.product_description),
        );
        let images = ImageUrls::parse("product_images", &self.product_images, max_images)
            .map_err(|errors| v.extend(errors))
            .ok();
        let price = v.check("product_price", Price::parse(self.product_price.as_str()));
        v.finish().map_err(ApiError::validation)?;
        match (user_id, name, description, images, price) {
            (Some(user_id), Some(name), Some(description), Some(images), Some(price)) => Ok((
                user_id,
                NewProduct {
                    name,
                    description,
                    images,
                    price,
                },
            )),
            _ => unreachable!("a field that failed validation was recorded as an error"),
        }
    }
}

/// Changes to a product; omitted fields stay as they are, `null` is not accepted.
#[derive(Object)]
pub struct UpdateProduct {
    /// 1 to 255 characters after trimming.
    pub product_name: MaybeUndefined<String>,
    /// Up to 5,000 characters.
    pub product_description: MaybeUndefined<String>,
    /// Replaces the image list; the new images are processed again.
    pub product_images: MaybeUndefined<Vec<String>>,
    /// Non-negative, at most 2 decimal places.
    pub product_price: MaybeUndefined<NumberOrString<PriceFlavour>>,
}

/// Rejects an explicit `null`, runs `parse` on a value, and leaves an omitted field alone.
fn optional<T, U>(
    v: &mut Validator,
    field: &str,
    value: &MaybeUndefined<T>,
    parse: impl FnOnce(&T) -> Result<U, String>,
) -> Option<U> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => v.check(
            field,
            Err("must not be null; omit the field to keep it".into()),
        ),
        MaybeUndefined::Value(value) => v.check(field, parse(value)),
    }
}

impl UpdateProduct {
    pub fn validate(&self, max_images: usize) -> Result<ProductChanges, ApiError> {
        let mut v = Validator::default();
        let name = optional(&mut v, "product_name", &self.product_name, |s| {
            ProductName::parse(s)
        });
        let description = optional(
            &mut v,
            "product_description",
            &self.product_description,
            |s| ProductDescription::parse(s),
        );
        let price = optional(&mut v, "product_price", &self.product_price, |p| {
            Price::parse(p.as_str())
        });
        let images = match &self.product_images {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => v.check(
                "product_images",
                Err("must not be null; omit the field to keep the images".into()),
            ),
            MaybeUndefined::Value(urls) => ImageUrls::parse("product_images", urls, max_images)
                .map_err(|errors| v.extend(errors))
                .ok(),
        };
        let given = [
            self.product_name.is_undefined(),
            self.product_description.is_undefined(),
            self.product_images.is_undefined(),
            self.product_price.is_undefined(),
        ];
        if given.iter().all(|undefined| *undefined) {
            v.extend(vec![FieldError {
                field: "body".into(),
                message: "name at least one of product_name, product_description, product_images, product_price".into(),
            }]);
        }
        v.finish().map_err(ApiError::validation)?;
        Ok(ProductChanges {
            name,
            description,
            images,
            price,
        })
    }
}

/// The answer to a successful POST /products (the seed's body plus the new id).
#[derive(Object)]
pub struct ProductCreated {
    /// Always `success`.
    pub status: String,
    /// `Product created successfully`.
    pub message: String,
    /// The new product's id; `Location` holds its URL.
    pub product_id: String,
}
