//! The PostgreSQL pool, the migrations in `schema/`, and the mapping of database errors to
//! what they mean for a client.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, config::SslMode, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

mod embedded {
    refinery::embed_migrations!("../schema");
}

/// Connection settings for PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The most connections this process holds.
    pub pool_size: usize,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
    /// A PEM file of the CA certificates the server's certificate must chain to, instead of
    /// the system's (`POSTGRES_TLS_CA_FILE`), e.g. a cloud provider's database CA bundle.
    pub tls_ca_file: Option<PathBuf>,
}

impl DatabaseSettings {
    /// Settings for `url` with the defaults of `POSTGRES_POOL_SIZE` and friends.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }
}

/// Builds the pool; no connection is made until the first query.
///
/// TLS follows `sslmode` in the URL. Without one the connection is plain, as before: the
/// libpq default (`prefer`) would try TLS first, and a local server with a self-signed
/// certificate would then fail verification. `sslmode=require` (or `prefer`) encrypts and
/// verifies the server's certificate and host name against `tls_ca_file` or, without one,
/// the system's roots: stricter than libpq's `require`, which checks neither.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = settings
        .url
        .parse()
        .context("POSTGRES_URL is not a valid PostgreSQL URL")?;
    if !settings.url.contains("sslmode=") {
        config.ssl_mode(SslMode::Disable);
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match config.get_ssl_mode() {
        SslMode::Disable => Manager::from_config(config, NoTls, manager_config),
        _ => Manager::from_config(
            config,
            MakeRustlsConnect::new(platform::tls::client_config(
                settings.tls_ca_file.as_deref(),
                "POSTGRES_TLS_CA_FILE",
            )?),
            manager_config,
        ),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.acquire_timeout))
        .recycle_timeout(Some(settings.acquire_timeout))
        .build()
        .context("Failed to build the PostgreSQL pool")
}

/// Applies the migrations in `schema/` that have not run yet. An advisory lock makes replicas
/// that start together take turns instead of racing.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    const LOCK: i64 = 0x0063_6174_616c_6f67; // "catalog"
    let mut client = pool
        .get()
        .await
        .context("Failed to connect to PostgreSQL")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .context("Failed to take the migration lock")?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await
        .context("Failed to apply migrations");
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .context("Failed to release the migration lock")?;
    let applied = report?.applied_migrations().len();
    tracing::info!(applied, "Migrations applied.");
    Ok(())
}

/// What a failed query means for the request that made it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: a 503, the client may retry.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A unique constraint was violated; the message names what is taken.
    #[error("{0}")]
    Conflict(String),
    /// The data refers to something that does not exist or breaks a check.
    #[error("{0}")]
    Unprocessable(String),
    /// A stored value this version cannot read: a 500 for what holds it, never a guess.
    #[error(transparent)]
    Unreadable(anyhow::Error),
    /// Anything else: a bug or an outage mid-query.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<PoolError> for DbError {
    fn from(error: PoolError) -> Self {
        Self::Unavailable(anyhow::Error::new(error).context("Failed to get a database connection"))
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            // A closed connection or an I/O error: the database went away mid-query.
            return Self::Unavailable(error.into());
        };
        let constraint = db.constraint().unwrap_or_default();
        match *db.code() {
            SqlState::UNIQUE_VIOLATION => Self::Conflict(match constraint {
                "users_username_key" => "That username is already taken.".into(),
                "users_email_key" => "That e-mail address is already registered.".into(),
                "users_identity_key" => {
                    "This sign-in is already registered; GET /users/me shows its user.".into()
                }
                other => format!("A record with the same unique value exists ({other})."),
            }),
            SqlState::FOREIGN_KEY_VIOLATION => Self::Unprocessable(match constraint {
                "products_user_id_fkey" => {
                    "The user does not exist; create it with POST /users first.".into()
                }
                other => format!("A referenced record does not exist ({other})."),
            }),
            SqlState::CHECK_VIOLATION | SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                Self::Unprocessable(format!("A value is out of range ({constraint})."))
            }
            _ => Self::Other(error.into()),
        }
    }
}
