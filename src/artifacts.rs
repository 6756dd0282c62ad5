//! The offline bundle built by `cargo xtask artifacts`: binaries the installer uploads,
//! found through `bundle/manifest.json` and checked against its sha256 values.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `<cache>/bundle/manifest.json` as written by the xtask.
#[derive(Debug, Clone, Deserialize)]
pub struct Bundle {
    #[serde(skip)]
    pub dir: PathBuf,
    pub kubernetes_version: String,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub source: String,
    /// Relative to the bundle directory.
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: no artifacts bundle ({source}); build it with `cargo xtask artifacts`")]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: manifest is not valid: {source}")]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the artifacts bundle at {dir} has no '{name}'; rebuild it with `cargo xtask artifacts`"
    )]
    Unknown { dir: PathBuf, name: String },
    #[error("the bundle holds Kubernetes {have}, the scenario asks for {want}")]
    Version { have: String, want: String },
}

impl Bundle {
    /// The bundle under `$KUBEFORGE_CACHE_DIR` (default /var/cache/kubeforge).
    pub fn default_dir() -> PathBuf {
        std::env::var_os("KUBEFORGE_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/kubeforge"))
            .join("bundle")
    }

    pub fn load(dir: &Path) -> Result<Bundle, ArtifactError> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|source| ArtifactError::Missing {
            path: path.clone(),
            source,
        })?;
        let mut bundle: Bundle = serde_json::from_slice(&bytes)
            .map_err(|source| ArtifactError::Invalid { path, source })?;
        bundle.dir = dir.to_path_buf();
        Ok(bundle)
    }

    /// The artifact called `name`, with its absolute local path.
    pub fn get(&self, name: &str) -> Result<(PathBuf, &Artifact), ArtifactError> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .map(|a| (self.dir.join(&a.path), a))
            .ok_or_else(|| ArtifactError::Unknown {
                dir: self.dir.clone(),
                name: name.to_string(),
            })
    }

    pub fn require_kubernetes(&self, version: &str) -> Result<(), ArtifactError> {
        if self.kubernetes_version != version {
            return Err(ArtifactError::Version {
                have: self.kubernetes_version.clone(),
                want: version.to_string(),
            });
        }
        Ok(())
    }
}
