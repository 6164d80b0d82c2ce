//! `/users`: register a user and read one back.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};

use super::{ApiTags, AppState, json_body::JsonBody};
use crate::{
    domain::{Email, Username, Validator},
    error::ApiError,
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

/// A user.
#[derive(Object)]
struct User {
    /// The user's id (a string of digits), used as `user_id` of products.
    user_id: String,
    username: String,
    email: String,
    created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum CreateUserResponse {
    /// The user is registered.
    #[oai(status = 201)]
    Created(Json<User>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum UserResponse {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<User>),
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            user_id: row.id.to_string(),
            username: row.username,
            email: row.email,
            created_at: row.created_at,
        }
    }
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Register a user
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create(&self, body: JsonBody<CreateUser>) -> Result<CreateUserResponse, ApiError> {
        let mut v = Validator::default();
        let username = v.check("username", Username::parse(&body.0.username));
        let email = v.check("email", Email::parse(&body.0.email));
        v.finish().map_err(ApiError::validation)?;
        let (Some(username), Some(email)) = (username, email) else {
            unreachable!("invalid fields were reported above")
        };
        let user = User::from(users::insert(&self.state.pool, &username, &email).await?);
        tracing::info!(user_id = %user.user_id, "User created.");
        let location = format!("/users/{}", user.user_id);
        Ok(CreateUserResponse::Created(Json(user), location))
    }

    /// Get a user
    #[oai(path = "/users/:id", method = "get", operation_id = "getUser")]
    async fn get(
        &self,
        /// The user's id.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<UserResponse, ApiError> {
        let row = users::find(&self.state.pool, id.0).await?;
        match row {
            Some(row) => Ok(UserResponse::Ok(Json(row.into()))),
            None => Err(ApiError::not_found(format!("There is no user {}.", id.0))),
        }
    }
}
