//! Kafka settings and clients, configured the same way in every binary.
//!
//! Producers are idempotent with `acks=all`, so a retried send never duplicates or reorders a
//! record within a partition. Consumers never store an offset on their own
//! (`enable.auto.offset.store=false`): the service stores it once the message's outcome is
//! durable, and the stored offsets are committed in the background.
//!
//! Every client starts from [`KafkaSettings::client_config`], so the brokers and the
//! encryption and authentication settings ([`security`]) are the same for all of them.

mod rebalance;
mod receive_errors;
mod security;
pub mod watchdog;

pub use rebalance::{PartitionGuard, RebalanceContext};
pub use receive_errors::ReceiveErrors;

use std::time::Duration;

use anyhow::Context;
use events::Topics;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::StreamConsumer,
    error::RDKafkaErrorCode,
    message::{Header, OwnedHeaders},
    producer::FutureProducer,
};

use crate::env;

pub use security::{ClientCertificate, KafkaSecurity, Sasl, SaslMechanism, SecurityProtocol};

/// Whether the broker answers a metadata request within 2 s, asked through `producer`'s
/// connections (on a blocking thread: librdkafka's call blocks). Readiness and
/// `dependency_up` ask this.
pub async fn check_broker(producer: FutureProducer) -> anyhow::Result<()> {
    use rdkafka::producer::Producer;
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .context("The broker did not return metadata")
    })
    .await
    .context("The metadata request panicked")?
}

/// Record headers from (name, value) pairs, e.g. an envelope's `ce_*` attributes.
pub fn owned_headers<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> OwnedHeaders
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    pairs
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key: key.as_ref(),
                value: Some(value.as_ref()),
            })
        })
}

/// How to reach Kafka and name topics.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]` (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Prefix of every topic name (`KAFKA_TOPIC_PREFIX`, default `catalog.`).
    pub topic_prefix: String,
    /// Create missing topics at start (`KAFKA_CREATE_TOPICS`, default true).
    pub create_topics: bool,
    /// Partitions of topics created at start (`KAFKA_TOPIC_PARTITIONS`, default 3).
    pub partitions: i32,
    /// Replication factor of topics created at start (`KAFKA_REPLICATION_FACTOR`, default 1).
    pub replication_factor: i32,
    /// The longest a consumer's fetch waits for data (`KAFKA_FETCH_WAIT_MAX_MS`, default 100).
    /// Kafka answers as soon as data arrives; tansu holds a fetch for the whole wait, and
    /// librdkafka's default of 500 ms then adds half a second per hop.
    pub fetch_wait_max_ms: u32,
    /// TLS and SASL (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`).
    pub security: KafkaSecurity,
    /// This replica's stable identity for static group membership (KIP-345,
    /// `KAFKA_GROUP_INSTANCE_ID`, unset by default): a restarted replica with the same id takes
    /// its partitions back at once instead of waiting for the dead member to expire. Only for
    /// replicas with a stable, unique identity (a StatefulSet's pod name, `make run`); two live
    /// replicas with one id fence each other.
    pub group_instance_id: Option<String>,
    /// How long a member may go without polling, which is also the rebalance timeout: how long
    /// a rebalance waits for members to rejoin (`KAFKA_MAX_POLL_INTERVAL_MS`, default 300 s,
    /// librdkafka's; at least the session timeout, 45 s). A member that does not poll for this
    /// long leaves the group, and its partitions' work in flight is abandoned: the processor
    /// stops polling while its job slots are full, and a job may take minutes on slow image
    /// hosts, so shorter values risk cancelling slow jobs over and over.
    pub max_poll_interval_ms: u32,
    /// librdkafka's own debug contexts, e.g. `cgrp,consumer` (`KAFKA_DEBUG`): verbose, for
    /// investigating a client that misbehaves.
    pub debug: Option<String>,
}

/// How a consumer joins its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Static (`group.instance.id`) when `KAFKA_GROUP_INSTANCE_ID` is set: a restart takes
    /// the same partitions back, and a consumer recreated because its group was stuck fences
    /// its predecessor. A static member does not leave the group when it closes, so a
    /// replica keeps its static identity for good: joining again as a dynamic member would
    /// leave its own static member behind, holding partitions until the broker expires it
    /// (the local broker never does).
    Static,
    /// A new member each time (the services' own tools, which must not take a replica's
    /// identity).
    Dynamic,
}

/// How long an idempotent producer keeps trying to deliver a record before failing it (Kafka's
/// own default for `delivery.timeout.ms` is the same two minutes).
///
/// Long on purpose. Requests that time out are retried with the same sequence numbers, which
/// is harmless; a record that *expires* while possibly in flight leaves its sequence in doubt,
/// and librdkafka must then bump the producer epoch (KIP-360). A short timeout turns every
/// broker stall longer than itself (a GC pause, a stalled disk, a leader election) into an
/// epoch bump, and tansu 0.6 answers that one with a panic in its storage layer: a 20 s pause
/// left the local broker unable to serve anyone (docs/operations.md, "Broker stalls").
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the broker waits for a consumer's heartbeat before it expires the member
/// (Kafka's default); see [`KafkaSettings::consumer`] for why not shorter.
pub const SESSION_TIMEOUT_MS: u32 = 45_000;

