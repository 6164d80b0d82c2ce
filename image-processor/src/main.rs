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
        ["dlq", "redrive", options @ ..] => {
            let options = dlq::RedriveOptions::parse(options)?;
            let group = format!("{}.dlq-redrive", settings.group);
            let done = dlq::redrive_with(&settings.kafka, &group, &options, &mut std::io::stderr())
                .await?;
            let verb = if options.dry_run {
                "Would redrive"
            } else {
                "Redrove"
            };
            eprintln!(
                "{verb} {} dead letter(s) to {}; {} left out by the filter.",
                done.sent,
                settings.kafka.topics().product_events(),
                done.skipped
            );
        }
        _ => anyhow::bail!(
            "usage: image-processor [run] | image-processor dlq list | image-processor dlq redrive \
             [--dry-run] [--product ID] [--reason TEXT] [--since RFC3339] [--rate PER_SECOND] \
             [--page RECORDS]"
        ),
    }
    Ok(())
}
