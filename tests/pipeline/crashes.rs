//! kill -9 drills at the worst moments, each several times in a row on one broker that is
//! never restarted: while idle, in the middle of a burst, and as soon as the next records
//! reach the broker after the previous replacement joined its groups. A broker that keeps a
//! dead member in its group (tansu never expires one) must not stop the pipeline: after each
//! kill every product is compressed and visible within [`CRASH_RECOVERY`], and shows its
//! whole ladder (an AVIF made at once or deferred to the later topic is not lost) within
//! [`LADDER_RECOVERY`]. Each drill prints the recovery it measured:
//! `cargo nextest run -p system-tests --test pipeline -E 'test(kill_9s) | test(survivor)'
//! --no-capture`.

use std::time::{Duration, Instant};

use system_tests::{
    broker::OwnBroker,
    pipeline::{
        Pipeline, spawn_pipeline_for_api_binaries, spawn_pipeline_without_processor_with,
        test_kafka,
    },
    poll::poll_until,
    process::{ChildGuard, api_binary_in, wait_until_ready},
};

/// Every product is compressed and visible within this of the replacement's start.
const CRASH_RECOVERY: Duration = Duration::from_secs(90);

/// Every product shows its whole ladder within this of the replacement's start. Longer by
/// one stall limit: AVIF ladders deferred to the later topic after the main group recovered
/// find the later group still held by the dead member (tansu never expires it), and only
/// then, with records waiting there, does the survivor's watchdog take that group over.
const LADDER_RECOVERY: Duration = Duration::from_secs(90 + 45);

const SOURCES: [&str; 4] = ["rocket.jpg", "chelsea.png", "coffee.png", "astronaut.png"];

/// Where a kill lands.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Nothing in flight: the last burst is done.
    Idle,
    /// Records published and being worked on.
    MidBurst,
    /// As soon as new records reach the broker (for the api, through the previous
    /// replacement's own relay), before they are processed: the replacement has just joined.
    JustJoined,
}

const MOMENTS: [Moment; 3] = [Moment::Idle, Moment::MidBurst, Moment::JustJoined];

/// A three-partition topic set on a broker of the drill's own, so that no other test's
/// groups share its load and a dead member can hold some partitions and not others. Each
/// drill ends with `pipeline.stop()`, while this broker still answers: a Kafka client closing
/// against a broker already gone can hang the runtime's shutdown.
async fn drill_broker() -> (OwnBroker, platform::kafka::KafkaSettings) {
    let broker = OwnBroker::start().await;
    let mut kafka = test_kafka(&broker.brokers);
    kafka.partitions = 3;
    (broker, kafka)
}

/// An image URL of its own for product `i` of `tag`; a `delayed` one is answered 300 ms
/// late, which keeps a burst in flight long enough to kill a processor in the middle.
fn image(pipeline: &Pipeline, tag: &str, i: usize, delayed: bool) -> String {
    let source = SOURCES[i % SOURCES.len()];
    if delayed {
        pipeline.images.url(&format!("/delayed/{i}/{source}?{tag}"))
    } else {
        pipeline.images.url(&format!("/img/{source}?{tag}{i}"))
    }
}

/// Waits until every product in `ids` is compressed and visible through `GET`, failing past
/// `since + CRASH_RECOVERY`, and shows its whole ladder by `since + LADDER_RECOVERY`;
/// returns the time the first steps took from `since`.
async fn wait_all_visible(pipeline: &Pipeline, ids: &[String], since: Instant) -> Duration {
    pipeline
        .wait_all_compressed(
            ids,
            since,
            CRASH_RECOVERY,
            LADDER_RECOVERY,
            "the replacement",
        )
        .await
}

/// Waits until every outbox row of `ids` is published: their records are in the broker.
async fn wait_published(pipeline: &Pipeline, ids: &[String]) {
    let ids: Vec<i64> = ids.iter().map(|id| id.parse().unwrap()).collect();
    poll_until(
        "the products' events to be published",
        CRASH_RECOVERY,
        || async {
            let waiting: i64 = pipeline
            .app
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND product_id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
            if waiting == 0 { Ok(()) } else { Err(waiting) }
        },
    )
    .await;
}

/// Waits until any of `ids` is done (the burst is being worked on).
async fn wait_any_done(pipeline: &Pipeline, ids: &[String]) {
    poll_until(
        "one product of the burst to be done",
        CRASH_RECOVERY,
        || async {
            for id in ids {
                if pipeline.app.product(id).await["processing_status"] == "done" {
                    return Ok(());
                }
            }
            Err("none yet")
        },
    )
    .await;
}

