//! `api` serves HTTP; `api migrate` applies the migrations and exits; `api openapi` prints
//! the OpenAPI document; `api feed backfill` republishes every product's state on the
//! products topic.

use anyhow::Context;
use api::{db, feed, settings::Settings, startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::env::load_dotenv();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = args.first().copied();
    if command == Some("openapi") {
        println!("{}", startup::openapi_json());
        return Ok(());
    }
    let _telemetry = platform::telemetry::init("api");
    let settings = Settings::from_env().context("Invalid settings")?;
    settings.log();
    match command {
        None | Some("serve") => {
            let shutdown = platform::shutdown::on_signal();
            startup::Application::build(&settings)
                .await?
                .run_until(shutdown)
                .await?;
            tracing::info!("API stopped.");
        }
        Some("migrate") => db::migrate(&db::pool(&settings.database)?).await?,
        Some("feed") if args.get(1) == Some(&"backfill") => {
            let options = feed::backfill::BackfillOptions::parse(&args[2..])?;
            let pool = db::pool(&settings.database)?;
            let done = feed::backfill::run(&pool, &options, &mut std::io::stderr()).await?;
            eprintln!(
                "Backfill run {} {}: {} products' states are in the outbox; the api's relay \
                 publishes them to {}.",
                done.run,
                if done.resumed {
                    "resumed and finished"
                } else {
                    "finished"
                },
                done.products,
                settings.kafka.as_ref().map_or_else(
                    || "the products topic".to_owned(),
                    |k| k.topics().products()
                ),
            );
        }
        Some(other) => anyhow::bail!(
            "unknown command {other:?}; use serve, migrate, openapi or \
             feed backfill [--rate PER_SECOND] [--batch N] [--restart]"
        ),
    }
    Ok(())
}
