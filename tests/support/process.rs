//! Child processes of the tests' own (a broker, a Redis server, the api binary) that listen
//! on a port.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::poll::poll_until;

/// A free port on 127.0.0.1 (bound once, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `program` with `args` in `dir` and waits until it accepts connections on `port`.
pub async fn spawn_listening(
    program: &Path,
    args: &[&str],
    dir: &Path,
    port: u16,
    within: Duration,
) -> Child {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts (make test installs it): {e}", program.display()));
    let what = format!("{} on port {port}", program.display());
    poll_until(&what, within, || async {
        TcpStream::connect(("127.0.0.1", port))
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    child
}

/// A binary of the workspace (`api`, `image-processor`), built beside the test binaries
/// (`cargo build --bins`; `make test` does it).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = debug.join(name);
    assert!(
        binary.exists(),
        "{} is built (cargo build --bins; make test does it)",
        binary.display()
    );
    binary
}

/// Kills the child, as a crash would, and reaps it.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The api binary on `database_url` and `kafka`'s brokers and topics, with no cache, on a
/// free port and a projector group of its own; returns the child and its base URL.
pub fn api_binary(database_url: &str, kafka: &platform::kafka::KafkaSettings) -> (Child, String) {
    let group = format!("projector-{}", uuid::Uuid::new_v4().simple());
    api_binary_in(database_url, kafka, &group)
}

/// Like [`api_binary`], projecting in `projector_group` as `kafka.group_instance_id` (when
/// set): a replica that replaces a killed one, as a restarted pod would.
pub fn api_binary_in(
    database_url: &str,
    kafka: &platform::kafka::KafkaSettings,
    projector_group: &str,
) -> (Child, String) {
    let port = free_port();
    let mut command = Command::new(workspace_binary("api"));
    if let Some(instance) = &kafka.group_instance_id {
        command.env("KAFKA_GROUP_INSTANCE_ID", instance);
    }
    let child = command
        .current_dir(std::env::temp_dir())
        .env("API_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("POSTGRES_URL", database_url)
        .env("KAFKA_BROKERS", &kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &kafka.topic_prefix)
        .env("KAFKA_TOPIC_PARTITIONS", kafka.partitions.to_string())
        .env("PROJECTOR_GROUP", projector_group)
        .env("CACHE_ENABLED", "false")
        .env("AUTH_ISSUER", &crate::auth::TestIssuer::shared().url)
        .env("AUTH_AUDIENCE", crate::auth::AUDIENCE)
        .env("IMAGE_STORAGE_URL", "memory://")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::inherit())
        .spawn()
        .expect("the api binary starts");
    (child, format!("http://127.0.0.1:{port}"))
}

/// Waits until the api at `base` answers `/readyz` with 200.
pub async fn wait_until_ready(http: &reqwest::Client, base: &str) {
    poll_until(
        "the api binary to be ready",
        Duration::from_secs(30),
        || {
            let url = format!("{base}/readyz");
            let http = http.clone();
            async move {
                match http.get(url).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
}

/// Sends SIGKILL, as the kernel's OOM killer or a lost node would, and reaps the child.
pub fn kill_9(child: &mut Child) {
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
}

/// A child process that is killed when its owner goes, however the test ends (a failed
/// assertion included), so that none outlives its test.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGKILL and reaps the child (see [`kill_9`]).
    pub fn kill_9(&mut self) {
        kill_9(&mut self.0);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