#[tokio::test]
async fn three_kill_9s_of_the_processor_in_a_row_each_recover() {
    let (_broker, kafka) = drill_broker().await;
    let mut pipeline = spawn_pipeline_without_processor_with(kafka).await;
    // A replica with a stable identity, as under `make run` or in a StatefulSet.
    let start = || ChildGuard(pipeline.spawn_processor_process_as(Some("processor-0")));
    let mut processor = start();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            pipeline
                .create_product(&[image(&pipeline, "warm", i, false)])
                .await,
        );
    }
    wait_all_visible(&pipeline, &ids, Instant::now()).await;

    let mut recoveries = Vec::new();
    for (round, moment) in MOMENTS.into_iter().enumerate() {
        let tag = format!("r{round}-");
        let mut burst = Vec::new();
        match moment {
            Moment::Idle => {}
            Moment::MidBurst => {
                for i in 0..9 {
                    let url = image(&pipeline, &tag, i, true);
                    burst.push(pipeline.create_product(&[url]).await);
                }
                wait_any_done(&pipeline, &burst).await;
            }
            Moment::JustJoined => {
                for i in 0..3 {
                    let url = image(&pipeline, &tag, i, false);
                    burst.push(pipeline.create_product(&[url]).await);
                }
                wait_published(&pipeline, &burst).await;
            }
        }
        processor.kill_9();
        processor = start();
        let replaced = Instant::now();
        for i in 10..13 {
            let url = image(&pipeline, &tag, i, false);
            burst.push(pipeline.create_product(&[url]).await);
        }
        let took = wait_all_visible(&pipeline, &burst, replaced).await;
        eprintln!(
            "processor killed {moment:?}: every product visible {took:?} after the replacement started"
        );
        recoveries.push((moment, took));
    }
    eprintln!("processor recoveries: {recoveries:?}");
    processor.kill_9();
    pipeline.stop().await;
}

#[tokio::test]
async fn when_one_of_two_processors_is_killed_mid_burst_the_survivor_takes_over() {
    let (_broker, kafka) = drill_broker().await;
    let mut pipeline = spawn_pipeline_without_processor_with(kafka).await;
    // Replicas without a stable identity, as in a Deployment: dynamic members. (A static
    // member that never comes back keeps its partitions on the local broker: it does not
    // expire static members. docs/operations.md, "Consumer groups".)
    let mut doomed = ChildGuard(pipeline.spawn_processor_process());
    let _survivor = ChildGuard(pipeline.spawn_processor_process());
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            pipeline
                .create_product(&[image(&pipeline, "warm", i, false)])
                .await,
        );
    }
    let settled = wait_all_visible(&pipeline, &ids, started).await;

    let mut burst = Vec::new();
    for i in 0..12 {
        let url = image(&pipeline, "burst", i, true);
        burst.push(pipeline.create_product(&[url]).await);
    }
    let posted = Instant::now();
    wait_any_done(&pipeline, &burst).await;
    eprintln!(
        "two processors: first products visible {settled:?} after their start, the burst under way {:?} after it was posted",
        posted.elapsed()
    );
    doomed.kill_9();
    let killed = Instant::now();
    // Nobody replaces it: the survivor notices the partitions nobody works on and takes
    // them, whether or not the broker ever expires the dead member.
    for i in 20..26 {
        let url = image(&pipeline, "after", i, false);
        burst.push(pipeline.create_product(&[url]).await);
    }
    let took = wait_all_visible(&pipeline, &burst, killed).await;
    eprintln!("one of two processors killed mid-burst: every product visible {took:?} after");
    pipeline.stop().await;
}

