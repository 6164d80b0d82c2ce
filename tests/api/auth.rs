//! Who may do what, and the attacks a token verifier must withstand: each answered 401, 403
//! or 400 as stated, never a 500, with nothing written (database, outbox, cache).

use std::sync::atomic::Ordering;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use system_tests::{
    TestApp,
    auth::{TestIssuer, es256_key, now},
    expect_problem, spawn_app, spawn_app_with,
};

const WRITE: &str = "catalog:write";

/// An app with a user `alice` who owns one product; returns the app, her id and the product.
async fn with_alices_product() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let alice = app.create_user("alice").await;
    let product = app.create_product(&alice, "Lamp", 10.0).await;
    (app, alice, product)
}

async fn status_of_post(app: &TestApp, token: &str) -> u16 {
    let body = json!({"product_name": "x", "product_images": ["https://a.example/1.jpg"], "product_price": 1});
    let response = app.post_as("/products", &body, token).await;
    response.status().as_u16()
}

/// Asserts `token` is refused with a 401 that says how to authenticate.
async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let body = json!({"product_name": "x", "product_images": ["https://a.example/1.jpg"], "product_price": 1});
    let response = app.post_as("/products", &body, token).await;
    assert_eq!(response.status(), 401, "{what}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    let problem = expect_problem(response, 401).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains(token),
        "{what}: token echoed"
    );
}

fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(header), part(claims))
}

#[tokio::test]
async fn public_routes_need_no_token_and_ignore_a_junk_one() {
    let (app, alice, product) = with_alices_product().await;
    for path in [
        format!("/products/{product}"),
        format!("/products?user_id={alice}"),
        format!("/users/{alice}"),
        "/openapi.json".to_owned(),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
        let junk = app.get_as(&path, "not-a-token").await;
        assert_eq!(junk.status(), 200, "{path} with a junk token");
    }
}

