//! Prometheus metrics of the api, served at `/metrics`.
//!
//! Labels have low cardinality: routes are templates (`/products/{id}`), never ids; unknown
//! paths are counted as `unmatched`.

use std::sync::Arc;

use crate::cache::CacheStats;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter, exemplar::HistogramWithExemplars, family::Family, gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

/// Labels of an HTTP request. Each takes its values from a fixed set, whatever a client
/// sends: [`method_label`], [`route_template`] and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

/// The method as a label: one of the standard methods (RFC 9110, and PATCH), or `OTHER`, so
/// made-up methods cannot grow `/metrics` (a method token may be any length).
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find_map(|(m, label)| (m == method).then_some(*label))
        .unwrap_or("OTHER")
}

pub use platform::metrics::{ConsumerLag, OutcomeLabels};

/// Labels of the pruner's counter: which table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrunedLabels {
    pub table: &'static str,
}

/// Labels of the outbox's publish latency: which stream the row went to (`events`: the
/// pipeline's events; `products`: the change feed's state records).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: &'static str,
}

/// The exemplar of a freshness observation: the trace that carried the product's change
/// from the request to the projector.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabels {
    pub trace_id: String,
}

/// Buckets of the outbox's publish latency, in seconds (the change feed's SLO reads `le="5"`).
const PUBLISH_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of the pipeline's freshness, in seconds (the images' SLO reads `le="60"`).
const FRESHNESS_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

fn publish_histogram() -> Histogram {
    Histogram::new(PUBLISH_BUCKETS)
}

/// Every metric of the api.
pub struct ApiMetrics {
    registry: Registry,
    /// Request latency by method, route template and status.
    pub http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Outbox rows not yet published, as last seen by the relay.
    pub outbox_backlog: Gauge,
    /// Time from an outbox row's commit to the broker's acknowledgement, by stream.
    pub outbox_publish_latency: Family<StreamLabels, Histogram, fn() -> Histogram>,
    /// Time from a product change's commit to the projector applying the result that shows
    /// its last image (its WebP ladder; or its failure): how long the change takes to show,
    /// with the trace of the slowest as exemplars. Once per image revision.
    pub pipeline_freshness: HistogramWithExemplars<TraceLabels>,
    /// The same to the result that completes the last image's ladder (its AVIF).
    pub pipeline_ladder_freshness: HistogramWithExemplars<TraceLabels>,
    /// Products with images still pending, and the age of the oldest wait, in seconds.
    pub images_pending: Gauge,
    /// Products whose images have waited longer than a day: stuck for good.
    pub images_stuck: Gauge,
    pub images_oldest_pending: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Whether PostgreSQL, Redis and the broker answered the last check.
    pub dependency_up: platform::dependencies::DependencyUp,
    /// Events the projector handled, by outcome.
    pub projector_events: Family<OutcomeLabels, Counter>,
    /// The projector group's lag per partition of `images-compressed` (from the group's
    /// committed offsets: every replica reports every partition).
    pub projector_lag: ConsumerLag,
    /// Times the projector's group was found stuck and its consumer recreated.
    pub projector_stalls: Family<platform::kafka::watchdog::ConsumerLabels, Counter>,
    /// Age of the oldest unpublished outbox row, in seconds (0 when none waits).
    pub outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Rows the pruner deleted, by table.
    pub pruned: Family<PrunedLabels, Counter>,
    /// Panics of supervised background tasks, by task (each was restarted).
    pub task_panics: platform::supervise::TaskPanics,
    /// Access tokens refused, by reason.
    pub auth_refusals: Family<crate::auth::ReasonLabels, Counter>,
    /// Fetches of the issuer's key set, and the keys in hand.
    pub auth_keys: crate::auth::keys::KeyMetrics,
}

/// Stored values of a product this version could not read (each answered with a 500
/// instead of a guess). One counter per process, as the reads that find such values run far
/// from any metrics handle; every [`ApiMetrics`] registers it.
pub static STORED_VALUES_UNREADABLE: std::sync::LazyLock<Counter> =
    std::sync::LazyLock::new(Counter::default);