#[tokio::test]
async fn when_one_of_two_apis_is_killed_mid_burst_the_survivor_projects_everything() {
    let (_broker, kafka) = drill_broker().await;
    let mut pipeline = spawn_pipeline_for_api_binaries(kafka).await;
    let group = format!("projector-{}", uuid::Uuid::new_v4().simple());
    let http = pipeline.app.http.clone();
    // Replicas of a Deployment: dynamic members of one projector group.
    let start = || {
        let (child, base) = api_binary_in(&pipeline.app.database_url, &pipeline.kafka, &group);
        ApiReplica {
            child: ChildGuard(child),
            base,
        }
    };
    let mut doomed = start();
    let survivor = start();
    wait_until_ready(&http, &doomed.base).await;
    wait_until_ready(&http, &survivor.base).await;
    let user = pipeline.app.create_user("seller").await;
    for post in post_burst(&pipeline, &survivor.base, &user, "warm", 6) {
        assert_eq!(post.await.unwrap().unwrap().status(), 201);
    }
    wait_all_visible(&pipeline, &all_products(&pipeline).await, Instant::now()).await;

    let posts = post_burst(&pipeline, &doomed.base, &user, "burst", 30);
    poll_until("some products to be committed", CRASH_RECOVERY, || async {
        match stored_products(&pipeline, "burst").await.len() {
            n if n >= 5 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    doomed.child.kill_9();
    let killed = Instant::now();
    for post in posts {
        let _answered_or_cut = post.await.unwrap();
    }
    for post in post_burst(&pipeline, &survivor.base, &user, "after", 6) {
        assert_eq!(post.await.unwrap().unwrap().status(), 201);
    }
    let ids = all_products(&pipeline).await;
    let took = wait_all_visible(&pipeline, &ids, killed).await;
    eprintln!(
        "one of two apis killed mid-burst: {} products visible {took:?} after",
        ids.len()
    );
    pipeline.stop().await;
}

/// An api binary of the drill's, projecting in the drill's group as static member `api-0`.
struct ApiReplica {
    child: ChildGuard,
    base: String,
}

fn start_api(pipeline: &Pipeline, group: &str) -> ApiReplica {
    let mut kafka = pipeline.kafka.clone();
    kafka.group_instance_id = Some("api-0".to_owned());
    let (child, base) = api_binary_in(&pipeline.app.database_url, &kafka, group);
    ApiReplica {
        child: ChildGuard(child),
        base,
    }
}

/// Posts `count` products through the api at `base` at once; returns the posts' tasks.
fn post_burst(
    pipeline: &Pipeline,
    base: &str,
    user: &str,
    tag: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>> {
    (0..count)
        .map(|i| {
            let (http, url) = (pipeline.app.http.clone(), format!("{base}/products"));
            let body = serde_json::json!({
                "user_id": user, "product_name": format!("{tag} {i}"), "product_price": 5,
                "product_images": [image(pipeline, tag, i, false)]
            });
            tokio::spawn(async move { http.post(url).json(&body).send().await })
        })
        .collect()
}

/// Every product the database holds whose name starts with `tag`.
async fn stored_products(pipeline: &Pipeline, tag: &str) -> Vec<String> {
    let db = pipeline.app.db().await;
    db.query(
        "SELECT id FROM products WHERE product_name LIKE $1 ORDER BY id",
        &[&format!("{tag} %")],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<_, i64>(0).to_string())
    .collect()
}

#[tokio::test]
async fn three_kill_9s_of_the_api_in_a_row_each_recover() {
    let (_broker, kafka) = drill_broker().await;
    // The test's own api only serves reads; the binary relays the outbox and projects.
    let mut pipeline = spawn_pipeline_for_api_binaries(kafka).await;
    let group = format!("projector-{}", uuid::Uuid::new_v4().simple());
    let http = pipeline.app.http.clone();
    let mut api = start_api(&pipeline, &group);
    wait_until_ready(&http, &api.base).await;
    let user = pipeline.app.create_user("seller").await;
    for post in post_burst(&pipeline, &api.base, &user, "warm", 3) {
        assert_eq!(post.await.unwrap().unwrap().status(), 201);
    }
    let warm = stored_products(&pipeline, "warm").await;
    wait_all_visible(&pipeline, &warm, Instant::now()).await;

    let mut recoveries = Vec::new();
    for (round, moment) in MOMENTS.into_iter().enumerate() {
        let tag = format!("r{round}");
        match moment {
            Moment::Idle => api.child.kill_9(),
            Moment::MidBurst => {
                let posts = post_burst(&pipeline, &api.base, &user, &tag, 30);
                poll_until("some products to be committed", CRASH_RECOVERY, || async {
                    match stored_products(&pipeline, &tag).await.len() {
                        n if n >= 5 => Ok(()),
                        n => Err(n),
                    }
                })
                .await;
                api.child.kill_9();
                for post in posts {
                    let _answered_or_cut = post.await.unwrap();
                }
            }
            Moment::JustJoined => {
                // Written through the test's api: the outbox holds them for the binary, which
                // is killed as soon as its relay has published them.
                let mut written = Vec::new();
                for i in 0..3 {
                    let url = image(&pipeline, &tag, i, false);
                    written.push(pipeline.create_product(&[url]).await);
                }
                wait_published(&pipeline, &written).await;
                api.child.kill_9();
            }
        }
        api = start_api(&pipeline, &group);
        let replaced = Instant::now();
        wait_until_ready(&http, &api.base).await;
        let after = format!("{tag}after");
        for post in post_burst(&pipeline, &api.base, &user, &after, 3) {
            assert_eq!(post.await.unwrap().unwrap().status(), 201);
        }
        let ids = all_products(&pipeline).await;
        let took = wait_all_visible(&pipeline, &ids, replaced).await;
        eprintln!(
            "api killed {moment:?}: {} products visible {took:?} after the replacement started",
            ids.len()
        );
        recoveries.push((moment, took));
    }
    eprintln!("api recoveries: {recoveries:?}");
    api.child.kill_9();
    pipeline.stop().await;
}

/// Every product the database holds.
async fn all_products(pipeline: &Pipeline) -> Vec<String> {
    let db = pipeline.app.db().await;
    db.query("SELECT id FROM products ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0).to_string())
        .collect()
}
