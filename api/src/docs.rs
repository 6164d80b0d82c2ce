//! The API's documents: the OpenAPI document (`/openapi.json`, committed as
//! `api/openapi.json` for SDKs) and `/docs`, Swagger UI over it.
//!
//! With `AUTH_DOCS_CLIENT_ID`, the page offers sign-in at the issuer: its copy of the
//! document gains an `openIdConnect` scheme naming the issuer's discovery document, accepted
//! wherever the bearer token is, and Swagger UI is told to use the authorization code flow
//! with PKCE (RFC 7636) as that public client. The browser then holds an access token of the
//! issuer's, which the api verifies like any other. The document served at `/openapi.json`
//! (and committed, for SDKs) keeps the bearer scheme only: the issuer is a deployment's
//! setting, not part of the API's contract.

use poem::{Endpoint, EndpointExt, Route, endpoint::make_sync, web::Html};
use serde_json::{Value, json};

use crate::{
    auth::{Auth, AuthSettings},
    cache::ProductCache,
    db,
    metrics::ApiMetrics,
    outbox::OutboxSignal,
    routes::{self, AppState},
};

/// The scheme the docs page adds for sign-in at the issuer.
pub const SIGN_IN: &str = "signIn";

/// The docs routes: the page at `/`, and Swagger UI's own OAuth receiver (its redirect URI)
/// from `swagger_ui`, poem-openapi's docs endpoint for the same document.
pub fn endpoint(
    swagger_html: &str,
    spec: &str,
    auth: &AuthSettings,
    swagger_ui: impl Endpoint + 'static,
) -> Route {
    let page = page(swagger_html, spec, auth);
    Route::new()
        .at("/", make_sync(move |_| Html(page.clone())))
        .at("/oauth-receiver.html", swagger_ui.boxed())
}

/// The page: poem-openapi's Swagger UI for `spec`, with sign-in at the issuer when a docs
/// client is set.
pub fn page(swagger_html: &str, spec: &str, auth: &AuthSettings) -> String {
    let Some(client_id) = &auth.docs_client_id else {
        return swagger_html.to_owned();
    };
    let mut document: Value = serde_json::from_str(spec).expect("the API's own document is JSON");
    document["components"]["securitySchemes"][SIGN_IN] = json!({
        "type": "openIdConnect",
        "openIdConnectUrl": format!(
            "{}/.well-known/openid-configuration",
            auth.issuer.trim_end_matches('/')
        ),
        "description": "Sign in at the issuer (authorization code with PKCE); the access \
                        token is then sent as a bearer token.",
    });
    let scopes: Vec<&str> = auth.docs_scopes.split_whitespace().collect();
    for operation in document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        if let Some(security) = operation.get_mut("security").and_then(Value::as_array_mut) {
            if !security.is_empty() {
                security.push(json!({ SIGN_IN: scopes }));
            }
        }
    }
    let init = json!({
        "clientId": client_id,
        "usePkceWithAuthorizationCodeGrant": true,
        "scopes": auth.docs_scopes,
    });
    let with_document = swagger_html.replacen(spec, &document.to_string(), 1);
    // Swagger UI's redirect URI is the page's address plus `/oauth-receiver.html`; with deep
    // links the address carries a fragment (`#/Users/getMe`) the issuer would not recognise.
    let without_fragment = with_document.replace(
        PAGE_ADDRESS,
        "(window.location.origin + window.location.pathname)",
    );
    let with_handle = without_fragment.replacen(BUNDLE_CALL, "const ui = SwaggerUIBundle({", 1);
    let page = with_handle.replacen(
        BUNDLE_END,
        &format!("    }});\n    ui.initOAuth({init});\n</script>"),
        1,
    );
    assert!(
        page.contains("ui.initOAuth(") && page.contains(SIGN_IN) && page.contains("const ui"),
        "poem-openapi's Swagger UI page changed shape: the docs page cannot offer sign-in"
    );
    page
}

/// How poem-openapi's page reads its own address (to derive the redirect URI).
const PAGE_ADDRESS: &str = "window.location.href";

/// Where poem-openapi's page creates Swagger UI, and where that call ends.
const BUNDLE_CALL: &str = "SwaggerUIBundle({";
const BUNDLE_END: &str = "    })\n</script>";

/// The OpenAPI document as JSON, as `/openapi.json` serves it.
pub fn openapi_json() -> String {
    document_api().spec()
}

/// poem-openapi's Swagger UI page for the document (what `/docs` starts from).
pub fn swagger_html() -> String {
    document_api().swagger_ui_html()
}

/// The API's routes on settings that never connect anywhere: for its documents.
fn document_api() -> routes::Api {
    let pool = db::pool(&db::DatabaseSettings::for_url(
        "postgres://localhost/unused",
    ))
    .expect("a static URL parses");
    let metrics = ApiMetrics::new(&Default::default());
    // No key is ever fetched: the document only names the security scheme.
    let auth = Auth::new(
        AuthSettings::for_issuer("http://127.0.0.1/unused"),
        metrics.auth_keys.clone(),
        metrics.auth_refusals.clone(),
    )
    .expect("a key set with static settings builds");
    routes::api(AppState {
        pool,
        max_images_per_product: 10,
        outbox: OutboxSignal::default(),
        cache: ProductCache::disabled(),
        consumers: Default::default(),
        auth,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html() -> (String, String) {
        let spec = openapi_json();
        (swagger_html(), spec)
    }

    #[test]
    fn without_a_docs_client_the_page_is_swagger_ui_as_poem_openapi_makes_it() {
        let (html, spec) = html();
        let auth = AuthSettings::for_issuer("https://id.example.com");
        assert_eq!(page(&html, &spec, &auth), html);
    }

    #[test]
    fn with_a_docs_client_every_protected_operation_accepts_sign_in_with_pkce() {
        let (html, spec) = html();
        let mut auth = AuthSettings::for_issuer("https://id.example.com/");
        auth.docs_client_id = Some("catalog-swagger".to_owned());
        let page = page(&html, &spec, &auth);
        assert!(page.contains(
            r#""openIdConnectUrl":"https://id.example.com/.well-known/openid-configuration""#
        ));
        assert!(page.contains(r#""usePkceWithAuthorizationCodeGrant":true"#));
        assert!(page.contains(r#""clientId":"catalog-swagger""#));
        assert!(page.contains(r#"{"signIn":["openid","catalog:write"]}"#));
        assert!(
            !page.contains(&spec),
            "the page carries its own copy of the document"
        );
        assert!(
            !page.contains(PAGE_ADDRESS),
            "the redirect URI leaves out the deep link's fragment"
        );
    }
}

#[cfg(test)]
mod document_tests {
    use std::path::Path;

    /// `api/openapi.json` is what client developers generate SDKs from; it must be the
    /// document the code serves. `make openapi` rewrites it.
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = super::openapi_json() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "api/openapi.json differs from the code; run `make openapi` and commit"
        );
    }
}

#[cfg(test)]
mod security_tests {
    use serde_json::Value;

    /// Every operation that takes a token says so and documents its 401 and 403; every
    /// public one documents neither, so a generated client handles exactly what can come.
    #[test]
    fn only_operations_that_take_a_token_declare_401_and_403() {
        let spec: Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let mut seen = 0;
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let secured = operation
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                let responses = &operation["responses"];
                for status in ["401", "403"] {
                    assert_eq!(
                        responses.get(status).is_some(),
                        secured,
                        "{method} {path}: {status} declared iff the operation takes a token"
                    );
                }
                seen += 1;
            }
        }
        assert!(seen >= 8, "the document lists the API's operations");
    }
}
