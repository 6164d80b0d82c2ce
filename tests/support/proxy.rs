//! A TCP proxy of the test's own in front of a server (Redis), that can black-hole the link:
//! connections stay open and nothing gets through either way, as in a network partition,
//! until the link is restored; bytes sent meanwhile are held, not lost (TCP retransmits
//! them once the path is back).

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

/// A running proxy; stopped when dropped.
pub struct StallProxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    /// Cancelled to cut the connections open now (see `reset`); replaced by a fresh one.
    connections: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    shutdown: CancellationToken,
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl StallProxy {
    /// Listens on a free port of 127.0.0.1 and relays to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, watch) = watch::channel(true);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(shutdown.child_token()));
        let current = connections.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let cut = current.lock().unwrap().clone();
                tokio::spawn(pump(client_read, server_write, watch.clone(), cut.clone()));
                tokio::spawn(pump(server_read, client_write, watch.clone(), cut));
            }
        });
        Self {
            addr,
            open,
            connections,
            shutdown,
        }
    }

    /// Nothing gets through from now on, in either direction.
    pub fn black_hole(&self) {
        self.open.send_replace(false);
    }

    /// Cuts every connection open now, with whatever bytes it held (as when a partition ends
    /// in resets); later connections get through as usual.
    pub fn reset(&self) {
        let mut current = self.connections.lock().unwrap();
        current.cancel();
        *current = self.shutdown.child_token();
    }

    /// Everything held and everything new gets through again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// Copies `from` to `to` while the link is open; holds the bytes while it is not.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        // Not reading while black-holed leaves the bytes in the kernel's buffers, as a
        // partition leaves them with the sender.
        tokio::select! {
            () = stop.cancelled() => return,
            opened = open.wait_for(|open| *open) => if opened.is_err() { return },
        }
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = from.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            opened = open.wait_for(|open| *open) => if opened.is_err() { return },
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
