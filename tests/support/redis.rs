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

    /// Runs one command with redis-cli (plain servers only) and returns its output.
    pub fn command(&self, args: &[&str]) -> String {
        assert!(
            self.tls.is_none(),
            "redis-cli is used on plain servers only"
        );
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8(output.stdout).expect("redis-cli prints text")
    }

    /// Closes, from the server's side, every connection that has key tracking on; returns
    /// how many there were.
    pub fn kill_tracking_connections(&self) -> usize {
        let tracking: Vec<String> = self
            .command(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| {
                line.split(' ').any(|field| {
                    field
                        .strip_prefix("flags=")
                        .is_some_and(|f| f.contains('t'))
                })
            })
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect();
        for id in &tracking {
            self.command(&["CLIENT", "KILL", "ID", id]);
        }
        tracking.len()
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
