use serde_json::Value;
use system_tests::{TestApp, expect_problem, problem_fields, spawn_app};

/// Creates products named and priced as given, for `user`, and returns nothing: the tests
/// compare names.
async fn seed(app: &TestApp, user: &str, products: &[(&str, f64)]) {
    for (name, price) in products {
        app.create_product(user, name, *price).await;
    }
}

async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let response = app.get(&format!("/products?{query}")).await;
    assert_eq!(response.status(), 200, "GET /products?{query}");
    let products: Vec<Value> = response.json().await.unwrap();
    products
        .iter()
        .map(|p| p["product_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_filter_combination_returns_exactly_the_matching_products_cheapest_first() {
    let app = spawn_app().await;
    let alice = app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    seed(
        &app,
        &alice,
        &[
            ("Red Lamp", 45.0),
            ("Blue lamp", 20.0),
            ("Chair", 35.5),
            ("Lampshade", 60.0),
            ("Desk", 10.0),
        ],
    )
    .await;
    seed(&app, &bob, &[("Bob's lamp", 30.0)]).await;

    let u = format!("user_id={alice}");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            u.clone(),
            vec!["Desk", "Blue lamp", "Chair", "Red Lamp", "Lampshade"],
        ),
        (
            format!("{u}&price_range=20-50"),
            vec!["Blue lamp", "Chair", "Red Lamp"],
        ),
        (
            format!("{u}&price_range=35.5-"),
            vec!["Chair", "Red Lamp", "Lampshade"],
        ),
        (format!("{u}&price_range=-20"), vec!["Desk", "Blue lamp"]),
        (format!("{u}&price_range=35.50"), vec!["Chair"]),
        (
            format!("{u}&product_name=LAMP"),
            vec!["Blue lamp", "Red Lamp", "Lampshade"],
        ),
        (
            format!("{u}&product_name=lamp&price_range=30-50"),
            vec!["Red Lamp"],
        ),
        (format!("{u}&product_name=sofa"), vec![]),
        (
            format!("{u}&product_name="),
            vec!["Desk", "Blue lamp", "Chair", "Red Lamp", "Lampshade"],
        ),
        (
            format!("user_id={bob}&product_name=lamp"),
            vec!["Bob's lamp"],
        ),
        ("user_id=987654".to_owned(), vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&app, &query).await, expected, "{query}");
    }
}

#[tokio::test]
async fn percent_and_underscore_in_the_name_filter_match_only_themselves() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    seed(
        &app,
        &user,
        &[
            ("50% off", 1.0),
            ("500 off", 2.0),
            ("a_b", 3.0),
            ("axb", 4.0),
            (r"back\slash", 5.0),
        ],
    )
    .await;
    let u = format!("user_id={user}");
    assert_eq!(
        names(&app, &format!("{u}&product_name=50%25")).await,
        ["50% off"]
    );
    assert_eq!(names(&app, &format!("{u}&product_name=a_b")).await, ["a_b"]);
    assert_eq!(
        names(&app, &format!("{u}&product_name=%25")).await,
        ["50% off"]
    );
    assert_eq!(names(&app, &format!("{u}&product_name=_")).await, ["a_b"]);
    assert_eq!(
        names(&app, &format!("{u}&product_name=k%5Cs")).await,
        [r"back\slash"]
    );
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    // Equal prices make the id the tie-breaker across a page boundary.
    let prices = [5.0, 1.0, 3.0, 3.0, 3.0, 2.0, 4.0];
    for (i, price) in prices.iter().enumerate() {
        app.create_product(&user, &format!("p{i}"), *price).await;
    }
    let mut seen = Vec::new();
    let mut query = format!("user_id={user}&limit=2");
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 4, "seven products in pages of two take four pages");
        let response = app.get(&format!("/products?{query}")).await;
        assert_eq!(response.status(), 200);
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = response.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|p| {
            (
                p["product_price"].as_f64().unwrap(),
                p["product_name"].as_str().unwrap().to_owned(),
            )
        }));
        match next {
            Some(cursor) => {
                let link = link.expect("a Link header comes with the cursor");
                assert!(
                    link.ends_with("rel=\"next\"") && link.contains(&cursor),
                    "{link}"
                );
                // Follow the Link header itself.
                query = link
                    .trim_start_matches("</products?")
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            None => {
                assert!(link.is_none());
                break;
            }
        }
    }
    assert_eq!(pages, 4);
    let expected = [
        (1.0, "p1"),
        (2.0, "p5"),
        (3.0, "p2"),
        (3.0, "p3"),
        (3.0, "p4"),
        (4.0, "p6"),
        (5.0, "p0"),
    ];
    let expected: Vec<(f64, String)> = expected.iter().map(|(p, n)| (*p, n.to_string())).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_filtered_list_pages_within_the_filter() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    for i in 0..5 {
        app.create_product(&user, &format!("lamp {i}"), 10.0 + i as f64)
            .await;
        app.create_product(&user, &format!("chair {i}"), 10.0 + i as f64)
            .await;
    }
    let first = app
        .get(&format!(
            "/products?user_id={user}&product_name=lamp&price_range=11-&limit=3"
        ))
        .await;
    let cursor = first.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_owned();
    let first: Vec<Value> = first.json().await.unwrap();
    let second = names(
        &app,
        &format!("user_id={user}&product_name=lamp&price_range=11-&limit=3&cursor={cursor}"),
    )
    .await;
    let first: Vec<&str> = first
        .iter()
        .map(|p| p["product_name"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["lamp 1", "lamp 2", "lamp 3"]);
    assert_eq!(second, ["lamp 4"]);
}

#[tokio::test]
async fn bad_query_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, field) in [
        ("user_id=abc", Some("user_id")),
        ("user_id=0", Some("user_id")),
        ("user_id=1&price_range=50-20", Some("price_range")),
        ("user_id=1&price_range=cheap", Some("price_range")),
        ("user_id=1&price_range=-", Some("price_range")),
        ("user_id=1&cursor=garbage", Some("cursor")),
        ("user_id=1&limit=0", None),
        ("user_id=1&limit=101", None),
        ("user_id=1&limit=ten", None),
        ("", None),
    ] {
        let problem = expect_problem(app.get(&format!("/products?{query}")).await, 400).await;
        if let Some(field) = field {
            assert_eq!(problem_fields(&problem), [field], "{query}: {problem}");
        }
    }
}
