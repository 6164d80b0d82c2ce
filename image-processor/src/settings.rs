//! The image-processor's settings, from the environment (and `.env`); `.env.example` lists
//! every key with its default.

use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use platform::{env, kafka::KafkaSettings};

use crate::{fetch::FetchSettings, transform::TransformSettings};

/// Everything the processor is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`PROCESSOR_ADDR`).
    pub http_addr: std::net::SocketAddr,
    pub kafka: KafkaSettings,
    /// The consumer group of the main topic (`IMAGE_PROCESSOR_GROUP`); retry topics use
    /// `<group>.retry-<n>`.
    pub group: String,
    /// `IMAGE_STORAGE_URL`: `s3://bucket/prefix`, `file:///dir` or `memory://`.
    pub storage_url: String,
    /// `IMAGE_PUBLIC_BASE_URL`: public URL of the stored objects.
    pub public_base_url: String,
    /// `IMAGE_RETRY_DELAYS`, e.g. `5s,30s,120s`: one retry topic per entry.
    pub retry_delays: Vec<Duration>,
    pub fetch: FetchSettings,
    pub transform: TransformSettings,
    /// Images of one product downloaded at once (`IMAGE_CONCURRENCY`).
    pub image_concurrency: usize,
    /// Products processed at once by each consumer, never two events of one product
    /// (`IMAGE_JOBS_IN_FLIGHT`).
    pub jobs_in_flight: usize,
    /// When an image's second step (the formats after WebP) is handed to the later topic
    /// instead of being made at once (`IMAGE_LATER_STEP`, default `auto`).
    pub later_step: LaterStep,
    /// Products whose second step the later topic's consumer makes at once
    /// (`IMAGE_LATER_JOBS_IN_FLIGHT`, default 1): each holds the memory of its sources,
    /// which first steps would otherwise wait for.
    pub later_jobs_in_flight: usize,
    /// Images decoded and encoded at once (`IMAGE_CPU_WORKERS`, default: the cores).
    pub cpu_workers: usize,
    /// Memory the images being decoded and compressed may hold together, in bytes
    /// (`IMAGE_DECODE_MEMORY_MB`, default 512). Each source is admitted with its estimated
    /// peak ([`crate::transform::Header::peak_bytes`]), read from its header; one larger than
    /// the whole budget waits until it can have all of it.
    pub decode_memory: u64,
    /// The period content is stamped with (`IMAGE_GC_EPOCH`, default `1d`): content no
    /// product refers to is deleted once three periods old ([`crate::content`]).
    pub gc_epoch: Duration,
    /// How often unreferenced content is looked for (`IMAGE_GC_INTERVAL`, default `1h`).
    pub gc_interval: Duration,
    /// A consumer group with records waiting whose committed offsets do not move for this
    /// long is reported, fails readiness and its consumer is recreated
    /// (`CONSUMER_STALL_SECS`, default 45; retry levels add their delay). Longer than a
    /// download may take (`IMAGE_FETCH_TIMEOUT_SECS`): a job may rightly hold its partition
    /// that long. See [`platform::kafka::watchdog`].
    pub stall_after: Duration,
}

/// Where an image's second step (its AVIF ladder) is made, once its first step is shown.
///
/// Made at once, from the pixels the first step decoded, it is the quickest way to the whole
/// ladder while the processor is idle. While other images wait for their first step, it is
/// the wrong work: it holds the job's record (so the consumer takes in no new one), the
/// decoded source's memory, and cores for several times the first step's CPU. Deferred, the
/// image's job is done once its first step is shown; the second step is a record on the
/// later topic, made by a consumer of its own behind every first step (its source downloaded
/// and decoded again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterStep {
    /// Deferred while first steps wait (for a core, for memory, or for the main consumer,
    /// which has as many records in flight as it may); made at once otherwise.
    Auto,
    /// Always deferred.
    Deferred,
    /// Always made at once.
    Inline,
}

impl LaterStep {
    /// Whether an image whose first step is made now defers its second step.
    pub fn defers(self, first_steps_waiting: bool) -> bool {
        match self {
            Self::Auto => first_steps_waiting,
            Self::Deferred => true,
            Self::Inline => false,
        }
    }
}

impl std::str::FromStr for LaterStep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "deferred" => Ok(Self::Deferred),
            "inline" => Ok(Self::Inline),
            other => Err(format!("{other:?} is not one of auto, deferred, inline")),
        }
    }
}

/// Parses `5s,30s,120s`.
pub fn parse_delays(text: &str) -> anyhow::Result<Vec<Duration>> {
    env::list(text)
        .map(|s| {
            humantime::parse_duration(s)
                .with_context(|| format!("{s:?} is not a duration like 5s or 2m"))
        })
        .collect()
}

