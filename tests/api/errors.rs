//! Whatever a client sends, the answer is a 4xx problem document, never a 500.

use serde_json::json;
use system_tests::{expect_problem, problem_fields, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for raw in ["{", "not json", "[]", "null", "{\"user_id\": }"] {
        let response = app
            .http
            .post(app.url("/products"))
            .bearer_auth(app.admin_token())
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        expect_problem(response, 400).await;
    }
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400s_that_name_the_field() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let valid = json!({
        "user_id": user, "product_name": "x", "product_images": ["https://a.example/1.jpg"], "product_price": 1
    });
    for (field, value) in [
        ("user_id", json!(true)),
        ("user_id", json!(null)),
        ("user_id", json!(1.5)),
        ("product_name", json!(42)),
        ("product_images", json!("https://a.example/1.jpg")),
        ("product_images", json!([1, 2])),
        ("product_price", json!({"amount": 1})),
    ] {
        let mut request = valid.clone();
        request[field] = value.clone();
        let response = app.post("/products", &request).await;
        assert_eq!(response.status(), 400, "{field}={value}");
        let problem = expect_problem(response, 400).await;
        let fields = problem_fields(&problem);
        assert!(
            !fields.is_empty() && fields.iter().all(|f| f.starts_with(field)),
            "{field}={value}: {problem}"
        );
    }
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("product_name");
    let problem = expect_problem(app.post("/products", &missing).await, 400).await;
    assert_eq!(problem_fields(&problem), ["product_name"], "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("required"),
        "{problem}"
    );
    assert_eq!(app.count("products").await, 0);
}

#[tokio::test]
async fn a_body_in_another_content_type_is_refused() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/products"))
        .bearer_auth(app.admin_token())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let problem = expect_problem(response, 415).await;
    assert_eq!(
        problem["type"],
        "urn:catalog:problem:unsupported-media-type"
    );
}

#[tokio::test]
async fn an_oversized_body_is_a_413_whether_its_length_is_declared_or_streamed() {
    let app = spawn_app_with(|s| s.max_body_bytes = 4 * 1024).await;
    let big = json!({"product_name": "x".repeat(8 * 1024)}).to_string();
    let declared = app
        .http
        .post(app.url("/products"))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect_problem(declared, 413).await;

    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1024)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = app
        .http
        .post(app.url("/products"))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    expect_problem(streamed, 413).await;
}

fn futures_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::iter(items)
}

#[tokio::test]
async fn bad_ids_in_the_path_are_400s_and_unknown_ids_404s() {
    let app = spawn_app().await;
    for path in [
        "/products/abc",
        "/products/0",
        "/products/-1",
        "/products/99999999999999999999",
        "/users/x",
    ] {
        expect_problem(app.get(path).await, 400).await;
    }
    expect_problem(app.get("/products/123").await, 404).await;
}

#[tokio::test]
async fn an_unknown_route_or_method_is_a_problem_too() {
    let app = spawn_app().await;
    expect_problem(app.get("/nowhere").await, 404).await;
    let response = app.http.put(app.url("/products/1")).send().await.unwrap();
    assert_eq!(
        response.headers().get("allow").map(|v| v.to_str().unwrap()),
        Some("GET, DELETE, PATCH"),
        "a 405 names the methods the route accepts (RFC 9110)"
    );
    expect_problem(response, 405).await;
    let response = app
        .http
        .request(reqwest::Method::TRACE, app.url("/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("allow").unwrap(), "POST");
    expect_problem(response, 405).await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let generated = app.get("/healthz").await;
    assert!(generated.headers().contains_key("x-request-id"));
    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-123");
}
