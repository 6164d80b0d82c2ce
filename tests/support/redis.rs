//! A Redis server of the test's own, for tests that stop and restart it.

use std::{path::Path, process::Child, time::Duration};

use crate::{
    process::{free_port, kill, spawn_listening},
    tls::TestPki,
};

/// `redis-server` on a free port, keeping nothing on disk.
pub struct OwnRedis {
    pub port: u16,
    /// With TLS: the certificate and key files it presents (no plain port then).
    tls: Option<(String, String)>,
    child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that speaks only TLS, with `pki`'s server certificate.
    pub async fn start_tls(pki: &TestPki) -> Self {
        let file = |path: &Path| path.to_str().unwrap().to_owned();
        Self::start_with(Some((
            file(&pki.server_cert_file),
            file(&pki.server_key_file),
        )))
        .await
    }

    async fn start_with(tls: Option<(String, String)>) -> Self {
        let mut redis = Self {
            port: free_port(),
            tls,
            child: None,
        };
        redis.resume().await;
        redis
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port.
    pub async fn resume(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        match &self.tls {
            None => args.extend(["--port", &port]),
            Some((cert, key)) => args.extend([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-auth-clients",
                "no",
            ]),
        }
        let dir = std::env::temp_dir();
        self.child = Some(
            spawn_listening(
                Path::new("redis-server"),
                &args,
                &dir,
                self.port,
                Duration::from_secs(10),
            )
            .await,
        );
    }

    /// Kills the server.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
