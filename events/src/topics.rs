//! Topic names, all under one configurable prefix (`KAFKA_TOPIC_PREFIX`), so that
//! environments and tests can share a cluster without sharing topics.

/// Every topic of the catalog for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The default prefix, `catalog.`.
    pub const DEFAULT_PREFIX: &'static str = "catalog.";

    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// Product lifecycle events (`ProductCreated`, `ProductImagesChanged`, `ProductDeleted`),
    /// keyed by product id. Written by the api's outbox relay.
    pub fn product_events(&self) -> String {
        format!("{}product-events", self.prefix)
    }

    /// `ImagesCompressed`, keyed by product id. Written by the image-processor.
    pub fn images_compressed(&self) -> String {
        format!("{}images-compressed", self.prefix)
    }

    /// The change feed: every product's current state, keyed by product id, compacted, with
    /// a tombstone (no value) for a deleted product. Written by the api's outbox relay.
    pub fn products(&self) -> String {
        format!("{}products", self.prefix)
    }

    /// Topics that keep the last record per key (`cleanup.policy=compact`) instead of
    /// deleting by age.
    pub fn is_compacted(&self, topic: &str) -> bool {
        topic == self.products()
    }

    /// The image-processor's retry topic for the `level`-th retry (1-based).
    pub fn image_retry(&self, level: usize) -> String {
        format!("{}image-processor.retry-{level}", self.prefix)
    }

    /// The image-processor's deferred second steps: the formats that follow WebP (AVIF) of
    /// images whose first step was shown while a backlog waited (`x-step: later`), made by
    /// a consumer of their own behind every first step.
    pub fn image_later(&self) -> String {
        format!("{}image-processor.later", self.prefix)
    }

    /// Jobs that exhausted their retries or could not be read at all.
    pub fn image_dead_letters(&self) -> String {
        format!("{}image-processor.dlq", self.prefix)
    }

    /// Every topic, for creating them up front (`retries` retry levels).
    pub fn all(&self, retries: usize) -> Vec<String> {
        let mut topics = vec![
            self.product_events(),
            self.products(),
            self.images_compressed(),
            self.image_later(),
            self.image_dead_letters(),
        ];
        topics.extend((1..=retries).map(|level| self.image_retry(level)));
        topics
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_carries_the_prefix() {
        let topics = Topics::new("t42.");
        assert!(topics.all(3).iter().all(|t| t.starts_with("t42.")));
        assert_eq!(topics.all(3).len(), 8);
        assert!(topics.is_compacted("t42.products"));
        assert!(!topics.is_compacted("t42.product-events"));
        assert_eq!(topics.image_retry(2), "t42.image-processor.retry-2");
        assert_eq!(topics.image_later(), "t42.image-processor.later");
    }
}
