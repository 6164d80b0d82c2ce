//! `/docs`: Swagger UI over the API's OpenAPI document.
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

use crate::auth::AuthSettings;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn html() -> (String, String) {
        let spec = crate::startup::openapi_json();
        (crate::startup::swagger_html(), spec)
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
