//! Content-addressed variants: identical source bytes under identical settings are
//! processed once, however many products use them, and stored objects never change.
//!
//! Layout in the store:
//! - `images/<digest>/<epoch>/<width>.<ext>`: the variants; `manifest.json` beside them is
//!   written last, so its presence means the set is complete. The first step's set (the
//!   WebP ladder, published before the AVIF is made) has `first-step.json` instead, written
//!   after its variants: a retry of the second step finds it and makes only the AVIF. The
//!   digest is the SHA-256 of the pipeline's settings and the source bytes; the epoch is the
//!   period (`IMAGE_GC_EPOCH`, a day by default, counted from 1970) the objects were written
//!   in. `source` beside them is the downloaded source, kept while a deferred second step
//!   waits for it (read instead of downloading it again, by every product with those
//!   bytes), deleted by cleanup once the whole set is stored and its epoch is over, or
//!   once old even while the content is referred to.
//! - `products/<id>/r<revision>/<index>/<digest>-<epoch>`: an empty object per product image
//!   naming the content it shows: the references. A product's deletion, or a newer revision, deletes
//!   its references ([`crate::storage`]); the content goes when nothing refers to it.
//!
//! Cleanup ([`ContentStore::collect_garbage`]) deletes content that no reference names and
//! that was written three or more epochs ago. The epoch keeps it from racing a reuse:
//! - a source whose content is from this epoch or the previous one reuses it (a reference is
//!   written seconds later, long before the content is three epochs old);
//! - older content is copied, store-side, into this epoch (no decoding or encoding), and the
//!   copy is used; if the old one went meanwhile, the source is processed again.
//!
//! So no object that a reference names, or that a job in flight is about to name, is ever
//! deleted, without any lock between the processors and the cleanup. Only the listing's cost
//! is shared out: each round of cleanup is claimed by one processor
//! ([`ContentStore::claim_cleanup`]), so the store is listed once a round, not once per replica.

use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod cleanup;

use crate::{
    failure::Failure,
    storage::Storage,
    transform::{OutputFormat, TransformSettings},
};

/// Bumped whenever the transform's output for the same bytes and settings changes, so
/// content made by an older version is not reused. 2: AVIF by libaom instead of rav1e.
/// 3: AVIF with libaom's square search, WebP published first.
const TRANSFORM_VERSION: u32 = 3;

/// Marks a complete set: every format's variants are stored.
const MANIFEST: &str = "manifest.json";

/// Marks the first step's set: the formats made before the rest (the WebP ladder).
const FIRST_STEP: &str = "first-step.json";

/// The source bytes of content whose second step is deferred.
const SOURCE: &str = "source";

/// Content written this many epochs before the current one, or earlier, and named by no
/// reference, is deleted.
const KEEP_EPOCHS: u64 = 3;

/// What one source's content holds: everything an `ImageResult` needs, so reusing it needs
/// no decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub source_width: u32,
    pub source_height: u32,
    /// Base64 (standard alphabet).
    pub thumbhash: String,
    /// `#rrggbb`.
    pub dominant_color: String,
    /// Ordered by format, then width.
    pub variants: Vec<StoredVariant>,
}

/// One variant of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVariant {
    /// The media type.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// The object's name inside the content's folder, e.g. `1280.avif`.
    pub file: String,
}

/// The content-addressed side of the store.
#[derive(Clone)]
pub struct ContentStore {
    storage: Storage,
    /// `IMAGE_GC_EPOCH`.
    epoch: Duration,
    /// Identifies the settings in each digest.
    fingerprint: String,
}

/// How a source's content was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Written this epoch or the previous one: use it as it is.
    Reusable,
    /// Copied from an older epoch.
    Copied,
}

