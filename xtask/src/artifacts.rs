//! `cargo xtask artifacts`: build and cache, offline, every binary the cluster needs.
//!
//! No registry ships Kubernetes server binaries here, so they are built from Debian bookworm's
//! `kubernetes` source package; etcd, containerd, runc and the CNI plugins come from Debian
//! binary packages. Everything lands in `<cache>/bundle` with a `manifest.json` that records
//! where each binary came from and its sha256. Each step stores its cache key and outputs in
//! a stamp file, so a second run with an intact bundle only re-hashes files.
//!
//! This module plans and runs the steps; `kubernetes` builds from source, `packages` brings
//! the Debian packages, `images` writes the container images and `bundle` keeps the books.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use kubeforge::process::find_program;

use crate::bundle::{
    Artifact, Layout, Manifest, Probe, Stamp, install_artifact, prune_bundle, remove_dir_if_exists,
    valid_stamp, write_atomic,
};
use crate::images;
use crate::kubernetes::{
    self, KUBE_COMMANDS, KUBE_COMMIT, KUBE_SOURCE_PACKAGE, KUBE_SOURCE_VERSION, KUBE_VERSION,
    KubeSource, PAUSE_CFLAGS, PAUSE_VERSION, Toolchain,
};
use crate::logged::{progress, run_logged};
use crate::packages::{
    add_deb_src_source, apt_command, apt_get, cached_deb, download_debs, missing_packages,
    upstream_version,
};

/// Bump when the recipe changes its outputs: it is part of every step's cache key.
const RECIPE_VERSION: u32 = 1;

const HOST_PACKAGES: [&str; 8] = [
    "dpkg-dev",
    "golang-go",
    "rsync",
    "jq",
    "gcc",
    "make",
    "libc6-dev",
    "binutils",
];
const HOST_COMMANDS: [&str; 10] = [
    "apt-get",
    "dpkg-source",
    "dpkg-deb",
    "go",
    "make",
    "rsync",
    "jq",
    "gcc",
    "strip",
    "readelf",
];

/// One binary taken out of a Debian package.
struct DebFile {
    name: &'static str,
    /// Path inside the package.
    from: &'static str,
    /// Directory relative to the bundle.
    to: &'static str,
    probe: Probe,
}

/// A pinned Debian binary package, so the cache key never needs an apt query.
struct DebSpec {
    package: &'static str,
    version: &'static str,
    files: &'static [DebFile],
}

const fn cni(name: &'static str, from: &'static str) -> DebFile {
    DebFile {
        name,
        from,
        to: "cni/bin",
        probe: Probe::Package,
    }
}

const DEBS: [DebSpec; 5] = [
    DebSpec {
        package: "etcd-server",
        version: "3.4.23-4+b4",
        files: &[DebFile {
            name: "etcd",
            from: "usr/bin/etcd",
            to: "bin",
            probe: Probe::Line {
                args: &["--version"],
                prefix: "etcd Version:",
            },
        }],
    },
    DebSpec {
        package: "etcd-client",
        version: "3.4.23-4+b4",
        files: &[DebFile {
            name: "etcdctl",
            from: "usr/bin/etcdctl",
            to: "bin",
            probe: Probe::Line {
                args: &["version"],
                prefix: "etcdctl version:",
            },
        }],
    },
    DebSpec {
        package: "containerd",
        version: "1.6.20~ds1-1+deb12u3",
        files: &[
            DebFile {
                name: "containerd",
                from: "usr/bin/containerd",
                to: "bin",
                probe: Probe::Line {
                    args: &["--version"],
                    prefix: "containerd github.com/containerd/containerd",
                },
            },
            DebFile {
                name: "containerd-shim-runc-v2",
                from: "usr/bin/containerd-shim-runc-v2",
                to: "bin",
                probe: Probe::Line {
                    args: &["-v"],
                    prefix: "Version:",
                },
            },
            DebFile {
                name: "ctr",
                from: "usr/bin/ctr",
                to: "bin",
                probe: Probe::Line {
                    args: &["--version"],
                    prefix: "ctr github.com/containerd/containerd",
                },
            },
        ],
    },
    DebSpec {
        package: "runc",
        version: "1.1.5+ds1-1+deb12u1",
        files: &[DebFile {
            name: "runc",
            from: "usr/sbin/runc",
            to: "bin",
            probe: Probe::Line {
                args: &["--version"],
                prefix: "runc version",
            },
        }],
    },
    DebSpec {
        package: "containernetworking-plugins",
        version: "1.1.1+ds1-3+b5",
        files: &[
            cni("bridge", "usr/lib/cni/bridge"),
            cni("host-local", "usr/lib/cni/host-local"),
            cni("loopback", "usr/lib/cni/loopback"),
            cni("portmap", "usr/lib/cni/portmap"),
        ],
    },
];

