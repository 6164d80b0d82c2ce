//! `/products`: create, read, list with filters and cursor pagination, update and delete.

mod model;

use bytes::Bytes;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
    types::ToJSON,
};

use self::model::{CreateProduct, ProductCreated, UpdateProduct};
use super::{
    ApiTags, AppState,
    caller::{actor, not_registered, registered, require_write},
    json_body::JsonBody,
    raw_json::RawJson,
};
use crate::{
    auth::BearerAuth,
    cache::{Cached, DELETED},
    db::DbError,
    domain::{PriceRange, ProductName, UserId, Validator},
    error::{ApiError, PublicError},
    products::{Cursor, ListQuery, Product, Written, store},
};

/// The product endpoints.
pub struct ProductsApi {
    state: AppState,
}

impl ProductsApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// The product is stored; its images are compressed in the background.
    #[oai(status = 201)]
    Created(Json<ProductCreated>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum ProductResponse {
    /// The product.
    #[oai(status = 200)]
    Ok(Json<Product>),
}

#[derive(ApiResponse)]
enum GetResponse {
    /// The product. `X-Cache` says whether it came from the cache (`hit`) or the database
    /// (`miss`); `ETag` names this version, for `If-None-Match`.
    #[oai(status = 200)]
    Ok(
        RawJson<Product>,
        #[oai(header = "ETag")] String,
        #[oai(header = "X-Cache")] String,
    ),
    /// The version named in `If-None-Match` is current.
    #[oai(status = 304)]
    NotModified(
        #[oai(header = "ETag")] String,
        #[oai(header = "X-Cache")] String,
    ),
}

#[derive(ApiResponse)]
enum ListResponse {
    /// One page of products, cheapest first (ties by id). When more follow, `Link` holds the
    /// URL of the next page (`rel="next"`) and `X-Next-Cursor` the cursor to pass as `cursor`.
    #[oai(status = 200)]
    Ok(
        Json<Vec<Product>>,
        #[oai(header = "Link")] Option<String>,
        #[oai(header = "X-Next-Cursor")] Option<String>,
    ),
}

#[derive(ApiResponse)]
enum DeleteResponse {
    /// The product is deleted.
    #[oai(status = 204)]
    Deleted,
}

const DEFAULT_LIMIT: i64 = 20;

#[OpenApi(tag = "ApiTags::Products")]
impl ProductsApi {
    /// Create a product
    ///
    /// Stores the product; its images are fetched and compressed asynchronously and appear in
    /// `compressed_product_images` when done.
    #[oai(path = "/products", method = "post", operation_id = "createProduct")]
    async fn create(
        &self,
        auth: BearerAuth,
        body: JsonBody<CreateProduct>,
    ) -> Result<CreateResponse, ApiError> {
        require_write(&auth.0)?;
        let (named, product) = body.0.validate(self.state.max_images_per_product)?;
        let own = registered(&self.state, &auth.0).await?.map(|user| user.id);
        let owner = match (named, own) {
            (Some(named), _) if auth.0.is_admin() => named,
            (Some(named), Some(own)) if named.get() == own => named,
            (Some(_), Some(_)) => {
                return Err(ApiError::forbidden(
                    "user_id must be your own user's id (or omitted); only an admin creates products for others.",
                ));
            }
            (_, Some(own)) => {
                UserId::new(own).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?
            }
            (_, None) => return Err(not_registered()),
        };
        let state = self.state.clone();
        let id = after_commit_too(async move {
            let id = store::insert(&state.pool, owner, &product).await?;
            state.outbox.committed();
            Ok(id)
        })
        .await?;
        tracing::info!(product_id = id, user_id = owner.get(), "Product created.");
        Ok(CreateResponse::Created(
            Json(ProductCreated {
                status: "success".into(),
                message: "Product created successfully".into(),
                product_id: id.to_string(),
            }),
            format!("/products/{id}"),
        ))
    }

    /// Get a product
    ///
    /// Served from the cache when possible; a change is visible on the very next request.
    #[oai(path = "/products/:id", method = "get", operation_id = "getProduct")]
    async fn get(
        &self,
        /// The product's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// An `ETag` from an earlier response: answered with 304 while still current.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<GetResponse, PublicError> {
        let (pool, id) = (self.state.pool.clone(), id.0);
        let (entry, source) = self
            .state
            .cache
            .read_through(id, move || async move {
                let row = store::find(&pool, id).await?;
                Ok::<_, DbError>(row.map(|row| Cached {
                    version: row.version,
                    body: Bytes::from(Product::from(row).to_json_string()),
                }))
            })
            .await
            .map_err(|error| ApiError::from_shared(&error))?;
        let Some(entry) = entry else {
            return Err(not_found(id).into());
        };
        let etag = format!("W/\"{id}-{}\"", entry.version);
        if if_none_match
            .0
            .as_deref()
            .is_some_and(|header| etag_matches(header, &etag))
        {
            return Ok(GetResponse::NotModified(etag, source.as_str().into()));
        }
        Ok(GetResponse::Ok(
            RawJson::new(entry.body),
            etag,
            source.as_str().into(),
        ))
    }

    /// List a user's products
    ///
    /// Filters combine. Results are ordered by price, then id. To page, pass the
    /// `X-Next-Cursor` of the previous response as `cursor` (or follow its `Link` header)
    /// with the same filters; no header means the last page.
    #[oai(path = "/products", method = "get", operation_id = "listProducts")]
    async fn list(
        &self,
        /// The owner's id.
        user_id: Query<String>,
        /// `MIN-MAX`, either side optional: `20-50`, `20-`, `-50`. Inclusive.
        price_range: Query<Option<String>>,
        /// Case-insensitive substring of the name; `%` and `_` match themselves.
        product_name: Query<Option<String>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
        /// The `X-Next-Cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse, PublicError> {
        let mut v = Validator::default();
        let owner = v.check("user_id", UserId::parse(&user_id.0));
        let range = price_range
            .0
            .as_deref()
            .and_then(|raw| v.check("price_range", PriceRange::parse(raw)));
        let name = product_name
            .0
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .and_then(|n| v.check("product_name", ProductName::parse(n)));
        let after = cursor
            .0
            .as_deref()
            .and_then(|raw| v.check("cursor", Cursor::decode(raw)));
        v.finish().map_err(ApiError::invalid_query)?;
        let Some(owner) = owner else {
            unreachable!("an invalid user_id was reported above")
        };
        let query = ListQuery {
            user_id: owner,
            price: range,
            name_contains: name.map(|n| n.as_str().to_owned()),
            after,
            limit: limit.0.unwrap_or(DEFAULT_LIMIT),
        };
        let (rows, more) = store::list(&self.state.pool, &query).await?;
        let next = more
            .then(|| {
                rows.last().map(|last| {
                    Cursor {
                        price: last.price,
                        id: last.id,
                    }
                    .encode()
                })
            })
            .flatten();
        let link = next
            .as_ref()
            .map(|cursor| next_link(&user_id.0, &price_range.0, &product_name.0, limit.0, cursor));
        let products = rows.into_iter().map(Product::from).collect();
        Ok(ListResponse::Ok(Json(products), link, next))
    }

    /// Update a product
    ///
    /// Changes only the fields given. New `product_images` clear `compressed_product_images`
    /// until the new images are processed.
    #[oai(
        path = "/products/:id",
        method = "patch",
        operation_id = "updateProduct"
    )]
    async fn update(
        &self,
        /// The product's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        auth: BearerAuth,
        body: JsonBody<UpdateProduct>,
    ) -> Result<ProductResponse, ApiError> {
        let actor = actor(&self.state, &auth.0).await?;
        let changes = body.0.validate(self.state.max_images_per_product)?;
        let (state, id) = (self.state.clone(), id.0);
        let updated = after_commit_too(async move {
            let written = store::update(&state.pool, id, actor, &changes).await?;
            if let Written::Done(row) = &written {
                state.outbox.committed();
                state.cache.invalidate(id, row.version).await;
            }
            Ok(written)
        })
        .await?;
        match updated {
            Written::Done(row) => {
                tracing::info!(product_id = id, version = row.version, "Product updated.");
                Ok(ProductResponse::Ok(Json(row.into())))
            }
            Written::NoSuchProduct => Err(not_found(id)),
            Written::NotOwner => Err(not_yours(id)),
        }
    }

    /// Delete a product
    #[oai(
        path = "/products/:id",
        method = "delete",
        operation_id = "deleteProduct"
    )]
    async fn delete(
        &self,
        /// The product's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        auth: BearerAuth,
    ) -> Result<DeleteResponse, ApiError> {
        let actor = actor(&self.state, &auth.0).await?;
        let (state, id) = (self.state.clone(), id.0);
        let deleted = after_commit_too(async move {
            let written = store::delete(&state.pool, id, actor).await?;
            if let Written::Done(()) = written {
                state.outbox.committed();
                state.cache.invalidate(id, DELETED).await;
            }
            Ok(written)
        })
        .await?;
        match deleted {
            Written::Done(()) => {
                tracing::info!(product_id = id, "Product deleted.");
                Ok(DeleteResponse::Deleted)
            }
            Written::NoSuchProduct => Err(not_found(id)),
            Written::NotOwner => Err(not_yours(id)),
        }
    }
}

