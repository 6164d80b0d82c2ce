//! A local HTTP server of images with scripted misbehaviour, counting every request, so the
//! pipeline tests fetch over real HTTP and can tell what was (never) fetched.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Path, Query},
};
use tokio_util::sync::CancellationToken;

/// A sample photo of `tests/fixtures/images` (public domain and CC0 photos; see its README).
pub fn sample(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    std::fs::read(dir.join(name))
        .unwrap_or_else(|e| panic!("sample image {name} in {}: {e}", dir.display()))
}

struct State {
    hits: Mutex<HashMap<String, usize>>,
    healed: AtomicBool,
    hang_first: AtomicBool,
    /// Lets the hanging `/slow/…` request answer (see `ImageServer::release`).
    release: tokio::sync::Semaphore,
}

impl Default for State {
    fn default() -> Self {
        Self {
            hits: Mutex::default(),
            healed: AtomicBool::default(),
            hang_first: AtomicBool::default(),
            release: tokio::sync::Semaphore::new(0),
        }
    }
}

/// A running image server.
pub struct ImageServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A photo larger than the samples: `coffee.png` scaled to `width` x `height` (Lanczos3) as
/// a JPEG at quality 90, served as `/img/coffee-<width>x<height>.jpg`.
pub fn large_photo(width: u32, height: u32) -> Vec<u8> {
    let coffee = image::load_from_memory(&sample("coffee.png")).expect("coffee.png decodes");
    let large = coffee.resize_exact(width, height, image::imageops::FilterType::Lanczos3);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&large.into_rgb8())
        .expect("a JPEG encodes");
    out
}

/// A sample by name, or a large photo named `coffee-<width>x<height>.jpg`.
fn sample_or_large(name: &str) -> Vec<u8> {
    let size = name
        .strip_prefix("coffee-")
        .and_then(|rest| rest.strip_suffix(".jpg"))
        .and_then(|size| size.split_once('x'))
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match size {
        Some((width, height)) => large_photo(width, height),
        None => sample(name),
    }
}

fn image_response(name: &str) -> Response {
    let content_type = if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    Response::builder()
        .content_type(content_type)
        .body(sample_or_large(name))
}

#[handler]
fn img(Path(name): Path<String>) -> Response {
    image_response(&name)
}

/// The same image under many paths, so each product's image is counted on its own.
#[handler]
fn photo(Path((_n, name)): Path<(usize, String)>) -> Response {
    image_response(&name)
}

/// Like `photo`, 300 ms later: keeps a run of products in flight long enough to stop midway.
#[handler]
async fn delayed(Path((_n, name)): Path<(usize, String)>) -> Response {
    // Simulates a slow image server; no test waits on this.
    tokio::time::sleep(Duration::from_millis(300)).await;
    image_response(&name)
}

/// How many requests for this path came so far, this one included.
fn requests_so_far(state: &State, req: &Request) -> usize {
    state
        .hits
        .lock()
        .unwrap()
        .get(req.uri().path())
        .copied()
        .unwrap_or(0)
}

#[handler]
fn flaky(
    Path((fails, name)): Path<(usize, String)>,
    req: &Request,
    state: Data<&Arc<State>>,
) -> Response {
    if requests_so_far(&state, req) <= fails {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    image_response(&name)
}

/// Fails `fails` times, then hangs until the test releases it (a retry caught mid-way).
#[handler]
async fn flaky_then_slow(
    Path((fails, name)): Path<(usize, String)>,
    req: &Request,
    state: Data<&Arc<State>>,
) -> Response {
    if requests_so_far(&state, req) <= fails {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let _ = tokio::time::timeout(Duration::from_secs(3600), state.release.acquire()).await;
    image_response(&name)
}

#[handler]
fn fail(Path(name): Path<String>, state: Data<&Arc<State>>) -> Response {
    if state.healed.load(Ordering::SeqCst) {
        image_response(&name)
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

#[handler]
async fn slow(Path(name): Path<String>, state: Data<&Arc<State>>) -> Response {
    if state.hang_first.swap(false, Ordering::SeqCst) {
        // Simulates an image server that does not answer until the test releases it (or
        // the client gives up); no test waits on this.
        let _ = tokio::time::timeout(Duration::from_secs(3600), state.release.acquire()).await;
    }
    image_response(&name)
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

#[handler]
fn redirect(Query(to): Query<To>) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to.to)
        .finish()
}

#[handler]
fn garbage() -> Response {
    Response::builder()
        .content_type("image/jpeg")
        .body("this is not an image at all")
}

impl ImageServer {
    /// Serves on `ip` (a loopback address) at a free port.
    pub async fn start(ip: &str) -> Self {
        let state = Arc::new(State::default());
        state.hang_first.store(true, Ordering::SeqCst);
        let counter = state.clone();
        let app = Route::new()
            .at("/img/:name", get(img))
            .at("/photo/:n/:name", get(photo))
            .at("/delayed/:n/:name", get(delayed))
            .at("/flaky/:fails/:name", get(flaky))
            .at("/flaky-slow/:fails/:name", get(flaky_then_slow))
            .at("/fail/:name", get(fail))
            .at("/slow/:name", get(slow))
            .at("/redirect", get(redirect))
            .at("/garbage", get(garbage))
            .data(state.clone())
            .around(move |ep, req: Request| {
                let counter = counter.clone();
                async move {
                    *counter
                        .hits
                        .lock()
                        .unwrap()
                        .entry(req.uri().path().to_owned())
                        .or_default() += 1;
                    ep.call(req).await
                }
            });
        let acceptor = TcpListener::bind(format!("{ip}:0"))
            .into_acceptor()
            .await
            .expect("bind the image server");
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a socket address");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move { stop.cancelled().await },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        Self {
            addr,
            state,
            shutdown,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests `path` received.
    /// Waits until `path` was requested exactly `times` times (`what` names the wait).
    pub async fn wait_for_hits(&self, what: &str, path: &str, times: usize) {
        crate::poll::poll_until(what, Duration::from_secs(30), || async {
            match self.hits(path) {
                n if n == times => Ok(()),
                n => Err(n),
            }
        })
        .await;
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Lets the hanging request to `/slow/…` answer.
    pub fn release(&self) {
        self.state.release.add_permits(1);
    }

    /// From now on `/fail/…` succeeds.
    pub fn heal(&self) {
        self.state.healed.store(true, Ordering::SeqCst);
    }
}
