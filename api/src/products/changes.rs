//! What a create or an update may change, validated: the routes build these from a request
//! body, [`super::store`] writes them.

use crate::domain::{ImageUrls, Price, ProductDescription, ProductName, UserId};

/// A validated new product.
pub struct NewProduct {
    pub user_id: UserId,
    pub name: ProductName,
    pub description: ProductDescription,
    pub images: ImageUrls,
    pub price: Price,
}

/// A validated change; `None` leaves the column as it is.
#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub description: Option<ProductDescription>,
    pub images: Option<ImageUrls>,
    pub price: Option<Price>,
}
