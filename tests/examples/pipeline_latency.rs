//! Measures the time from `POST /products` to compressed images visible in
//! `GET /products/{id}`, for products with one 1-megapixel JPEG (`MEGAPIXELS` to change, or
//! `PHOTO` to serve a file of your own), against a running stack (`make run`). Run it with `scripts/measure-latency.sh [COUNT]`.
//!
//! Two moments per product, as a storefront sees them: the **first variant** visible (every
//! image has a compressed URL: a `<picture>` can show it) and the **whole ladder** visible
//! (every image's `srcset` lists each of [`FORMATS`]).
//!
//! It serves the JPEG itself on 127.0.0.1 (which `make run` allows the processor to fetch),
//! creates the products one after another and polls each every 10 ms until processed.
//!
//! With `--burst DELAY_MS` (`scripts/measure-throughput.sh`) it creates all the products at
//! once instead, its image server answering each image DELAY_MS late like a slow remote
//! host, and reports how long the whole burst took to be processed.
//!
//! `IMAGES_PER_PRODUCT` (default 1) gives each product that many images, each under a URL
//! of its own (`scripts/measure-processor-throughput.sh`).

use std::time::{Duration, Instant};

use image::imageops::FilterType;
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Path},
};
use serde_json::{Value, json};

/// The photo, with its path appended after the JPEG's end: the same picture, but different
/// bytes under each URL, so the processor (which stores identical bytes once) processes
/// every image.
#[handler]
async fn photo(Path(name): Path<String>, bytes: Data<&bytes_holder::Bytes>) -> Response {
    // A slow remote image server, when asked for one.
    tokio::time::sleep(bytes.0.1).await;
    let mut body = bytes.0.0.clone();
    body.extend_from_slice(name.as_bytes());
    Response::builder().content_type("image/jpeg").body(body)
}

mod bytes_holder {
    /// The JPEG, and how late to answer.
    #[derive(Clone)]
    pub struct Bytes(pub Vec<u8>, pub std::time::Duration);
}

