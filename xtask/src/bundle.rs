//! The cache and the bundle in it: where everything lives, the manifest, the per-step
//! stamps that make a rebuild skip what is intact, and installing one binary into the
//! bundle with its version, sha256 and shared libraries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};
use serde::{Deserialize, Serialize};

use crate::elf;
use crate::logged::progress;

/// The cache the installer reads the bundle from (one definition, in the library).
pub use kubeforge::artifacts::default_cache_dir;

/// `<cache>/bundle/manifest.json`: what the bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub recipe: u32,
    pub kubernetes_version: String,
    pub artifacts: Vec<Artifact>,
}

/// One binary or container image of the bundle (one definition, in the library).
pub use kubeforge::artifacts::Artifact;

/// Per-step record: the key it was built with and what it produced.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub(crate) key: String,
    pub(crate) artifacts: Vec<Artifact>,
}

/// Where everything lives inside the cache directory.
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) downloads: PathBuf,
    pub(crate) src: PathBuf,
    pub(crate) gocache: PathBuf,
    pub(crate) stamps: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) bundle: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            downloads: root.join("downloads"),
            src: root.join("src"),
            gocache: root.join("go-build"),
            stamps: root.join("stamps"),
            logs: root.join("logs"),
            bundle: root.join("bundle"),
        }
    }

    pub(crate) fn create(&self) -> Result<()> {
        for dir in [
            &self.root,
            &self.downloads,
            &self.src,
            &self.gocache,
            &self.stamps,
            &self.logs,
            &self.bundle,
        ] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    pub(crate) fn log(&self, step: &str) -> PathBuf {
        self.logs.join(format!("{step}.log"))
    }

    pub(crate) fn stamp(&self, step: &str) -> PathBuf {
        self.stamps.join(format!("{step}.json"))
    }
}

/// The artifacts of a stamp whose key matches and whose files are all intact, else `None`.
pub(crate) fn valid_stamp(stamp: &Path, key: &str, bundle: &Path) -> Result<Option<Vec<Artifact>>> {
    let Ok(bytes) = fs::read(stamp) else {
        return Ok(None);
    };
    let Ok(stamp) = serde_json::from_slice::<Stamp>(&bytes) else {
        return Ok(None);
    };
    if stamp.key != key || stamp.artifacts.is_empty() {
        return Ok(None);
    }
    for artifact in &stamp.artifacts {
        let path = bundle.join(&artifact.path);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == artifact.size => {}
            _ => return Ok(None),
        }
        if sha256_file(&path)? != artifact.sha256 {
            return Ok(None);
        }
    }
    Ok(Some(stamp.artifacts))
}

