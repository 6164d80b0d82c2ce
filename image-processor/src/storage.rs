//! Where compressed images go: object storage chosen by `IMAGE_STORAGE_URL`.
//!
//! - `s3://bucket/prefix`: S3 or any S3-compatible store; credentials, region and endpoint
//!   come from the usual `AWS_*` variables (`AWS_ENDPOINT` for MinIO and friends).
//! - `file:///path`: a local directory, which the api serves under `/images/`.
//! - `memory://`: in-process, for tests.
//!
//! The variants are content-addressed ([`crate::content`]); under `products/<id>/` each
//! product image has a reference naming the content it shows. A deleted product's
//! references are deleted (and an empty `deleted-products/<id>` marker is left), and so are
//! a product's older revisions' once a newer one is stored; content no reference names is
//! deleted later by the content store's cleanup.

use std::sync::Arc;

use anyhow::Context;
use futures_util::TryStreamExt;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
    aws::AmazonS3Builder, local::LocalFileSystem, memory::InMemory, path::Path,
};
use url::Url;

use crate::failure::Failure;

/// What the store holds of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredState {
    /// The product was deleted (its images went, and nothing more may be stored).
    pub deleted: bool,
    /// The newest image revision with a stored image.
    pub newest_revision: Option<i32>,
}

/// The object store and how its objects are reached publicly.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Prefix inside the store (from the URL's path for S3).
    prefix: Path,
    /// `IMAGE_PUBLIC_BASE_URL`: the public URL of a key is this plus the key.
    public_base: String,
    /// Whether the store keeps content type and cache headers (the local one does not).
    keeps_attributes: bool,
}

