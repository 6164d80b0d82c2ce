//! Waiting for something asynchronous: poll it with a deadline, and say what was awaited and
//! what was last seen when the deadline passes. No test sleeps a fixed time and hopes: a
//! fault that must last a given time is held with [`hold_for`], which keeps checking that
//! the fault really bites.

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

/// Keeps a fault in place for `duration`, checking all along that `check` holds (`what`
/// names it): fails at once, with the state seen, when it stops holding.
pub async fn hold_for<S, F, Fut>(what: &str, duration: Duration, mut check: F)
where
    S: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), S>>,
{
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if let Err(seen) = check().await {
            panic!("{what} stopped holding: {seen:#?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await; // the look interval
    }
}
