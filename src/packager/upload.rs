//! Upload targets (`storage_list` + `storage_config`): local or mounted directories and
//! S3-compatible object storage, both through `object_store`, streamed from the file.
//!
//! Object key: `<prefix>/<filename>/<package file name>`, the layout of `sdk_game_path`.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::config::{PackagerConfig, StorageTarget};

/// One configured target, ready to take files.
#[derive(Debug, Clone)]
pub struct UploadTarget {
    /// Its name in `storage_list`.
    pub name: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Printable root (`s3://bucket` or the directory) for locations in logs and notices.
    base: String,
}

/// An upload that failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The target cannot be built from its settings.
    #[error("storage target {name}: {detail}")]
    Setup {
        /// Target name.
        name: String,
        /// Why.
        detail: String,
    },
    /// The package cannot be read.
    #[error("cannot read package {path}: {cause}")]
    Read {
        /// Package path.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The target refused or lost the upload.
    #[error("upload of {path} to {name} failed: {detail}")]
    Put {
        /// Target name.
        name: String,
        /// Package path.
        path: String,
        /// Why.
        detail: String,
    },
}

/// Every target of `storage_list`, in order.
#[derive(Debug, Clone, Default)]
pub struct Uploader {
    targets: Vec<UploadTarget>,
}

impl Uploader {
    /// Builds the targets; local directories are created when missing.
    pub fn from_config(cfg: &PackagerConfig) -> Result<Self, UploadError> {
        let targets = cfg
            .storage_list
            .iter()
            .map(|name| {
                let target = cfg
                    .storage_config
                    .get(name)
                    .ok_or_else(|| UploadError::Setup {
                        name: name.clone(),
                        detail: "not in storage_config".into(),
                    })?;
                UploadTarget::build(name, target)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { targets })
    }

    /// Whether there is nothing to upload to.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The targets' names.
    pub fn names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// Uploads `file` as `<prefix>/<game>/<file name>` to every target not in `done`,
    /// adding each success to `done` so a retry skips it. Returns the locations.
    pub async fn upload(
        &self,
        file: &FsPath,
        game: &str,
        done: &mut Vec<String>,
    ) -> Result<Vec<String>, UploadError> {
        let mut locations = Vec::new();
        for target in &self.targets {
            let location = target.location(file, game);
            if !done.contains(&target.name) {
                target.put_file(file, game).await?;
                log::info!("package={} target={} uploaded", file.display(), target.name);
                done.push(target.name.clone());
            }
            locations.push(location);
        }
        Ok(locations)
    }
}

impl UploadTarget {
    fn build(name: &str, target: &StorageTarget) -> Result<Self, UploadError> {
        let setup = |detail: String| UploadError::Setup {
            name: name.to_string(),
            detail,
        };
        let (store, prefix, base): (Arc<dyn ObjectStore>, _, _) = match target {
            StorageTarget::Local { path, prefix } => {
                std::fs::create_dir_all(path)
                    .map_err(|e| setup(format!("cannot create {}: {e}", path.display())))?;
                let store =
                    LocalFileSystem::new_with_prefix(path).map_err(|e| setup(e.to_string()))?;
                (Arc::new(store), prefix, path.display().to_string())
            }
            StorageTarget::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                prefix,
                allow_http,
                virtual_hosted,
            } => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http)
                    .with_virtual_hosted_style_request(*virtual_hosted);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = secret_access_key {
                    builder = builder.with_secret_access_key(&secret.0);
                }
                let store = builder.build().map_err(|e| setup(e.to_string()))?;
                (Arc::new(store), prefix, format!("s3://{bucket}"))
            }
        };
        Ok(Self {
            name: name.to_string(),
            store,
            prefix: prefix.trim_matches('/').to_string(),
            base,
        })
    }

    /// The object key of `file` for `game`.
    pub fn key(&self, file: &FsPath, game: &str) -> ObjectPath {
        let file_name = file.file_name().unwrap_or_default().to_string_lossy();
        let parts = self
            .prefix
            .split('/')
            .filter(|p| !p.is_empty())
            .chain([game, file_name.as_ref()]);
        ObjectPath::from_iter(parts)
    }

    fn location(&self, file: &FsPath, game: &str) -> String {
        format!("{}/{}", self.base, self.key(file, game))
    }

    /// Streams the file to the store; a failed multipart upload is aborted.
    async fn put_file(&self, file: &FsPath, game: &str) -> Result<(), UploadError> {
        let path = file.display().to_string();
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|cause| UploadError::Read {
                path: path.clone(),
                cause,
            })?;
        let mut writer = BufWriter::new(Arc::clone(&self.store), self.key(file, game));
        let copied = async {
            tokio::io::copy(&mut reader, &mut writer).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            if let Err(abort) = writer.abort().await {
                log::warn!("target={} abort of {path} failed: {abort}", self.name);
            }
            return Err(UploadError::Put {
                name: self.name.clone(),
                path,
                detail: e.to_string(),
            });
        }
        Ok(())
    }
}