impl Storage {
    pub fn from_url(storage_url: &str, public_base: &str) -> anyhow::Result<Self> {
        let url = Url::parse(storage_url)
            .with_context(|| format!("IMAGE_STORAGE_URL {storage_url:?} is not a URL"))?;
        let public_base = public_base.trim_end_matches('/').to_owned();
        let (store, prefix, keeps_attributes): (Arc<dyn ObjectStore>, Path, bool) = match url
            .scheme()
        {
            "memory" => (Arc::new(InMemory::new()), Path::default(), true),
            "file" => {
                let dir = url.to_file_path().map_err(|_| {
                    anyhow::anyhow!(
                        "IMAGE_STORAGE_URL {storage_url:?} is not an absolute file path"
                    )
                })?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("Failed to create {}", dir.display()))?;
                (
                    // Deleting a product's last image removes its emptied directories.
                    Arc::new(LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true)),
                    Path::default(),
                    false,
                )
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .context("IMAGE_STORAGE_URL s3://… needs a bucket")?;
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .context("Failed to configure S3")?;
                (
                    Arc::new(store),
                    Path::from(url.path().trim_matches('/')),
                    true,
                )
            }
            other => {
                anyhow::bail!("IMAGE_STORAGE_URL scheme {other:?} is not one of s3, file, memory")
            }
        };
        Ok(Self {
            store,
            prefix,
            public_base,
            keeps_attributes,
        })
    }

    /// A storage over a store configured by the caller (e.g. an S3 client built in code, as
    /// the tests do against an S3 protocol server), its keys under `prefix`. Such a store is
    /// taken to keep content types and cache headers, as S3 does.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, public_base: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            public_base: public_base.trim_end_matches('/').to_owned(),
            keeps_attributes: true,
        }
    }

    /// The store's path of `key` (under the prefix).
    pub(crate) fn path(&self, key: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix.as_ref()))
        }
    }

    /// The object store itself.
    pub(crate) fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// Copies `from` to `to` inside the store (S3 copies server-side, keeping the content
    /// type and cache headers).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), object_store::Error> {
        self.store.copy(&self.path(from), &self.path(to)).await
    }

    /// Stores an empty object (a reference, a marker); a failure is transient.
    pub async fn put_empty(&self, key: &str) -> Result<(), Failure> {
        self.store
            .put(&self.path(key), PutPayload::new())
            .await
            .map(|_| ())
            .map_err(|e| Failure::transient(format!("writing to the store failed: {e}")))
    }

    /// The public URL of `key`.
    pub fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    /// Stores the bytes under `key`; a failure here is transient (the store may recover).
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<String, Failure> {
        let mut attributes = Attributes::new();
        if self.keeps_attributes {
            attributes.insert(Attribute::ContentType, content_type.into());
            // Keys are never reused for other content, so caches may keep them for good.
            attributes.insert(
                Attribute::CacheControl,
                "public, max-age=31536000, immutable".into(),
            );
        }
        let options = PutOptions {
            attributes,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(key), PutPayload::from(bytes), options)
            .await
            .map_err(|e| Failure::transient(format!("storing the image failed: {e}")))?;
        Ok(self.public_url(key))
    }

    /// The key of the marker left when `product_id` was deleted.
    fn tombstone(product_id: &str) -> String {
        format!("deleted-products/{product_id}")
    }

    /// Records that `product_id` was deleted, so that a late retry or a redrive of one of
    /// its events stores nothing (see [`Storage::stored_state`]). An empty object per
    /// deleted product; an S3 lifecycle rule on `deleted-products/` may expire them once no
    /// retry or dead letter can be that old.
    pub async fn mark_deleted(&self, product_id: &str) -> Result<(), Failure> {
        self.put_empty(&Self::tombstone(product_id)).await
    }

    /// What the store says about `product_id`: whether it was deleted, and the newest
    /// image revision stored for it. Asked before a late job (a retry or a redrive) stores
    /// anything: its product may have been deleted or given new images since.
    pub async fn stored_state(&self, product_id: &str) -> Result<StoredState, Failure> {
        let failed =
            |e: object_store::Error| Failure::transient(format!("reading the store failed: {e}"));
        let deleted = match self
            .store
            .head(&self.path(&Self::tombstone(product_id)))
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(failed(e)),
        };
        let newest_revision = self
            .revisions(product_id)
            .await
            .map_err(failed)?
            .into_iter()
            .filter_map(|(_, revision)| revision)
            .max();
        Ok(StoredState {
            deleted,
            newest_revision,
        })
    }

    /// The objects under `products/<product_id>/`, each with its image revision (`None`
    /// for a key this service did not write).
    async fn revisions(
        &self,
        product_id: &str,
    ) -> Result<Vec<(Path, Option<i32>)>, object_store::Error> {
        let prefix = self.path(&format!("products/{product_id}"));
        let objects: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(objects
            .into_iter()
            .map(|object| {
                let revision = object
                    .location
                    .prefix_match(&prefix)
                    .and_then(|mut parts| parts.next())
                    .and_then(|part| part.as_ref().strip_prefix('r')?.parse::<i32>().ok());
                (object.location, revision)
            })
            .collect())
    }

    /// Deletes the stored images of `product_id`: all of them (`older_than: None`, the
    /// product was deleted) or those of image revisions before `older_than` (a newer
    /// revision replaced them). Returns how many objects went; a failure is transient.
    pub async fn delete_images(
        &self,
        product_id: &str,
        older_than: Option<i32>,
    ) -> Result<usize, Failure> {
        let failed = |e: object_store::Error| {
            Failure::transient(format!("deleting stored images failed: {e}"))
        };
        let mut deleted = 0;
        for (location, revision) in self.revisions(product_id).await.map_err(failed)? {
            let delete = match (older_than, revision) {
                (None, _) => true,
                (Some(keep), Some(revision)) => revision < keep,
                // Not a key this service writes: leave it alone.
                (Some(_), None) => false,
            };
            if delete {
                match self.store.delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(e) => return Err(failed(e)),
                }
            }
        }
        Ok(deleted)
    }

    /// Whether the store answers (the readiness probe): lists the prefix, reading nothing.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.store.list_with_delimiter(Some(&self.prefix)).await?;
        Ok(())
    }

    /// The object under `key`, `None` when there is none; a failure is transient.
    pub async fn read(&self, key: &str) -> Result<Option<bytes::Bytes>, Failure> {
        let failed =
            |e: object_store::Error| Failure::transient(format!("reading the store failed: {e}"));
        match self.store.get(&self.path(key)).await {
            Ok(object) => object.bytes().await.map(Some).map_err(failed),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stored(storage: &Storage) -> Vec<String> {
        let mut keys: Vec<String> = storage
            .store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The key of a reference of image `index` of a product's `revision`.
    fn reference(product_id: &str, revision: i32, index: u32) -> String {
        format!("products/{product_id}/r{revision}/{index}/ab12-7")
    }

    #[tokio::test]
    async fn deleting_images_keeps_newer_revisions_other_products_and_foreign_keys() {
        let storage = Storage::from_url("memory://", "http://images").unwrap();
        for key in [
            reference("5", 1, 0),
            reference("5", 2, 0),
            reference("5", 3, 0),
            reference("50", 1, 0),
            "products/5/notes.txt".to_owned(),
        ] {
            storage.put(&key, vec![1], "image/webp").await.unwrap();
        }

        assert_eq!(storage.delete_images("5", Some(3)).await, Ok(2));
        assert_eq!(
            stored(&storage).await,
            [
                "products/5/notes.txt",
                "products/5/r3/0/ab12-7",
                "products/50/r1/0/ab12-7"
            ],
            "older revisions of product 5 went; product 50 shares a prefix but stays"
        );

        assert_eq!(storage.delete_images("5", None).await, Ok(2));
        assert_eq!(stored(&storage).await, ["products/50/r1/0/ab12-7"]);
        assert_eq!(
            storage.delete_images("7", None).await,
            Ok(0),
            "nothing stored"
        );
    }

    #[tokio::test]
    async fn the_stored_state_tells_deleted_products_and_the_newest_revision() {
        let storage = Storage::from_url("memory://", "http://images").unwrap();
        let nothing = StoredState {
            deleted: false,
            newest_revision: None,
        };
        assert_eq!(storage.stored_state("5").await, Ok(nothing));
        for key in [
            reference("5", 2, 0),
            reference("5", 10, 1),
            reference("50", 11, 0),
            "products/5/r99-notes.txt".to_owned(),
        ] {
            storage.put(&key, vec![1], "image/webp").await.unwrap();
        }
        assert_eq!(
            storage.stored_state("5").await,
            Ok(StoredState {
                deleted: false,
                newest_revision: Some(10),
            }),
            "revisions compare as numbers; product 50 and foreign keys do not count"
        );

        storage.delete_images("5", None).await.unwrap();
        storage.mark_deleted("5").await.unwrap();
        assert_eq!(
            storage.stored_state("5").await,
            Ok(StoredState {
                deleted: true,
                newest_revision: None,
            })
        );
        assert!(!storage.stored_state("50").await.unwrap().deleted);
    }
}
