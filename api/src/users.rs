//! Users in PostgreSQL: the one owner of the `users` table. The routes translate HTTP into
//! these calls. A user registered through the API is bound to the issuer and subject of the
//! token that registered it; users from before sign-in are linked by `api users link`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use crate::{
    db::DbError,
    domain::{Email, Username},
};

/// A row of `users`.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, username, email, created_at";

impl TryFrom<&Row> for UserRow {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Who a user is to the identity provider: the `iss` and `sub` of its access tokens.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
}

/// Registers `identity` as a user; a taken username, e-mail address or identity is a
/// conflict.
#[tracing::instrument(name = "postgres insert user", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "insert user"))]
pub async fn insert(
    pool: &Pool,
    identity: Identity<'_>,
    username: &Username,
    email: &Email,
) -> Result<UserRow, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO users (username, email, issuer, subject) VALUES ($1, $2, $3, $4) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &username.as_str(),
                &email.as_str(),
                &identity.issuer,
                &identity.subject,
            ],
        )
        .await?;
    UserRow::try_from(&row)
}

/// The user `identity` registered as, if it did.
#[tracing::instrument(name = "postgres select user by identity", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "select user by identity"))]
pub async fn find_by_identity(
    pool: &Pool,
    identity: Identity<'_>,
) -> Result<Option<UserRow>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE issuer = $1 AND subject = $2"),
            &[&identity.issuer, &identity.subject],
        )
        .await?;
    row.as_ref().map(UserRow::try_from).transpose()
}

/// Links user `id` (one from before sign-in) to `identity`; false when there is no such
/// user. An identity already linked to another user is a conflict.
pub async fn link(pool: &Pool, id: i64, identity: Identity<'_>) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE users SET issuer = $2, subject = $3, updated_at = now() WHERE id = $1",
            &[&id, &identity.issuer, &identity.subject],
        )
        .await?;
    Ok(changed == 1)
}

#[tracing::instrument(name = "postgres select user", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "select user"))]
pub async fn find(pool: &Pool, id: i64) -> Result<Option<UserRow>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(UserRow::try_from).transpose()
}
