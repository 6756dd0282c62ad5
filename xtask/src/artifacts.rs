//! `cargo xtask artifacts`: build and cache, offline, every binary the cluster needs.
//!
//! No registry ships Kubernetes server binaries here, so they are built from Debian bookworm's
//! `kubernetes` source package; etcd, containerd, runc and the CNI plugins come from Debian
//! binary packages. Everything lands in `<cache>/bundle` with a `manifest.json` that records
//! where each binary came from and its sha256. Each step stores its cache key and outputs in
//! a stamp file, so a second run with an intact bundle only re-hashes files.

use crate::images;
use anyhow::{Context, Result, anyhow, bail, ensure};
use kubeforge::debian::{
    APT_GET_ENV, APT_GET_OPTIONS, apt_get_retrying, deb822_stanzas, one_line_sources,
};
use kubeforge::process::{Program, command_line, find_program};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bump when the recipe changes its outputs: it is part of every step's cache key.
const RECIPE_VERSION: u32 = 1;

const KUBE_VERSION: &str = "v1.20.2";
/// Upstream commit of v1.20.2 (the one `hack/lib/version.sh` of the archive names).
const KUBE_COMMIT: &str = "faecb196815e248d3ecfb03c680a4507229c2a56";
const KUBE_SOURCE_PACKAGE: &str = "kubernetes";
const KUBE_SOURCE_VERSION: &str = "1.20.5+really1.20.2-1.1+deb12u1";
const KUBE_COMMANDS: [&str; 6] = [
    "kube-apiserver",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
];
/// `TAG-REV` as `build/pause/Makefile` computes it, with the release standing in for `git describe`.
const PAUSE_VERSION: &str = "v3.4-v1.20.2";
/// The CFLAGS of `build/pause/Makefile`.
const PAUSE_CFLAGS: [&str; 4] = ["-Os", "-Wall", "-Werror", "-static"];

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
const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/kubeforge-src.sources";
const APT_SOURCES_DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
const APT_SOURCES_LIST: &str = "/etc/apt/sources.list";

/// How to read a version out of a binary.
#[derive(Clone, Copy)]
enum Probe {
    /// Run with `args`; the version is the first word after `prefix` on a line starting with it.
    Line {
        args: &'static [&'static str],
        prefix: &'static str,
    },
    /// The binary reports no version: use the package's upstream version.
    Package,
}

const KUBE_PROBE: Probe = Probe::Line {
    args: &["--version"],
    prefix: "Kubernetes",
};
const KUBECTL_PROBE: Probe = Probe::Line {
    args: &["version", "--client", "--short"],
    prefix: "Client Version:",
};

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
struct Layout {
    root: PathBuf,
    downloads: PathBuf,
    src: PathBuf,
    gocache: PathBuf,
    stamps: PathBuf,
    logs: PathBuf,
    bundle: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
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

