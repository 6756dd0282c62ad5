//! Kubernetes from Debian bookworm's `kubernetes` source package: the server binaries and
//! kubectl built with the upstream Makefile (offline, Go build cache kept in the cache),
//! and the pause binary compiled the way `build/pause/Makefile` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use kubeforge::process::Program;

use crate::bundle::{
    Artifact, Layout, Probe, install_artifact, remove_dir_if_exists, sha256_file, write_atomic,
};
use crate::logged::{progress, run_logged};
use crate::packages::apt_get;

/// The Kubernetes release the bundle holds and the scenarios install.
pub(crate) const KUBE_VERSION: &str = "v1.20.2";
/// Upstream commit of v1.20.2 (the one `hack/lib/version.sh` of the archive names).
pub(crate) const KUBE_COMMIT: &str = "faecb196815e248d3ecfb03c680a4507229c2a56";
/// The pinned Debian source package it is built from.
pub(crate) const KUBE_SOURCE_PACKAGE: &str = "kubernetes";
/// Its pinned version, so the cache key never needs an apt query.
pub(crate) const KUBE_SOURCE_VERSION: &str = "1.20.5+really1.20.2-1.1+deb12u1";
/// What `make WHAT=...` builds: the server binaries and kubectl.
pub(crate) const KUBE_COMMANDS: [&str; 6] = [
    "kube-apiserver",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
];
/// `TAG-REV` as `build/pause/Makefile` computes it, with the release standing in for `git describe`.
pub(crate) const PAUSE_VERSION: &str = "v3.4-v1.20.2";
/// The CFLAGS of `build/pause/Makefile`.
pub(crate) const PAUSE_CFLAGS: [&str; 4] = ["-Os", "-Wall", "-Werror", "-static"];

const KUBE_PROBE: Probe = Probe::Line {
    args: &["--version"],
    prefix: "Kubernetes",
};
const KUBECTL_PROBE: Probe = Probe::Line {
    args: &["version", "--client", "--short"],
    prefix: "Client Version:",
};

/// The build tools' versions: part of the cache keys, so a toolchain upgrade rebuilds.
pub(crate) struct Toolchain {
    pub(crate) go: String,
    pub(crate) gcc: String,
}

/// The first line of `go version` and `gcc --version`.
pub(crate) fn toolchain_versions() -> Result<Toolchain> {
    let first_line = |program: &str, arg: &str| -> Result<String> {
        let out = Program::new(program, &[arg]).run_blocking()?;
        Ok(out.lines().next().unwrap_or_default().trim().to_string())
    };
    Ok(Toolchain {
        go: first_line("go", "version")?,
        gcc: first_line("gcc", "--version")?,
    })
}

/// The extracted source tree, made at most once per run and shared by the Kubernetes and
/// pause steps.
pub(crate) struct KubeSource<'a> {
    layout: &'a Layout,
    tree: Option<PathBuf>,
}

impl<'a> KubeSource<'a> {
    pub(crate) fn new(layout: &'a Layout) -> Self {
        Self { layout, tree: None }
    }

    fn dir(&self) -> PathBuf {
        self.layout.src.join("kubernetes")
    }

    fn version_env(&self) -> PathBuf {
        self.layout.src.join("version.env")
    }

    fn tree(&mut self, log: &Path) -> Result<PathBuf> {
        if let Some(tree) = &self.tree {
            return Ok(tree.clone());
        }
        let dsc = self.download(log)?;
        let tree = self.dir();
        remove_dir_if_exists(&tree)?;
        progress(&format!("extracting {}", dsc.display()));
        let mut extract = Command::new("dpkg-source");
        // --no-copy: dpkg-source would otherwise copy the 34 MB orig tarball next to the tree.
        extract.args(["-x", "--no-copy"]).arg(&dsc).arg(&tree);
        run_logged(extract, log)?;
        let gopath_parent = tree.join(".go/src/k8s.io");
        fs::create_dir_all(&gopath_parent)
            .with_context(|| format!("creating {}", gopath_parent.display()))?;
        // Upstream `make` expects the tree at $GOPATH/src/k8s.io/kubernetes.
        std::os::unix::fs::symlink("../../..", gopath_parent.join("kubernetes"))
            .context("linking the source tree into its GOPATH")?;
        write_atomic(&self.version_env(), version_env(KUBE_VERSION)?.as_bytes())?;
        self.tree = Some(tree.clone());
        Ok(tree)
    }

    /// The `.dsc`, downloaded by apt unless it and its files are already here and intact.
    fn download(&self, log: &Path) -> Result<PathBuf> {
        let dir = &self.layout.downloads;
        let dsc = dir.join(format!("{KUBE_SOURCE_PACKAGE}_{KUBE_SOURCE_VERSION}.dsc"));
        if source_files_intact(&dsc)? {
            return Ok(dsc);
        }
        progress(&format!(
            "downloading source {KUBE_SOURCE_PACKAGE}={KUBE_SOURCE_VERSION}"
        ));
        let spec = format!("{KUBE_SOURCE_PACKAGE}={KUBE_SOURCE_VERSION}");
        apt_get(&["source", "--download-only", &spec], Some(dir), log)?;
        ensure!(
            source_files_intact(&dsc)?,
            "{} or a file it lists is missing or does not match its sha256 after download",
            dsc.display()
        );
        Ok(dsc)
    }

    pub(crate) fn remove(&self) -> Result<()> {
        remove_dir_if_exists(&self.dir())
    }
}

