//! What a route needs to know of its caller beyond the token: the scope it demands, and the
//! user the token's identity registered as.

use crate::{
    auth::{ADMIN, Caller, WRITE},
    db::DbError,
    error::ApiError,
    products::Actor,
    users::{self, Identity, UserRow},
};

use super::AppState;

/// The token's issuer and subject.
pub fn identity(caller: &Caller) -> Identity<'_> {
    Identity {
        issuer: &caller.issuer,
        subject: &caller.subject,
    }
}

/// A 403 unless the caller may write (`catalog:write`, or `catalog:admin`).
pub fn require_write(caller: &Caller) -> Result<(), ApiError> {
    if caller.has(WRITE) || caller.has(ADMIN) {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope(WRITE))
    }
}

/// The user the caller registered as, if it did.
pub async fn registered(state: &AppState, caller: &Caller) -> Result<Option<UserRow>, DbError> {
    users::find_by_identity(&state.pool, identity(caller)).await
}

/// Who the caller acts as on an existing product: any product for an admin, its own for a
/// registered user; a caller that never registered owns nothing.
pub async fn actor(state: &AppState, caller: &Caller) -> Result<Actor, ApiError> {
    require_write(caller)?;
    if caller.is_admin() {
        return Ok(Actor::Admin);
    }
    match registered(state, caller).await? {
        Some(user) => Ok(Actor::User(user.id)),
        None => Err(not_registered()),
    }
}

/// The 403 of a caller that acts as a user before registering.
pub fn not_registered() -> ApiError {
    ApiError::forbidden("Register first: POST /users with this token creates your user.")
}
