//! The whole system for one test: the api (with its outbox relay and projector), the
//! image-processor and an image server, on the shared broker under a topic prefix, consumer
//! groups and a storage directory of the test's own.

use std::{path::PathBuf, time::Duration};

use image_processor::settings::Settings as ProcessorSettings;
use platform::kafka::KafkaSettings;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{TestApp, images::ImageServer, poll::poll_until, spawn_app_with};

/// The broker the tests use (`KAFKA_BROKERS`).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Kafka settings with a topic prefix of the test's own.
pub fn test_kafka(brokers: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_owned(),
        topic_prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        create_topics: true,
        partitions: 1,
        replication_factor: 1,
        fetch_wait_max_ms: 100,
        security: Default::default(),
        group_instance_id: None,
        max_poll_interval_ms: 60_000,
        debug: None,
    }
}

/// A running image-processor.
pub struct Processor {
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

impl Processor {
    /// Stops it gracefully: the record in hand finishes, offsets are committed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.handle.await;
    }

    /// Kills it as a crash would: nothing finishes, nothing is committed.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// The system under test.
pub struct Pipeline {
    pub app: TestApp,
    pub kafka: KafkaSettings,
    pub images: ImageServer,
    pub processor_settings: ProcessorSettings,
    pub storage_dir: PathBuf,
    pub processor: Option<Processor>,
    /// Where the running processor serves /healthz, /readyz and /metrics.
    pub processor_http: Option<std::net::SocketAddr>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(processor) = self.processor.take() {
            processor.shutdown.cancel();
        }
        let _ = std::fs::remove_dir_all(&self.storage_dir);
    }
}

/// Starts everything against the shared broker.
pub async fn spawn_pipeline() -> Pipeline {
    spawn_pipeline_on(&brokers()).await
}

/// Starts everything against the broker at `brokers`.
pub async fn spawn_pipeline_on(brokers: &str) -> Pipeline {
    spawn_pipeline_with(test_kafka(brokers)).await
}

/// Starts everything with these Kafka settings (e.g. TLS to a broker of the test's own).
pub async fn spawn_pipeline_with(kafka: KafkaSettings) -> Pipeline {
    let mut pipeline = prepare(kafka).await;
    pipeline.start_processor().await;
    pipeline
}

/// Starts everything, the processor with its settings changed by `tune` first.
///
/// Settings are changed before the first start, never by a restart: a consumer stopped
/// while it is still joining its group can leave the group waiting on it for longer than a
/// test waits (tansu was seen to take over 30 s).
pub async fn spawn_pipeline_tuned(tune: impl FnOnce(&mut ProcessorSettings)) -> Pipeline {
    let mut pipeline = prepare(test_kafka(&brokers())).await;
    tune(&mut pipeline.processor_settings);
    pipeline.start_processor().await;
    pipeline
}

/// Like [`spawn_pipeline_tuned`], with these Kafka settings (e.g. a broker of the test's).
pub async fn spawn_pipeline_tuned_with(
    kafka: KafkaSettings,
    tune: impl FnOnce(&mut ProcessorSettings),
) -> Pipeline {
    let mut pipeline = prepare(kafka).await;
    tune(&mut pipeline.processor_settings);
    pipeline.start_processor().await;
    pipeline
}

/// Everything but the processor, whose settings are ready for `start_processor` (or for
/// running the real binary with the same groups and topics).
pub async fn spawn_pipeline_without_processor() -> Pipeline {
    prepare(test_kafka(&brokers())).await
}

/// Like [`spawn_pipeline_without_processor`], with these Kafka settings.
pub async fn spawn_pipeline_without_processor_with(kafka: KafkaSettings) -> Pipeline {
    prepare(kafka).await
}

/// Everything, but the test's api only serves HTTP: it neither relays its outbox nor
/// projects results, so that an api binary of the drill's (on the same database, topics and
/// `PROJECTOR_GROUP`) does both and can be killed.
pub async fn spawn_pipeline_for_api_binaries(kafka: KafkaSettings) -> Pipeline {
    let mut pipeline = prepare_with(kafka, false).await;
    pipeline.start_processor().await;
    pipeline
}

async fn prepare(kafka: KafkaSettings) -> Pipeline {
    prepare_with(kafka, true).await
}

