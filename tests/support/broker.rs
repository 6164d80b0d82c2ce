//! A tansu broker of the test's own, for tests that stop and restart the broker (the shared
//! one serves every other test and must stay up).

use std::{path::PathBuf, process::Child, time::Duration};

use crate::process::{free_port, kill, spawn_listening};

/// A broker on a free port with its data in a temporary directory.
pub struct OwnBroker {
    pub brokers: String,
    /// Where it listens.
    pub port: u16,
    /// The port it tells clients to connect to: its own, or a front's (see `start_behind`).
    advertised_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn tansu() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/tansu");
    if home.exists() {
        home
    } else {
        PathBuf::from("tansu")
    }
}

impl OwnBroker {
    pub async fn start() -> Self {
        let port = free_port();
        Self::start_on(port, port).await
    }

    /// A broker that tells clients to connect to `advertised_port`, where a front of the
    /// test's (e.g. a TLS front) relays to the broker's own port.
    pub async fn start_behind(advertised_port: u16) -> Self {
        Self::start_on(free_port(), advertised_port).await
    }

    async fn start_on(port: u16, advertised_port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("catalog-tansu-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self {
            brokers: format!("127.0.0.1:{advertised_port}"),
            port,
            advertised_port,
            dir,
            child: None,
        };
        broker.resume().await;
        broker
    }

    /// Starts the broker process on the same port and data. The SQLite path is relative to
    /// the working directory: an absolute sqlite:/// path is mangled (ARCHITECTURE.md).
    pub async fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let args = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "sqlite://tansu.db",
        ];
        self.child = Some(
            spawn_listening(
                &tansu(),
                &args,
                &self.dir,
                self.port,
                Duration::from_secs(30),
            )
            .await,
        );
        index_headers(&self.dir).await;
    }

    /// Kills the broker, as a crash would.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing answers, as with a
    /// broker stuck in a long GC pause or a stalled disk.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn unpause(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the broker runs").id();
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid}");
    }
}

/// Gives the broker's storage the index the local stack gives it (scripts/tansu-index.py):
/// without it a fetch's cost grows with every header ever written.
pub async fn index_headers(dir: &std::path::Path) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tansu-index.py");
    let db = dir.join("tansu.db");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(db)
            .status()
    })
    .await
    .unwrap()
    .expect("python3 runs scripts/tansu-index.py");
    assert!(
        status.success(),
        "scripts/tansu-index.py indexed the broker's headers"
    );
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.unpause();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
