//! `api` serves HTTP; `api migrate` applies the migrations and exits; `api openapi` prints
//! the OpenAPI document.

use anyhow::Context;
use api::{db, settings::Settings, startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::env::load_dotenv();
    let command = std::env::args().nth(1);
    if command.as_deref() == Some("openapi") {
        println!("{}", startup::openapi_json());
        return Ok(());
    }
    let _telemetry = platform::telemetry::init("api");
    let settings = Settings::from_env().context("Invalid settings")?;
    settings.log();
    match command.as_deref() {
        None | Some("serve") => {
            let shutdown = platform::shutdown::on_signal();
            startup::Application::build(&settings)
                .await?
                .run_until(shutdown)
                .await?;
            tracing::info!("API stopped.");
        }
        Some("migrate") => db::migrate(&db::pool(&settings.database)?).await?,
        Some(other) => anyhow::bail!("unknown command {other:?}; use serve, migrate or openapi"),
    }
    Ok(())
}