/// Options of `cargo xtask artifacts`.
#[derive(Debug, Clone)]
pub struct ArtifactsOptions {
    /// Root of the cache (downloads, Go build cache, stamps, logs, bundle).
    pub cache_dir: PathBuf,
    /// Rebuild every step even when its stamp and outputs are valid.
    pub force: bool,
}

enum StepKind {
    Kubernetes,
    Pause,
    Deb(&'static DebSpec),
}

struct Step {
    name: String,
    key: String,
    kind: StepKind,
}

/// Build (or verify) every artifact and write the manifest.
pub fn run(opts: &ArtifactsOptions) -> Result<Manifest> {
    let started = Instant::now();
    let layout = Layout::new(&opts.cache_dir);
    layout.create()?;
    let _lock = lock_cache(&layout.root)?;

    ensure_host_tools(&layout.log("host-tools"))?;
    let steps = plan(&kubernetes::toolchain_versions()?);

    let mut source = KubeSource::new(&layout);
    let mut artifacts = Vec::new();
    let mut built = 0;
    for step in &steps {
        let stamp_path = layout.stamp(&step.name);
        if !opts.force
            && let Some(cached) = valid_stamp(&stamp_path, &step.key, &layout.bundle)?
        {
            artifacts.extend(cached);
            continue;
        }
        let log = layout.log(&step.name);
        File::create(&log).with_context(|| format!("creating log {}", log.display()))?;
        progress(&format!("{}: building (log {})", step.name, log.display()));
        let step_started = Instant::now();
        let produced = match step.kind {
            StepKind::Kubernetes => kubernetes::build_kubernetes(&layout, &mut source, &log)?,
            StepKind::Pause => vec![kubernetes::build_pause(&layout, &mut source, &log)?],
            StepKind::Deb(spec) => build_deb(&layout, spec, &log, opts.force)?,
        };
        write_atomic(
            &stamp_path,
            &serde_json::to_vec_pretty(&Stamp {
                key: step.key.clone(),
                artifacts: produced.clone(),
            })?,
        )?;
        progress(&format!(
            "{}: done in {:.1}s",
            step.name,
            step_started.elapsed().as_secs_f64()
        ));
        artifacts.extend(produced);
        built += 1;
    }
    // Re-extracting the source takes ~2 s; the Go build cache is what keeps rebuilds warm.
    source.remove()?;
    artifacts.extend(images::build(
        &images::ImageDirs {
            bundle: &layout.bundle,
            downloads: &layout.downloads,
            work: &layout.src,
            stamps: &layout.stamps,
            log: &layout.log("images"),
        },
        &artifacts,
        opts.force,
    )?);

    let manifest = Manifest {
        recipe: RECIPE_VERSION,
        kubernetes_version: KUBE_VERSION.to_string(),
        artifacts,
    };
    let manifest_path = layout.bundle.join("manifest.json");
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    if fs::read(&manifest_path).ok().as_deref() != Some(json.as_slice()) {
        write_atomic(&manifest_path, &json)?;
    }
    prune_bundle(&layout.bundle, &manifest)?;
    let total: u64 = manifest.artifacts.iter().map(|a| a.size).sum();
    progress(&format!(
        "{} artifacts ({} MB) in {}, {} of {} steps rebuilt, {:.1}s",
        manifest.artifacts.len(),
        total / 1_000_000,
        manifest_path.display(),
        built,
        steps.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(manifest)
}

/// One run at a time per cache: two builds in the same tree would corrupt each other.
fn lock_cache(root: &Path) -> Result<File> {
    let path = root.join(".lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            progress(&format!(
                "waiting for another run holding {}",
                path.display()
            ));
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(file)
}

/// The cache key of every step, in build order.
fn plan(tools: &Toolchain) -> Vec<Step> {
    let source = format!("{KUBE_SOURCE_PACKAGE}={KUBE_SOURCE_VERSION}");
    let mut steps = vec![
        Step {
            name: "kubernetes".to_string(),
            key: format!(
                "recipe={RECIPE_VERSION} source={source} version={KUBE_VERSION} commit={KUBE_COMMIT} what={} go={}",
                KUBE_COMMANDS.join(","),
                tools.go
            ),
            kind: StepKind::Kubernetes,
        },
        Step {
            name: "pause".to_string(),
            key: format!(
                "recipe={RECIPE_VERSION} source={source} version={PAUSE_VERSION} cflags={} gcc={}",
                PAUSE_CFLAGS.join(" "),
                tools.gcc
            ),
            kind: StepKind::Pause,
        },
    ];
    for spec in &DEBS {
        let files: Vec<String> = spec
            .files
            .iter()
            .map(|f| format!("{}:{}/{}", f.from, f.to, f.name))
            .collect();
        steps.push(Step {
            name: format!("deb-{}", spec.package),
            key: format!(
                "recipe={RECIPE_VERSION} deb={}={} files={}",
                spec.package,
                spec.version,
                files.join(",")
            ),
            kind: StepKind::Deb(spec),
        });
    }
    steps
}

/// Install the build tools and a `deb-src` source for bookworm, touching nothing already there.
fn ensure_host_tools(log: &Path) -> Result<()> {
    let missing = missing_packages(&HOST_PACKAGES)?;
    let sources_added = add_deb_src_source()?;
    if sources_added || !missing.is_empty() {
        File::create(log).with_context(|| format!("creating log {}", log.display()))?;
    }
    if sources_added {
        run_logged(apt_command(&["update"]), log)?;
    }
    if !missing.is_empty() {
        progress(&format!(
            "installing {} (log {})",
            missing.join(" "),
            log.display()
        ));
        let started = Instant::now();
        let mut args = vec!["install", "--no-install-recommends"];
        args.extend(missing.iter().map(String::as_str));
        apt_get(&args, None, log)?;
        progress(&format!(
            "installed in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
    for tool in HOST_COMMANDS {
        ensure!(
            find_program(tool).is_some(),
            "`{tool}` is not found after installing {}",
            HOST_PACKAGES.join(" ")
        );
    }
    Ok(())
}

fn build_deb(layout: &Layout, spec: &DebSpec, log: &Path, force: bool) -> Result<Vec<Artifact>> {
    let dir = layout.downloads.join("debs").join(spec.package);
    if force {
        remove_dir_if_exists(&dir)?;
    }
    download_debs(&dir, &[(spec.package, spec.version)], log)?;
    let deb = cached_deb(&dir, spec.package, spec.version).ok_or_else(|| {
        anyhow!(
            "{}={} is not in {}",
            spec.package,
            spec.version,
            dir.display()
        )
    })?;
    let extract = layout.src.join(format!("deb-{}", spec.package));
    remove_dir_if_exists(&extract)?;
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("-x").arg(&deb).arg(&extract);
    run_logged(dpkg, log)?;
    let expected = upstream_version(spec.version);
    let origin = format!("debian-binary:{}={}", spec.package, spec.version);
    let artifacts = spec
        .files
        .iter()
        .map(|f| {
            install_artifact(
                &extract.join(f.from),
                &layout.bundle,
                f.to,
                f.name,
                f.probe,
                expected,
                &origin,
            )
        })
        .collect();
    remove_dir_if_exists(&extract)?;
    artifacts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keys_change_with_toolchain_and_pin() {
        let a = plan(&Toolchain {
            go: "go version go1.19.8 linux/amd64".into(),
            gcc: "gcc 12.2.0".into(),
        });
        let b = plan(&Toolchain {
            go: "go version go1.21.0 linux/amd64".into(),
            gcc: "gcc 12.2.0".into(),
        });
        assert_eq!(a.len(), 2 + DEBS.len());
        assert_ne!(a[0].key, b[0].key, "Go upgrade must rebuild Kubernetes");
        assert_eq!(a[1].key, b[1].key, "Go upgrade must not rebuild pause");
        assert!(a[2].key.contains("etcd-server=3.4.23-4+b4"));
        let names: Vec<&str> = a.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[..3], ["kubernetes", "pause", "deb-etcd-server"]);
    }
}
