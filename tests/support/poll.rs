//! Waiting for something asynchronous: poll it with a deadline, and say what was awaited and
//! what was last seen when the deadline passes. No test sleeps a fixed time and hopes.

use std::{
    fmt::Debug,
    future::Future,
    time::{Duration, Instant},
};

/// How long to wait between two looks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok`, for at most `within`; then fails with `what` and the
/// last `Err` (the state seen).
pub async fn poll_until<T, S, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    S: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("waited {within:?} for {what}; last seen: {last:#?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await, // the poll interval
        }
    }
}
