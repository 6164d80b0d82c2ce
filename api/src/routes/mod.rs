//! The HTTP surface: one module per resource, composed once into the OpenAPI service.

mod caller;
mod health;
mod json_body;
mod number_or_string;
mod products;
mod raw_json;
mod users;

use deadpool_postgres::Pool;
use poem_openapi::{OpenApiService, Tags};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: Pool,
    /// How many image URLs a product may have.
    pub max_images_per_product: usize,
    /// Wakes the outbox relay after a commit that wrote events.
    pub outbox: crate::outbox::OutboxSignal,
    /// The read-through cache of single products.
    pub cache: crate::cache::ProductCache,
    /// The api's metrics.
    pub metrics: std::sync::Arc<crate::metrics::ApiMetrics>,
    /// Whether the projector's consumer group is stuck (readiness).
    pub consumers: platform::kafka::watchdog::ConsumerHealth,
    /// Verifies access tokens (also given to the security scheme's checker as data).
    pub auth: crate::auth::Auth,
}

#[derive(Tags)]
enum ApiTags {
    /// Products and their images.
    Products,
    /// Users, who own products.
    Users,
    /// Liveness and readiness probes.
    Health,
}

/// The API with its generated OpenAPI document.
pub type Api = OpenApiService<(products::ProductsApi, users::UsersApi, health::HealthApi), ()>;

pub fn api(state: AppState) -> Api {
    OpenApiService::new(
        (
            products::ProductsApi::new(state.clone()),
            users::UsersApi::new(state.clone()),
            health::HealthApi::new(state),
        ),
        "Product catalog",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Users and products, with product images compressed asynchronously. \
         Errors are RFC 7807 problem documents (application/problem+json).",
    )
}
