//! Users in PostgreSQL: the one owner of the `users` table. The routes translate HTTP into
//! these calls.

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

/// Registers a user; a taken username or e-mail address is a conflict.
#[tracing::instrument(name = "postgres insert user", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "insert user"))]
pub async fn insert(pool: &Pool, username: &Username, email: &Email) -> Result<UserRow, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!("INSERT INTO users (username, email) VALUES ($1, $2) RETURNING {COLUMNS}"),
            &[&username.as_str(), &email.as_str()],
        )
        .await?;
    UserRow::try_from(&row)
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
