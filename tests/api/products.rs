use serde_json::{Value, json};
use system_tests::{expect_problem, problem_fields, spawn_app};

fn body(user_id: Value) -> Value {
    json!({
        "user_id": user_id,
        "product_name": "Desk lamp",
        "product_description": "A brass desk lamp.",
        "product_images": ["https://images.example.com/lamp.jpg", "https://images.example.com/lamp-2.png"],
        "product_price": 29.99,
    })
}

#[tokio::test]
async fn creating_a_product_answers_201_with_the_seed_body_its_id_and_location() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let response = app.post("/products", &body(json!(user))).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "success");
    assert_eq!(created["message"], "Product created successfully");
    let id = created["product_id"].as_str().expect("the id is a string");
    assert_eq!(location, format!("/products/{id}"));
}

#[tokio::test]
async fn user_id_may_be_a_number_or_a_string_of_digits() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let as_number: i64 = user.parse().unwrap();
    assert_eq!(
        app.post("/products", &body(json!(user))).await.status(),
        201
    );
    assert_eq!(
        app.post("/products", &body(json!(as_number)))
            .await
            .status(),
        201
    );
    assert_eq!(app.count("products").await, 2);
}

#[tokio::test]
async fn a_product_reads_back_with_the_seed_field_names() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let created: Value = app
        .post("/products", &body(json!(user)))
        .await
        .json()
        .await
        .unwrap();
    let id = created["product_id"].as_str().unwrap();

    let response = app.get(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 200);
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["product_id"], id);
    assert_eq!(product["user_id"], user.as_str());
    assert_eq!(product["product_name"], "Desk lamp");
    assert_eq!(product["product_description"], "A brass desk lamp.");
    assert_eq!(
        product["product_images"],
        json!([
            "https://images.example.com/lamp.jpg",
            "https://images.example.com/lamp-2.png"
        ])
    );
    assert_eq!(
        product["compressed_product_images"],
        json!([null, null]),
        "nothing compressed yet"
    );
    assert_eq!(product["processing_status"], "pending");
    assert_eq!(
        product["images"][1]["source_url"],
        "https://images.example.com/lamp-2.png"
    );
    assert_eq!(product["images"][1]["status"], "pending");
    assert!(
        product["product_price"].is_number(),
        "price is a JSON number: {product}"
    );
    assert_eq!(product["product_price"].as_f64(), Some(29.99));
    assert!(product["created_at"].is_string() && product["updated_at"].is_string());
}

#[tokio::test]
async fn a_price_given_as_a_string_is_stored_exactly() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let mut request = body(json!(user));
    request["product_price"] = json!("1234567.89");
    let created: Value = app.post("/products", &request).await.json().await.unwrap();
    let id: i64 = created["product_id"].as_str().unwrap().parse().unwrap();
    let stored: String = app
        .db()
        .await
        .query_one(
            "SELECT product_price::text FROM products WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "1234567.89");
}

#[tokio::test]
async fn an_unknown_user_is_a_422_that_says_so_and_writes_nothing() {
    let app = spawn_app().await;
    let problem = expect_problem(app.post("/products", &body(json!("999"))).await, 422).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("user does not exist"),
        "{problem}"
    );
    assert_eq!(app.count("products").await, 0);
}

#[tokio::test]
async fn every_invalid_field_is_reported_by_name_and_nothing_is_written() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("user_id", json!(0), "user_id"),
        ("user_id", json!("-3"), "user_id"),
        ("user_id", json!("12a"), "user_id"),
        ("product_name", json!("   "), "product_name"),
        ("product_name", json!("x".repeat(256)), "product_name"),
        (
            "product_description",
            json!("x".repeat(5_001)),
            "product_description",
        ),
        ("product_price", json!(-1), "product_price"),
        ("product_price", json!(1.999), "product_price"),
        ("product_price", json!("abc"), "product_price"),
        ("product_price", json!(1e12), "product_price"),
        ("product_images", json!([]), "product_images"),
        (
            "product_images",
            json!(["ftp://x.example/a.jpg"]),
            "product_images[0]",
        ),
        (
            "product_images",
            json!(["/relative.jpg"]),
            "product_images[0]",
        ),
        (
            "product_images",
            json!(["https://a.example/1.jpg", "https://a.example/1.jpg"]),
            "product_images[1]",
        ),
        (
            "product_images",
            json!([format!("https://a.example/{}", "x".repeat(2100))]),
            "product_images[0]",
        ),
        (
            "product_images",
            json!(
                (0..11)
                    .map(|i| format!("https://a.example/{i}.jpg"))
                    .collect::<Vec<_>>()
            ),
            "product_images",
        ),
    ];
    for (field, value, reported) in cases {
        let mut request = body(json!(user));
        request[field] = value.clone();
        let problem = expect_problem(app.post("/products", &request).await, 422).await;
        assert_eq!(
            problem_fields(&problem),
            [reported],
            "{field} = {value}: {problem}"
        );
    }
    assert_eq!(app.count("products").await, 0);
}

