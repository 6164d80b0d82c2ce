//! Child processes of the tests' own (a broker, a Redis server) that listen on a port.

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