/// Runs a write, and what must follow its commit (waking the relay, invalidating the
/// cache), on a task of its own. A request can be dropped at any await (its client went
/// away, the request timed out); were the write polled by the request, a drop between the
/// commit and the invalidation would leave the old product, even a deleted one, in the cache
/// until its TTL. A write already sent runs to its end whoever waits for it.
async fn after_commit_too<T: Send + 'static>(
    write: impl Future<Output = Result<T, DbError>> + Send + 'static,
) -> Result<T, ApiError> {
    // In the request's span: the write's own spans, and the trace context its outbox row
    // carries to Kafka, stay in the request's trace.
    match tokio::spawn(tracing::Instrument::in_current_span(write)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => Err(ApiError::internal(anyhow::anyhow!(
            "The write task failed: {error}"
        ))),
    }
}

/// Weak comparison (RFC 9110): `W/` prefixes do not matter; `*` matches any version.
fn etag_matches(header: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("There is no product {id}."))
}

fn not_yours(id: i64) -> ApiError {
    ApiError::forbidden(format!(
        "Product {id} belongs to another user; only its owner or an admin may change it."
    ))
}

/// The URL of the next page: the same filters plus the cursor.
fn next_link(
    user_id: &str,
    price_range: &Option<String>,
    product_name: &Option<String>,
    limit: Option<i64>,
    cursor: &str,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("user_id", user_id);
    if let Some(range) = price_range {
        query.append_pair("price_range", range);
    }
    if let Some(name) = product_name {
        query.append_pair("product_name", name);
    }
    if let Some(limit) = limit {
        query.append_pair("limit", &limit.to_string());
    }
    query.append_pair("cursor", cursor);
    format!("</products?{}>; rel=\"next\"", query.finish())
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn etags_compare_weakly_and_star_matches_all() {
        assert!(etag_matches(r#"W/"1-2""#, r#"W/"1-2""#));
        assert!(etag_matches(r#""1-2""#, r#"W/"1-2""#));
        assert!(etag_matches(r#""x", W/"1-2""#, r#"W/"1-2""#));
        assert!(etag_matches("*", r#"W/"1-2""#));
        assert!(!etag_matches(r#"W/"1-3""#, r#"W/"1-2""#));
    }
}
