//! The HTTP server: the poem application on hyper, with the limits a server facing the
//! internet needs and poem's own server does not offer.
//!
//! - A cap on open connections (`HTTP_MAX_CONNECTIONS`): past it, new connections wait in the
//!   kernel's accept queue instead of taking file descriptors and memory.
//! - A header-read timeout (`HTTP_HEADER_READ_TIMEOUT_SECS`): an HTTP/1 client that has not
//!   sent a whole request head within it is disconnected, however slowly it trickles bytes
//!   (slowloris). The same clock runs between keep-alive requests.
//! - An idle timeout (`HTTP_IDLE_TIMEOUT_SECS`): a connection, HTTP/1 or HTTP/2, on which no
//!   byte moved for that long is closed.
//! - A request timeout (`REQUEST_TIMEOUT_SECS`, applied by the middleware in
//!   [`crate::middleware::deadline`]): a request, body included, answers within it.
//!
//! Shutdown: stop accepting, let every connection finish its requests within the grace period.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Endpoint,
    endpoint::BoxEndpoint,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The longest a request may take, reading its body included (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// The longest an HTTP/1 client may take to send a request head
    /// (`HTTP_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (`HTTP_IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// The most connections open at once (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then waits up to `grace` for the open
/// connections to finish what they are doing.
pub async fn serve(
    listener: TcpListener,
    app: BoxEndpoint<'static>,
    settings: HttpSettings,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let app = Arc::new(app);
    let max = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    let mut warned_full = false;
    loop {
        let slot = if let Ok(slot) = slots.clone().try_acquire_owned() {
            warned_full = false;
            slot
        } else {
            if !warned_full {
                tracing::warn!(
                    max_connections = max,
                    "Connection limit reached; new connections wait to be accepted."
                );
                warned_full = true;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            }
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, or the connection was reset while queued: the
                // listener itself is fine. Pause briefly so an EMFILE does not spin.
                tracing::warn!(%error, "Failed to accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, settings, shutdown) = (app.clone(), settings.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve_connection(stream, local, remote, app, &settings, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every connection gives its slot back when it ends: all slots back means all done.
    if tokio::time::timeout(grace, slots.acquire_many(max))
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "Connections still open after the shutdown grace period."
        );
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    app: Arc<BoxEndpoint<'static>>,
    settings: &HttpSettings,
    shutdown: CancellationToken,
) {
    stream.set_nodelay(true).ok();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let req = poem::Request::from((
                req,
                LocalAddr(local.into()),
                RemoteAddr(remote.into()),
                poem::http::uri::Scheme::HTTP,
            ));
            let response = app.get_response(req).await;
            Ok::<_, std::convert::Infallible>(hyper::Response::from(response))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle = settings.idle_timeout;
    tokio::select! {
        _ = connection.as_mut() => return,
        () = activity.idle_for(idle) => {
            tracing::debug!(%remote, idle_secs = idle.as_secs(), "Closing an idle connection.");
        }
        () = shutdown.cancelled() => {}
    }
    // Finish the requests under way (bounded by the request timeout), take no new ones.
    connection.as_mut().graceful_shutdown();
    connection.await.ok();
}

/// When a connection last moved a byte.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A socket that records its activity.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
