//! Products in PostgreSQL: the one owner of the `products` table and of the document the
//! API and the change feed show of a product.
//!
//! - [`store`]: every query on `products` (create, read, list, update, delete,
//!   republishing for the feed), each in its own transaction with the events it writes into
//!   the outbox;
//! - [`results`]: applying the image-processor's results, the projector's one write;
//! - [`row`]: a row, read by column name;
//! - [`images`]: the `image_status` column, the state of each image;
//! - [`document`]: the product as `GET /products/{id}` and the `products` topic show it;
//! - [`changes`]: the validated input of a create or an update;
//! - [`pending`]: how many products wait for images, and since when (for the freshness
//!   alerts).
//!
//! The HTTP routes only translate requests into these calls and results into responses.

pub mod changes;
mod cursor;
pub mod document;
pub mod images;
mod nullable;
pub mod pending;
pub mod results;
pub mod row;
pub mod store;

pub use changes::{Actor, NewProduct, ProductChanges, Written};
pub use cursor::Cursor;
pub use document::Product;
pub use images::StoredImages;
pub use results::{Applied, Reached};
pub use row::ProductRow;
pub use store::ListQuery;
