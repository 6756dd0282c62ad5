//! The offline bundle built by `cargo xtask artifacts`: binaries the installer uploads,
//! found through `bundle/manifest.json` and checked against its sha256 values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{Sha256Writer, sha256_file};

/// `KUBEFORGE_CACHE_DIR`, else `/var/cache/kubeforge`: outside the git tree, survives
/// `cargo clean`. The xtask builds into it; the installer reads the bundle from it.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("KUBEFORGE_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/var/cache/kubeforge"),
    }
}

/// `<cache>/bundle/manifest.json` as written by the xtask.
#[derive(Debug, Clone, Deserialize)]
pub struct Bundle {
    #[serde(skip)]
    pub dir: PathBuf,
    pub kubernetes_version: String,
    pub artifacts: Vec<Artifact>,
}

/// One binary or container image of the bundle (written by the xtask, read here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Reported by the binary itself where it can say, else the package's upstream version.
    pub version: String,
    pub sha256: String,
    pub size: u64,
    /// `debian-source:PKG=VER`, `debian-binary:PKG=VER`, or for an image
    /// `built:BINARY,...,debian:PKG=VER,...`.
    pub source: String,
    /// Relative to the bundle directory.
    pub path: String,
    /// Shared libraries the host must provide; empty for a static binary.
    #[serde(default)]
    pub needed_libraries: Vec<String>,
}

/// Why the bundle cannot provide an artifact; each message says what to do about it.
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
    #[error("{url}: download failed: {detail}")]
    Download { url: String, detail: String },
    #[error("{url}: sha256 {got} does not match the pinned {expected}; nothing was installed")]
    Checksum {
        url: String,
        expected: String,
        got: String,
    },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

impl Bundle {
    /// The bundle under `$KUBEFORGE_CACHE_DIR` (default /var/cache/kubeforge).
    pub fn default_dir() -> PathBuf {
        default_cache_dir().join("bundle")
    }

    /// The bundle whose `manifest.json` is in `dir`.
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

    /// A bundle fetched from `base_url` (each artifact at `<base_url>/<path>`, e.g. a mirror
    /// of upstream release files): `pins` is a manifest whose sha256 values every download
    /// must match. Verified files are kept in `cache`; files already there and still
    /// matching are not fetched again.
    pub fn download(base_url: &str, pins: &Path, cache: &Path) -> Result<Bundle, ArtifactError> {
        let pinned = Bundle::load_manifest(pins)?;
        for a in &pinned.artifacts {
            let dest = cache.join(&a.path);
            if sha256_file(&dest).ok().as_deref() == Some(a.sha256.as_str()) {
                continue;
            }
            let url = format!("{}/{}", base_url.trim_end_matches('/'), a.path);
            fetch_verified(&url, &a.sha256, &dest)?;
        }
        Ok(Bundle {
            dir: cache.to_path_buf(),
            ..pinned
        })
    }

    fn load_manifest(path: &Path) -> Result<Bundle, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Missing {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ArtifactError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Refuses a bundle built for another Kubernetes release than the scenario's.
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

/// Downloads `url` to `dest`, hashing while streaming; the file only gets its name once its
/// sha256 matches `sha256`, so a bad download never reaches a host.
pub fn fetch_verified(url: &str, sha256: &str, dest: &Path) -> Result<(), ArtifactError> {
    use std::io::{Read, Write};
    let io = |action, source| ArtifactError::Io {
        path: dest.to_path_buf(),
        action,
        source,
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
    }
    let response = ureq::get(url).call().map_err(|e| ArtifactError::Download {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let partial = dest.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(|e| io("create", e))?;
    let mut writer = Sha256Writer::new(file);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| ArtifactError::Download {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(|e| io("write", e))?;
    }
    let (file, got, _) = writer.finish();
    if got != sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(ArtifactError::Checksum {
            url: url.to_string(),
            expected: sha256.to_string(),
            got,
        });
    }
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&partial, dest).map_err(|e| io("rename into place", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A minimal HTTP/1.1 file server on 127.0.0.1 for `requests` requests.
    fn serve(root: PathBuf, requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                while let Ok(n) = reader.read_line(&mut String::new()) {
                    if n <= 2 {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                match std::fs::read(root.join(path.trim_start_matches('/'))) {
                    Ok(body) => {
                        write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .unwrap();
                        stream.write_all(&body).unwrap();
                    }
                    Err(_) => {
                        write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                    }
                }
            }
        });
        format!("http://{addr}")
    }

    fn pins(dir: &Path, sha: &str) -> PathBuf {
        let manifest = serde_json::json!({
            "kubernetes_version": "v1.20.2",
            "artifacts": [{"name": "etcd", "version": "3.4.23", "sha256": sha, "size": 11,
                           "source": "test", "path": "bin/etcd"}]
        });
        let path = dir.join("pins.json");
        std::fs::write(&path, manifest.to_string()).unwrap();
        path
    }

    #[test]
    fn download_verifies_sha256_and_installs_nothing_on_mismatch() {
        let served = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(served.path().join("bin")).unwrap();
        std::fs::write(served.path().join("bin/etcd"), b"etcd binary").unwrap();
        let good = sha256_file(&served.path().join("bin/etcd")).unwrap();
        let work = tempfile::tempdir().unwrap();

        let url = serve(served.path().to_path_buf(), 1);
        let cache = work.path().join("cache");
        let bundle = Bundle::download(&url, &pins(work.path(), &good), &cache).unwrap();
        let (path, artifact) = bundle.get("etcd").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"etcd binary");
        assert_eq!(artifact.sha256, good);
        // Cached and still valid: no request at all (the server has stopped answering).
        Bundle::download("http://127.0.0.1:9", &pins(work.path(), &good), &cache).unwrap();

        let url = serve(served.path().to_path_buf(), 1);
        let bad = "0".repeat(64);
        let cache2 = work.path().join("cache2");
        let err = Bundle::download(&url, &pins(work.path(), &bad), &cache2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/bin/etcd: sha256") && err.contains("does not match"),
            "{err}"
        );
        assert!(!cache2.join("bin/etcd").exists());
        assert!(!cache2.join("bin/etcd.partial").exists());

        let url = serve(served.path().to_path_buf(), 1);
        let err = fetch_verified(&format!("{url}/missing"), &good, &work.path().join("m"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/missing: download failed"), "{err}");
    }
}