impl ApiMetrics {
    /// The api's metrics, with the cache's counters among them.
    pub fn new(cache: &CacheStats) -> Arc<Self> {
        let mut registry = Registry::default();
        let metrics = Self {
            http: Family::new_with_constructor(platform::metrics::latency_histogram),
            outbox_backlog: Gauge::default(),
            outbox_publish_latency: Family::new_with_constructor(publish_histogram),
            pipeline_freshness: HistogramWithExemplars::new(FRESHNESS_BUCKETS.into_iter()),
            pipeline_ladder_freshness: HistogramWithExemplars::new(FRESHNESS_BUCKETS.into_iter()),
            images_pending: Gauge::default(),
            images_stuck: Gauge::default(),
            images_oldest_pending: Gauge::default(),
            dependency_up: Family::default(),
            projector_events: Family::default(),
            projector_lag: Family::default(),
            projector_stalls: Family::default(),
            outbox_oldest_age: Gauge::default(),
            pruned: Family::default(),
            task_panics: Family::default(),
            auth_refusals: Family::default(),
            auth_keys: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            metrics.http.clone(),
        );
        registry.register(
            "cache_hits",
            "GET /products/{id} answered from the cache (Redis or this replica's memory)",
            cache.hits.clone(),
        );
        registry.register(
            "cache_local_hits",
            "Cache hits answered from this replica's memory, with no Redis round trip",
            cache.local_hits.clone(),
        );
        registry.register(
            "cache_local_tracking",
            "1 while Redis tracks this replica's keys and its in-memory cache serves; 0 while that cache is off or waiting for tracking",
            cache.local_tracking.clone(),
        );
        registry.register(
            "cache_local_flushes",
            "Times this replica emptied its in-memory cache: Redis key tracking lost or in doubt, or Redis flushed",
            cache.local_flushes.clone(),
        );
        registry.register(
            "cache_misses",
            "GET /products/{id} not found in the cache",
            cache.misses.clone(),
        );
        registry.register(
            "cache_errors",
            "Redis commands that failed or timed out",
            cache.errors.clone(),
        );
        registry.register(
            "cache_db_loads",
            "Products read from PostgreSQL on a cache miss",
            cache.db_loads.clone(),
        );
        registry.register(
            "stored_values_unreadable",
            "Stored values of a product this version could not read: each answered 500 (or skipped by the projector) instead of shown with a guess",
            STORED_VALUES_UNREADABLE.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox events not yet published",
            metrics.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_publish_latency_seconds",
            "Time from an outbox row's commit to the broker's acknowledgement, by stream (events: the pipeline's; products: the change feed)",
            metrics.outbox_publish_latency.clone(),
        );
        registry.register(
            "pipeline_freshness_seconds",
            "Time from a product change's commit to the projector applying the result that shows its last image (WebP, or its failure; what GET shows), with trace ids as exemplars",
            metrics.pipeline_freshness.clone(),
        );
        registry.register(
            "pipeline_ladder_freshness_seconds",
            "Time from a product change's commit to the projector applying the result that completes its last image's ladder (the AVIF), with trace ids as exemplars",
            metrics.pipeline_ladder_freshness.clone(),
        );
        registry.register(
            "images_pending_products",
            "Products with images the pipeline has not finished (refreshed every 5 s from PostgreSQL)",
            metrics.images_pending.clone(),
        );
        registry.register(
            "images_stuck_products",
            "Products whose images have waited more than a day: stuck for good (they need their event sent again), left out of images_oldest_pending_seconds",
            metrics.images_stuck.clone(),
        );
        registry.register(
            "images_oldest_pending_seconds",
            "How long the product waiting longest for its images, within the last day, has waited (0 when none waits); grows while nothing reports results",
            metrics.images_oldest_pending.clone(),
        );
        registry.register(
            "dependency_up",
            "1 when the dependency (postgres, redis, kafka) answered its last check (every 10 s, 2 s timeout), else 0",
            metrics.dependency_up.clone(),
        );
        registry.register(
            "projector_events",
            "ImagesCompressed events handled by the projector, by outcome",
            metrics.projector_events.clone(),
        );
        registry.register(
            "projector_consumer_lag",
            "ImagesCompressed events behind the high watermark, per partition, from the projector group's committed offsets",
            metrics.projector_lag.clone(),
        );
        registry.register(
            "projector_consumer_stalls",
            "Times the projector's group made no progress with events waiting for CONSUMER_STALL_SECS, and its consumer was recreated",
            metrics.projector_stalls.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest outbox event not yet published (0 when none waits)",
            metrics.outbox_oldest_age.clone(),
        );
        registry.register(
            "pruned_rows",
            "Published outbox rows and applied-event records deleted after their retention",
            metrics.pruned.clone(),
        );
        registry.register(
            "auth_refusals",
            "Access tokens refused, by reason (expired, signature, audience, unknown_key, keys_unavailable, …); the token is never logged",
            metrics.auth_refusals.clone(),
        );
        registry.register(
            "auth_key_fetches",
            "Fetches of the issuer's key set (discovery and JWKS), by outcome",
            metrics.auth_keys.fetches.clone(),
        );
        registry.register(
            "auth_keys",
            "Signing keys of the issuer in hand (0 until a key set loaded: protected routes answer 503)",
            metrics.auth_keys.keys.clone(),
        );
        registry.register(
            "background_task_panics",
            "Panics of background tasks (relay, projector, pruner), by task; each was restarted",
            metrics.task_panics.clone(),
        );
        // Known label values start at 0: a family with no series is not exported at all, and
        // `increase()` cannot see a counter's first step from nothing.
        for outcome in [
            "updated",
            "duplicate",
            "stale_revision",
            "no_such_product",
            "kept_better",
            "unreadable",
            "unreadable_state",
        ] {
            let _ = metrics
                .projector_events
                .get_or_create(&OutcomeLabels { outcome });
        }
        let _ =
            metrics
                .projector_stalls
                .get_or_create(&platform::kafka::watchdog::ConsumerLabels {
                    consumer: "projector".to_owned(),
                });
        for outcome in ["ok", "failed"] {
            let _ = metrics
                .auth_keys
                .fetches
                .get_or_create(&OutcomeLabels { outcome });
        }
        for table in ["outbox", "applied_events"] {
            let _ = metrics.pruned.get_or_create(&PrunedLabels { table });
        }
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        platform::metrics::render(&self.registry)
    }
}

