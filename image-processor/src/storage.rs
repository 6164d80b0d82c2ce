//! Where compressed images go: object storage chosen by `IMAGE_STORAGE_URL`.
//!
//! - `s3://bucket/prefix`: S3 or any S3-compatible store; credentials, region and endpoint
//!   come from the usual `AWS_*` variables (`AWS_ENDPOINT` for MinIO and friends).
//! - `file:///path`: a local directory, which the api serves under `/images/`.
//! - `memory://`: in-process, for tests.
//!
//! Keys are deterministic (product, image revision, position), so processing the same image
//! twice overwrites one object instead of leaving two.

use std::sync::Arc;

use anyhow::Context;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
    aws::AmazonS3Builder, local::LocalFileSystem, memory::InMemory, path::Path,
};
use url::Url;

use crate::failure::Failure;

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
        let (store, prefix, keeps_attributes): (Arc<dyn ObjectStore>, Path, bool) =
            match url.scheme() {
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
                        Arc::new(LocalFileSystem::new_with_prefix(&dir)?),
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
                other => anyhow::bail!(
                    "IMAGE_STORAGE_URL scheme {other:?} is not one of s3, file, memory"
                ),
            };
        Ok(Self {
            store,
            prefix,
            public_base,
            keeps_attributes,
        })
    }

    /// The key of the compressed image at `index` of `product_id`'s image `revision`.
    pub fn key(product_id: &str, revision: i32, index: u32) -> String {
        format!("products/{product_id}/r{revision}/{index}.webp")
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix.as_ref()))
        }
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

    /// Whether the store answers (the readiness probe): lists the prefix, reading nothing.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.store.list_with_delimiter(Some(&self.prefix)).await?;
        Ok(())
    }

    /// Reads an object back (tests).
    pub async fn get(&self, key: &str) -> anyhow::Result<bytes::Bytes> {
        Ok(self.store.get(&self.path(key)).await?.bytes().await?)
    }
}
