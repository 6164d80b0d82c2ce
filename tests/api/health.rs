use serde_json::Value;
use system_tests::spawn_app;

#[tokio::test]
async fn the_probes_answer_ok_when_the_database_does() {
    let app = spawn_app().await;
    for probe in ["/healthz", "/readyz"] {
        let response = app.get(probe).await;
        assert_eq!(response.status(), 200, "{probe}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn readiness_fails_with_503_when_the_database_is_unreachable() {
    // Built by hand: `Application::build` would fail on the migrations first.
    let mut settings = api::settings::Settings::from_env().unwrap();
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.database.url = "postgres://postgres@127.0.0.1:1/none".into();
    settings.database.acquire_timeout = std::time::Duration::from_millis(500);
    let pool = api::db::pool(&settings.database).unwrap();
    let metrics = api::metrics::ApiMetrics::new(&Default::default());
    let issuer = system_tests::auth::TestIssuer::shared();
    let auth = api::auth::Auth::new(
        issuer.settings(),
        metrics.auth_keys.clone(),
        metrics.auth_refusals.clone(),
    )
    .unwrap();
    let endpoint = api::startup::endpoint(
        api::routes::AppState {
            pool,
            max_images_per_product: 10,
            outbox: Default::default(),
            cache: api::cache::ProductCache::disabled(),
            metrics,
            consumers: Default::default(),
            auth,
        },
        settings.max_body_bytes,
        settings.http.request_timeout,
        None,
    );
    let response = poem::test::TestClient::new(endpoint)
        .get("/readyz")
        .send()
        .await;
    response.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    response.assert_content_type("application/problem+json");
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/products",
        "/products/{id}",
        "/users",
        "/users/{id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    let create = &spec["paths"]["/products"]["post"]["responses"];
    for status in ["201", "400", "413", "422", "500"] {
        assert!(
            create[status].is_object(),
            "POST /products documents {status}"
        );
    }
    assert!(create["422"]["content"]["application/problem+json"].is_object());
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_by_id() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 1.0).await;
    app.get(&format!("/products/{id}")).await;
    app.get("/products/999999").await;
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "/metrics is served on METRICS_ADDR only, not where clients reach the API"
    );
    let response = app.anonymous.get(&app.metrics_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "exemplars need OpenMetrics"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"http_request_duration_seconds_count{method="GET",route="/products/{id}",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/products/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains(&format!("/products/{id}\"")),
        "no ids in labels"
    );
    assert!(text.contains("cache_misses_total"), "{text}");
    assert!(text.contains("outbox_backlog"), "{text}");
}
