use serde_json::{Value, json};
use system_tests::{expect_problem, problem_fields, spawn_app};

#[tokio::test]
async fn a_registered_user_can_be_read_back() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/users",
            &json!({"username": "alice", "email": "alice@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["user_id"].as_str().expect("the id is a string");
    assert_eq!(location, format!("/users/{id}"));

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched["username"], "alice");
    assert_eq!(fetched["user_id"], id);
    assert!(
        fetched.get("email").is_none(),
        "e-mail shown to anyone: {fetched}"
    );
    // The user itself sees its e-mail address.
    let token = app.token_of_user(id).await;
    let own: Value = app.get_as(&location, &token).await.json().await.unwrap();
    assert_eq!(own["email"], "alice@example.com");
}

#[tokio::test]
async fn a_taken_username_or_email_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    let same_name = app
        .post(
            "/users",
            &json!({"username": "ALICE", "email": "other@example.com"}),
        )
        .await;
    let problem = expect_problem(same_name, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("username"),
        "{problem}"
    );
    let same_email = app
        .post(
            "/users",
            &json!({"username": "bob", "email": "Alice@Example.com"}),
        )
        .await;
    let problem = expect_problem(same_email, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("e-mail"),
        "{problem}"
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn an_invalid_username_and_email_are_both_reported() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/users",
            &json!({"username": "a", "email": "not-an-address"}),
        )
        .await;
    let problem = expect_problem(response, 422).await;
    assert_eq!(problem_fields(&problem), ["username", "email"]);
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn an_unknown_user_is_not_found() {
    let app = spawn_app().await;
    expect_problem(app.get("/users/999").await, 404).await;
}
