//! The api's command line (`api --help`): `api` (or `api serve`) serves HTTP; `api migrate`
//! applies the migrations and exits; `api openapi` prints the OpenAPI document; `api feed
//! backfill` republishes every product's state on the products topic; `api users link`
//! links a user from before sign-in to its identity.

use anyhow::Context;
use api::{db, docs, feed, settings::Settings, startup, users};
use clap::{Parser, Subcommand};

/// The product catalog's HTTP API. Every setting is read from the environment (and from
/// `.env` in the working directory); the README's "Configuration" lists them.
#[derive(Parser)]
#[command(name = "api", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP, relay the outbox to Kafka and project processed images (the default).
    Serve,
    /// Apply the migrations in schema/ to POSTGRES_URL, then exit.
    Migrate,
    /// Print the OpenAPI document (JSON), then exit.
    Openapi,
    /// The change feed: the compacted products topic.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Users.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Link a user from before sign-in to the identity whose tokens act as it (the `iss` and
    /// `sub` of its access tokens); it then owns its products again.
    Link {
        /// The user's id.
        user_id: i64,
        /// The issuer, exactly as tokens carry it in `iss`.
        #[arg(long)]
        issuer: String,
        /// The subject, as tokens carry it in `sub`.
        #[arg(long)]
        subject: String,
    },
}

#[derive(Subcommand)]
enum FeedCommand {
    /// Republish every product's current state on the products topic through the outbox;
    /// an interrupted run resumes where it stopped.
    Backfill(feed::backfill::BackfillOptions),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::env::load_dotenv();
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", docs::openapi_json());
        return Ok(());
    }
    let _telemetry = platform::telemetry::init("api");
    let settings = Settings::from_env().context("Invalid settings")?;
    settings.log();
    match command {
        Command::Serve => {
            let shutdown = platform::shutdown::on_signal();
            startup::Application::build(&settings)
                .await?
                .run_until(shutdown)
                .await?;
            tracing::info!("API stopped.");
        }
        Command::Migrate => db::migrate(&db::pool(&settings.database)?).await?,
        Command::Users(UsersCommand::Link {
            user_id,
            issuer,
            subject,
        }) => {
            let pool = db::pool(&settings.database)?;
            let identity = users::Identity {
                issuer: &issuer,
                subject: &subject,
            };
            if !users::link(&pool, user_id, identity).await? {
                anyhow::bail!("There is no user {user_id}.");
            }
            eprintln!("User {user_id} is now the user of that identity's tokens.");
        }
        // Printed above, before any setting is read.
        Command::Openapi => {}
        Command::Feed(FeedCommand::Backfill(options)) => {
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
    }
    Ok(())
}