/// Parses `127.0.0.1/32,10.0.0.0/8`.
pub fn parse_networks(text: &str) -> anyhow::Result<Vec<IpNet>> {
    env::list(text)
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .with_context(|| format!("{s:?} is not a CIDR like 10.0.0.0/8"))
        })
        .collect()
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let local = std::env::current_dir()?.join(".local/storage");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            http_addr: env::parse(
                "PROCESSOR_ADDR",
                std::net::SocketAddr::from(([127, 0, 0, 1], 8081)),
            )?,
            kafka: KafkaSettings::from_env()?,
            group: env::string("IMAGE_PROCESSOR_GROUP", "image-processor"),
            storage_url: env::string("IMAGE_STORAGE_URL", &format!("file://{}", local.display())),
            public_base_url: env::string(
                "IMAGE_PUBLIC_BASE_URL",
                &format!("http://{}", env::string("API_ADDR", "127.0.0.1:8080")),
            ),
            retry_delays: parse_delays(&env::string("IMAGE_RETRY_DELAYS", "5s,30s,120s"))
                .context("IMAGE_RETRY_DELAYS")?,
            fetch: FetchSettings {
                allowed_networks: parse_networks(&env::string("IMAGE_FETCH_ALLOWED_NETWORKS", ""))
                    .context("IMAGE_FETCH_ALLOWED_NETWORKS")?,
                connect_timeout: Duration::from_secs(env::parse(
                    "IMAGE_FETCH_CONNECT_TIMEOUT_SECS",
                    5,
                )?),
                total_timeout: Duration::from_secs(env::parse("IMAGE_FETCH_TIMEOUT_SECS", 30)?),
                max_bytes: env::parse("IMAGE_MAX_BYTES", 20 * 1024 * 1024)?,
                max_redirects: env::parse("IMAGE_MAX_REDIRECTS", 5)?,
                proxy: env::optional("IMAGE_FETCH_PROXY")
                    .map(|url| url.parse())
                    .transpose()
                    .context("IMAGE_FETCH_PROXY is not a URL")?,
            },
            transform: TransformSettings::from_env()?,
            image_concurrency: env::parse("IMAGE_CONCURRENCY", 4)?,
            jobs_in_flight: env::parse("IMAGE_JOBS_IN_FLIGHT", 4)?,
            later_step: env::parse("IMAGE_LATER_STEP", LaterStep::Auto)?,
            later_jobs_in_flight: env::parse("IMAGE_LATER_JOBS_IN_FLIGHT", 1)?,
            stall_after: platform::kafka::watchdog::stall_limit_from_env(45)?,
            cpu_workers: env::parse("IMAGE_CPU_WORKERS", cores)?,
            decode_memory: env::parse("IMAGE_DECODE_MEMORY_MB", 512_u64)?.max(1) << 20,
            gc_epoch: humantime::parse_duration(&env::string("IMAGE_GC_EPOCH", "1d"))
                .context("IMAGE_GC_EPOCH is not a duration like 1d or 12h")?,
            gc_interval: humantime::parse_duration(&env::string("IMAGE_GC_INTERVAL", "1h"))
                .context("IMAGE_GC_INTERVAL is not a duration like 1h or 10m")?,
        })
    }

    pub fn log(&self) {
        tracing::info!(
            brokers = %self.kafka.brokers,
            topic_prefix = %self.kafka.topic_prefix,
            kafka_security = %self.kafka.security.describe(),
            group = %self.group,
            storage = %env::redact(&self.storage_url),
            public_base_url = %self.public_base_url,
            retry_delays = ?self.retry_delays,
            allowed_networks = ?self.fetch.allowed_networks,
            max_bytes = self.fetch.max_bytes,
            max_pixels = self.transform.max_pixels,
            variant_widths = ?self.transform.widths,
            variant_formats = ?self.transform.formats,
            jobs_in_flight = self.jobs_in_flight,
            later_step = ?self.later_step,
            later_jobs_in_flight = self.later_jobs_in_flight,
            cpu_workers = self.cpu_workers,
            decode_memory_mb = self.decode_memory >> 20,
            consumer_stall_secs = self.stall_after.as_secs(),
            gc_epoch = ?self.gc_epoch,
            gc_interval = ?self.gc_interval,
            "Settings loaded."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_read_as_a_list() {
        assert_eq!(
            parse_delays("5s, 30s,2m").unwrap(),
            [
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120)
            ]
        );
        assert!(parse_delays("").unwrap().is_empty());
        assert!(parse_delays("5 parsecs").is_err());
    }

    #[test]
    fn the_later_step_is_deferred_by_policy() {
        assert_eq!("auto".parse(), Ok(LaterStep::Auto));
        assert!("sometimes".parse::<LaterStep>().is_err());
        assert!(LaterStep::Auto.defers(true));
        assert!(!LaterStep::Auto.defers(false));
        assert!(LaterStep::Deferred.defers(false));
        assert!(!LaterStep::Inline.defers(true));
    }

    #[test]
    fn networks_read_as_cidrs_or_single_addresses() {
        let nets = parse_networks("127.0.0.1/32, 10.0.0.0/8,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(parse_networks("10.0.0.0/33").is_err());
    }
}