#[tokio::test]
async fn protected_routes_without_a_token_are_401_with_a_challenge() {
    let (app, _, product) = with_alices_product().await;
    let http = &app.anonymous;
    let requests = [
        http.post(app.url("/products")).json(&json!({})),
        http.post(app.url("/users")).json(&json!({})),
        http.get(app.url("/users/me")),
        http.patch(app.url(&format!("/products/{product}")))
            .json(&json!({"product_price": 2})),
        http.delete(app.url(&format!("/products/{product}"))),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        expect_problem(response, 401).await;
    }
    let metrics = app.text_of(&app.metrics_url).await;
    assert!(
        metrics.contains(r#"auth_refusals_total{reason="missing"} 5"#),
        "each request without a token is counted: {metrics}"
    );
}

#[tokio::test]
async fn only_the_owner_or_an_admin_changes_a_product_and_a_refusal_writes_nothing() {
    let (app, _, product) = with_alices_product().await;
    let mallory = app.create_user("mallory").await;
    let mallorys = app.token_of_user(&mallory).await;
    let before = app.product(&product).await;
    let outbox = app.count("outbox").await;
    let path = format!("/products/{product}");
    let patch = app
        .patch_as(&path, &json!({"product_price": 0.01}), &mallorys)
        .await;
    expect_problem(patch, 403).await;
    let delete = app.delete_as(&path, &mallorys).await;
    expect_problem(delete, 403).await;
    assert_eq!(
        app.product(&product).await,
        before,
        "the product is unchanged"
    );
    assert_eq!(
        app.count("outbox").await,
        outbox,
        "no event, no feed record"
    );

    // An admin may; so may the owner.
    let admin = app.admin_token();
    let patched = app
        .patch_as(&path, &json!({"product_price": 2}), &admin)
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(
        app.patch(&path, &json!({"product_price": 3}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_product_is_created_for_the_caller_and_only_an_admin_names_another_owner() {
    let (app, alice, _) = with_alices_product().await;
    let bob = app.create_user("bob").await;
    let bobs = app.token_of_user(&bob).await;
    let body = |owner: Option<&str>| {
        let mut body = json!({"product_name": "Chair", "product_images": ["https://a.example/c.jpg"], "product_price": 5});
        if let Some(owner) = owner {
            body["user_id"] = json!(owner);
        }
        body
    };
    // Omitted: the caller's own user.
    let created = app.post_as("/products", &body(None), &bobs).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["product_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.product(&id).await["user_id"], bob);
    // For someone else: refused for a writer, done for an admin.
    expect_problem(
        app.post_as("/products", &body(Some(&alice)), &bobs).await,
        403,
    )
    .await;
    let by_admin = app
        .post_as("/products", &body(Some(&alice)), &app.admin_token())
        .await;
    assert_eq!(by_admin.status(), 201);
    // A token without catalog:write writes nothing.
    let reader = app.issuer.token("reader", &["openid"]);
    let refused = app.post_as("/products", &body(None), &reader).await;
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    expect_problem(refused, 403).await;
    // A signed-in caller that never registered owns nothing.
    let stranger = app.issuer.token("stranger", &[WRITE]);
    expect_problem(app.post_as("/products", &body(None), &stranger).await, 403).await;
}

#[tokio::test]
async fn users_register_once_and_only_they_and_admins_see_their_email() {
    let app = spawn_app().await;
    let token = app.issuer.token("carol-subject", &[WRITE]);
    let body = json!({"username": "carol", "email": "carol@example.com"});
    let created = app.post_as("/users", &body, &token).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = json!({"username": "carol2", "email": "carol2@example.com"});
    let problem = expect_problem(app.post_as("/users", &again, &token).await, 409).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains("carol"),
        "{problem}"
    );

    let me: Value = app.get_as("/users/me", &token).await.json().await.unwrap();
    assert_eq!(
        (me["user_id"].as_str(), me["email"].as_str()),
        (Some(id.as_str()), Some("carol@example.com"))
    );
    let path = format!("/users/{id}");
    let other = app.issuer.token("someone-else", &[WRITE]);
    let seen: Value = app.get_as(&path, &other).await.json().await.unwrap();
    assert!(seen.get("email").is_none(), "{seen}");
    let by_admin: Value = app
        .get_as(&path, &app.admin_token())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_admin["email"], "carol@example.com");
    // An e-mail address taken by another identity: a conflict that names nobody.
    let dave = app.issuer.token("dave-subject", &[WRITE]);
    let taken = json!({"username": "dave", "email": "carol@example.com"});
    let problem = expect_problem(app.post_as("/users", &taken, &dave).await, 409).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains("carol"),
        "{problem}"
    );
}

#[tokio::test]
async fn forged_algorithms_and_keys_are_refused() {
    let app = spawn_app().await;
    let issuer = &app.issuer;
    let claims = issuer.claims("alice", &[WRITE]);
    let mut none = json!({"alg": "none", "typ": "at+jwt", "kid": issuer.kid()});
    assert_refused(&app, &unsigned(&none, &claims), "alg none").await;
    none["alg"] = json!("None");
    assert_refused(&app, &unsigned(&none, &claims), "alg None").await;
    // HS256 keyed with the issuer's public key (the classic confusion).
    let public = issuer.jwks.lock().unwrap()["keys"][0].to_string();
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(issuer.kid().to_owned());
    let forged =
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(public.as_bytes())).unwrap();
    assert_refused(&app, &forged, "HS256 with the public key").await;
    // A key of the attacker's named in the header (jwk), or by URL (jku, x5u).
    let (attacker, attacker_jwk) = es256_key("attacker");
    let mut embedded = issuer.header();
    embedded.jwk = Some(serde_json::from_value(attacker_jwk).unwrap());
    let token = jsonwebtoken::encode(&embedded, &claims, &attacker).unwrap();
    assert_refused(&app, &token, "embedded jwk").await;
    for field in ["jku", "x5u"] {
        let mut header = issuer.header();
        if field == "jku" {
            header.jku = Some("https://attacker.example/jwks".into());
        } else {
            header.x5u = Some("https://attacker.example/cert".into());
        }
        assert_refused(&app, &issuer.sign_with(&header, &claims), field).await;
    }
    // The attacker's key under the issuer's key id.
    let mut stolen_kid = issuer.header();
    stolen_kid.kid = Some(issuer.kid().to_owned());
    let token = jsonwebtoken::encode(&stolen_kid, &claims, &attacker).unwrap();
    assert_refused(&app, &token, "another key under the issuer's kid").await;
    // ECDSA r = s = 0 ("psychic signature").
    let valid = issuer.token("alice", &[WRITE]);
    let (signed, _) = valid.rsplit_once('.').unwrap();
    let zero = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert_refused(&app, &zero, "r = s = 0").await;
}

#[tokio::test]
async fn claims_are_checked_exactly() {
    let app = spawn_app().await;
    let issuer = &app.issuer;
    let base = issuer.claims("alice", &[WRITE]);
    let with = |key: &str, value: Value| {
        let mut claims = base.clone();
        claims[key] = value;
        issuer.sign(&claims)
    };
    let without = |key: &str| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove(key);
        issuer.sign(&claims)
    };
    assert_refused(
        &app,
        &with("iss", json!("https://evil.example")),
        "wrong iss",
    )
    .await;
    assert_refused(
        &app,
        &with("iss", json!(format!("{}/", issuer.url))),
        "iss with a trailing slash",
    )
    .await;
    assert_refused(
        &app,
        &with("iss", json!([issuer.url, "x"])),
        "iss as an array",
    )
    .await;
    assert_refused(&app, &without("aud"), "no aud").await;
    assert_refused(&app, &with("aud", json!("another-api")), "wrong aud").await;
    // An ID token: its audience is the client.
    assert_refused(
        &app,
        &with("aud", json!("catalog-web-client")),
        "an ID token",
    )
    .await;
    assert_refused(
        &app,
        &with("exp", json!(now() - 120)),
        "expired beyond the leeway",
    )
    .await;
    assert_refused(
        &app,
        &with("exp", json!((now() + 600).to_string())),
        "exp as a string",
    )
    .await;
    assert_refused(&app, &without("exp"), "no exp").await;
    assert_refused(&app, &without("sub"), "no sub").await;
    assert_refused(&app, &with("nbf", json!(now() + 600)), "nbf in the future").await;
    assert_refused(&app, &with("iat", json!(now() + 600)), "iat in the future").await;
    // Within the leeway (30 s): accepted, as clocks drift.
    let status = status_of_post(&app, &with("exp", json!(now() - 10))).await;
    assert_ne!(status, 401, "expired within the leeway");
    // The type: an access token (RFC 9068) or a plain JWT; nothing else.
    let mut header = issuer.header();
    header.typ = Some("JWT".into());
    assert_ne!(
        status_of_post(&app, &issuer.sign_with(&header, &base)).await,
        401,
        "typ JWT"
    );
    header.typ = Some("id_token+jwt".into());
    assert_refused(
        &app,
        &issuer.sign_with(&header, &base),
        "typ of another kind",
    )
    .await;
    header.typ = None;
    assert_refused(&app, &issuer.sign_with(&header, &base), "no typ").await;
}

#[tokio::test]
async fn odd_key_ids_and_oversized_or_doubled_headers_never_reach_a_500() {
    let app = spawn_app().await;
    let issuer = &app.issuer;
    let claims = issuer.claims("alice", &[WRITE]);
    for kid in [
        "../../etc/passwd".to_owned(),
        "k".repeat(10 * 1024),
        String::new(),
    ] {
        let mut header = issuer.header();
        header.kid = Some(kid.clone());
        let status = status_of_post(&app, &issuer.sign_with(&header, &claims)).await;
        assert!(
            status == 401 || status == 431,
            "kid of {} bytes: {status}",
            kid.len()
        );
    }
    let numeric = json!({"alg": "ES256", "typ": "at+jwt", "kid": 42});
    assert_refused(&app, &unsigned(&numeric, &claims), "a numeric kid").await;
    let mut big = claims.clone();
    big["pad"] = json!("x".repeat(9 * 1024));
    let status = status_of_post(&app, &issuer.sign(&big)).await;
    assert!(status == 401 || status == 431, "a 9 KB token: {status}");
    // Two Authorization headers, and a token in the URL.
    let token = issuer.token("alice", &[WRITE]);
    let doubled = app
        .http
        .get(app.url("/users/me"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    expect_problem(doubled, 400).await;
    let in_url = app
        .http
        .get(app.url(&format!("/users/me?access_token={token}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_problem(in_url, 400).await;
}

#[tokio::test]
async fn unknown_key_ids_cost_at_most_one_fetch_per_cooldown() {
    let app = spawn_app().await;
    let issuer = &app.issuer;
    let claims = issuer.claims("alice", &[WRITE]);
    // The first fetch (at start) may still be under way: wait for it.
    let me = issuer.token("alice", &[WRITE]);
    app.get_as("/users/me", &me).await;
    let before = issuer.fetches.load(Ordering::SeqCst);
    for i in 0..1000 {
        let mut header = issuer.header();
        header.kid = Some(format!("random-{i}"));
        let status = status_of_post(&app, &issuer.sign_with(&header, &claims)).await;
        assert_eq!(status, 401, "kid random-{i}");
    }
    let fetched = issuer.fetches.load(Ordering::SeqCst) - before;
    assert_eq!(
        fetched, 1,
        "one refetch for 1000 unknown kids within the cooldown"
    );
}

#[tokio::test]
async fn a_rotated_key_is_used_without_a_restart_and_cached_keys_outlive_the_issuer() {
    let issuer = TestIssuer::start();
    let app = spawn_app_with(|s| s.auth = Some(issuer.settings())).await;
    let token = issuer.token("alice", &[WRITE]);
    assert_eq!(
        app.get_as("/users/me", &token).await.status(),
        404,
        "verified (no user yet)"
    );
    // The issuer rotates: a new key beside the old one.
    let (new_key, new_jwk) = es256_key("rotated");
    issuer.jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(new_jwk);
    let mut header = issuer.header();
    header.kid = Some("rotated".into());
    let rotated =
        jsonwebtoken::encode(&header, &issuer.claims("alice", &[WRITE]), &new_key).unwrap();
    assert_eq!(
        app.get_as("/users/me", &rotated).await.status(),
        404,
        "the new key verifies"
    );
    // The issuer goes away: the keys in hand go on verifying.
    drop(issuer);
    assert_eq!(
        app.get_as("/users/me", &token).await.status(),
        404,
        "cached key"
    );
}

#[tokio::test]
async fn with_no_key_set_ever_loaded_protected_routes_are_503_and_public_ones_work() {
    let issuer = TestIssuer::start();
    let mut settings = issuer.settings();
    // An issuer that never answers: nothing listens on port 1.
    settings.issuer = "http://127.0.0.1:1".into();
    let app = spawn_app_with(|s| s.auth = Some(settings)).await;
    let mut claims = issuer.claims("alice", &[WRITE]);
    claims["iss"] = json!("http://127.0.0.1:1");
    let token = issuer.sign(&claims);
    let response = app.get_as("/users/me", &token).await;
    let problem = expect_problem(response, 503).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("keys"),
        "{problem}"
    );
    assert_eq!(app.get("/products?user_id=1").await.status(), 200);
    let metrics = app.text_of(&app.metrics_url).await;
    assert!(
        metrics.contains("auth_refusals_total{reason=\"keys_unavailable\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_key_fetches_total{outcome=\"failed\"}"),
        "{metrics}"
    );
}
