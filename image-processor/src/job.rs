//! A unit of work read from a record: which images of which product revision to process,
//! and the bookkeeping that travels with retries.

use std::collections::BTreeMap;

use events::{
    Envelope, EventType, ProductCreated, ProductDeleted, ProductImagesChanged, SourceImage, headers,
};
use rdkafka::{Message, message::Headers};

/// Where a job first entered the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Images to process for one product revision.
#[derive(Debug, Clone)]
pub struct Job {
    pub envelope: Envelope,
    pub product_id: String,
    pub revision: i32,
    /// The images still to do (all of them on the first attempt).
    pub images: Vec<SourceImage>,
    /// 1 on the first try, 2 on the first retry…
    pub attempt: u32,
    pub origin: Origin,
    /// When the job first failed, if it has (RFC 3339).
    pub first_failure_at: Option<String>,
    /// Republished from the dead-letter topic (`x-redriven-at`).
    pub redriven: bool,
    /// A deferred second step (`x-step: later`): the images' first steps were shown by an
    /// earlier job.
    pub later: bool,
    /// Where the sources of a deferred second step (or its retry) were kept, by image index
    /// (`x-sources`).
    pub sources: BTreeMap<u32, String>,
    /// The record's value and ce_ headers as received, forwarded to retries and dead letters.
    pub raw: RawRecord,
}

/// A record's key, value and headers, copied so they can be forwarded.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RawRecord {
    pub fn of(message: &impl Message) -> Self {
        Self {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The headers that describe the event itself (ce_*, content-type, traceparent): what a
    /// retry or dead letter carries over, without earlier bookkeeping.
    pub fn event_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .filter(|(k, _)| !k.starts_with("x-"))
            .cloned()
            .collect()
    }
}

/// A deleted product, whose stored images go too.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub envelope: Envelope,
    pub product_id: String,
    pub origin: Origin,
    pub raw: RawRecord,
}

/// What a record asks for.
#[derive(Debug)]
pub enum Decoded {
    Job(Box<Job>),
    Deleted(Box<Deletion>),
    /// A well-formed event with nothing to do here.
    Nothing(EventType),
}

/// The id becomes part of object keys: digits only, so no record can write (or delete)
/// elsewhere.
fn check_product_id(product_id: &str) -> Result<(), String> {
    if product_id.is_empty() || !product_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("product id {product_id:?} is not a number"));
    }
    Ok(())
}

/// Reads a record; an error means it cannot be read at all (a dead letter).
pub fn decode(message: &impl Message) -> Result<Decoded, String> {
    let raw = RawRecord::of(message);
    let envelope = Envelope::from_headers(
        raw.headers
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
    )
    .map_err(|e| format!("not a catalog event: {e}"))?;
    let (product_id, revision, urls) = match envelope.event_type {
        EventType::ProductCreated => {
            let e: ProductCreated = serde_json::from_slice(&raw.value)
                .map_err(|e| format!("invalid ProductCreated: {e}"))?;
            (e.product_id, e.image_revision, e.product_images)
        }
        EventType::ProductImagesChanged => {
            let e: ProductImagesChanged = serde_json::from_slice(&raw.value)
                .map_err(|e| format!("invalid ProductImagesChanged: {e}"))?;
            (e.product_id, e.image_revision, e.product_images)
        }
        EventType::ProductDeleted => {
            let e: ProductDeleted = serde_json::from_slice(&raw.value)
                .map_err(|e| format!("invalid ProductDeleted: {e}"))?;
            check_product_id(&e.product_id)?;
            return Ok(Decoded::Deleted(Box::new(Deletion {
                envelope,
                product_id: e.product_id,
                origin: origin_of(message, &raw),
                raw,
            })));
        }
        other => return Ok(Decoded::Nothing(other)),
    };
    check_product_id(&product_id)?;
    let only: Option<Vec<u32>> = raw.header(headers::IMAGES).map(|list| {
        list.split(',')
            .filter_map(|i| i.trim().parse().ok())
            .collect()
    });
    let images = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| SourceImage {
            index: i as u32,
            url,
        })
        .filter(|image| only.as_ref().is_none_or(|only| only.contains(&image.index)))
        .collect();
    let origin = origin_of(message, &raw);
    Ok(Decoded::Job(Box::new(Job {
        product_id,
        revision,
        images,
        // Attempts count from 1; a header that says 0 or is not a number (another producer,
        // a hand-made redrive) counts as a first attempt rather than breaking the retry levels.
        attempt: raw
            .header(headers::ATTEMPT)
            .and_then(|a| a.parse::<u32>().ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1),
        origin,
        first_failure_at: raw.header(headers::FIRST_FAILURE_AT),
        redriven: raw.header(headers::REDRIVEN_AT).is_some(),
        later: raw.header(headers::STEP).as_deref() == Some("later"),
        sources: raw
            .header(headers::SOURCES)
            .map(|list| parse_sources(&list))
            .unwrap_or_default(),
        envelope,
        raw,
    })))
}

/// Reads `0:<content>,2:<content>`; entries that do not read so are left out (their images
/// are downloaded again).
fn parse_sources(list: &str) -> BTreeMap<u32, String> {
    list.split(',')
        .filter_map(|entry| {
            let (index, content) = entry.trim().split_once(':')?;
            let well_formed = content.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            well_formed.then(|| Some((index.parse().ok()?, content.to_owned())))?
        })
        .collect()
}

/// Where the record first entered the pipeline: its origin headers after a retry or a
/// redrive, the record itself otherwise.
fn origin_of(message: &impl Message, raw: &RawRecord) -> Origin {
    match (
        raw.header(headers::ORIGIN_TOPIC),
        raw.header(headers::ORIGIN_PARTITION)
            .and_then(|p| p.parse().ok()),
        raw.header(headers::ORIGIN_OFFSET)
            .and_then(|o| o.parse().ok()),
    ) {
        (Some(topic), Some(partition), Some(offset)) => Origin {
            topic,
            partition,
            offset,
        },
        _ => Origin {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_sources_read_by_index_and_nothing_else_becomes_a_key() {
        let sources = parse_sources("0:ab12-20400, 2:cd34-20401,3:../../etc-1,x:ab-1,4");
        assert_eq!(
            sources,
            BTreeMap::from([(0, "ab12-20400".to_owned()), (2, "cd34-20401".to_owned())])
        );
    }
}