impl KafkaSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Self {
            brokers: env::string("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic_prefix: env::string("KAFKA_TOPIC_PREFIX", Topics::DEFAULT_PREFIX),
            create_topics: env::parse("KAFKA_CREATE_TOPICS", true)?,
            partitions: env::parse("KAFKA_TOPIC_PARTITIONS", 3)?,
            replication_factor: env::parse("KAFKA_REPLICATION_FACTOR", 1)?,
            fetch_wait_max_ms: env::parse("KAFKA_FETCH_WAIT_MAX_MS", 100)?,
            security: KafkaSecurity::from_env()?,
            group_instance_id: env::optional("KAFKA_GROUP_INSTANCE_ID"),
            max_poll_interval_ms: env::parse("KAFKA_MAX_POLL_INTERVAL_MS", 300_000)?,
            debug: env::optional("KAFKA_DEBUG"),
        }
        .validated()
    }

    /// Refuses settings librdkafka would refuse only when a consumer is created, long after
    /// start (and then in a retry loop).
    fn validated(self) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.max_poll_interval_ms >= SESSION_TIMEOUT_MS,
            "KAFKA_MAX_POLL_INTERVAL_MS must be at least the session timeout, \
             {SESSION_TIMEOUT_MS} ms; it is {}",
            self.max_poll_interval_ms
        );
        if let Some(instance) = &self.group_instance_id {
            anyhow::ensure!(
                !instance.trim().is_empty(),
                "KAFKA_GROUP_INSTANCE_ID is set but empty"
            );
        }
        Ok(self)
    }

    pub fn topics(&self) -> Topics {
        Topics::new(self.topic_prefix.clone())
    }

    /// The configuration every client starts from: where the brokers are and how to talk
    /// to them securely.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true");
        if let Some(debug) = &self.debug {
            config.set("debug", debug);
        }
        self.security.apply(&mut config);
        config
    }

    /// An idempotent producer; a send fails after `delivery_timeout` without an ack (see
    /// [`DELIVERY_TIMEOUT`]).
    pub fn producer(&self, delivery_timeout: Duration) -> anyhow::Result<FutureProducer> {
        self.client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .create()
            .context("Failed to create a Kafka producer")
    }

    /// A consumer of `group` that starts at the earliest offset when the group has none, and
    /// commits only the offsets the service stores.
    ///
    /// The session timeout is Kafka's default, 45 s, not shorter: a broker stall longer than
    /// the session (a 20 s pause was the drill) makes librdkafka give up its member id and
    /// join again as a new member, and a broker that is slow to expire the old one (tansu
    /// never does) keeps the group rebalancing around a member that will never answer.
    pub fn consumer(&self, group: &str) -> anyhow::Result<StreamConsumer> {
        self.consumer_with(
            group,
            Membership::Dynamic,
            rdkafka::consumer::DefaultConsumerContext,
        )
    }

    /// Like [`Self::consumer`], with a membership and a context of the caller's (e.g.
    /// [`RebalanceContext`]).
    ///
    /// The rebalance timeout (`max.poll.interval.ms`) bounds how long a rebalance waits for a
    /// member that does not rejoin, such as a killed one the broker has not expired yet.
    pub fn consumer_with<C>(
        &self,
        group: &str,
        membership: Membership,
        context: C,
    ) -> anyhow::Result<StreamConsumer<C>>
    where
        C: rdkafka::consumer::ConsumerContext + 'static,
    {
        let mut config = self.client_config();
        if let (Membership::Static, Some(instance)) = (membership, &self.group_instance_id) {
            config.set("group.instance.id", instance);
        }
        config
            .set("group.id", group)
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .create_with_context(context)
            .context("Failed to create a Kafka consumer")
    }

    /// Like [`Self::ensure_topics`], retrying with backoff while the broker is away, until it
    /// succeeds (true) or `shutdown` fires (false). For services that start without Kafka.
    pub async fn ensure_topics_until_done(
        &self,
        names: &[String],
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return false,
                attempt = self.ensure_topics(names) => attempt,
            };
            match attempt {
                Ok(()) => return true,
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in_ms = backoff.upcoming().as_millis() as u64,
                    "Kafka topics not ready; retrying."
                ),
            }
            if !backoff.pause(shutdown).await {
                return false;
            }
        }
    }

    /// Creates the topics `names` unless they exist (when `KAFKA_CREATE_TOPICS` is on).
    pub async fn ensure_topics(&self, names: &[String]) -> anyhow::Result<()> {
        if !self.create_topics {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("Failed to create a Kafka admin client")?;
        let catalog = self.topics();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|name| {
                let topic = NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                );
                if catalog.is_compacted(name) {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .with_context(|| {
                // The admin client does not surface librdkafka's own log (a refused
                // connection, a failed handshake), so say where it tried and how.
                format!(
                    "Failed to create Kafka topics on {} over {}: check KAFKA_BROKERS and \
                     KAFKA_SECURITY_PROTOCOL",
                    self.brokers,
                    self.security.describe()
                )
            })?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = name, "Topic created."),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => anyhow::bail!("Failed to create topic {name}: {code}"),
            }
        }
        Ok(())
    }
}
