//! `/users`: register a user and read one back.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};

use super::{
    ApiTags, AppState,
    caller::{identity, registered, require_write},
    json_body::JsonBody,
};
use crate::{
    auth::BearerAuth,
    domain::{Email, Username, Validator},
    error::{ApiError, PublicError},
    users::{self, UserRow},
};

/// The user endpoints.
pub struct UsersApi {
    state: AppState,
}

impl UsersApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A new user.
#[derive(Object)]
struct CreateUser {
    /// 3 to 64 letters, digits, `.`, `_` or `-`; unique regardless of case.
    username: String,
    /// Unique regardless of case.
    email: String,
}

/// A user. `email` is shown to the user itself and to admins only.
#[derive(Object)]
struct User {
    /// The user's id (a string of digits), used as `user_id` of products.
    user_id: String,
    username: String,
    /// Present for the user itself (a token of theirs) and for `catalog:admin`.
    #[oai(skip_serializing_if_is_none)]
    email: Option<String>,
    created_at: DateTime<Utc>,
}

impl User {
    /// `row` as `viewer` may see it.
    fn shown(row: UserRow, with_email: bool) -> Self {
        Self {
            user_id: row.id.to_string(),
            username: row.username,
            email: with_email.then_some(row.email),
            created_at: row.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum CreateUserResponse {
    /// The caller is registered as this user.
    #[oai(status = 201)]
    Created(Json<User>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum UserResponse {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<User>),
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Register the caller
    ///
    /// Creates the user the token's identity (issuer and subject) acts as; needs
    /// `catalog:write`. One user per identity: registering again is a 409.
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create(
        &self,
        auth: BearerAuth,
        body: JsonBody<CreateUser>,
    ) -> Result<CreateUserResponse, ApiError> {
        require_write(&auth.0)?;
        let mut v = Validator::default();
        let username = v.check("username", Username::parse(&body.0.username));
        let email = v.check("email", Email::parse(&body.0.email));
        v.finish().map_err(ApiError::validation)?;
        let (Some(username), Some(email)) = (username, email) else {
            unreachable!("invalid fields were reported above")
        };
        let row = users::insert(&self.state.pool, identity(&auth.0), &username, &email).await?;
        let user = User::shown(row, true);
        tracing::info!(user_id = %user.user_id, "User created.");
        let location = format!("/users/{}", user.user_id);
        Ok(CreateUserResponse::Created(Json(user), location))
    }

    /// The caller's own user
    ///
    /// The user the token's identity registered as, with its e-mail address.
    #[oai(path = "/users/me", method = "get", operation_id = "getMe")]
    async fn me(&self, auth: BearerAuth) -> Result<UserResponse, ApiError> {
        match registered(&self.state, &auth.0).await? {
            Some(row) => Ok(UserResponse::Ok(Json(User::shown(row, true)))),
            None => Err(ApiError::not_found(
                "This sign-in has no user yet; POST /users registers it.",
            )),
        }
    }

    /// Get a user
    ///
    /// Public. The e-mail address is included only for a token of that user or of an admin
    /// (`catalog:admin`); without one, or with one that is not valid, it is left out.
    #[oai(path = "/users/:id", method = "get", operation_id = "getUser")]
    async fn get(
        &self,
        request: &poem::Request,
        /// The user's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<UserResponse, PublicError> {
        let Some(row) = users::find(&self.state.pool, id.0).await? else {
            return Err(ApiError::not_found(format!("There is no user {}.", id.0)).into());
        };
        let with_email = match self.state.auth.optional_caller(request).await {
            Some(caller) if caller.is_admin() => true,
            Some(caller) => registered(&self.state, &caller)
                .await?
                .is_some_and(|own| own.id == row.id),
            None => false,
        };
        Ok(UserResponse::Ok(Json(User::shown(row, with_email))))
    }
}
