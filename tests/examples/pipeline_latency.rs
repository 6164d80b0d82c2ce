//! Measures the time from `POST /products` to compressed images visible in
//! `GET /products/{id}`, for products with one 1-megapixel JPEG, against a running stack
//! (`make run`). Run it with `scripts/measure-latency.sh [COUNT]`.
//!
//! It serves the JPEG itself on 127.0.0.1 (which `make run` allows the processor to fetch),
//! creates the products one after another and polls each every 10 ms until processed.

use std::time::{Duration, Instant};

use image::{ImageFormat, imageops::FilterType};
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use serde_json::{Value, json};

#[handler]
fn photo(bytes: Data<&bytes_holder::Bytes>) -> Response {
    Response::builder()
        .content_type("image/jpeg")
        .body(bytes.0.0.clone())
}

mod bytes_holder {
    #[derive(Clone)]
    pub struct Bytes(pub Vec<u8>);
}

/// A 1-megapixel JPEG made from a real photo (upscaled from 640x427).
fn one_megapixel_jpeg() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/demo-images/rocket.jpg"
    );
    let source = image::open(path).expect("docs/demo-images/rocket.jpg");
    let resized = source
        .resize_exact(1225, 816, FilterType::Lanczos3)
        .into_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    resized
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("JPEG encoding");
    out.into_inner()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20);
    let api = format!(
        "http://{}",
        std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    let jpeg = one_megapixel_jpeg();
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a socket address");
    let app = Route::new()
        .at("/photo/:n", get(photo))
        .data(bytes_holder::Bytes(jpeg.clone()));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));

    let http = reqwest::Client::new();
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
        "{count} products, one {} KiB 1225x816 JPEG each, against {api}",
        jpeg.len() / 1024
    );

    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        let created: Value = http
            .post(format!("{api}/products"))
            .json(&json!({
                "user_id": user_id, "product_name": format!("latency {n}"),
                "product_images": [format!("http://{addr}/photo/{n}-{}", std::process::id())],
                "product_price": 1
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["product_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        loop {
            let product: Value = http
                .get(format!("{api}/products/{id}"))
                .send()
                .await?
                .json()
                .await?;
            match product["processing_status"].as_str() {
                Some("pending") => {}
                Some("done") => break,
                other => anyhow::bail!("product {id} ended {other:?}: {product}"),
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "product {id} not processed in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, deadline above
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!("POST -> compressed image visible, {count} products, 1 MP JPEG each");
    println!("  min    {:8.1} ms", ms(samples[0]));
    println!("  median {:8.1} ms", ms(at(0.5)));
    println!("  p90    {:8.1} ms", ms(at(0.9)));
    println!("  max    {:8.1} ms", ms(samples[samples.len() - 1]));
    Ok(())
}
