//! Where Tern keeps the bytes of files: a directory under the data dir by default, or any
//! S3-compatible bucket (AWS, MinIO, Ceph, R2…) when one is configured. Both sit behind
//! core's [`Blobs`] trait through `object_store`, so uploads, ranges and collection behave the
//! same on either.

use std::{ops::Range, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{ObjectStore, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use tern_core::{StoreError, files::Blobs};

/// An S3-compatible bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The service's URL, for anything but AWS itself (`http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when the service does not care).
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Allow an `http://` endpoint (a service on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Why blob storage cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum BlobsError {
    /// The directory cannot be made or used.
    #[error("cannot use the file directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bucket's settings are not usable.
    #[error("cannot use the S3 bucket: {0}")]
    S3(String),
}

/// Bytes in an `object_store` store.
#[derive(Debug, Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
}

impl ObjectBlobs {
    /// Files under `dir`, made if missing.
    pub fn dir(dir: PathBuf) -> Result<Self, BlobsError> {
        std::fs::create_dir_all(&dir).map_err(|source| BlobsError::Dir {
            path: dir.clone(),
            source,
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
            BlobsError::Dir {
                path: dir.clone(),
                source: std::io::Error::other(e),
            }
        })?;
        Ok(ObjectBlobs {
            store: Arc::new(store),
        })
    }

    /// Objects in an S3-compatible bucket.
    pub fn s3(config: &S3Config) -> Result<Self, BlobsError> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            // Services other than AWS are addressed by path: the bucket is not a host name.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| BlobsError::S3(e.to_string()))?;
        Ok(ObjectBlobs {
            store: Arc::new(store),
        })
    }
}

fn blob_err(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        other => StoreError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Blobs for ObjectBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(blob_err)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, StoreError> {
        let path = Path::from(key);
        match range {
            Some(range) => self.store.get_range(&path, range).await.map_err(blob_err),
            None => self
                .store
                .get(&path)
                .await
                .map_err(blob_err)?
                .bytes()
                .await
                .map_err(blob_err),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(blob_err(e)),
        }
    }
}
