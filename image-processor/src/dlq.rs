//! Dead letters: list them, and redrive them to the product-events topic.
//!
//! `list` reads the whole dead-letter topic without joining a group, so it changes nothing.
//! `redrive` reads from where the last redrive stopped (its own consumer group), in pages: it
//! republishes each page's records (value and event headers, without the retry bookkeeping)
//! to the main topic, at most at the given rate, and commits the page once the broker
//! acknowledged every record of it. Nothing is held in memory beyond one page, there is no
//! overall deadline, and a redrive that fails midway resumes after its last committed page
//! (at most one page is sent twice; the processor treats a repeated redrive as it treats any
//! redelivery). A dry run lists what would go and commits nothing. A filtered redrive (by
//! product, reason or time) reads from the beginning and commits nothing either: the
//! position belongs to unfiltered redrives, and records it skipped must stay for them.

use std::{collections::HashMap, io::Write, time::Duration};

use events::headers;
use platform::kafka::KafkaSettings;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use crate::job::RawRecord;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Assigns every partition of `topic` at `start` offsets and calls `each` for every record
/// up to the high watermarks as they were at the start.
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    start: impl Fn(i32, i64) -> i64,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let from = start(partition, low).max(low);
        if from < high {
            remaining.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    // No deadline for the whole read (a large topic takes as long as it takes), only for
    // silence: records are known to be there, so 30 s without one means the broker is away.
    let mut last_record = std::time::Instant::now();
    while !remaining.is_empty() {
        anyhow::ensure!(
            last_record.elapsed() < Duration::from_secs(30),
            "no record of {topic} for 30 s while records remain; is the broker reachable?"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        last_record = std::time::Instant::now();
        let message = message?;
        each(&message)?;
        if let Some(high) = remaining.get(&message.partition()) {
            if message.offset() + 1 >= *high {
                remaining.remove(&message.partition());
            }
        }
    }
    Ok(())
}

fn base_consumer(kafka: &KafkaSettings, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?)
}

/// Writes one JSON line per dead letter.
pub async fn list(kafka: &KafkaSettings, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = kafka.topics().image_dead_letters();
    let kafka = kafka.clone();
    let lines = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let consumer = base_consumer(&kafka, &format!("dlq-list-{}", std::process::id()))?;
        let mut lines = Vec::new();
        read_to_end(
            &consumer,
            &topic,
            |_, low| low,
            |message| {
                let raw = RawRecord::of(message);
                let line = serde_json::json!({
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "product_id": raw.key.as_deref().map(String::from_utf8_lossy),
                    "event_type": raw.header(headers::CE_TYPE),
                    "event_id": raw.header(headers::CE_ID),
                    "reason": raw.header(headers::ERROR),
                    "kind": raw.header(headers::ERROR_KIND),
                    "attempts": raw.header(headers::ATTEMPT),
                    "origin": format!(
                        "{}/{}/{}",
                        raw.header(headers::ORIGIN_TOPIC).unwrap_or_default(),
                        raw.header(headers::ORIGIN_PARTITION).unwrap_or_default(),
                        raw.header(headers::ORIGIN_OFFSET).unwrap_or_default()
                    ),
                    "first_failure_at": raw.header(headers::FIRST_FAILURE_AT),
                });
                lines.push(line.to_string());
                Ok(())
            },
        )?;
        Ok(lines)
    })
    .await??;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// What to redrive, and how fast.
#[derive(Debug, Clone, clap::Args)]
pub struct RedriveOptions {
    /// List what would be redriven; send and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this product's dead letters.
    #[arg(long, value_name = "ID")]
    pub product: Option<String>,
    /// Only dead letters whose reason contains this text.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Only dead letters that first failed at or after this time, e.g.
    /// 2026-12-04T10:00:00Z.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many records per second (0: no limit).
    #[arg(long = "rate", value_name = "PER_SECOND", default_value_t = 50)]
    pub per_second: u32,
    /// Records per page (per commit).
    #[arg(long, value_name = "RECORDS", default_value_t = 100, value_parser = at_least_one)]
    pub page: usize,
}

fn rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.to_utc())
        .map_err(|e| format!("not an RFC 3339 time such as 2026-12-04T10:00:00Z: {e}"))
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("a number of records, at least 1".to_owned()),
    }
}

impl Default for RedriveOptions {
    fn default() -> Self {
        Self::parse(&[]).expect("the defaults parse")
    }
}

impl RedriveOptions {
    /// Parses the options as `image-processor dlq redrive` takes them.
    pub fn parse(args: &[&str]) -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Line {
            #[command(flatten)]
            options: RedriveOptions,
        }
        Ok(<Line as clap::Parser>::try_parse_from(args)?.options)
    }

    fn filtered(&self) -> bool {
        self.product.is_some() || self.reason.is_some() || self.since.is_some()
    }

    fn matches(&self, raw: &RawRecord) -> bool {
        let product = raw.key.as_deref().map(String::from_utf8_lossy);
        self.product
            .as_deref()
            .is_none_or(|wanted| product.as_deref() == Some(wanted))
            && self.reason.as_deref().is_none_or(|wanted| {
                raw.header(headers::ERROR)
                    .is_some_and(|reason| reason.contains(wanted))
            })
            && self.since.is_none_or(|since| {
                raw.header(headers::FIRST_FAILURE_AT)
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
                    .is_some_and(|at| at.to_utc() >= since)
            })
    }
}

