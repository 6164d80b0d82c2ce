//! The one place where errors become HTTP responses: RFC 7807 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; errors raised by the framework before a handler runs
//! (malformed JSON, a wrong type, an unknown route, an oversized body) are turned into the
//! same shape by [`problem_response`]. A 5xx body never carries internals; the log has the
//! whole cause chain.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};

use crate::domain::FieldError;

/// A problem detail (RFC 7807).
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients can branch on it.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and what to change.
    pub detail: String,
    /// Every field that failed validation; empty when the problem is not about fields.
    /// Always present, as the schema says, so generated clients can rely on it.
    pub errors: Vec<ProblemField>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Object)]
pub struct ProblemField {
    /// The field or parameter, e.g. `product_images[1]`.
    pub field: String,
    /// What is wrong with it and what would be accepted.
    pub message: String,
}

/// Every error response of the API.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: not JSON, a wrong type, a missing or unparseable parameter.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Box<Problem>>),
    /// No valid access token: none was sent, or it is malformed, expired, signed by another
    /// key or meant for another API. `WWW-Authenticate` says what to send.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Box<Problem>>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The token is valid but does not allow this: it lacks the scope the route needs, or the
    /// product belongs to another user.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(
        Json<Box<Problem>>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Box<Problem>>),
    /// The request conflicts with existing data, e.g. a username already taken.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Box<Problem>>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Box<Problem>>),
    /// The body is not `application/json`, or `Content-Type` is missing.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Box<Problem>>),
    /// The request is well-formed but some fields are invalid; `errors` lists each of them.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Box<Problem>>),
    /// An unexpected server error; the cause is logged, not returned.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Box<Problem>>),
    /// A dependency (the database) is unavailable; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Box<Problem>>),
}

/// The errors of a route anyone may call: an [`ApiError`] whose document leaves out the 401
/// and 403 answers, which such a route never gives (a junk `Authorization` header on it is
/// ignored). A generated client then has no auth errors to handle where there are none.
#[derive(Debug)]
pub struct PublicError(pub ApiError);

impl<E> From<E> for PublicError
where
    ApiError: From<E>,
{
    fn from(error: E) -> Self {
        Self(ApiError::from(error))
    }
}

impl ApiResponse for PublicError {
    fn meta() -> poem_openapi::registry::MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses
            .retain(|response| !matches!(response.status, Some(401 | 403)));
        meta
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        ApiError::register(registry);
    }
}

impl IntoResponse for PublicError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<PublicError> for poem::Error {
    fn from(error: PublicError) -> Self {
        error.0.into()
    }
}

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Json<Box<Problem>> {
    Json(Box::new(Problem {
        kind: format!("urn:catalog:problem:{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
        errors: Vec::new(),
    }))
}

fn field_problem(status: StatusCode, errors: Vec<FieldError>) -> Json<Box<Problem>> {
    let detail = match errors.as_slice() {
        [one] => format!("{}: {}", one.field, one.message),
        many => format!("{} fields are invalid; see errors", many.len()),
    };
    let mut body = problem(status, "validation", detail);
    body.0.errors = errors
        .into_iter()
        .map(|e| ProblemField {
            field: e.field,
            message: e.message,
        })
        .collect();
    body
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(problem(StatusCode::BAD_REQUEST, "bad-request", detail))
    }

    /// A 401 for a token that is missing or not valid; the detail says nothing of why (the
    /// log and `auth_refusals_total` do).
    pub fn invalid_token() -> Self {
        Self::Unauthorized(
            problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The access token is missing, malformed, expired or not for this API; \
                 send Authorization: Bearer <access token> from the issuer this API trusts.",
            ),
            r#"Bearer realm="catalog", error="invalid_token""#.to_owned(),
        )
    }

    /// A 403 for a valid token without `scope`.
    pub fn insufficient_scope(scope: &str) -> Self {
        Self::Forbidden(
            problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("This needs an access token with the {scope} scope."),
            ),
            Some(format!(
                r#"Bearer realm="catalog", error="insufficient_scope", scope="{scope}""#
            )),
        )
    }

    /// A 403 for what the caller may not do whatever its token's scopes.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(problem(StatusCode::FORBIDDEN, "forbidden", detail), None)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(problem(StatusCode::NOT_FOUND, "not-found", detail))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(problem(StatusCode::CONFLICT, "conflict", detail))
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            detail,
        ))
    }

    /// A 422 listing every invalid field of a request body.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::Unprocessable(field_problem(StatusCode::UNPROCESSABLE_ENTITY, errors))
    }

    /// A 400 listing every field of a body that has the wrong JSON type or is missing.
    pub fn invalid_body(errors: Vec<FieldError>) -> Self {
        Self::BadRequest(field_problem(StatusCode::BAD_REQUEST, errors))
    }

    /// A 400 listing every invalid query parameter.
    pub fn invalid_query(errors: Vec<FieldError>) -> Self {
        Self::BadRequest(field_problem(StatusCode::BAD_REQUEST, errors))
    }

    /// Logs the cause chain and answers with a body that reveals nothing of it.
    pub fn internal(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "Request failed unexpectedly.");
        Self::Internal(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The server failed to handle the request; it has been logged.",
        ))
    }

    pub fn unavailable(error: anyhow::Error) -> Self {
        tracing::warn!(error = format!("{error:#}"), "Database unavailable.");
        Self::Unavailable(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The database is unavailable; retry later.",
        ))
    }
}

impl ApiError {
    /// 503 for a process that cannot do its work for another reason than the database
    /// (`detail` says which; it must hold nothing a client should not see).
    pub fn not_ready(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::warn!(detail, "Not ready.");
        Self::Unavailable(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            detail,
        ))
    }

    /// The answer for a database error shared by several requests (a single-flight load).
    pub fn from_shared(error: &crate::db::DbError) -> Self {
        use crate::db::DbError;
        match error {
            DbError::Unavailable(e) => Self::unavailable(anyhow::anyhow!("{e:#}")),
            DbError::Conflict(detail) => Self::conflict(detail.clone()),
            DbError::Unprocessable(detail) => Self::unprocessable(detail.clone()),
            DbError::Unreadable(e) | DbError::Other(e) => Self::internal(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(error: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match error {
            DbError::Unavailable(e) => Self::unavailable(e),
            DbError::Conflict(detail) => Self::conflict(detail),
            DbError::Unprocessable(detail) => Self::unprocessable(detail),
            DbError::Unreadable(e) | DbError::Other(e) => Self::internal(e),
        }
    }
}

/// Turns an error raised outside a handler into a problem response. Errors that already are
/// responses (an [`ApiError`] returned by a handler) pass through untouched.
pub fn problem_response(error: poem::Error) -> Response {
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let (kind, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "No such route; see /openapi.json.".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "This route does not accept that method; see /openapi.json.".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", error.to_string()),
        // A protected route without an Authorization header (poem-openapi's extractor).
        StatusCode::UNAUTHORIZED => {
            return ApiError::invalid_token().into_response();
        }
        // The request timeout (middleware::deadline): the message says what to do.
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", error.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            format!("{error}; send the body as application/json."),
        ),
        s if s.is_server_error() => {
            tracing::error!(error = %error, "Request failed unexpectedly.");
            (
                "internal",
                "The server failed to handle the request; it has been logged.".to_owned(),
            )
        }
        _ => ("bad-request", error.to_string()),
    };
    let body = problem(status, kind, detail).0;
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(poem_openapi::types::ToJSON::to_json_string(&body))
}
