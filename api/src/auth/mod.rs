//! Sign-in: the api is an OAuth 2.0 resource server that trusts the access tokens of one
//! OpenID Connect issuer (`AUTH_ISSUER`): Keycloak, Auth0, Entra ID, Cognito, Zitadel, Dex,
//! or the local provider `make run` starts.
//!
//! A protected route takes [`BearerAuth`]: `Authorization: Bearer <JWT>` only (a token in
//! the query string is refused, RFC 6750 §2.3 is not offered), verified by [`Verifier`]
//! against the issuer's key set ([`keys`]). A missing or invalid token is a 401 with
//! `WWW-Authenticate`; a valid token without the scope or ownership a route needs is a 403;
//! while no key set was ever loaded, protected routes answer 503 (the token may be valid)
//! and public ones go on. What a route allows is decided by the route with [`Caller`]; who
//! owns a product is checked by `products::store` inside the transaction that writes it.

pub mod keys;
pub mod settings;
pub mod verify;

use std::sync::Arc;

use poem::{Request, http::header::AUTHORIZATION};
use poem_openapi::{SecurityScheme, auth::Bearer};
use prometheus_client::metrics::{counter::Counter, family::Family};

pub use self::{
    settings::AuthSettings,
    verify::{ADMIN, Caller, Refusal, Verifier, WRITE},
};
use crate::error::ApiError;

/// Labels of the refusals counter: why (a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Every reason a token is refused for, as `auth_refusals_total` counts them (each starts at
/// 0, so the family is exported before the first refusal).
pub const REFUSAL_REASONS: [&str; 19] = [
    "missing",
    "malformed",
    "token_type",
    "header",
    "algorithm",
    "key_id",
    "unknown_key",
    "signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "issuer",
    "audience",
    "claims",
    "subject",
    "too_long",
    "two_headers",
    "query_token",
    "keys_unavailable",
];

/// What the checker needs: the verifier, and where it counts refusals.
#[derive(Clone)]
pub struct Auth {
    pub verifier: Arc<Verifier>,
    pub refusals: Family<ReasonLabels, Counter>,
}

impl Auth {
    /// Trusts the issuer of `settings`; nothing is fetched until [`keys::KeySet::keep_fresh`]
    /// runs or a token needs a key.
    pub fn new(
        settings: AuthSettings,
        key_metrics: keys::KeyMetrics,
        refusals: Family<ReasonLabels, Counter>,
    ) -> anyhow::Result<Self> {
        let keys = Arc::new(keys::KeySet::new(settings.clone(), key_metrics)?);
        for reason in REFUSAL_REASONS {
            let _ = refusals.get_or_create(&ReasonLabels { reason });
        }
        Ok(Self {
            verifier: Arc::new(Verifier::new(settings, keys)),
            refusals,
        })
    }

    /// The caller of `request` when it carries a valid token; `None` otherwise (no token, a
    /// bad one, keys not loaded). For public routes that show more to a signed-in caller.
    pub async fn optional_caller(&self, request: &Request) -> Option<Caller> {
        let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let token = header.strip_prefix("Bearer ")?;
        self.verifier.verify(token.trim()).await.ok()
    }

    async fn check(&self, request: &Request, bearer: Bearer) -> Result<Caller, ApiError> {
        if request.headers().get_all(AUTHORIZATION).iter().count() > 1 {
            return Err(self.refuse(
                "two_headers",
                ApiError::bad_request("Send one Authorization header."),
            ));
        }
        if request.uri().query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
        }) {
            return Err(self.refuse("query_token", ApiError::bad_request(
                "Send the token in the Authorization header, never in the URL (where logs keep it).",
            )));
        }
        match self.verifier.verify(bearer.token.trim()).await {
            Ok(caller) => Ok(caller),
            Err(Refusal::Invalid(reason)) => {
                tracing::info!(reason, "Access token refused.");
                Err(self.refuse(reason, ApiError::invalid_token()))
            }
            Err(Refusal::KeysUnavailable) => Err(self.refuse(
                "keys_unavailable",
                ApiError::not_ready(
                    "The identity provider's keys are not loaded yet, so no token can be checked; retry later.",
                ),
            )),
        }
    }

    fn refuse(&self, reason: &'static str, error: ApiError) -> ApiError {
        debug_assert!(
            REFUSAL_REASONS.contains(&reason),
            "{reason} is listed in REFUSAL_REASONS"
        );
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
        error
    }
}

/// An OAuth 2.0 access token from the issuer the api trusts (`Authorization: Bearer`).
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "authenticate"
)]
pub struct BearerAuth(pub Caller);

async fn authenticate(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let Some(auth) = request.data::<Auth>() else {
        return Err(ApiError::internal(anyhow::anyhow!("the endpoint has no Auth data")).into());
    };
    auth.check(request, bearer).await.map_err(Into::into)
}
