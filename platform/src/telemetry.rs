//! Structured logging for every binary: JSON lines on stdout, level from `RUST_LOG`.
//!
//! `LOG_FORMAT=pretty` switches to human-readable lines for local debugging; everything a
//! machine reads (CI, log shippers) gets JSON.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,refinery_core=warn"));
    let pretty = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "pretty");
    let registry = tracing_subscriber::registry().with(filter);
    if pretty {
        registry.with(fmt::layer()).init();
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init();
    }
    tracing::info!(
        service,
        version = env!("CARGO_PKG_VERSION"),
        "Telemetry initialised."
    );
}
