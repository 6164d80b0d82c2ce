//! The load drill: a burst of products whose images fail, against a running stack
//! (`make run`; run it with `make load-drill`, `COUNT` products, default 5,000).
//!
//! Every image points at a port on 127.0.0.1 where nothing listens, so each download is
//! refused: a transient failure that goes through every retry level before it gives up
//! (`failed` with its reason). The drill posts the burst with 32 connections, then follows
//! the processor's counters and the products until every product has reached a final state,
//! and meanwhile times the processor's readiness probe (which asks the broker for metadata)
//! to show whether the broker stays responsive. It prints:
//! - the posting rate;
//! - the drain rate of the main topic (first attempts per second, from
//!   `retries_total{level="1"}`) and of the whole burst (products final per second);
//! - the slowest readiness answer seen.
//!
//! It fails (non-zero exit) if a product stays pending past `DRILL_DEADLINE_SECS` (default
//! 900) or a POST is not answered 201.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A counter's value from a Prometheus text page (summed over the series that match).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Jobs the processor sent to the first retry level so far: with every image refused, one
/// per product whose first attempt is over.
async fn first_attempts(http: &reqwest::Client, processor: &str) -> anyhow::Result<f64> {
    let metrics = http
        .get(format!("{processor}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(counter(&metrics, "retries_total{level=\"1\"}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5_000);
    let api = format!(
        "http://{}",
        std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    let processor = format!(
        "http://{}",
        std::env::var("PROCESSOR_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".into())
    );
    let deadline = Duration::from_secs(env_or("DRILL_DEADLINE_SECS", 900));
    let http = system_tests::auth::seller_client()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    // A port nothing listens on: bound once, then released.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();

    let first_attempts_before = first_attempts(&http, &processor).await?;

    let user: Value = http
        .post(format!("{api}/users"))
        .json(&json!({
            "username": format!("drill{}", std::process::id()),
            "email": format!("drill{}@example.com", std::process::id())
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user = user["user_id"].as_str().unwrap_or_default().to_owned();

    let started = Instant::now();
    let ids: Vec<String> = stream::iter(0..count)
        .map(|i| {
            let (http, api, user) = (http.clone(), api.clone(), user.clone());
            async move {
                let body = json!({
                    "user_id": user, "product_name": format!("drill {i}"), "product_price": 1,
                    "product_images": [format!("http://127.0.0.1:{refused}/photo-{i}.jpg")]
                });
                let response = http
                    .post(format!("{api}/products"))
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 201,
                    "POST /products answered {}",
                    response.status()
                );
                let product: Value = response.json().await?;
                Ok(product["product_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let posted = started.elapsed();
    println!(
        "posted {count} products in {:.1} s ({:.0}/s)",
        posted.as_secs_f64(),
        count as f64 / posted.as_secs_f64()
    );

    let pending = Arc::new(tokio::sync::Mutex::new(ids));
    let mut slowest_ready = Duration::ZERO;
    let mut not_ready = 0usize;
    let mut main_drained: Option<Duration> = None;
    loop {
        // The broker's responsiveness, as the processor's readiness sees it.
        let asked = Instant::now();
        let ready = http.get(format!("{processor}/readyz")).send().await;
        slowest_ready = slowest_ready.max(asked.elapsed());
        if !matches!(&ready, Ok(r) if r.status() == 200) {
            not_ready += 1;
        }
        let first_attempts = first_attempts(&http, &processor).await? - first_attempts_before;
        if main_drained.is_none() && first_attempts >= count as f64 {
            main_drained = Some(started.elapsed());
        }
        // Which products are still pending (checked 64 at a time).
        let still: Vec<String> = {
            let ids = pending.lock().await.clone();
            stream::iter(ids)
                .map(|id| {
                    let (http, api) = (http.clone(), api.clone());
                    async move {
                        let product: Value = http
                            .get(format!("{api}/products/{id}"))
                            .send()
                            .await
                            .ok()?
                            .json()
                            .await
                            .ok()?;
                        (product["processing_status"] == "pending").then_some(id)
                    }
                })
                .buffer_unordered(64)
                .filter_map(|id| async move { id })
                .collect()
                .await
        };
        println!(
            "{:>6.1} s: first attempts {first_attempts:.0}/{count}, pending {}",
            started.elapsed().as_secs_f64(),
            still.len()
        );
        let done = still.is_empty();
        *pending.lock().await = still;
        if done {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "products still pending after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let all = started.elapsed();
    if let Some(main) = main_drained {
        println!(
            "main topic drained (every product's first attempt) {:.1} s after the first POST: {:.0} jobs/s",
            main.as_secs_f64(),
            count as f64 / main.as_secs_f64()
        );
    }
    println!(
        "every product final {:.1} s after the first POST ({:.1} products/s, retry delays included)",
        all.as_secs_f64(),
        count as f64 / all.as_secs_f64()
    );
    println!(
        "processor readiness: slowest answer {} ms, {not_ready} answers not 200",
        slowest_ready.as_millis()
    );
    Ok(())
}
