//! A Redis server of the test's own, for tests that stop and restart it.

use std::{path::Path, process::Child, time::Duration};

use crate::process::{free_port, kill, spawn_listening};

/// `redis-server` on a free port, keeping nothing on disk.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.resume().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port.
    pub async fn resume(&mut self) {
        let port = self.port.to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
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
