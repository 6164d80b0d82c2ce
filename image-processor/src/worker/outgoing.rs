//! What the worker produces: `ImagesCompressed` results, deferred second steps, retry
//! records and dead letters, each sent until the broker acknowledges it (or shutdown comes
//! first).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use events::{EventType, ImageResult, ImagesCompressed, SourceImage, headers};
use rdkafka::{producer::FutureRecord, util::Timeout};
use tokio_util::sync::CancellationToken;

use super::{SOURCE, Worker};
use crate::{
    failure::Failure,
    job::{self, Job, RawRecord},
};

/// A record to produce, owned so a failed send can be retried.
pub(super) struct Outgoing {
    topic: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Worker {
    pub(super) fn images_compressed(&self, job: &Job, images: Vec<ImageResult>) -> Outgoing {
        let mut envelope =
            events::Envelope::new(EventType::ImagesCompressed, SOURCE, job.product_id.clone());
        envelope.traceparent =
            platform::telemetry::current_traceparent().or_else(|| job.envelope.traceparent.clone());
        envelope.causetime = Some(job.envelope.time);
        let event = ImagesCompressed {
            product_id: job.product_id.clone(),
            image_revision: job.revision,
            images,
        };
        Outgoing {
            topic: self.topics.images_compressed(),
            key: Some(job.product_id.clone().into_bytes()),
            value: serde_json::to_vec(&event).expect("events serialise"),
            headers: envelope
                .headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                .collect(),
        }
    }

    pub(super) fn retry(
        &self,
        job: &Job,
        transient: &[(SourceImage, Failure)],
        level: usize,
        delay: Duration,
        reason: &str,
        first_failure: &str,
    ) -> Outgoing {
        let not_before = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let images: Vec<String> = transient.iter().map(|(i, _)| i.index.to_string()).collect();
        let mut headers = job.raw.event_headers();
        for (name, value) in bookkeeping(
            &job.origin,
            reason,
            "transient",
            job.attempt + 1,
            Some(first_failure),
        ) {
            headers.push((name, value));
        }
        headers.push((
            headers::NOT_BEFORE.to_owned(),
            not_before
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .into_bytes(),
        ));
        headers.push((headers::IMAGES.to_owned(), images.join(",").into_bytes()));
        // A deferred second step's retry reads the kept sources too.
        headers.extend(sources_header(transient.iter().filter_map(|(i, _)| {
            Some((i.index, job.sources.get(&i.index)?.as_str()))
        })));
        Outgoing {
            topic: self.topics.image_retry(level),
            key: job.raw.key.clone(),
            value: job.raw.value.clone(),
            headers,
        }
    }

    /// The deferred second steps of `images` (each with the content its source was kept
    /// under), for the later topic's consumer: the job's record with `x-step: later`, the
    /// images it is for, their sources, and where it first came from.
    pub(super) fn later_step_record(
        &self,
        job: &Job,
        images: &[(SourceImage, String)],
    ) -> Outgoing {
        let indexes: Vec<String> = images.iter().map(|(i, _)| i.index.to_string()).collect();
        let mut headers = job.raw.event_headers();
        headers.push((headers::STEP.to_owned(), b"later".to_vec()));
        headers.extend(provenance(&job.origin, job.attempt));
        headers.push((headers::IMAGES.to_owned(), indexes.join(",").into_bytes()));
        headers.extend(sources_header(
            images
                .iter()
                .map(|(i, content)| (i.index, content.as_str())),
        ));
        if let Some(first) = &job.first_failure_at {
            headers.push((
                headers::FIRST_FAILURE_AT.to_owned(),
                first.clone().into_bytes(),
            ));
        }
        Outgoing {
            topic: self.topics.image_later(),
            key: job.raw.key.clone(),
            value: job.raw.value.clone(),
            headers,
        }
    }

    pub(super) fn dead_letter(
        &self,
        raw: &RawRecord,
        origin: &job::Origin,
        reason: &str,
        kind: &str,
        attempts: u32,
        first_failure: Option<&str>,
    ) -> Outgoing {
        let mut headers = raw.event_headers();
        headers.extend(bookkeeping(origin, reason, kind, attempts, first_failure));
        Outgoing {
            topic: self.topics.image_dead_letters(),
            key: raw.key.clone(),
            value: raw.value.clone(),
            headers,
        }
    }

    /// Sends until the broker acknowledges; false when shutdown came first.
    pub(super) async fn send_durably(
        &self,
        record: Outgoing,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            let headers =
                platform::kafka::owned_headers(record.headers.iter().map(|(k, v)| (k, v)));
            let mut future = FutureRecord::to(&record.topic)
                .payload(&record.value)
                .headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            match self
                .producer
                .send(future, Timeout::After(Duration::from_secs(30)))
                .await
            {
                Ok(_) => return true,
                Err((error, _)) => {
                    tracing::warn!(topic = %record.topic, %error, retry_in_ms = backoff.as_millis() as u64, "Produce failed; retrying.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// The retry and dead-letter headers.
fn bookkeeping(
    origin: &job::Origin,
    reason: &str,
    kind: &str,
    attempt: u32,
    first_failure: Option<&str>,
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (headers::ERROR.to_owned(), reason.as_bytes().to_vec()),
        (headers::ERROR_KIND.to_owned(), kind.as_bytes().to_vec()),
    ];
    out.extend(provenance(origin, attempt));
    let first = first_failure
        .map(str::to_owned)
        .unwrap_or_else(|| Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    out.push((headers::FIRST_FAILURE_AT.to_owned(), first.into_bytes()));
    out
}

/// The attempt and where the job first came from, for every record that carries a job on.
fn provenance(origin: &job::Origin, attempt: u32) -> [(String, Vec<u8>); 4] {
    [
        (headers::ATTEMPT, attempt.to_string()),
        (headers::ORIGIN_TOPIC, origin.topic.clone()),
        (headers::ORIGIN_PARTITION, origin.partition.to_string()),
        (headers::ORIGIN_OFFSET, origin.offset.to_string()),
    ]
    .map(|(name, value)| (name.to_owned(), value.into_bytes()))
}

/// `x-sources` for the images of `kept` whose source was kept (`<index>:<content>`), none
/// when no source was.
fn sources_header<'a>(kept: impl Iterator<Item = (u32, &'a str)>) -> Option<(String, Vec<u8>)> {
    let sources: Vec<String> = kept
        .map(|(index, content)| format!("{index}:{content}"))
        .collect();
    (!sources.is_empty()).then(|| (headers::SOURCES.to_owned(), sources.join(",").into_bytes()))
}