    fn create(&self) -> Result<()> {
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

    fn log(&self, step: &str) -> PathBuf {
        self.logs.join(format!("{step}.log"))
    }

    fn stamp(&self, step: &str) -> PathBuf {
        self.stamps.join(format!("{step}.json"))
    }
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
    let steps = plan(&toolchain_versions()?);

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
            StepKind::Kubernetes => build_kubernetes(&layout, &mut source, &log)?,
            StepKind::Pause => vec![build_pause(&layout, &mut source, &log)?],
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

pub(crate) fn progress(line: &str) {
    eprintln!("artifacts: {line}");
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

// ---------------------------------------------------------------------------------------------
// Host tools

/// Install the build tools and a `deb-src` source for bookworm, touching nothing already there.
fn ensure_host_tools(log: &Path) -> Result<()> {
    let missing = missing_packages(&HOST_PACKAGES)?;
    let mut sources_added = false;
    if !Path::new(DEB_SRC_FILE).exists() {
        let stanzas = deb_src_stanzas()?;
        ensure!(
            !stanzas.is_empty(),
            "no Debian `deb` source found in {APT_SOURCES_DEB822} or {APT_SOURCES_LIST} to derive {DEB_SRC_FILE} from"
        );
        progress(&format!("adding {DEB_SRC_FILE}"));
        write_atomic(Path::new(DEB_SRC_FILE), stanzas.join("\n").as_bytes())?;
        sources_added = true;
    }
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

/// Which of `packages` dpkg does not have installed.
pub(crate) fn missing_packages(packages: &[&str]) -> Result<Vec<String>> {
    // dpkg-query exits 1 when a package is unknown; the output still lists the known ones.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    let installed = installed_packages(&String::from_utf8_lossy(&out.stdout));
    Ok(packages
        .iter()
        .filter(|p| !installed.iter().any(|i| i == *p))
        .map(|p| p.to_string())
        .collect())
}

/// Package names from `dpkg-query -f '${Package} ${db:Status-Status}\n'` that are installed.
fn installed_packages(dpkg_query: &str) -> Vec<String> {
    dpkg_query
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            (status.trim() == "installed").then(|| name.to_string())
        })
        .collect()
}

/// deb822 stanzas enabling `deb-src` for the machine's own Debian sources.
fn deb_src_stanzas() -> Result<Vec<String>> {
    if let Ok(text) = fs::read_to_string(APT_SOURCES_DEB822) {
        return Ok(deb_src_from_deb822(&text));
    }
    match fs::read_to_string(APT_SOURCES_LIST) {
        Ok(text) => Ok(deb_src_from_one_line(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {APT_SOURCES_LIST}")),
    }
}

/// Copy every enabled `deb` stanza of a deb822 file as a `deb-src` stanza.
fn deb_src_from_deb822(text: &str) -> Vec<String> {
    deb822_stanzas(text)
        .iter()
        .filter(|stanza| stanza.words("Types").contains(&"deb") && stanza.enabled())
        .map(|stanza| {
            let mut src = String::from("Types: deb-src\n");
            for (k, v) in &stanza.fields {
                if !k.eq_ignore_ascii_case("Types") {
                    src.push_str(&format!("{k}: {v}\n"));
                }
            }
            src
        })
        .collect()
}

/// Turn one-line `deb [opts] URI SUITE COMPONENTS...` entries into deb822 `deb-src` stanzas.
fn deb_src_from_one_line(text: &str) -> Vec<String> {
    one_line_sources(text)
        .iter()
        .filter(|source| source.kind == "deb")
        .map(|source| {
            let mut src = format!(
                "Types: deb-src\nURIs: {}\nSuites: {}\nComponents: {}\n",
                source.uri,
                source.suite,
                source.components.join(" ")
            );
            if let Some((_, key)) = source.options.iter().find(|(k, _)| *k == "signed-by") {
                src.push_str(&format!("Signed-By: {key}\n"));
            }
            src
        })
        .collect()
}

/// apt-get with the library's options and environment, its output appended to the log.
fn apt_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    // The cache is root's: apt's `_apt` sandbox user could not write the downloads there.
    cmd.args(APT_GET_OPTIONS)
        .args(["-o", "APT::Sandbox::User=root"])
        .args(args)
        .envs(APT_GET_ENV);
    cmd
}

/// apt-get, retried once after `apt-get update` (stale or missing package lists).
pub(crate) fn apt_get(args: &[&str], cwd: Option<&Path>, log: &Path) -> Result<()> {
    apt_get_retrying(
        args,
        |args| {
            let mut cmd = apt_command(args);
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            run_logged(cmd, log)
        },
        |_| progress("apt-get failed; refreshing package lists and retrying"),
    )
}

// ---------------------------------------------------------------------------------------------
// Kubernetes from the Debian source package

struct Toolchain {
    go: String,
    gcc: String,
}

fn toolchain_versions() -> Result<Toolchain> {
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
struct KubeSource<'a> {
    layout: &'a Layout,
    tree: Option<PathBuf>,
}

impl<'a> KubeSource<'a> {
    fn new(layout: &'a Layout) -> Self {
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

    fn remove(&self) -> Result<()> {
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

fn build_kubernetes(layout: &Layout, source: &mut KubeSource, log: &Path) -> Result<Vec<Artifact>> {
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

fn build_pause(layout: &Layout, source: &mut KubeSource, log: &Path) -> Result<Artifact> {
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

// ---------------------------------------------------------------------------------------------
// Debian binary packages

fn build_deb(layout: &Layout, spec: &DebSpec, log: &Path, force: bool) -> Result<Vec<Artifact>> {
    let deb = download_deb(layout, spec, log, force)?;
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

/// The pinned `.deb`, reused when one with the right name and version is already cached.
fn download_deb(layout: &Layout, spec: &DebSpec, log: &Path, force: bool) -> Result<PathBuf> {
    let dir = layout.downloads.join("debs").join(spec.package);
    if !force && let Some(deb) = cached_deb(&dir, spec)? {
        return Ok(deb);
    }
    remove_dir_if_exists(&dir)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    progress(&format!("downloading {}={}", spec.package, spec.version));
    let pin = format!("{}={}", spec.package, spec.version);
    apt_get(&["download", &pin], Some(&dir), log)?;
    cached_deb(&dir, spec)?.ok_or_else(|| {
        anyhow!(
            "apt-get download {pin} left no matching .deb in {}",
            dir.display()
        )
    })
}

fn cached_deb(dir: &Path, spec: &DebSpec) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&path)
            .args(["Package", "Version"])
            .output()
            .with_context(|| format!("reading control fields of {}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if out.status.success()
            && field("Package") == Some(spec.package)
            && field("Version") == Some(spec.version)
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// `[epoch:]upstream[-revision]` -> `upstream`.
fn upstream_version(debian_version: &str) -> &str {
    let no_epoch = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, rest)| rest);
    no_epoch
        .rsplit_once('-')
        .map_or(no_epoch, |(upstream, _)| upstream)
}

// ---------------------------------------------------------------------------------------------
// Installing and describing one artifact

/// Copy `from` to `<bundle>/<rel_dir>/<name>`, check its version and describe it.
fn install_artifact(
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
        needed_libraries: needed_libraries(&dest)?,
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

/// The `NEEDED` entries of an ELF file, via readelf (binutils comes with gcc).
fn needed_libraries(binary: &Path) -> Result<Vec<String>> {
    let path = binary.to_string_lossy();
    let out = Program::new("readelf", &["-d", "-W", &path]).run_blocking()?;
    Ok(parse_needed(&out))
}

pub(crate) fn parse_needed(readelf: &str) -> Vec<String> {
    readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            let (lib, _) = rest.split_once(']')?;
            Some(lib.to_string())
        })
        .collect()
}

/// Remove files in the bundle that the manifest no longer lists (older layouts, stale temps).
fn prune_bundle(bundle: &Path, manifest: &Manifest) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Small helpers

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    kubeforge::files::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// [`kubeforge::files::write_atomic`] for the cache and the machine's config files (0644).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    kubeforge::files::write_atomic(path, bytes, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn display_command(cmd: &Command) -> String {
    command_line(std::iter::once(cmd.get_program()).chain(cmd.get_args()))
}

/// Run `cmd` with its output appended to `log`; a failure names the command and shows the tail.
pub(crate) fn run_logged(mut cmd: Command, log: &Path) -> Result<()> {
    let shown = display_command(&cmd);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    writeln!(file, "\n$ {shown}").with_context(|| format!("writing log {}", log.display()))?;
    let stderr = file
        .try_clone()
        .with_context(|| format!("opening log {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    if status.success() {
        return Ok(());
    }
    let tail = log_tail(log, 40).unwrap_or_else(|e| format!("(cannot read log: {e})"));
    bail!(
        "`{shown}` failed ({status}); last lines of {}:\n{tail}",
        log.display()
    )
}

fn log_tail(log: &Path, lines: usize) -> std::io::Result<String> {
    let mut file = File::open(log)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_become_deb_src_stanzas() {
        let text = "Types: deb\n# snapshot comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://x\nSuites: s\nComponents: main\nEnabled: no\n\nTypes: deb-src\nURIs: http://y\nSuites: s\nComponents: main\n";
        let stanzas = deb_src_from_deb822(text);
        assert_eq!(
            stanzas,
            vec![
                "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ]
        );
    }

    #[test]
    fn one_line_sources_become_deb_src_stanzas() {
        let text = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\ndeb-src http://m/debian bookworm main\ndeb http://m/debian-security bookworm-security main\n";
        assert_eq!(
            deb_src_from_one_line(text),
            vec![
                "Types: deb-src\nURIs: http://m/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /k.gpg\n",
                "Types: deb-src\nURIs: http://m/debian-security\nSuites: bookworm-security\nComponents: main\n",
            ]
        );
    }

    #[test]
    fn dpkg_query_output_gives_installed_packages_only() {
        let out = "dpkg-dev installed\ngolang-go not-installed\njq installed\nrsync config-files\n";
        assert_eq!(installed_packages(out), vec!["dpkg-dev", "jq"]);
    }

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
    fn upstream_version_strips_epoch_and_revision() {
        assert_eq!(upstream_version("3.4.23-4+b4"), "3.4.23");
        assert_eq!(upstream_version("1.6.20~ds1-1+deb12u3"), "1.6.20~ds1");
        assert_eq!(upstream_version("2:1.19~1"), "1.19~1");
        assert_eq!(upstream_version("1.0"), "1.0");
    }

    #[test]
    fn readelf_needed_entries_are_parsed() {
        let out = " 0x0000000000000001 (NEEDED)             Shared library: [libseccomp.so.2]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT)               0x4000\n";
        assert_eq!(parse_needed(out), vec!["libseccomp.so.2", "libc.so.6"]);
        assert!(parse_needed("\nThere is no dynamic section in this file.\n").is_empty());
    }

    #[test]
    fn version_env_carries_major_and_minor() {
        let env = version_env("v1.20.2").unwrap();
        assert!(env.contains("KUBE_GIT_VERSION='v1.20.2'\n"));
        assert!(env.contains("KUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n"));
        assert!(env.contains(&format!("KUBE_GIT_COMMIT='{KUBE_COMMIT}'")));
        assert!(version_env("latest").is_err());
    }

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

    #[test]
    fn failed_command_error_names_command_and_shows_log_tail() {
        let log =
            std::env::temp_dir().join(format!("kubeforge-artifacts-{}.log", std::process::id()));
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo first"]);
        run_logged(ok, &log).unwrap();
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
        let err = run_logged(failing, &log).unwrap_err().to_string();
        fs::remove_file(&log).unwrap();
        assert!(
            err.contains("`sh -c 'echo to-stdout; echo to-stderr >&2; exit 3'` failed"),
            "{err}"
        );
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("first\n"), "{err}");
        assert!(err.contains("to-stdout\nto-stderr"), "{err}");
    }

    #[test]
    fn default_cache_dir_is_outside_the_tree() {
        // Only the fallback is checked: changing the environment would race other tests.
        if std::env::var_os("KUBEFORGE_CACHE_DIR").is_none() {
            assert_eq!(default_cache_dir(), PathBuf::from("/var/cache/kubeforge"));
        }
    }
}