/// What a redrive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Records sent to the main topic (or, in a dry run, that would be).
    pub sent: usize,
    /// Records read and left out by the filter.
    pub skipped: usize,
}

/// Republishes the dead letters not redriven yet, with the default options; returns how
/// many.
pub async fn redrive(kafka: &KafkaSettings, group: &str) -> anyhow::Result<usize> {
    let done = redrive_with(
        kafka,
        group,
        &RedriveOptions::default(),
        &mut std::io::sink(),
    )
    .await?;
    Ok(done.sent)
}

/// Redrives under `options`, writing progress (and, in a dry run, each record) to `out`.
pub async fn redrive_with(
    kafka: &KafkaSettings,
    group: &str,
    options: &RedriveOptions,
    out: &mut (impl Write + Send),
) -> anyhow::Result<Redriven> {
    let topics = kafka.topics();
    let source = topics.image_dead_letters();
    let target = topics.product_events();
    let producer: FutureProducer = kafka.producer(platform::kafka::DELIVERY_TIMEOUT)?;
    let consumer = base_consumer(kafka, group)?;
    let options = options.clone();
    let runtime = tokio::runtime::Handle::current();
    // librdkafka's consumer calls block: the whole redrive runs on a blocking thread, the
    // sends handed to the runtime one at a time.
    let (done, lines) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let resume = !options.filtered() && !options.dry_run;
        let mut committed = HashMap::new();
        if resume {
            let metadata = consumer.fetch_metadata(Some(&source), TIMEOUT)?;
            let mut list = TopicPartitionList::new();
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition(&source, p.id());
                }
            }
            for element in consumer.committed_offsets(list, TIMEOUT)?.elements() {
                if let Offset::Offset(offset) = element.offset() {
                    committed.insert(element.partition(), offset);
                }
            }
        }
        let mut done = Redriven::default();
        let mut lines = Vec::new();
        let mut page = TopicPartitionList::new();
        let mut in_page = 0;
        let pause = (options.per_second > 0)
            .then(|| Duration::from_secs_f64(1.0 / f64::from(options.per_second)));
        let commit = |page: &TopicPartitionList,
                      done: &Redriven,
                      lines: &mut Vec<String>|
         -> anyhow::Result<()> {
            if resume && page.count() > 0 {
                consumer.commit(page, CommitMode::Sync)?;
            }
            lines.push(format!(
                "redrive: {} sent, {} skipped so far",
                done.sent, done.skipped
            ));
            Ok(())
        };
        read_to_end(
            &consumer,
            &source,
            |p, low| *committed.get(&p).unwrap_or(&low),
            |message| {
                let raw = RawRecord::of(message);
                if !options.matches(&raw) {
                    done.skipped += 1;
                } else if options.dry_run {
                    done.sent += 1;
                    lines.push(format!(
                        "would redrive {}/{} product {} ({})",
                        message.partition(),
                        message.offset(),
                        raw.key
                            .as_deref()
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default(),
                        raw.header(headers::ERROR).unwrap_or_default()
                    ));
                } else {
                    let started = std::time::Instant::now();
                    runtime
                        .block_on(send(&producer, &target, &raw))
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "Failed to redrive {}/{}: {e}",
                                message.partition(),
                                message.offset()
                            )
                        })?;
                    done.sent += 1;
                    if let Some(pause) = pause {
                        std::thread::sleep(pause.saturating_sub(started.elapsed()));
                    }
                }
                page.add_partition_offset(
                    message.topic(),
                    message.partition(),
                    Offset::Offset(message.offset() + 1),
                )?;
                in_page += 1;
                if in_page >= options.page {
                    commit(&page, &done, &mut lines)?;
                    page = TopicPartitionList::new();
                    in_page = 0;
                }
                Ok(())
            },
        )?;
        if in_page > 0 {
            commit(&page, &done, &mut lines)?;
        }
        Ok((done, lines))
    })
    .await??;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(done)
}

/// Sends one dead letter back to the main topic, marked as redriven.
async fn send(producer: &FutureProducer, target: &str, raw: &RawRecord) -> anyhow::Result<()> {
    let mut headers = raw.event_headers();
    // So the processor knows the record may be older than its product's latest state.
    headers.push((
        headers::REDRIVEN_AT.to_owned(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into_bytes(),
    ));
    let headers = platform::kafka::owned_headers(headers);
    let mut record = FutureRecord::to(target)
        .payload(&raw.value)
        .headers(headers);
    if let Some(key) = &raw.key {
        record = record.key(key);
    }
    producer
        .send(record, Timeout::After(TIMEOUT))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    Ok(())
}