/// The file `KUBE_GIT_VERSION_FILE` points at: stands in for the git metadata the archive lacks.
fn version_env(version: &str) -> Result<String> {
    let mut parts = version.trim_start_matches('v').split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        bail!("Kubernetes version {version} is not vMAJOR.MINOR.PATCH");
    };
    Ok(format!(
        "KUBE_GIT_COMMIT='{KUBE_COMMIT}'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_VERSION='{version}'\nKUBE_GIT_MAJOR='{major}'\nKUBE_GIT_MINOR='{minor}'\n"
    ))
}

/// Whether the `.dsc` exists and every file in its `Checksums-Sha256` is present and matches.
fn source_files_intact(dsc: &Path) -> Result<bool> {
    let Ok(text) = fs::read_to_string(dsc) else {
        return Ok(false);
    };
    let files = dsc_sha256_files(&text);
    if files.is_empty() {
        return Ok(false);
    }
    let dir = dsc.parent().unwrap_or(Path::new("."));
    for (sha, name) in files {
        let path = dir.join(name);
        if !path.exists() || sha256_file(&path)? != sha {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `(sha256, file name)` pairs of a `.dsc`'s `Checksums-Sha256` field.
fn dsc_sha256_files(dsc: &str) -> Vec<(&str, &str)> {
    dsc.lines()
        .skip_while(|l| !l.starts_with("Checksums-Sha256:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [sha, _size, name] => Some((sha, name)),
            _ => None,
        })
        .collect()
}

/// Builds [`KUBE_COMMANDS`] with the upstream Makefile, offline (`GOPROXY=off`), and
/// installs them into the bundle.
pub(crate) fn build_kubernetes(
    layout: &Layout,
    source: &mut KubeSource,
    log: &Path,
) -> Result<Vec<Artifact>> {
    let tree = source.tree(log)?;
    // hack/lib/golang.sh forces GOCACHE to _output/local/go/cache, which leaves with the tree:
    // point it at the cache's own directory so rebuilds stay warm.
    let kube_gopath = tree.join("_output/local/go");
    fs::create_dir_all(&kube_gopath)
        .with_context(|| format!("creating {}", kube_gopath.display()))?;
    std::os::unix::fs::symlink(&layout.gocache, kube_gopath.join("cache"))
        .context("linking the Go build cache into the source tree")?;
    let what: Vec<String> = KUBE_COMMANDS.iter().map(|c| format!("cmd/{c}")).collect();
    progress(&format!(
        "make {} (cold ~5 min on 2 cores; warm Go cache in {})",
        KUBE_COMMANDS.join(" "),
        layout.gocache.display()
    ));
    let mut make = Command::new("make");
    make.current_dir(&tree)
        .arg(format!("WHAT={}", what.join(" ")))
        .env("GOPATH", tree.join(".go"))
        .env("GOCACHE", &layout.gocache)
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("KUBE_GIT_VERSION_FILE", source.version_env())
        .env_remove("GOFLAGS")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    run_logged(make, log)?;

    let origin = format!("debian-source:{KUBE_SOURCE_PACKAGE}={KUBE_SOURCE_VERSION}");
    let rel_dir = format!("{KUBE_VERSION}/bin");
    KUBE_COMMANDS
        .iter()
        .map(|name| {
            let probe = if *name == "kubectl" {
                KUBECTL_PROBE
            } else {
                KUBE_PROBE
            };
            install_artifact(
                &tree.join("_output/bin").join(name),
                &layout.bundle,
                &rel_dir,
                name,
                probe,
                KUBE_VERSION,
                &origin,
            )
        })
        .collect()
}

/// Compiles and strips the pause binary as `build/pause/Makefile` would.
pub(crate) fn build_pause(
    layout: &Layout,
    source: &mut KubeSource,
    log: &Path,
) -> Result<Artifact> {
    let tree = source.tree(log)?;
    let out = tree.join("_output/pause");
    let mut gcc = Command::new("gcc");
    gcc.current_dir(&tree)
        .args(PAUSE_CFLAGS)
        .arg(format!("-DVERSION={PAUSE_VERSION}"))
        .arg("-o")
        .arg(&out)
        .arg("build/pause/linux/pause.c");
    run_logged(gcc, log)?;
    let mut strip = Command::new("strip");
    strip.arg(&out);
    run_logged(strip, log)?;
    install_artifact(
        &out,
        &layout.bundle,
        &format!("{KUBE_VERSION}/bin"),
        "pause",
        Probe::Line {
            args: &["-v"],
            prefix: "pause.c",
        },
        PAUSE_VERSION,
        &format!("debian-source:{KUBE_SOURCE_PACKAGE}={KUBE_SOURCE_VERSION}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsc_checksums_are_parsed() {
        let dsc = "Format: 3.0 (quilt)\nChecksums-Sha1:\n aaa 1 a.tar.gz\nChecksums-Sha256:\n b83c 34428927 kubernetes_1.20.5+really1.20.2.orig.tar.gz\n 9b6e 21300 kubernetes_1.20.5+really1.20.2-1.1+deb12u1.debian.tar.xz\nFiles:\n 20b9 34428927 x\n";
        assert_eq!(
            dsc_sha256_files(dsc),
            vec![
                ("b83c", "kubernetes_1.20.5+really1.20.2.orig.tar.gz"),
                (
                    "9b6e",
                    "kubernetes_1.20.5+really1.20.2-1.1+deb12u1.debian.tar.xz"
                ),
            ]
        );
    }

    #[test]
    fn version_env_carries_major_and_minor() {
        let env = version_env("v1.20.2").unwrap();
        assert!(env.contains("KUBE_GIT_VERSION='v1.20.2'\n"));
        assert!(env.contains("KUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n"));
        assert!(env.contains(&format!("KUBE_GIT_COMMIT='{KUBE_COMMIT}'")));
        assert!(version_env("latest").is_err());
    }
}
