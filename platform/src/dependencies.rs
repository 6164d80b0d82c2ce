//! Whether each service a process depends on answers, as a gauge Prometheus can alert on
//! (`dependency_up{dependency}`: 1 when the last check succeeded, 0 when it failed or took
//! longer than [`CHECK_TIMEOUT`]).
//!
//! Readiness answers the same question only when an orchestrator asks, and a failed probe
//! leaves no series behind; the gauge is refreshed every [`CHECK_INTERVAL`] whoever asks, so
//! an alert can tell "Redis is unreachable" from "the api is slow" without reading logs.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
};
use tokio_util::sync::CancellationToken;

/// How often every dependency is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// A check that takes longer than this counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The label of `dependency_up`: which dependency (`postgres`, `redis`, `kafka`,
/// `object_store`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

/// `dependency_up`, by dependency.
pub type DependencyUp = Family<DependencyLabels, Gauge>;

/// One check's run.
type CheckRun = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One named check.
type Check = Arc<dyn Fn() -> CheckRun + Send + Sync>;

/// The checks of one process, run every [`CHECK_INTERVAL`] by [`DependencyChecks::run`].
#[derive(Clone)]
pub struct DependencyChecks {
    checks: Vec<(&'static str, Check)>,
    up: DependencyUp,
}

impl DependencyChecks {
    /// No checks yet; results go to `up`.
    pub fn new(up: DependencyUp) -> Self {
        Self {
            checks: Vec::new(),
            up,
        }
    }

    /// Adds the check of `dependency`: `check()` succeeds when it answers.
    pub fn with<F, Fut>(mut self, dependency: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.checks
            .push((dependency, Arc::new(move || Box::pin(check()) as CheckRun)));
        self
    }

    /// Runs every check once, concurrently, and records the results.
    pub async fn check_all(&self) {
        let mut runs = tokio::task::JoinSet::new();
        let mut names = std::collections::HashMap::new();
        for (dependency, check) in &self.checks {
            let (dependency, check) = (*dependency, check.clone());
            let run = runs.spawn(async move {
                let result = tokio::time::timeout(CHECK_TIMEOUT, check()).await;
                let up = matches!(result, Ok(Ok(())));
                if !up {
                    let error = match result {
                        Ok(Err(error)) => format!("{error:#}"),
                        _ => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
                    };
                    tracing::debug!(dependency, error, "Dependency check failed.");
                }
                up
            });
            names.insert(run.id(), dependency);
        }
        while let Some(joined) = runs.join_next_with_id().await {
            // A check that panicked reports its dependency down.
            let (id, up) = match joined {
                Ok((id, up)) => (id, up),
                Err(error) => (error.id(), false),
            };
            if let Some(&dependency) = names.get(&id) {
                self.up
                    .get_or_create(&DependencyLabels { dependency })
                    .set(i64::from(up));
            }
        }
    }

    /// Checks every [`CHECK_INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::supervise::every(CHECK_INTERVAL, &shutdown, || self.check_all()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(up: &DependencyUp, dependency: &'static str) -> i64 {
        up.get_or_create(&DependencyLabels { dependency }).get()
    }

    #[tokio::test]
    async fn a_check_that_fails_or_hangs_reports_down_and_one_that_answers_up() {
        let up = DependencyUp::default();
        let checks = DependencyChecks::new(up.clone())
            .with("answers", || async { Ok(()) })
            .with("fails", || async { anyhow::bail!("refused") })
            .with("hangs", std::future::pending)
            .with("panics", || async { panic!("a bug in the check") });
        // Each was up before: a failed check must bring it down, whatever way it fails.
        for dependency in ["answers", "fails", "hangs", "panics"] {
            up.get_or_create(&DependencyLabels { dependency }).set(1);
        }
        checks.check_all().await;
        assert_eq!(value(&up, "answers"), 1);
        assert_eq!(value(&up, "fails"), 0);
        assert_eq!(value(&up, "hangs"), 0);
        assert_eq!(value(&up, "panics"), 0);
    }
}
