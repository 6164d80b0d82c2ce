//! The processor's command line (`image-processor --help`): `image-processor` (or `run`)
//! runs the consumers; `image-processor dlq list|redrive` inspects and redrives dead letters.

use anyhow::Context;
use clap::{Parser, Subcommand};
use image_processor::{Application, dlq, settings::Settings};

/// The image processor: downloads each product image, stores its compressed ladder and
/// reports the result. Every setting is read from the environment (and from `.env` in the
/// working directory); the README's "Configuration" lists them.
#[derive(Parser)]
#[command(name = "image-processor", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the consumers and the health and metrics server (the default).
    Run,
    /// The dead-letter topic: jobs that failed for good.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List the dead letters, one line each, without consuming them.
    List,
    /// Send dead letters back to the main topic, in order and at a bounded rate; those the
    /// filters leave out stay.
    Redrive(dlq::RedriveOptions),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::env::load_dotenv();
    let command = Cli::parse().command.unwrap_or(Command::Run);
    let _telemetry =
        matches!(command, Command::Run).then(|| platform::telemetry::init("image-processor"));

    let settings = Settings::from_env().context("Invalid settings")?;
    match command {
        Command::Run => {
            settings.log();
            let shutdown = platform::shutdown::on_signal();
            Application::build(&settings)
                .await?
                .run_until(shutdown)
                .await?;
            tracing::info!("Image processor stopped.");
        }
        Command::Dlq(DlqCommand::List) => {
            dlq::list(&settings.kafka, &mut std::io::stdout()).await?
        }
        Command::Dlq(DlqCommand::Redrive(options)) => {
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
    }
    Ok(())
}
