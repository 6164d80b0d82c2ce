//! An S3 protocol server of the test's own: moto's server mode (PyPI `moto[server]`,
//! installed by `make test` through scripts/stack.sh), so that the object store's S3 path
//! (signed requests, conditional writes, listing, HEAD, server-side copies, deletes) runs
//! against a real HTTP peer and not only against the memory and directory stores.

use std::{path::PathBuf, process::Child, sync::Arc, time::Duration};

use object_store::{ObjectStore, aws::AmazonS3Builder};

use crate::process::{free_port, kill, spawn_listening};

/// Credentials the server accepts (it checks the signature's form, not the secret).
const ACCESS_KEY: &str = "catalog-test";
const SECRET_KEY: &str = "catalog-test-secret";
const REGION: &str = "us-east-1";

/// A running S3 server on a free port.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    child: Option<Child>,
}

fn moto_server() -> PathBuf {
    std::env::var("MOTO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("moto_server"))
}

impl S3Server {
    pub async fn start() -> Self {
        let port = free_port();
        let child = spawn_listening(
            &moto_server(),
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            &std::env::temp_dir(),
            port,
            Duration::from_secs(60),
        )
        .await;
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        }
    }

    /// Creates bucket `name` (path-style, as every request here).
    pub async fn create_bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("the S3 server answers");
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
    }

    /// A client of bucket `bucket`, configured in code as the processor's is from its
    /// environment ([`Self::env`]).
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region(REGION)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .expect("an S3 client"),
        )
    }

    /// The environment that points the processor's `IMAGE_STORAGE_URL=s3://…` here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
