//! The CloudEvents envelope in the Kafka binding's binary mode: attributes as `ce_*` headers,
//! the payload as the record value, the product id as the record key.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::headers;

/// The versioned types of the catalog's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    ProductCreated,
    ProductImagesChanged,
    ProductDeleted,
    ImagesCompressed,
    /// A product's whole state, on the compacted products topic.
    ProductState,
}

impl EventType {
    pub const ALL: [Self; 5] = [
        Self::ProductCreated,
        Self::ProductImagesChanged,
        Self::ProductDeleted,
        Self::ImagesCompressed,
        Self::ProductState,
    ];

    /// The `ce_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductCreated => "com.catalog.product.created.v1",
            Self::ProductImagesChanged => "com.catalog.product.images-changed.v1",
            Self::ProductDeleted => "com.catalog.product.deleted.v1",
            Self::ImagesCompressed => "com.catalog.images.compressed.v1",
            Self::ProductState => "com.catalog.product.state.v1",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The CloudEvents attributes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    pub event_type: EventType,
    /// The emitter, e.g. `/catalog/api`.
    pub source: String,
    pub time: DateTime<Utc>,
    /// The product id; also the record key.
    pub subject: String,
    /// W3C trace context, when the event was caused by a traced request.
    pub traceparent: Option<String>,
    /// When the change this event answers was committed (`ce_causetime`, on results).
    pub causetime: Option<DateTime<Utc>>,
}

/// Why headers do not make an envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

impl Envelope {
    /// A new event of `event_type` about product `subject`, happening now.
    pub fn new(
        event_type: EventType,
        source: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            event_type,
            source: source.into(),
            time: Utc::now(),
            subject: subject.into(),
            traceparent: None,
            causetime: None,
        }
    }

    /// The record headers.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::CE_SPECVERSION, "1.0".to_owned()),
            (headers::CE_ID, self.id.to_string()),
            (headers::CE_TYPE, self.event_type.as_str().to_owned()),
            (headers::CE_SOURCE, self.source.clone()),
            (
                headers::CE_TIME,
                self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            (headers::CE_SUBJECT, self.subject.clone()),
            (headers::CONTENT_TYPE, "application/json".to_owned()),
        ];
        if let Some(traceparent) = &self.traceparent {
            out.push((headers::TRACEPARENT, traceparent.clone()));
        }
        if let Some(causetime) = self.causetime {
            out.push((
                headers::CE_CAUSETIME,
                causetime.to_rfc3339_opts(SecondsFormat::Millis, true),
            ));
        }
        out
    }

    /// Reads the envelope from record headers given as (name, value) pairs.
    pub fn from_headers<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, EnvelopeError> {
        let mut found: std::collections::HashMap<&str, String> = Default::default();
        for (name, value) in pairs {
            if let Some(value) = value {
                found.insert(name, String::from_utf8_lossy(value).into_owned());
            }
        }
        let mut take = |name: &'static str| found.remove(name).ok_or(EnvelopeError::Missing(name));
        let version = take(headers::CE_SPECVERSION)?;
        if version != "1.0" {
            return Err(EnvelopeError::Invalid(headers::CE_SPECVERSION, version));
        }
        let id = take(headers::CE_ID)?;
        let event_type = take(headers::CE_TYPE)?;
        let time = take(headers::CE_TIME)?;
        Ok(Self {
            id: id
                .parse()
                .map_err(|_| EnvelopeError::Invalid(headers::CE_ID, id))?,
            event_type: EventType::parse(&event_type)
                .ok_or(EnvelopeError::Invalid(headers::CE_TYPE, event_type))?,
            source: take(headers::CE_SOURCE)?,
            time: DateTime::parse_from_rfc3339(&time)
                .map_err(|_| EnvelopeError::Invalid(headers::CE_TIME, time))?
                .with_timezone(&Utc),
            subject: take(headers::CE_SUBJECT)?,
            traceparent: take(headers::TRACEPARENT).ok(),
            // An extension only informs metrics: one that does not parse is ignored rather
            // than making the event unreadable.
            causetime: take(headers::CE_CAUSETIME)
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_its_headers() {
        let mut envelope = Envelope::new(EventType::ProductCreated, "/catalog/api", "42");
        envelope.traceparent =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        envelope.causetime = Some(Utc::now() - chrono::Duration::seconds(3));
        let headers = envelope.headers();
        let back =
            Envelope::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes())))).unwrap();
        assert_eq!(back.id, envelope.id);
        assert_eq!(back.event_type, EventType::ProductCreated);
        assert_eq!(back.subject, "42");
        assert_eq!(back.traceparent, envelope.traceparent);
        assert_eq!(
            back.causetime.map(|t| t.timestamp_millis()),
            envelope.causetime.map(|t| t.timestamp_millis())
        );
        assert_eq!(
            back.time.timestamp_millis(),
            envelope.time.timestamp_millis()
        );
    }

    #[test]
    fn missing_or_unknown_attributes_are_named() {
        assert_eq!(
            Envelope::from_headers(Vec::new()).unwrap_err(),
            EnvelopeError::Missing(headers::CE_SPECVERSION)
        );
        let mut headers = Envelope::new(EventType::ProductDeleted, "s", "1").headers();
        headers.retain(|(k, _)| *k != headers::CE_TYPE);
        headers.push((headers::CE_TYPE, "com.other.v9".into()));
        let err = Envelope::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::Invalid(headers::CE_TYPE, _)));
    }

    #[test]
    fn event_types_read_back() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