async fn prepare_with(kafka: KafkaSettings, app_uses_kafka: bool) -> Pipeline {
    let storage_dir =
        std::env::temp_dir().join(format!("catalog-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&storage_dir).unwrap();
    let images = ImageServer::start("127.0.0.1").await;
    let app = {
        let kafka = kafka.clone();
        let dir = storage_dir.clone();
        spawn_app_with(move |s| {
            s.kafka = app_uses_kafka.then_some(kafka);
            s.projector_group = format!("projector-{}", uuid::Uuid::new_v4().simple());
            s.outbox_poll = Duration::from_millis(200);
            s.serve_images_from = Some(dir);
        })
        .await
    };
    let mut processor_settings = ProcessorSettings::from_env().expect("default processor settings");
    processor_settings.kafka = kafka.clone();
    processor_settings.group = format!("processor-{}", uuid::Uuid::new_v4().simple());
    processor_settings.storage_url = format!("file://{}", storage_dir.display());
    processor_settings.public_base_url = app.base.clone();
    processor_settings.retry_delays = vec![Duration::from_millis(300), Duration::from_millis(600)];
    processor_settings.fetch.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    processor_settings.fetch.connect_timeout = Duration::from_secs(2);
    processor_settings.fetch.total_timeout = Duration::from_secs(10);
    Pipeline {
        app,
        kafka,
        images,
        processor_settings,
        storage_dir,
        processor: None,
        processor_http: None,
    }
}

impl Pipeline {
    /// Stops the processor and the api and waits for both, so that their Kafka clients close
    /// while the broker still answers (a consumer closing against a dead broker can hang).
    pub async fn stop(&mut self) {
        if let Some(processor) = self.processor.take() {
            processor.stop().await;
        }
        self.app.stop().await;
    }

    /// Starts the real image-processor binary on this pipeline's topics, groups and storage,
    /// driven by its environment as in production (for drills that signal or kill it).
    pub fn spawn_processor_process(&self) -> std::process::Child {
        self.spawn_processor_process_as(None)
    }

    /// Like [`Self::spawn_processor_process`], as static group member `instance` (the
    /// stable identity of a replica, e.g. a StatefulSet's pod name) when given.
    pub fn spawn_processor_process_as(&self, instance: Option<&str>) -> std::process::Child {
        self.processor_command(instance)
            .spawn()
            .expect("the image-processor binary starts")
    }

    /// The command that starts the image-processor binary as
    /// [`Self::spawn_processor_process_as`] does, for a drill to change (e.g. its storage).
    pub fn processor_command(&self, instance: Option<&str>) -> std::process::Command {
        let settings = &self.processor_settings;
        let mut command =
            std::process::Command::new(crate::process::workspace_binary("image-processor"));
        if let Some(instance) = instance {
            command.env("KAFKA_GROUP_INSTANCE_ID", instance);
        }
        command
            .current_dir(std::env::temp_dir())
            .env("KAFKA_BROKERS", &self.kafka.brokers)
            .env("KAFKA_TOPIC_PREFIX", &self.kafka.topic_prefix)
            .env("KAFKA_TOPIC_PARTITIONS", self.kafka.partitions.to_string())
            .env("IMAGE_PROCESSOR_GROUP", &settings.group)
            .env("IMAGE_STORAGE_URL", &settings.storage_url)
            .env("IMAGE_PUBLIC_BASE_URL", &settings.public_base_url)
            .env("IMAGE_RETRY_DELAYS", "300ms,600ms")
            .env("IMAGE_FETCH_ALLOWED_NETWORKS", "127.0.0.1/32")
            .env(
                "PROCESSOR_ADDR",
                format!("127.0.0.1:{}", crate::process::free_port()),
            )
            .env(
                "RUST_LOG",
                std::env::var("DRILL_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(std::process::Stdio::inherit());
        command
    }

    /// Starts the processor (again), in the same consumer groups.
    pub async fn start_processor(&mut self) {
        let mut settings = self.processor_settings.clone();
        settings.http_addr = "127.0.0.1:0".parse().unwrap();
        let app = image_processor::Application::build(&settings)
            .await
            .expect("the processor starts");
        self.processor_http = Some(app.health_addr());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            app.run_until(token).await.expect("the processor runs");
        });
        self.processor = Some(Processor { shutdown, handle });
    }

    /// Waits until the processor has handled the deletion of product `id` (storage holds
    /// its `deleted-products/<id>` marker, written after its images went).
    pub async fn wait_until_deleted_in_storage(&self, id: &str) {
        let marker = self.storage_dir.join("deleted-products").join(id);
        poll_until(
            &format!("the deletion of product {id} to be handled"),
            Duration::from_secs(30),
            || async { if marker.exists() { Ok(()) } else { Err(()) } },
        )
        .await;
    }

    /// The running processor's /metrics page.
    pub async fn processor_metrics(&self) -> String {
        let addr = self.processor_http.expect("the processor runs");
        self.app.text_of(&format!("http://{addr}/metrics")).await
    }

    /// Waits until the processor's /metrics page has `line` (e.g. a counter and its value).
    pub async fn wait_for_processor_metric(&self, what: &str, line: &str) {
        poll_until(what, Duration::from_secs(30), || async {
            let text = self.processor_metrics().await;
            if text.contains(line) {
                Ok(())
            } else {
                Err(line.to_owned())
            }
        })
        .await;
    }

    /// Creates a user and a product with one image; returns the product id.
    pub async fn create_product_from(&self, image: String) -> String {
        self.create_product(&[image]).await
    }

    /// Creates a user and a product with `images`; returns the product id.
    pub async fn create_product(&self, images: &[String]) -> String {
        let user = self
            .app
            .create_user(&format!(
                "u{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            ))
            .await;
        let response = self
            .app
            .post(
                "/products",
                &serde_json::json!({
                    "user_id": user, "product_name": "Photo", "product_images": images, "product_price": 10
                }),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["product_id"].as_str().unwrap().to_owned()
    }

    /// Polls GET /products/{id} until `done` holds, or fails after `within` saying what it
    /// waited for and what it last saw.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/products/{id}");
        let app = &self.app;
        let done = &done;
        poll_until(&format!("product {id}: {what}"), within, move || {
            let path = path.clone();
            async move {
                let response = app.get(&path).await;
                let status = response.status();
                let product: Value = response.json().await.unwrap_or(Value::Null);
                if status == 200 && done(&product) {
                    Ok(product)
                } else {
                    Err(product)
                }
            }
        })
        .await
    }

    /// Waits until every product in `ids` is compressed and visible through `GET`, failing
    /// past `since + bound`, and then until each shows its whole ladder (no AVIF lost, made at
    /// once or deferred), failing past `since + ladder_bound` (`after` says after what, for the
    /// failure); returns the time the first steps took from `since`.
    pub async fn wait_all_compressed(
        &self,
        ids: &[String],
        since: std::time::Instant,
        bound: Duration,
        ladder_bound: Duration,
        after: &str,
    ) -> Duration {
        for id in ids {
            let left = bound.saturating_sub(since.elapsed());
            let product = self
                .wait_for(
                    id,
                    &format!("compressed within {bound:?} of {after}"),
                    left,
                    |p| p["processing_status"] == "done",
                )
                .await;
            assert!(product["compressed_product_images"][0].is_string());
        }
        let shown = since.elapsed();
        for id in ids {
            let left = ladder_bound.saturating_sub(since.elapsed());
            self.wait_for(
                id,
                &format!("its whole ladder within {ladder_bound:?} of {after}"),
                left,
                ladders_complete,
            )
            .await;
        }
        shown
    }

    /// Waits until image revision `revision` of product `id` is processed and every image
    /// compressed; returns the product.
    pub async fn wait_until_revision_done(&self, id: &str, revision: i64) -> Value {
        let product = self
            .wait_for(
                id,
                &format!("image revision {revision} to be processed"),
                Duration::from_secs(60),
                |p| {
                    p["image_revision"] == revision
                        && p["processing_status"] == "done"
                        && ladders_complete(p)
                },
            )
            .await;
        assert!(
            product["compressed_product_images"][0]
                .as_str()
                .is_some_and(|url| url.ends_with(".webp")),
            "the first image is compressed: {product:#}"
        );
        product
    }

    /// Waits until processing of `id` is finished: no image pending, and every compressed
    /// image's ladder complete (its AVIF follows its WebP); returns the product.
    pub async fn wait_until_processed(&self, id: &str) -> Value {
        self.wait_for(id, "processing to finish", Duration::from_secs(60), |p| {
            p["processing_status"] != "pending" && ladders_complete(p)
        })
        .await
    }
}

/// Whether no image of `product` has formats still to come (`pending_formats`).
pub fn ladders_complete(product: &Value) -> bool {
    product["images"]
        .as_array()
        .is_some_and(|images| images.iter().all(|i| i.get("pending_formats").is_none()))
}
