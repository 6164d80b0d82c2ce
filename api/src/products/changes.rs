//! What a create or an update may change, validated: the routes build these from a request
//! body, [`super::store`] writes them.

use crate::domain::{ImageUrls, Price, ProductDescription, ProductName};

/// A validated new product (its owner is decided by the route, from the caller).
pub struct NewProduct {
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

/// Who asks for a change of an existing product, as the transaction that locks the product
/// checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A user, who may change its own products.
    User(i64),
    /// An admin (`catalog:admin`), who may change anyone's.
    Admin,
}

impl Actor {
    pub fn may_change(self, owner: i64) -> bool {
        match self {
            Self::User(id) => id == owner,
            Self::Admin => true,
        }
    }
}

/// What a change of an existing product came to.
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    NoSuchProduct,
    /// The product is another user's: nothing was written.
    NotOwner,
}