impl ContentStore {
    pub fn new(storage: Storage, epoch: Duration, settings: &TransformSettings) -> Self {
        let formats: Vec<&str> = settings.formats.iter().map(|f| f.extension()).collect();
        let fingerprint = format!(
            "v{TRANSFORM_VERSION} widths={:?} formats={formats:?} webp={} avif={}@{}/{}/{} max_pixels={}",
            settings.widths,
            settings.webp_quality,
            settings.avif_quality,
            settings.avif_speed,
            settings.avif_mode,
            settings.avif_search,
            settings.max_pixels,
        );
        Self {
            storage,
            epoch: epoch.max(Duration::from_secs(1)),
            fingerprint,
        }
    }

    /// The digest of `bytes` under this store's settings (64 hex digits).
    pub fn digest(&self, bytes: &[u8]) -> String {
        let mut hash = Sha256::new();
        hash.update(b"catalog-image\n");
        hash.update(self.fingerprint.as_bytes());
        hash.update(b"\n");
        hash.update(bytes);
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The current epoch.
    pub fn epoch_now(&self) -> u64 {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        since.as_secs() / self.epoch.as_secs()
    }

    /// The content id of `digest` written in `epoch`: what a reference is named.
    pub fn content_id(digest: &str, epoch: u64) -> String {
        format!("{digest}-{epoch}")
    }

    /// The key of `file` of content `content` (`<digest>-<epoch>`).
    pub fn key(content: &str, file: &str) -> String {
        let (digest, epoch) = content.rsplit_once('-').unwrap_or((content, "0"));
        format!("images/{digest}/{epoch}/{file}")
    }

    /// The public URL of a variant.
    pub fn url(&self, content: &str, file: &str) -> String {
        self.storage.public_url(&Self::key(content, file))
    }

    /// The file name of a variant.
    pub fn file_name(format: OutputFormat, width: u32) -> String {
        format!("{width}.{}", format.extension())
    }

    /// Content for `digest` that can serve now, copying it into this epoch if it is older
    /// than the reuse window; `None` when there is none (or the old one went meanwhile).
    pub async fn find(&self, digest: &str) -> Result<Option<(String, Manifest, Found)>, Failure> {
        let now = self.epoch_now();
        let Some(epoch) = self.newest_with(digest, MANIFEST).await? else {
            return Ok(None);
        };
        let content = Self::content_id(digest, epoch);
        let Some(manifest) = self.manifest(&content, MANIFEST).await? else {
            return Ok(None);
        };
        if epoch.saturating_add(1) >= now {
            return Ok(Some((content, manifest, Found::Reusable)));
        }
        let fresh = Self::content_id(digest, now);
        for variant in &manifest.variants {
            let copied = self
                .storage
                .copy(
                    &Self::key(&content, &variant.file),
                    &Self::key(&fresh, &variant.file),
                )
                .await;
            match copied {
                Ok(()) => {}
                // Deleted by the cleanup meanwhile: process the source again.
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => {
                    return Err(Failure::transient(format!(
                        "copying stored images failed: {e}"
                    )));
                }
            }
        }
        self.put_manifest(&fresh, &manifest).await?;
        Ok(Some((fresh, manifest, Found::Copied)))
    }

    /// The first step's set for `digest` (its WebP ladder) when one was written this epoch or
    /// the previous one and the whole set was not: the source was made that far (by an
    /// attempt whose second step failed, or by another product's job in flight), so only the
    /// rest needs making. Older first steps are not reused: they may be near cleanup.
    pub async fn find_first_step(
        &self,
        digest: &str,
    ) -> Result<Option<(String, Manifest)>, Failure> {
        let Some(epoch) = self.newest_with(digest, FIRST_STEP).await? else {
            return Ok(None);
        };
        if epoch.saturating_add(1) < self.epoch_now() {
            return Ok(None);
        }
        let content = Self::content_id(digest, epoch);
        Ok(self
            .manifest(&content, FIRST_STEP)
            .await?
            .map(|manifest| (content, manifest)))
    }

    /// The newest epoch of `digest` that holds `file` (a manifest).
    async fn newest_with(&self, digest: &str, file: &str) -> Result<Option<u64>, Failure> {
        let listed = self
            .list(&format!("images/{digest}"))
            .await
            .map_err(|e| Failure::transient(format!("reading the store failed: {e}")))?;
        Ok(listed
            .iter()
            .filter(|parts| parts.len() == 4 && parts[3] == file)
            .filter_map(|parts| parts[2].parse::<u64>().ok())
            .max())
    }

    async fn manifest(&self, content: &str, file: &str) -> Result<Option<Manifest>, Failure> {
        let bytes = self.storage.read(&Self::key(content, file)).await?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Stores one variant of `content` (its URL is [`ContentStore::url`]).
    pub async fn put_variant(
        &self,
        content: &str,
        file: &str,
        bytes: Vec<u8>,
        media_type: &'static str,
    ) -> Result<(), Failure> {
        self.storage
            .put(&Self::key(content, file), bytes, media_type)
            .await
            .map(|_| ())
    }

    /// Marks `content` complete: written after every variant.
    pub async fn put_manifest(&self, content: &str, manifest: &Manifest) -> Result<(), Failure> {
        self.put_json(content, MANIFEST, manifest).await
    }

    /// Marks the first step of `content` stored: written after its variants (`manifest`
    /// lists only them).
    pub async fn put_first_step(&self, content: &str, manifest: &Manifest) -> Result<(), Failure> {
        self.put_json(content, FIRST_STEP, manifest).await
    }

    async fn put_json(
        &self,
        content: &str,
        file: &str,
        manifest: &Manifest,
    ) -> Result<(), Failure> {
        let json = serde_json::to_vec(manifest).expect("a manifest serialises");
        self.storage
            .put(&Self::key(content, file), json, "application/json")
            .await
            .map(|_| ())
    }

    /// Keeps the downloaded source of `content` for its deferred second step.
    pub async fn put_source(&self, content: &str, bytes: &bytes::Bytes) -> Result<(), Failure> {
        self.storage
            .put(
                &Self::key(content, SOURCE),
                bytes.to_vec(),
                "application/octet-stream",
            )
            .await
            .map(|_| ())
    }

    /// The source kept for `content`'s deferred second step; `None` when it is gone.
    pub async fn source(&self, content: &str) -> Result<Option<bytes::Bytes>, Failure> {
        self.storage.read(&Self::key(content, SOURCE)).await
    }

    /// Records that image `index` of `product_id`'s `revision` shows `content`.
    pub async fn refer(
        &self,
        product_id: &str,
        revision: i32,
        index: u32,
        content: &str,
    ) -> Result<(), Failure> {
        self.storage
            .put_empty(&format!(
                "products/{product_id}/r{revision}/{index}/{content}"
            ))
            .await
    }

    /// Every object under `top`, as its key's parts after the storage prefix.
    async fn list(&self, top: &str) -> Result<Vec<Vec<String>>, object_store::Error> {
        let prefix = self.storage.path("");
        let skip = prefix.parts().count();
        let listed: Vec<_> = match self
            .storage
            .store()
            .list(Some(&self.storage.path(top)))
            .try_collect()
            .await
        {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(listed
            .into_iter()
            .map(|meta| {
                meta.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_owned())
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ContentStore {
        let storage = Storage::from_url("memory://", "http://images").unwrap();
        ContentStore::new(
            storage,
            Duration::from_secs(86_400),
            &TransformSettings::default(),
        )
    }

    fn manifest() -> Manifest {
        Manifest {
            source_width: 640,
            source_height: 427,
            thumbhash: "D9cFHYQsd2ZweZd1h4iIdnZwbQfX".into(),
            dominant_color: "#082647".into(),
            variants: vec![StoredVariant {
                format: "image/webp".into(),
                width: 640,
                height: 427,
                bytes: 3,
                file: "640.webp".into(),
            }],
        }
    }

    async fn write(store: &ContentStore, content: &str) {
        store
            .put_variant(content, "640.webp", vec![1, 2, 3], "image/webp")
            .await
            .unwrap();
        store.put_manifest(content, &manifest()).await.unwrap();
    }

    async fn exists(store: &ContentStore, content: &str) -> bool {
        store
            .storage
            .read(&ContentStore::key(content, "640.webp"))
            .await
            .unwrap()
            .is_some()
    }

    #[test]
    fn the_digest_depends_on_the_bytes_and_the_settings() {
        let a = store();
        assert_eq!(a.digest(b"photo"), a.digest(b"photo"));
        assert_ne!(a.digest(b"photo"), a.digest(b"photo2"));
        assert_eq!(a.digest(b"photo").len(), 64);
        let storage = Storage::from_url("memory://", "http://images").unwrap();
        let other = ContentStore::new(
            storage,
            Duration::from_secs(86_400),
            &TransformSettings {
                webp_quality: 90.0,
                ..Default::default()
            },
        );
        assert_ne!(a.digest(b"photo"), other.digest(b"photo"));
    }

    #[tokio::test]
    async fn recent_content_is_reused_and_older_content_is_copied_into_this_epoch() {
        let store = store();
        let now = store.epoch_now();
        let digest = store.digest(b"photo");
        assert_eq!(store.find(&digest).await.unwrap(), None);
        // Only variants, no manifest: an interrupted set is not taken.
        store
            .put_variant(
                &ContentStore::content_id(&digest, now),
                "640.webp",
                vec![1],
                "image/webp",
            )
            .await
            .unwrap();
        assert_eq!(store.find(&digest).await.unwrap(), None);

        let previous = ContentStore::content_id(&digest, now - 1);
        write(&store, &previous).await;
        assert_eq!(
            store.find(&digest).await.unwrap(),
            Some((previous, manifest(), Found::Reusable))
        );

        let other = store.digest(b"old photo");
        write(&store, &ContentStore::content_id(&other, now - 2)).await;
        let fresh = ContentStore::content_id(&other, now);
        assert_eq!(
            store.find(&other).await.unwrap(),
            Some((fresh.clone(), manifest(), Found::Copied))
        );
        assert!(exists(&store, &fresh).await);
    }

    #[tokio::test]
    async fn a_recent_first_step_is_found_for_its_second_step_and_a_whole_set_for_reuse() {
        let store = store();
        let now = store.epoch_now();
        let digest = store.digest(b"photo");
        assert_eq!(store.find_first_step(&digest).await.unwrap(), None);

        let content = ContentStore::content_id(&digest, now);
        store
            .put_variant(&content, "640.webp", vec![1, 2, 3], "image/webp")
            .await
            .unwrap();
        store.put_first_step(&content, &manifest()).await.unwrap();
        assert_eq!(
            store.find_first_step(&digest).await.unwrap(),
            Some((content.clone(), manifest()))
        );
        assert_eq!(
            store.find(&digest).await.unwrap(),
            None,
            "a first step is not the whole set"
        );
        store.put_manifest(&content, &manifest()).await.unwrap();
        assert_eq!(
            store.find(&digest).await.unwrap(),
            Some((content, manifest(), Found::Reusable))
        );

        // Older than the reuse window: made again rather than finished.
        let old = store.digest(b"old photo");
        store
            .put_first_step(&ContentStore::content_id(&old, now - 2), &manifest())
            .await
            .unwrap();
        assert_eq!(store.find_first_step(&old).await.unwrap(), None);
    }

    #[tokio::test]
    async fn each_cleanup_round_is_claimed_by_one_processor_and_old_claims_go() {
        // In memory and in a local directory (`IMAGE_STORAGE_URL=file://…`).
        let dir = std::env::temp_dir().join(format!("catalog-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = Storage::from_url(&format!("file://{}", dir.display()), "http://images");
        let stores = [
            store(),
            ContentStore::new(
                local.unwrap(),
                Duration::from_secs(86_400),
                &TransformSettings::default(),
            ),
        ];
        for one in stores {
            let other = ContentStore::new(
                one.storage.clone(),
                Duration::from_secs(86_400),
                &TransformSettings::default(),
            );
            assert!(one.claim_cleanup(7).await.unwrap());
            assert!(!other.claim_cleanup(7).await.unwrap(), "round 7 is taken");
            assert!(
                !one.claim_cleanup(7).await.unwrap(),
                "even by its own holder"
            );
            assert!(other.claim_cleanup(8).await.unwrap());
            assert_eq!(
                one.list("gc").await.unwrap(),
                [["gc", "8"]],
                "round 7's claim went"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn cleanup_deletes_only_old_content_that_nothing_refers_to() {
        let store = store();
        let now = store.epoch_now();
        let old_unreferenced = ContentStore::content_id(&store.digest(b"a"), now - 3);
        let old_referenced = ContentStore::content_id(&store.digest(b"b"), now - 3);
        let recent_unreferenced = ContentStore::content_id(&store.digest(b"c"), now - 2);
        for content in [&old_unreferenced, &old_referenced, &recent_unreferenced] {
            write(&store, content).await;
        }
        store.refer("7", 1, 0, &old_referenced).await.unwrap();

        assert_eq!(
            store.collect_garbage(now).await.unwrap(),
            2,
            "a variant and a manifest"
        );
        assert!(!exists(&store, &old_unreferenced).await);
        assert!(exists(&store, &old_referenced).await);
        assert!(
            exists(&store, &recent_unreferenced).await,
            "it may be about to be reused"
        );

        // Once the product lets go of it, it goes too.
        store.storage.delete_images("7", None).await.unwrap();
        store.collect_garbage(now).await.unwrap();
        assert!(!exists(&store, &old_referenced).await);
    }

    #[tokio::test]
    async fn a_kept_source_goes_once_its_set_is_complete_and_its_epoch_over_or_once_old() {
        let store = store();
        let now = store.epoch_now();
        let source = bytes::Bytes::from_static(b"jpeg bytes");
        let kept = |content: &str| {
            let (store, content) = (&store, content.to_owned());
            async move { store.source(&content).await.unwrap().is_some() }
        };
        // Complete this epoch: second steps of other products with these bytes may still
        // come for it.
        let this_epoch = ContentStore::content_id(&store.digest(b"d"), now);
        // Complete, an epoch ago: its second steps are done.
        let last_epoch = ContentStore::content_id(&store.digest(b"e"), now - 1);
        // Its second step never came (the first step only), an epoch ago: still waiting.
        let waiting = ContentStore::content_id(&store.digest(b"f"), now - 1);
        // Never came, and old: not kept for good, though the product shows its first step.
        let old = ContentStore::content_id(&store.digest(b"g"), now - 3);
        for content in [&this_epoch, &last_epoch, &waiting, &old] {
            store.put_source(content, &source).await.unwrap();
            store
                .put_variant(content, "640.webp", vec![1, 2, 3], "image/webp")
                .await
                .unwrap();
        }
        for content in [&this_epoch, &last_epoch] {
            store.put_manifest(content, &manifest()).await.unwrap();
        }
        store.refer("8", 1, 0, &old).await.unwrap();
        assert_eq!(store.source(&this_epoch).await.unwrap(), Some(source));

        assert_eq!(store.collect_garbage(now).await.unwrap(), 2, "two sources");
        assert!(kept(&this_epoch).await);
        assert!(!kept(&last_epoch).await);
        assert!(kept(&waiting).await);
        assert!(!kept(&old).await);
        assert!(exists(&store, &old).await, "referred to, its variants stay");
    }
}
