//! Keeps a named background loop running: a panic is logged with the loop's name and the
//! panic's message, counted, and the loop started again after a pause; a loop that returns
//! is done. Without this, a panicking `tokio::spawn`ed loop (a relay, a consumer) would stop
//! silently while the process went on looking healthy.

use std::{future::Future, pin::Pin, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// The label of the restarts counter: which task.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

/// Panics of supervised tasks, by task (`background_task_panics_total`).
pub type TaskPanics = Family<TaskLabels, Counter>;

/// The first pause before a restart; it doubles with each panic in a row, up to a minute, so
/// a loop that panics at once on every start does not spin.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A run that lasted this long was healthy: the next panic pauses briefly again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A long-running task of a service: its name, and how to start it (again, after a panic)
/// under a shutdown token. Its owner runs it with [`Task::supervised`].
pub struct Task {
    name: &'static str,
    start: Box<dyn FnMut(CancellationToken) -> TaskRun + Send>,
}

/// One run of a [`Task`].
type TaskRun = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Task {
    /// A task that `start` begins; what it starts must end once its token is cancelled.
    pub fn new<F, Fut>(name: &'static str, mut start: F) -> Self
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            start: Box::new(move |shutdown| Box::pin(start(shutdown))),
        }
    }

    /// Its name, as logs and `background_task_panics_total{task}` give it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs it until it returns or `shutdown` fires, started again after every panic
    /// (see [`supervise`]).
    pub fn supervised(
        self,
        shutdown: CancellationToken,
        panics: TaskPanics,
    ) -> impl Future<Output = ()> + Send {
        let Self { name, mut start } = self;
        let stop = shutdown.clone();
        supervise(name, shutdown, panics, move || start(stop.clone()))
    }
}

/// Runs `start()` on a task of its own until it returns or `shutdown` fires, starting it
/// again after every panic.
pub async fn supervise<F, Fut>(
    name: impl Into<String>,
    shutdown: CancellationToken,
    panics: TaskPanics,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = name.into();
    let mut pause = Backoff::new(FIRST_PAUSE, LONGEST_PAUSE);
    loop {
        let started = tokio::time::Instant::now();
        let error = match tokio::spawn(start()).await {
            Ok(()) => {
                tracing::info!(task = name, "Background task finished.");
                return;
            }
            Err(error) => error,
        };
        if !error.is_panic() {
            tracing::warn!(task = name, %error, "Background task was cancelled.");
            return;
        }
        let message = panic_message(error.into_panic());
        panics
            .get_or_create(&TaskLabels { task: name.clone() })
            .inc();
        if started.elapsed() >= HEALTHY_RUN {
            pause.reset();
        }
        tracing::error!(
            task = name,
            panic = message,
            restart_in_ms = pause.upcoming().as_millis() as u64,
            "Background task panicked; restarting it."
        );
        if !pause.pause(&shutdown).await {
            return;
        }
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `round()` every `interval`, the first at once, until `shutdown`: the loop of a
/// periodic task (a refresh, a check). A round that overruns delays the next one instead of
/// letting rounds bunch up; a round in progress finishes before shutdown is noticed.
pub async fn every<F, Fut>(interval: Duration, shutdown: &CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => round().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let panics = TaskPanics::default();
        let counted = runs.clone();
        supervise(
            "flaky",
            CancellationToken::new(),
            panics.clone(),
            move || {
                let run = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if run < 2 {
                        panic!("run {run} failed");
                    }
                }
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(
            panics
                .get_or_create(&TaskLabels {
                    task: "flaky".to_owned()
                })
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn shutdown_during_the_pause_stops_the_restarts() {
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let cancel = shutdown.clone();
        supervise("doomed", shutdown, TaskPanics::default(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            cancel.cancel();
            async { panic!("always") }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
