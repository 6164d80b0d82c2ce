//! Probes: `/healthz` says the process is alive, `/readyz` that it can serve (the database
//! answers). An orchestrator restarts on the first and stops routing on the second.

use std::time::Duration;

use platform::kafka::watchdog::Trouble;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, AppState};
use crate::error::{ApiError, PublicError};

/// The health endpoints.
pub struct HealthApi {
    state: AppState,
}

impl HealthApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A probe's verdict.
#[derive(Object)]
struct Health {
    /// `ok`.
    status: String,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// Healthy.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

fn ok() -> HealthResponse {
    HealthResponse::Ok(Json(Health {
        status: "ok".into(),
    }))
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process serves HTTP at all.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthResponse {
        ok()
    }

    /// Readiness
    ///
    /// 200 when the database answers within two seconds, 503 otherwise.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self) -> Result<HealthResponse, PublicError> {
        // A projector group that does not move leaves every product's images pending. A
        // broker that is away is not counted: writes go on into the outbox meanwhile.
        let stuck: Vec<String> = self
            .state
            .consumers
            .troubles()
            .into_iter()
            .filter(|(_, trouble)| *trouble == Trouble::Stuck)
            .map(|(consumer, _)| consumer)
            .collect();
        if !stuck.is_empty() {
            return Err(ApiError::not_ready(format!(
                "The {} consumer group made no progress with records waiting; it is being \
                 recreated.",
                stuck.join(", ")
            ))
            .into());
        }
        let check = async {
            let client = self.state.pool.get().await?;
            client.query_one("SELECT 1", &[]).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(())) => Ok(ok()),
            Ok(Err(e)) => Err(ApiError::unavailable(e).into()),
            Err(_) => Err(ApiError::unavailable(anyhow::anyhow!(
                "the database did not answer within 2s"
            ))
            .into()),
        }
    }
}