#[tokio::test]
async fn several_invalid_fields_are_reported_together() {
    let app = spawn_app().await;
    let request = json!({
        "user_id": "0", "product_name": "", "product_images": ["nope"], "product_price": -5
    });
    let problem = expect_problem(app.post("/products", &request).await, 422).await;
    assert_eq!(
        problem_fields(&problem),
        [
            "user_id",
            "product_name",
            "product_images[0]",
            "product_price"
        ]
    );
}

#[tokio::test]
async fn an_update_changes_only_the_fields_given() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let response = app
        .patch(
            &format!("/products/{id}"),
            &json!({"product_price": "12.50", "product_name": "Brass lamp"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["product_name"], "Brass lamp");
    assert_eq!(updated["product_price"].as_f64(), Some(12.5));
    assert_eq!(updated["product_description"], "A test product.");

    let fetched: Value = app
        .get(&format!("/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["product_name"], "Brass lamp",
        "the update shows on the next GET"
    );
}

#[tokio::test]
async fn new_images_start_a_new_revision_and_an_event_while_other_changes_do_not() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let numeric: i64 = id.parse().unwrap();
    let path = format!("/products/{id}");

    let renamed: Value = app
        .patch(&path, &json!({"product_name": "Lamp 2"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["image_revision"], 1);
    let same: Value = app
        .patch(
            &path,
            &json!({"product_images": ["https://images.example.com/a.jpg"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["image_revision"], 1, "the same list is no change");

    let changed: Value = app
        .patch(&path, &json!({"product_images": ["https://images.example.com/b.jpg", "https://images.example.com/c.jpg"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["image_revision"], 2);
    assert_eq!(changed["compressed_product_images"], json!([null, null]));
    assert_eq!(changed["processing_status"], "pending");

    let events: Vec<String> = app
        .db()
        .await
        .query(
            "SELECT event_type FROM outbox WHERE product_id = $1 AND event_type <> $2 ORDER BY id",
            &[&numeric, &events::EventType::ProductState.as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "com.catalog.product.created.v1",
            "com.catalog.product.images-changed.v1"
        ]
    );
}

#[tokio::test]
async fn a_rejected_write_leaves_no_event_behind() {
    let app = spawn_app().await;
    let request = json!({
        "user_id": "999", "product_name": "x", "product_images": ["https://a.example/1.jpg"], "product_price": 1
    });
    expect_problem(app.post("/products", &request).await, 422).await;
    assert_eq!(app.count("outbox").await, 0);
}

#[tokio::test]
async fn an_update_with_null_nothing_or_bad_values_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let path = format!("/products/{id}");
    for (request, field) in [
        (json!({"product_name": null}), "product_name"),
        (json!({}), "body"),
        (json!({"product_price": 1.001}), "product_price"),
        (
            json!({"product_images": ["http://ok.example/a", "mailto:x@y"]}),
            "product_images[1]",
        ),
    ] {
        let problem = expect_problem(app.patch(&path, &request).await, 422).await;
        assert_eq!(problem_fields(&problem), [field], "{request}");
    }
    let product: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(product["product_name"], "Lamp");
    assert_eq!(product["product_price"].as_f64(), Some(10.0));
}

#[tokio::test]
async fn a_deleted_product_is_gone() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 10.0).await;
    let path = format!("/products/{id}");
    assert_eq!(app.delete(&path).await.status(), 204);
    let last_event: String = app
        .db()
        .await
        .query_one(
            "SELECT event_type FROM outbox WHERE event_type <> $1 ORDER BY id DESC LIMIT 1",
            &[&events::EventType::ProductState.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_event, "com.catalog.product.deleted.v1");
    expect_problem(app.get(&path).await, 404).await;
    expect_problem(app.delete(&path).await, 404).await;
    expect_problem(app.patch(&path, &json!({"product_name": "x"})).await, 404).await;
}