/// The route template of a path: digit segments become `{id}`; paths outside the API's
/// resources are `unmatched`, so scanners cannot blow up the label set.
pub fn route_template(path: &str) -> String {
    const KNOWN: [&str; 6] = [
        "products",
        "users",
        "healthz",
        "readyz",
        "openapi.json",
        "docs",
    ];
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.first() {
        Some(first) if KNOWN.contains(first) => {}
        Some(&"images") => return "/images/{key}".into(),
        _ if path == "/" => return "/".into(),
        _ => return "unmatched".into(),
    }
    if segments.first() == Some(&"docs") {
        return "/docs".into();
    }
    let mut template = String::new();
    for segment in segments.iter().take(3) {
        template.push('/');
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            template.push_str("{id}");
        } else if KNOWN.contains(segment) {
            template.push_str(segment);
        } else {
            template.push_str("{other}");
        }
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_placeholders_and_unknown_paths_one_label() {
        assert_eq!(route_template("/products/123"), "/products/{id}");
        assert_eq!(route_template("/products"), "/products");
        assert_eq!(route_template("/users/9"), "/users/{id}");
        assert_eq!(route_template("/products/abc"), "/products/{other}");
        assert_eq!(route_template("/wp-admin/x.php"), "unmatched");
        assert_eq!(
            route_template("/images/products/1/r1/0.webp"),
            "/images/{key}"
        );
        assert_eq!(route_template("/docs/swagger-ui.css"), "/docs");
    }

    #[test]
    fn standard_methods_keep_their_name_and_the_rest_are_other() {
        use poem::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes("X".repeat(20_000).as_bytes()).unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }

    #[test]
    fn metrics_render_in_the_text_format() {
        let cache = CacheStats::default();
        let metrics = ApiMetrics::new(&cache);
        cache.hits.inc();
        metrics
            .projector_events
            .get_or_create(&OutcomeLabels { outcome: "updated" })
            .inc();
        let text = metrics.render();
        assert!(text.contains("cache_hits_total 1"), "{text}");
        assert!(
            text.contains("projector_events_total{outcome=\"updated\"} 1"),
            "{text}"
        );
    }
}
