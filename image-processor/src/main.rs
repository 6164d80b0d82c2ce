//! `image-processor` runs the consumers; `image-processor dlq list|redrive` inspects and
//! redrives dead letters.

use anyhow::Context;
use image_processor::{dlq, http, settings::Settings, worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::env::load_dotenv();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _telemetry =
        (args.first() != Some(&"dlq")).then(|| platform::telemetry::init("image-processor"));

    let settings = Settings::from_env().context("Invalid settings")?;
    match args.as_slice() {
        [] | ["run"] => {
            settings.log();
            let shutdown = platform::shutdown::on_signal();
            let worker = worker::Worker::build(&settings)?;
            http::serve(settings.http_addr, worker.clone(), shutdown.clone()).await?;
            worker::run(worker, &settings.kafka, &settings.group, shutdown).await?;
            tracing::info!("Image processor stopped.");
        }
        ["dlq", "list"] => dlq::list(&settings.kafka, &mut std::io::stdout()).await?,
        ["dlq", "redrive"] => {
            let count =
                dlq::redrive(&settings.kafka, &format!("{}.dlq-redrive", settings.group)).await?;
            eprintln!(
                "Redrove {count} dead letter(s) to {}.",
                settings.kafka.topics().product_events()
            );
        }
        _ => anyhow::bail!(
            "usage: image-processor [run] | image-processor dlq list | image-processor dlq redrive"
        ),
    }
    Ok(())
}