/// A JPEG (quality 90) of about `megapixels`, scaled from a camera photograph
/// (`CAMERA_PHOTO`, which `scripts/measure-latency.sh` points at one of the photos
/// `scripts/photos.sh` downloads), as a seller exports one; without it, from a small sample
/// photo (640x427, upscaled).
fn photo_jpeg(megapixels: f64) -> Vec<u8> {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/images/rocket.jpg");
    let path = std::env::var("CAMERA_PHOTO").unwrap_or_else(|_| sample.to_owned());
    let source = image::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let aspect = f64::from(source.width()) / f64::from(source.height());
    let height = (megapixels * 1e6 / aspect).sqrt().round() as u32;
    let width = (f64::from(height) * aspect).round() as u32;
    let resized = source
        .resize_exact(width, height, FilterType::Lanczos3)
        .into_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&resized)
        .expect("JPEG encoding");
    out.into_inner()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(20);
    let burst: Option<Duration> = match args.get(2).map(String::as_str) {
        Some("--burst") => Some(Duration::from_millis(
            args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(0),
        )),
        _ => None,
    };
    let api = format!(
        "http://{}",
        std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    let per_product: usize = std::env::var("IMAGES_PER_PRODUCT")
        .ok()
        .map(|m| m.parse())
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let megapixels: f64 = std::env::var("MEGAPIXELS")
        .ok()
        .map(|m| m.parse())
        .transpose()?
        .unwrap_or(1.0);
    // PHOTO=path serves that file instead (e.g. a worst-case input of
    // scripts/measure-decode-memory.sh).
    let jpeg = match std::env::var_os("PHOTO") {
        Some(path) => std::fs::read(path)?,
        None => photo_jpeg(megapixels),
    };
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a socket address");
    let app = Route::new()
        .at("/photo/:n", get(photo))
        .data(bytes_holder::Bytes(jpeg.clone(), burst.unwrap_or_default()));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));

    let http = system_tests::auth::seller_client().build()?;
    let username = format!("latency{}", std::process::id());
    let user: Value = http
        .post(format!("{api}/users"))
        .json(&json!({"username": username, "email": format!("{username}@example.com")}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_id = user["user_id"].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "{count} products, {per_product} x {} KiB {megapixels} MP JPEG each, against {api}",
        jpeg.len() / 1024
    );

    let create = |n: usize| {
        let (http, api, user_id) = (http.clone(), api.clone(), user_id.clone());
        async move {
            let created: Value = http
                .post(format!("{api}/products"))
                .json(&json!({
                    "user_id": user_id, "product_name": format!("latency {n}"),
                    "product_images": (0..per_product)
                        .map(|i| format!("http://{addr}/photo/{n}-{i}-{}", std::process::id()))
                        .collect::<Vec<_>>(),
                    "product_price": 1
                }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok(
                created["product_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    if let Some(delay) = burst {
        let started = Instant::now();
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            ids.push(create(n).await?);
        }
        // A burst is processed in turn: allow each image ten seconds. Every product is
        // watched at once, so each one's two moments are seen when they happen; together
        // they poll 100 times a second, as one product alone does, or the polling would
        // take the cores the pipeline is measured on.
        let limit = Duration::from_secs(60.max(10 * (count * per_product) as u64));
        let poll = POLL * count as u32;
        let seen = futures_util::future::try_join_all(
            ids.iter()
                .map(|id| wait_until_done(&http, &api, id, started, limit, poll)),
        )
        .await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "{count} products of {per_product} images created at once, each image answered {} ms late",
            delay.as_millis()
        );
        println!(
            "  all processed after {took:.2} s: {:.1} products/s, {:.2} images/s",
            count as f64 / took,
            (count * per_product) as f64 / took
        );
        let (first, whole): (Vec<_>, Vec<_>) = seen
            .into_iter()
            .map(|s| (s.first_variant, s.whole_ladder))
            .unzip();
        print_quantiles("from the burst's start", sorted(first), sorted(whole));
        return Ok(());
    }

    let (mut first, mut whole) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for n in 0..count {
        let started = Instant::now();
        let id = create(n).await?;
        let seen =
            wait_until_done(&http, &api, &id, started, Duration::from_secs(60), POLL).await?;
        first.push(seen.first_variant);
        whole.push(seen.whole_ladder);
    }
    println!("POST -> images visible, {count} products, {megapixels} MP JPEG each");
    print_quantiles("", sorted(first), sorted(whole));
    Ok(())
}

/// The two moments' quantiles, in milliseconds.
fn print_quantiles(title: &str, first: Vec<Duration>, whole: Vec<Duration>) {
    println!("  {title:<22} first variant   whole ladder");
    for (name, q) in [("min", 0.0), ("median", 0.5), ("p90", 0.9), ("max", 1.0)] {
        println!(
            "  {name:<22} {:10.1} ms {:11.1} ms",
            at(&first, q),
            at(&whole, q)
        );
    }
}

fn sorted(mut samples: Vec<Duration>) -> Vec<Duration> {
    samples.sort();
    samples
}

/// The `q` quantile of sorted `samples`, in milliseconds.
fn at(samples: &[Duration], q: f64) -> f64 {
    samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
}

/// How often one product watched alone is polled.
const POLL: Duration = Duration::from_millis(10);

/// The formats of a complete ladder.
const FORMATS: [&str; 2] = ["image/avif", "image/webp"];

/// When a product's images became visible, from its creation.
struct Seen {
    first_variant: Duration,
    whole_ladder: Duration,
}

/// Polls product `id` every `poll` until its whole ladder is visible, failing `limit` after
/// `started`; returns when its first variant and its whole ladder became visible.
async fn wait_until_done(
    http: &reqwest::Client,
    api: &str,
    id: &str,
    started: Instant,
    limit: Duration,
    poll: Duration,
) -> anyhow::Result<Seen> {
    let mut first_variant = None;
    loop {
        let product: Value = http
            .get(format!("{api}/products/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let images = product["images"].as_array().cloned().unwrap_or_default();
        let compressed = product["compressed_product_images"]
            .as_array()
            .is_some_and(|urls| !urls.is_empty() && urls.iter().all(|u| u.is_string()));
        if compressed && first_variant.is_none() {
            first_variant = Some(started.elapsed());
        }
        let complete = !images.is_empty()
            && images
                .iter()
                .all(|image| FORMATS.iter().all(|f| image["srcset"].get(f).is_some()));
        if let (Some(first_variant), true) = (first_variant, complete) {
            return Ok(Seen {
                first_variant,
                whole_ladder: started.elapsed(),
            });
        }
        match product["processing_status"].as_str() {
            Some("pending" | "done") => {}
            other => anyhow::bail!("product {id} ended {other:?}: {product}"),
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "product {id} not processed in {} s",
            limit.as_secs()
        );
        tokio::time::sleep(poll).await; // poll interval, deadline above
    }
}