/// Remove files in the bundle that the manifest no longer lists (older layouts, stale temps).
pub(crate) fn prune_bundle(bundle: &Path, manifest: &Manifest) -> Result<()> {
    let keep: Vec<PathBuf> = manifest
        .artifacts
        .iter()
        .map(|a| bundle.join(&a.path))
        .chain([bundle.join("manifest.json")])
        .collect();
    let mut dirs = vec![bundle.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("inspecting {}", path.display()))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if !keep.contains(&path) {
                progress(&format!("removing stale {}", path.display()));
                fs::remove_file(&path)
                    .with_context(|| format!("removing stale {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// How to read a version out of a binary.
#[derive(Clone, Copy)]
pub(crate) enum Probe {
    /// Run with `args`; the version is the first word after `prefix` on a line starting with it.
    Line {
        args: &'static [&'static str],
        prefix: &'static str,
    },
    /// The binary reports no version: use the package's upstream version.
    Package,
}

/// Copy `from` to `<bundle>/<rel_dir>/<name>`, check its version and describe it.
pub(crate) fn install_artifact(
    from: &Path,
    bundle: &Path,
    rel_dir: &str,
    name: &str,
    probe: Probe,
    expected_version: &str,
    origin: &str,
) -> Result<Artifact> {
    let rel_path = format!("{rel_dir}/{name}");
    let dest = bundle.join(&rel_path);
    let dir = bundle.join(rel_dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dest.with_file_name(format!(".{name}.tmp"));
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", tmp.display()))?;
    fs::rename(&tmp, &dest).with_context(|| format!("moving {} into place", dest.display()))?;

    let version = match probe {
        Probe::Line { args, prefix } => {
            let version = probe_version(&dest, args, prefix)?;
            ensure!(
                version.trim_start_matches('v') == expected_version.trim_start_matches('v'),
                "{} reports version {version}, expected {expected_version}",
                dest.display()
            );
            version
        }
        Probe::Package => expected_version.to_string(),
    };
    Ok(Artifact {
        name: name.to_string(),
        version,
        sha256: sha256_file(&dest)?,
        size: fs::metadata(&dest)
            .with_context(|| format!("reading size of {}", dest.display()))?
            .len(),
        source: origin.to_string(),
        path: rel_path,
        needed_libraries: elf::dependencies(&dest)?.1,
    })
}

fn probe_version(binary: &Path, args: &[&str], prefix: &str) -> Result<String> {
    let out = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    version_after(&text, prefix).ok_or_else(|| {
        anyhow!(
            "`{} {}` printed no line starting with {prefix:?} (exit {}):\n{text}",
            binary.display(),
            args.join(" "),
            out.status
        )
    })
}

/// The first word after `prefix` on the first line that starts with it.
fn version_after(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

/// [`kubeforge::files::sha256_file`] with an error naming the file.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    kubeforge::files::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// [`kubeforge::files::write_atomic`] for the cache and the machine's config files (0644).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    kubeforge::files::write_atomic(path, bytes, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes `dir` and everything in it; a missing directory is fine.
pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_valid_only_with_same_key_and_intact_files() {
        let dir = std::env::temp_dir().join(format!("kubeforge-artifacts-{}", std::process::id()));
        let bundle = dir.join("bundle");
        fs::create_dir_all(bundle.join("bin")).unwrap();
        fs::write(bundle.join("bin/tool"), b"binary").unwrap();
        let artifact = Artifact {
            name: "tool".into(),
            version: "1".into(),
            sha256: sha256_file(&bundle.join("bin/tool")).unwrap(),
            size: 6,
            source: "test".into(),
            path: "bin/tool".into(),
            needed_libraries: vec![],
        };
        let stamp = dir.join("step.json");
        let body = Stamp {
            key: "k1".into(),
            artifacts: vec![artifact.clone()],
        };
        fs::write(&stamp, serde_json::to_vec(&body).unwrap()).unwrap();

        assert_eq!(
            valid_stamp(&stamp, "k1", &bundle).unwrap(),
            Some(vec![artifact])
        );
        assert_eq!(valid_stamp(&stamp, "k2", &bundle).unwrap(), None);
        fs::write(bundle.join("bin/tool"), b"binarz").unwrap();
        assert_eq!(valid_stamp(&stamp, "k1", &bundle).unwrap(), None);
        fs::remove_file(bundle.join("bin/tool")).unwrap();
        assert_eq!(valid_stamp(&stamp, "k1", &bundle).unwrap(), None);
        assert_eq!(
            valid_stamp(&dir.join("missing.json"), "k1", &bundle).unwrap(),
            None
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions_are_read_from_binary_output() {
        assert_eq!(
            version_after("Kubernetes v1.20.2\n", "Kubernetes").as_deref(),
            Some("v1.20.2")
        );
        assert_eq!(
            version_after(
                "usr/bin/containerd-shim-runc-v2:\n  Version:  1.6.20~ds1\n  Revision: x\n",
                "Version:"
            )
            .as_deref(),
            Some("1.6.20~ds1")
        );
        assert_eq!(
            version_after(
                "etcd Version: 3.4.23\nGit SHA: Not provided\n",
                "etcd Version:"
            )
            .as_deref(),
            Some("3.4.23")
        );
        assert_eq!(version_after("nothing here\n", "Kubernetes"), None);
    }

    #[test]
    fn default_cache_dir_is_outside_the_tree() {
        // Only the fallback is checked: changing the environment would race other tests.
        if std::env::var_os("KUBEFORGE_CACHE_DIR").is_none() {
            assert_eq!(default_cache_dir(), PathBuf::from("/var/cache/kubeforge"));
        }
    }
}
