//! Container images for the cluster, written as `docker save` archives by plain Rust.
//!
//! No registry is reachable and no image builder is installed, so each image is one layer
//! assembled from the bundle's own binaries and files of pinned Debian packages (with the
//! shared libraries they load), then wrapped in the docker-archive format that
//! `ctr -n k8s.io images import` names from its `RepoTags`. (containerd 1.6's `ctr` drops
//! the `org.opencontainers.image.ref.name` of an OCI layout unless `--base-name` matches it.)
//! The tar streams are deterministic: sorted entries, mtime 0, uid/gid 0, normalised modes,
//! so the same inputs give the same sha256.

use crate::artifacts::{
    Artifact, Stamp, apt_get, parse_needed, progress, remove_dir_if_exists, run_logged,
    valid_stamp, write_atomic,
};
use anyhow::{Context, Result, anyhow, ensure};
use kubeforge::files::{Sha256Writer, sha256_hex};
use kubeforge::process::Program;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Bump when the writer or the base files change what an image holds: part of every key.
const IMAGES_RECIPE: u32 = 1;
const REGISTRY: &str = "kubeforge.local";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the dynamic loader looks (Debian multiarch, no ld.so.cache in the image).
const LIB_DIRS: [&str; 2] = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

const PASSWD: &str =
    "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";
/// Go's resolver and glibc both read it; without it Go may skip /etc/hosts.
const NSSWITCH: &str = "hosts: files dns\n";

/// kube-proxy's `iptables` must use the backend the node's own `iptables` uses, or kubelet's
/// and kube-proxy's rules land in different tables. The node image is Debian bookworm, whose
/// `update-alternatives` default is `iptables-nft` (checked in localhost/kubeforge-host), so
/// the image links the plain names to `xtables-nft-multi`.
const IPTABLES_MULTI: &str = "xtables-nft-multi";

/// Pinned Debian packages, so a cache key never needs an apt query.
const DEBS: [(&str, &str); 37] = [
    ("conntrack", "1:1.4.7-1+b2"),
    ("dash", "0.5.12-2"),
    ("iptables", "1.8.9-2"),
    ("libatomic1", "12.2.0-14+deb12u1"),
    ("libc6", "2.36-9+deb12u14"),
    ("libcap2", "1:2.66-4+deb12u3+b1"),
    ("libcom-err2", "1.47.0-2+b2"),
    ("libgcc-s1", "12.2.0-14+deb12u1"),
    ("libgcrypt20", "1.10.1-3+deb12u1"),
    ("libgpg-error0", "1.46-1"),
    ("libgssapi-krb5-2", "1.20.1-2+deb12u5"),
    ("libip4tc2", "1.8.9-2"),
    ("libip6tc2", "1.8.9-2"),
    ("libjemalloc2", "5.3.0-1"),
    ("libk5crypto3", "1.20.1-2+deb12u5"),
    ("libkeyutils1", "1.6.3-2"),
    ("libkrb5-3", "1.20.1-2+deb12u5"),
    ("libkrb5support0", "1.20.1-2+deb12u5"),
    ("liblz4-1", "1.9.4-1"),
    ("liblzf1", "3.6-3"),
    ("liblzma5", "5.4.1-1+deb12u2"),
    ("libmnl0", "1.0.4-3"),
    ("libnetfilter-conntrack3", "1.0.9-3"),
    ("libnfnetlink0", "1.0.2-2"),
    ("libnftnl11", "1.2.4-2"),
    ("libnsl2", "1.3.0-2"),
    ("libssl3", "3.0.22-1~deb12u2"),
    ("libstdc++6", "12.2.0-14+deb12u1"),
    ("libsystemd0", "252.39-1~deb12u2"),
    ("libtirpc3", "1.3.3+ds-1"),
    ("libwrap0", "7.6.q-32"),
    ("libxtables12", "1.8.9-2"),
    ("libzstd1", "1.5.4+dfsg2-5"),
    ("netbase", "6.4"),
    ("redis-server", "5:7.0.15-1~deb12u10"),
    ("redis-tools", "5:7.0.15-1~deb12u10"),
    ("socat", "1.7.4.4-2"),
];

const REDIS_PACKAGES: [&str; 16] = [
    "redis-server",
    "redis-tools",
    "libc6",
    "libatomic1",
    "libjemalloc2",
    "liblzf1",
    "libssl3",
    "libsystemd0",
    "libcap2",
    "libgcrypt20",
    "libgpg-error0",
    "liblzma5",
    "libzstd1",
    "liblz4-1",
    "libstdc++6",
    "libgcc-s1",
];

/// One HTTP request per connection (socat hands the socket over as stdin/stdout).
/// Messages are limited to URL-safe characters so no decoding is needed in sh.
const GUESTBOOK_HANDLER: &str = r#"#!/bin/sh
# GET /set?msg=TEXT writes to the redis leader, GET /get reads from a follower.
# Hosts: $REDIS_LEADER_HOST / $REDIS_FOLLOWER_HOST, else the Service env vars Kubernetes
# injects (there is no cluster DNS), else the Service names.
leader=${REDIS_LEADER_HOST:-${REDIS_LEADER_SERVICE_HOST:-redis-leader}}
follower=${REDIS_FOLLOWER_HOST:-${REDIS_FOLLOWER_SERVICE_HOST:-$leader}}
cr=$(printf '\r')
reply() {
    printf 'HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' \
        "$1" "$((${#2} + 1))" "$2"
    exit 0
}
read -r method target _ || exit 0
target=${target%"$cr"}
while read -r line; do
    case $line in "" | "$cr") break ;; esac
done
[ "$method" = GET ] || reply '405 Method Not Allowed' 'only GET'
case $target in
/set\?msg=*)
    msg=${target#/set?msg=}
    case $msg in "" | *[!A-Za-z0-9._~-]*) reply '400 Bad Request' 'msg must match [A-Za-z0-9._~-]+' ;; esac
    out=$(redis-cli -h "$leader" set msg "$msg" 2>&1) || reply '502 Bad Gateway' "$out"
    reply '200 OK' "$out"
    ;;
/get)
    out=$(redis-cli -h "$follower" get msg 2>&1) || reply '502 Bad Gateway' "$out"
    reply '200 OK' "$out"
    ;;
/healthz) reply '200 OK' ok ;;
*) reply '404 Not Found' 'try /set?msg=TEXT or /get' ;;
esac
"#;

/// Where the tag of an image comes from.
#[derive(Debug)]
enum Tag {
    /// The version the first bundle binary reports (`v1.20.2`).
    Binary,
    Fixed(&'static str),
}

/// What goes into one image. Its `Debug` text is part of the cache key.
#[derive(Debug)]
struct ImageSpec {
    repo: &'static str,
    tag: Tag,
    /// Bundle binaries (manifest name) and their path in the image; they must be static.
    binaries: &'static [(&'static str, &'static str)],
    /// Debian packages unpacked for this image (pinned in `DEBS`).
    packages: &'static [&'static str],
    /// Paths taken from those packages (directories whole), plus every library they load.
    take: &'static [&'static str],
    symlinks: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static str, u32)],
    dirs: &'static [(&'static str, u32)],
    /// passwd, group, nsswitch.conf and a 1777 /tmp.
    base: bool,
    entrypoint: &'static [&'static str],
    workdir: &'static str,
}

const fn control_plane(
    repo: &'static str,
    binaries: &'static [(&'static str, &'static str)],
    entrypoint: &'static [&'static str],
) -> ImageSpec {
    ImageSpec {
        repo,
        tag: Tag::Binary,
        binaries,
        packages: &[],
        take: &[],
        symlinks: &[],
        files: &[],
        dirs: &[],
        base: true,
        entrypoint,
        workdir: "/",
    }
}

const IMAGES: [ImageSpec; 7] = [
    control_plane(
        "kube-apiserver",
        &[("kube-apiserver", "/usr/local/bin/kube-apiserver")],
        &["/usr/local/bin/kube-apiserver"],
    ),
    control_plane(
        "kube-controller-manager",
        &[(
            "kube-controller-manager",
            "/usr/local/bin/kube-controller-manager",
        )],
        &["/usr/local/bin/kube-controller-manager"],
    ),
    control_plane(
        "kube-scheduler",
        &[("kube-scheduler", "/usr/local/bin/kube-scheduler")],
        &["/usr/local/bin/kube-scheduler"],
    ),
    ImageSpec {
        packages: &[
            "iptables",
            "libxtables12",
            "libip4tc2",
            "libip6tc2",
            "libnftnl11",
            "libmnl0",
            "libnetfilter-conntrack3",
            "libnfnetlink0",
            "conntrack",
            "libc6",
            "netbase",
        ],
        take: &[
            "usr/sbin/xtables-nft-multi",
            "usr/sbin/conntrack",
            "usr/lib/x86_64-linux-gnu/xtables",
            "etc/protocols",
            "etc/services",
        ],
        symlinks: &[
            ("/usr/sbin/iptables", IPTABLES_MULTI),
            ("/usr/sbin/iptables-save", IPTABLES_MULTI),
            ("/usr/sbin/iptables-restore", IPTABLES_MULTI),
            ("/usr/sbin/ip6tables", IPTABLES_MULTI),
            ("/usr/sbin/ip6tables-save", IPTABLES_MULTI),
            ("/usr/sbin/ip6tables-restore", IPTABLES_MULTI),
        ],
        // iptables takes its lock in /run/xtables.lock.
        dirs: &[("/run", 0o755)],
        ..control_plane(
            "kube-proxy",
            &[("kube-proxy", "/usr/local/bin/kube-proxy")],
            &["/usr/local/bin/kube-proxy"],
        )
    },
    ImageSpec {
        repo: "pause",
        tag: Tag::Fixed("3.4"),
        binaries: &[("pause", "/pause")],
        packages: &[],
        take: &[],
        symlinks: &[],
        files: &[],
        dirs: &[],
        base: false,
        entrypoint: &["/pause"],
        workdir: "/",
    },
    ImageSpec {
        repo: "redis",
        tag: Tag::Fixed("7"),
        binaries: &[],
        packages: &REDIS_PACKAGES,
        take: &["usr/bin/redis-server", "usr/bin/redis-cli"],
        symlinks: &[],
        files: &[],
        dirs: &[("/data", 0o755)],
        base: true,
        // Without a config file redis only answers on loopback unless protected mode is off.
        entrypoint: &["/usr/bin/redis-server", "--protected-mode", "no"],
        workdir: "/data",
    },
    ImageSpec {
        repo: "guestbook-frontend",
        tag: Tag::Fixed("v1"),
        binaries: &[],
        packages: &[
            "dash",
            "socat",
            "redis-tools",
            "libc6",
            "libatomic1",
            "libjemalloc2",
            "liblzf1",
            "libssl3",
            "libsystemd0",
            "libcap2",
            "libgcrypt20",
            "libgpg-error0",
            "liblzma5",
            "libzstd1",
            "liblz4-1",
            "libstdc++6",
            "libgcc-s1",
            "libwrap0",
            "libnsl2",
            "libtirpc3",
            "libgssapi-krb5-2",
            "libkrb5-3",
            "libk5crypto3",
            "libcom-err2",
            "libkrb5support0",
            "libkeyutils1",
        ],
        take: &["bin/dash", "bin/sh", "usr/bin/socat", "usr/bin/redis-cli"],
        symlinks: &[],
        files: &[("/usr/local/bin/guestbook-handler", GUESTBOOK_HANDLER, 0o755)],
        dirs: &[],
        base: true,
        entrypoint: &[
            "/usr/bin/socat",
            "TCP-LISTEN:80,fork,reuseaddr",
            "EXEC:/usr/local/bin/guestbook-handler",
        ],
        workdir: "/",
    },
];

/// The cache directories the images step reads and writes.
pub struct ImageDirs<'a> {
    pub bundle: &'a Path,
    pub downloads: &'a Path,
    /// Scratch space for unpacked packages and half-written layers.
    pub work: &'a Path,
    pub stamps: &'a Path,
    pub log: &'a Path,
}

/// Build (or reuse from its stamp) every image; `binaries` are the bundle's verified artifacts.
pub fn build(dirs: &ImageDirs, binaries: &[Artifact], force: bool) -> Result<Vec<Artifact>> {
    let mut out = Vec::new();
    let mut debs_ready = false;
    for spec in &IMAGES {
        let inputs = spec
            .binaries
            .iter()
            .map(|(name, _)| {
                binaries
                    .iter()
                    .find(|a| a.name == *name)
                    .ok_or_else(|| anyhow!("image {}: bundle has no binary {name}", spec.repo))
            })
            .collect::<Result<Vec<&Artifact>>>()?;
        let tag = match spec.tag {
            Tag::Fixed(tag) => tag.to_string(),
            Tag::Binary => inputs.first().map(|a| a.version.clone()).ok_or_else(|| {
                anyhow!(
                    "image {} takes its tag from a binary but has none",
                    spec.repo
                )
            })?,
        };
        let key = cache_key(spec, &tag, &inputs)?;
        let stamp = dirs.stamps.join(format!("image-{}.json", spec.repo));
        if !force && let Some(cached) = valid_stamp(&stamp, &key, dirs.bundle)? {
            out.extend(cached);
            continue;
        }
        if !debs_ready {
            File::create(dirs.log)
                .with_context(|| format!("creating log {}", dirs.log.display()))?;
            download_debs(dirs)?;
            debs_ready = true;
        }
        let started = Instant::now();
        let artifact = build_image(dirs, spec, &tag, &inputs)?;
        progress(&format!(
            "{}: built in {:.1}s ({} MB, log {})",
            artifact.name,
            started.elapsed().as_secs_f64(),
            artifact.size / 1_000_000,
            dirs.log.display()
        ));
        write_atomic(
            &stamp,
            &serde_json::to_vec_pretty(&Stamp {
                key,
                artifacts: vec![artifact.clone()],
            })?,
        )?;
        out.push(artifact);
    }
    Ok(out)
}

fn reference(repo: &str, tag: &str) -> String {
    format!("{REGISTRY}/{repo}:{tag}")
}

fn pin(package: &str) -> Result<&'static str> {
    DEBS.iter()
        .find(|(p, _)| *p == package)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow!("Debian package {package} has no pinned version in images::DEBS"))
}

/// Everything that decides the image's bytes: the spec, the input binaries, the pins.
fn cache_key(spec: &ImageSpec, tag: &str, inputs: &[&Artifact]) -> Result<String> {
    let bins: Vec<String> = inputs
        .iter()
        .map(|a| format!("{}@{}", a.name, a.sha256))
        .collect();
    let debs = spec
        .packages
        .iter()
        .map(|p| Ok(format!("{p}={}", pin(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let definition = format!("{spec:?}{PASSWD}{GROUP}{NSSWITCH}{PATH_ENV}");
    Ok(format!(
        "images={IMAGES_RECIPE} ref={} bins={} debs={} spec={}",
        reference(spec.repo, tag),
        bins.join(","),
        debs.join(","),
        sha256_hex(definition.as_bytes())
    ))
}

/// The manifest's `source`: the bundle binaries and Debian packages the image is made of.
fn source(spec: &ImageSpec) -> Result<String> {
    let mut parts: Vec<String> = spec.binaries.iter().map(|(n, _)| n.to_string()).collect();
    for p in spec.packages {
        parts.push(format!("debian:{p}={}", pin(p)?));
    }
    Ok(format!("built:{}", parts.join(",")))
}

// ---------------------------------------------------------------------------------------------
// Debian packages

fn debs_dir(dirs: &ImageDirs) -> PathBuf {
    dirs.downloads.join("image-debs")
}

/// The file `apt-get download PKG=VER` writes, if it is here.
fn cached_deb(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let version = version.replace(':', "%3a");
    ["amd64", "all"]
        .iter()
        .map(|arch| dir.join(format!("{package}_{version}_{arch}.deb")))
        .find(|p| p.is_file())
}

/// Download the pinned packages not cached yet; apt verifies them, and they only get their
/// final name once complete, so a cached file is trusted.
fn download_debs(dirs: &ImageDirs) -> Result<()> {
    let dir = debs_dir(dirs);
    let missing: Vec<String> = DEBS
        .iter()
        .filter(|(p, v)| cached_deb(&dir, p, v).is_none())
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let partial = dir.join(".partial");
    remove_dir_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    progress(&format!(
        "downloading {} Debian packages for images",
        missing.len()
    ));
    let args: Vec<&str> = std::iter::once("download")
        .chain(missing.iter().map(String::as_str))
        .collect();
    apt_get(&args, Some(&partial), dirs.log)?;
    for entry in fs::read_dir(&partial).with_context(|| format!("listing {}", partial.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", partial.display()))?
            .path();
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
        fs::rename(&path, dir.join(name))
            .with_context(|| format!("moving {} into {}", path.display(), dir.display()))?;
    }
    remove_dir_if_exists(&partial)?;
    for (p, v) in DEBS {
        ensure!(
            cached_deb(&dir, p, v).is_some(),
            "apt-get download {p}={v} left no {p}_*.deb in {}",
            dir.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One image

fn build_image(
    dirs: &ImageDirs,
    spec: &ImageSpec,
    tag: &str,
    inputs: &[&Artifact],
) -> Result<Artifact> {
    let reference = reference(spec.repo, tag);
    let stage = dirs.work.join(format!("image-{}", spec.repo));
    remove_dir_if_exists(&stage)?;
    fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    for package in spec.packages {
        let deb = cached_deb(&debs_dir(dirs), package, pin(package)?)
            .ok_or_else(|| anyhow!("image {reference}: {package}.deb is not downloaded"))?;
        let mut dpkg = Command::new("dpkg-deb");
        dpkg.arg("-x").arg(&deb).arg(&stage);
        run_logged(dpkg, dirs.log)?;
    }

    let mut tree = Tree::default();
    if spec.base {
        tree.file("etc/passwd", Data::Inline(PASSWD.into()), 0o644);
        tree.file("etc/group", Data::Inline(GROUP.into()), 0o644);
        tree.file("etc/nsswitch.conf", Data::Inline(NSSWITCH.into()), 0o644);
        tree.dir("tmp", 0o1777);
    }
    for ((_, to), artifact) in spec.binaries.iter().zip(inputs) {
        ensure!(
            artifact.needed_libraries.is_empty(),
            "image {reference}: {} needs shared libraries {:?}, the image has none",
            artifact.name,
            artifact.needed_libraries
        );
        tree.file(rel(to), Data::Host(dirs.bundle.join(&artifact.path)), 0o755);
    }
    take_with_libraries(&mut tree, &stage, spec.take).with_context(|| {
        format!(
            "image {reference}: collecting files from {}",
            stage.display()
        )
    })?;
    for (path, target) in spec.symlinks {
        tree.symlink(rel(path), target);
    }
    for (path, content, mode) in spec.files {
        tree.file(rel(path), Data::Inline(content.as_bytes().to_vec()), *mode);
    }
    for (path, mode) in spec.dirs {
        tree.dir(rel(path), *mode);
    }

    let file_name = format!("{}-{tag}.tar", spec.repo);
    let rel_path = format!("images/{file_name}");
    let images_dir = dirs.bundle.join("images");
    fs::create_dir_all(&images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let layer_tmp = dirs.work.join(format!("image-{}.layer.tar", spec.repo));
    let (layer_digest, _) = write_tar(&tree, &layer_tmp)?;
    let archive = docker_archive(spec, &reference, &layer_digest, &layer_tmp)?;
    let tmp = images_dir.join(format!(".{file_name}.tmp"));
    let (sha256, size) = write_tar(&archive, &tmp)?;
    let dest = dirs.bundle.join(&rel_path);
    fs::rename(&tmp, &dest).with_context(|| format!("moving {} into place", dest.display()))?;
    fs::remove_file(&layer_tmp).with_context(|| format!("removing {}", layer_tmp.display()))?;
    remove_dir_if_exists(&stage)?;
    Ok(Artifact {
        name: format!("image:{reference}"),
        version: tag.to_string(),
        sha256,
        size,
        source: source(spec)?,
        path: rel_path,
        needed_libraries: Vec::new(),
    })
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The image config (`docker image inspect`'s body) of a one-layer image.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    created: &'static str,
    config: RunConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    env: Vec<String>,
    entrypoint: Vec<String>,
    working_dir: String,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The `docker save` layout: `manifest.json`, `<config sha>.json`, `<layer sha>/layer.tar`.
fn docker_archive(
    spec: &ImageSpec,
    reference: &str,
    layer_digest: &str,
    layer: &Path,
) -> Result<Tree> {
    let config = ImageConfig {
        architecture: "amd64",
        os: "linux",
        created: EPOCH,
        config: RunConfig {
            env: vec![PATH_ENV.to_string()],
            entrypoint: spec.entrypoint.iter().map(|s| s.to_string()).collect(),
            working_dir: spec.workdir.to_string(),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![format!("sha256:{layer_digest}")],
        },
        history: vec![History {
            created: EPOCH,
            created_by: format!("cargo xtask artifacts ({})", source(spec)?),
        }],
    };
    let config = serde_json::to_vec(&config)?;
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&[ArchiveManifest {
        config: config_name.clone(),
        repo_tags: vec![reference.to_string()],
        layers: vec![layer_name.clone()],
    }])?;
    let mut tree = Tree::default();
    tree.file(&config_name, Data::Inline(config), 0o644);
    tree.file(&layer_name, Data::Host(layer.to_path_buf()), 0o644);
    tree.file("manifest.json", Data::Inline(manifest), 0o644);
    Ok(tree)
}

// ---------------------------------------------------------------------------------------------
// Files out of unpacked packages, with their shared libraries

/// Add `paths` (relative to `root`) to `tree`: symlinks with what they point at, directories
/// whole, and for every ELF file its interpreter and `NEEDED` libraries, transitively.
fn take_with_libraries(tree: &mut Tree, root: &Path, paths: &[&str]) -> Result<()> {
    let mut elves = Vec::new();
    for path in paths {
        take(tree, root, path, &mut elves)?;
    }
    let mut seen = BTreeSet::new();
    while let Some(elf) = elves.pop() {
        if !seen.insert(elf.clone()) {
            continue;
        }
        let (interpreter, needed) = elf_dependencies(&root.join(&elf))?;
        if let Some(interpreter) = interpreter {
            take(tree, root, rel(&interpreter), &mut elves)?;
        }
        for lib in needed {
            let found = LIB_DIRS
                .iter()
                .map(|dir| format!("{dir}/{lib}"))
                .find(|p| root.join(p).symlink_metadata().is_ok())
                .ok_or_else(|| {
                    anyhow!(
                        "{elf} needs {lib}, which none of the image's packages ships in {}",
                        LIB_DIRS.join(" or ")
                    )
                })?;
            take(tree, root, &found, &mut elves)?;
        }
    }
    Ok(())
}

/// Add one path of the unpacked tree; ELF files found are pushed onto `elves`.
fn take(tree: &mut Tree, root: &Path, path: &str, elves: &mut Vec<String>) -> Result<()> {
    // A directory may exist only as an implicit parent so far: walk it anyway.
    if matches!(
        tree.nodes.get(path),
        Some(Node::File { .. } | Node::Symlink { .. })
    ) {
        return Ok(());
    }
    let full = root.join(path);
    let meta = full
        .symlink_metadata()
        .with_context(|| format!("{path} is not in the unpacked packages"))?;
    if meta.file_type().is_symlink() {
        let target =
            fs::read_link(&full).with_context(|| format!("reading link {}", full.display()))?;
        let target = target
            .to_str()
            .ok_or_else(|| anyhow!("link {} is not UTF-8", full.display()))?
            .to_string();
        tree.symlink(path, &target);
        let resolved = resolve_link(path, &target)
            .ok_or_else(|| anyhow!("link {path} -> {target} leaves the image root"))?;
        take(tree, root, &resolved, elves)
    } else if meta.is_dir() {
        tree.dir(path, 0o755);
        let mut children = Vec::new();
        for entry in fs::read_dir(&full).with_context(|| format!("listing {}", full.display()))? {
            let entry = entry.with_context(|| format!("listing {}", full.display()))?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| anyhow!("a file name in {} is not UTF-8", full.display()))?;
            children.push(format!("{path}/{name}"));
        }
        children.sort();
        for child in children {
            take(tree, root, &child, elves)?;
        }
        Ok(())
    } else {
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        tree.file(path, Data::Host(full.clone()), mode);
        if is_elf(&full)? {
            elves.push(path.to_string());
        }
        Ok(())
    }
}

/// The path (relative to the image root) a link at `path` pointing at `target` resolves to.
fn resolve_link(path: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"\x7fELF"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The program interpreter and `NEEDED` entries of an ELF file, via readelf.
fn elf_dependencies(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    let path = path.to_string_lossy();
    let text = Program::new("readelf", &["-l", "-d", "-W", &path]).run_blocking()?;
    Ok((parse_interpreter(&text), parse_needed(&text)))
}

fn parse_interpreter(readelf: &str) -> Option<String> {
    readelf.lines().find_map(|l| {
        let rest = l.split_once("[Requesting program interpreter: ")?.1;
        Some(rest.split_once(']')?.0.to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// Deterministic tar

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Host(PathBuf),
    Inline(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { data: Data, mode: u32 },
    Symlink { target: String },
}

/// A file tree written as a tar with sorted names, mtime 0 and uid/gid 0.
#[derive(Debug, Default)]
struct Tree {
    /// Relative paths without a trailing slash; sorted order puts parents first.
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.nodes
                .entry(path[..end].to_string())
                .or_insert(Node::Dir { mode: 0o755 });
            end += 1;
        }
    }

    fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::Dir { mode });
    }

    fn file(&mut self, path: &str, data: Data, mode: u32) {
        self.parents(path);
        self.nodes
            .insert(path.to_string(), Node::File { data, mode });
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.nodes.insert(
            path.to_string(),
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    fn write<W: Write>(&self, out: W) -> Result<W> {
        let mut builder = tar::Builder::new(out);
        for (path, node) in &self.nodes {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match node {
                Node::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())
                }
                Node::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    match data {
                        Data::Inline(bytes) => {
                            header.set_size(bytes.len() as u64);
                            builder.append_data(&mut header, path, bytes.as_slice())
                        }
                        Data::Host(from) => {
                            let file = File::open(from)
                                .with_context(|| format!("opening {}", from.display()))?;
                            let len = file
                                .metadata()
                                .with_context(|| format!("reading size of {}", from.display()))?
                                .len();
                            header.set_size(len);
                            builder.append_data(&mut header, path, std::io::Read::take(file, len))
                        }
                    }
                }
                Node::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)
                }
            }
            .with_context(|| format!("adding {path} to the tar"))?;
        }
        builder.into_inner().context("finishing the tar")
    }
}

/// Write `tree` as a tar to `dest`; returns its sha256 (hex) and size.
fn write_tar(tree: &Tree, dest: &Path) -> Result<(String, u64)> {
    let file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let writer = Sha256Writer::new(BufWriter::with_capacity(1 << 20, file));
    let mut writer = tree
        .write(writer)
        .with_context(|| format!("writing {}", dest.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    let (_, sha256, len) = writer.finish();
    Ok((sha256, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kubeforge-images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tar_bytes(tree: &Tree) -> Vec<u8> {
        tree.write(Vec::new()).unwrap()
    }

    /// (path, type, mode, uid, gid, mtime, link target, content) of every entry, in order.
    type Row = (
        String,
        tar::EntryType,
        u32,
        u64,
        u64,
        u64,
        Option<String>,
        Vec<u8>,
    );

    fn entries(bytes: &[u8]) -> Vec<Row> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                (
                    path,
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    link,
                    content,
                )
            })
            .collect()
    }

    #[test]
    fn tar_is_sorted_with_parents_modes_and_zeroed_metadata() {
        let dir = temp_dir("entries");
        let host = dir.join("bin");
        fs::write(&host, b"\x7fELF-not-really").unwrap();
        let mut tree = Tree::default();
        tree.file("usr/local/bin/tool", Data::Host(host), 0o755);
        tree.file("etc/passwd", Data::Inline(PASSWD.into()), 0o644);
        tree.dir("tmp", 0o1777);
        tree.symlink("usr/sbin/iptables", IPTABLES_MULTI);
        let long = format!("usr/lib/{}/libx.so", "d".repeat(120));
        tree.file(&long, Data::Inline(b"x".to_vec()), 0o644);

        let rows = entries(&tar_bytes(&tree));
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/passwd",
                "tmp/",
                "usr/",
                "usr/lib/",
                &format!("usr/lib/{}/", "d".repeat(120)),
                &long,
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool",
                "usr/sbin/",
                "usr/sbin/iptables",
            ]
        );
        for row in &rows {
            assert_eq!((row.3, row.4, row.5), (0, 0, 0), "{}", row.0);
        }
        let get = |name: &str| rows.iter().find(|r| r.0 == name).unwrap();
        assert_eq!(get("tmp/").1, tar::EntryType::Directory);
        assert_eq!(get("tmp/").2, 0o1777);
        assert_eq!(get("usr/").2, 0o755);
        assert_eq!(get("usr/local/bin/tool").2, 0o755);
        assert_eq!(get("usr/local/bin/tool").7, b"\x7fELF-not-really");
        assert_eq!(get("etc/passwd").2, 0o644);
        assert_eq!(get("etc/passwd").7, PASSWD.as_bytes());
        assert_eq!(get("usr/sbin/iptables").1, tar::EntryType::Symlink);
        assert_eq!(get("usr/sbin/iptables").6.as_deref(), Some(IPTABLES_MULTI));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tar_bytes_do_not_depend_on_insertion_order_or_host_metadata() {
        let dir = temp_dir("determinism");
        let host = dir.join("f");
        fs::write(&host, b"payload").unwrap();
        let mut a = Tree::default();
        a.file("b/f", Data::Host(host.clone()), 0o755);
        a.file("a/x", Data::Inline(b"1".to_vec()), 0o644);
        a.symlink("a/l", "x");
        let first = tar_bytes(&a);
        // Touch the host file's mtime and mode: the archive must not change.
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&host, b"payload").unwrap();
        let mut b = Tree::default();
        b.symlink("a/l", "x");
        b.file("a/x", Data::Inline(b"1".to_vec()), 0o644);
        b.file("b/f", Data::Host(host.clone()), 0o755);
        assert_eq!(first, tar_bytes(&b));

        let (sha1, size1) = write_tar(&a, &dir.join("one.tar")).unwrap();
        let (sha2, size2) = write_tar(&b, &dir.join("two.tar")).unwrap();
        assert_eq!((&sha1, size1), (&sha2, size2));
        assert_eq!(sha1, sha256_hex(&first));
        assert_eq!(size1, first.len() as u64);

        b.file("a/x", Data::Inline(b"2".to_vec()), 0o644);
        assert_ne!(first, tar_bytes(&b), "content must change the archive");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn docker_archive_names_the_image_and_links_config_to_layer() {
        let dir = temp_dir("archive");
        let layer = dir.join("layer.tar");
        let mut tree = Tree::default();
        tree.file("pause", Data::Inline(b"bin".to_vec()), 0o755);
        let (digest, _) = write_tar(&tree, &layer).unwrap();
        let spec = &IMAGES[4];
        assert_eq!(spec.repo, "pause");
        let archive = docker_archive(spec, "kubeforge.local/pause:3.4", &digest, &layer).unwrap();
        let rows = entries(&tar_bytes(&archive));
        let file = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.7.clone());

        let manifest: serde_json::Value =
            serde_json::from_slice(&file("manifest.json").unwrap()).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "kubeforge.local/pause:3.4");
        assert_eq!(manifest[0]["Layers"][0], format!("{digest}/layer.tar"));
        let config_bytes = file(config_name).unwrap();
        assert_eq!(config_name, format!("{}.json", sha256_hex(&config_bytes)));
        assert_eq!(
            file(&format!("{digest}/layer.tar")).unwrap(),
            fs::read(&layer).unwrap()
        );
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{digest}"));
        assert_eq!(config["config"]["Entrypoint"][0], "/pause");
        assert_eq!(config["config"]["Env"][0], PATH_ENV);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readelf_interpreter_is_parsed() {
        let out = "Program Headers:\n  INTERP 0x000318 0x318 0x318 0x00001c 0x00001c R 0x1\n      [Requesting program interpreter: /lib64/ld-linux-x86-64.so.2]\n";
        assert_eq!(
            parse_interpreter(out).as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(parse_interpreter("There are no program headers\n"), None);
    }

    #[test]
    fn a_directory_first_seen_as_parent_is_still_taken_whole() {
        let root = temp_dir("parent");
        fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        fs::write(root.join("usr/lib/x/a"), b"a").unwrap();
        fs::write(root.join("usr/lib/b"), b"b").unwrap();
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, &root, &["usr/lib/x/a", "usr/lib"]).unwrap();
        assert!(tree.nodes.contains_key("usr/lib/b"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn links_resolve_inside_the_image_root() {
        assert_eq!(
            resolve_link("usr/bin/redis-server", "redis-check-rdb").as_deref(),
            Some("usr/bin/redis-check-rdb")
        );
        assert_eq!(
            resolve_link(
                "lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            )
            .as_deref(),
            Some("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            resolve_link("usr/bin/iptables-xml", "../sbin/xtables-legacy-multi").as_deref(),
            Some("usr/sbin/xtables-legacy-multi")
        );
        assert_eq!(resolve_link("a", "../../etc"), None);
    }

    #[test]
    fn taking_a_link_takes_its_target_and_directories_whole() {
        let root = temp_dir("take");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("usr/lib/x/sub")).unwrap();
        fs::write(root.join("usr/bin/real"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("usr/bin/real"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("real", root.join("usr/bin/alias")).unwrap();
        fs::write(root.join("usr/lib/x/sub/data"), b"d").unwrap();
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, &root, &["usr/bin/alias", "usr/lib/x"]).unwrap();
        assert_eq!(
            tree.nodes["usr/bin/alias"],
            Node::Symlink {
                target: "real".into()
            }
        );
        assert_eq!(
            tree.nodes["usr/bin/real"],
            Node::File {
                data: Data::Host(root.join("usr/bin/real")),
                mode: 0o755
            }
        );
        assert!(matches!(
            tree.nodes["usr/lib/x/sub/data"],
            Node::File { mode: 0o644, .. }
        ));
        let err = take_with_libraries(&mut tree, &root, &["usr/bin/missing"]).unwrap_err();
        assert!(format!("{err:#}").contains("usr/bin/missing"), "{err:#}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn elf_closure_brings_interpreter_and_libraries() {
        // The build machine is Debian: its own /bin/dash needs libc and the loader.
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, Path::new("/"), &["usr/bin/dash"]).unwrap();
        assert!(tree.nodes.contains_key("lib64/ld-linux-x86-64.so.2"));
        let libc = LIB_DIRS
            .iter()
            .any(|d| tree.nodes.contains_key(&format!("{d}/libc.so.6")));
        assert!(libc, "{:?}", tree.nodes.keys().collect::<Vec<_>>());
    }

    #[test]
    fn every_package_is_pinned_and_every_image_has_a_unique_file() {
        let mut files = BTreeSet::new();
        for spec in &IMAGES {
            for p in spec.packages {
                pin(p).unwrap();
            }
            assert!(files.insert(spec.repo), "{} twice", spec.repo);
            assert!(!spec.entrypoint.is_empty());
        }
        assert_eq!(
            source(&IMAGES[3])
                .unwrap()
                .split(',')
                .take(2)
                .collect::<Vec<_>>(),
            ["built:kube-proxy", "debian:iptables=1.8.9-2"]
        );
        assert!(pin("no-such-package").is_err());
    }

    #[test]
    fn cache_key_follows_binary_and_pins() {
        let bin = |sha: &str| Artifact {
            name: "kube-apiserver".into(),
            version: "v1.20.2".into(),
            sha256: sha.into(),
            size: 1,
            source: "test".into(),
            path: "v1.20.2/bin/kube-apiserver".into(),
            needed_libraries: vec![],
        };
        let (a, b) = (bin("aa"), bin("bb"));
        let ka = cache_key(&IMAGES[0], "v1.20.2", &[&a]).unwrap();
        assert_eq!(ka, cache_key(&IMAGES[0], "v1.20.2", &[&a]).unwrap());
        assert_ne!(ka, cache_key(&IMAGES[0], "v1.20.2", &[&b]).unwrap());
        assert!(
            ka.contains("ref=kubeforge.local/kube-apiserver:v1.20.2"),
            "{ka}"
        );
        let redis = cache_key(&IMAGES[5], "7", &[]).unwrap();
        assert!(
            redis.contains("redis-server=5:7.0.15-1~deb12u10"),
            "{redis}"
        );
    }

    /// Run the frontend's handler with `request` on stdin and a fake `redis-cli` on PATH.
    fn handle(request: &str, fake_cli: &str) -> String {
        let dir = temp_dir("handler");
        let handler = dir.join("handler");
        fs::write(&handler, GUESTBOOK_HANDLER).unwrap();
        let cli = dir.join("redis-cli");
        fs::write(&cli, format!("#!/bin/sh\n{fake_cli}\n")).unwrap();
        fs::set_permissions(&cli, fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = Command::new("dash")
            .arg(&handler)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .env("REDIS_LEADER_SERVICE_HOST", "10.0.0.1")
            .env_remove("REDIS_LEADER_HOST")
            .env_remove("REDIS_FOLLOWER_HOST")
            .env_remove("REDIS_FOLLOWER_SERVICE_HOST")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn guestbook_handler_speaks_http_and_calls_redis_cli() {
        let set = handle(
            "GET /set?msg=hello-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            r#"echo "$*""#,
        );
        assert!(set.starts_with("HTTP/1.0 200 OK\r\n"), "{set}");
        assert!(
            set.ends_with("\r\n\r\n-h 10.0.0.1 set msg hello-1\n"),
            "{set}"
        );
        assert!(set.contains("Content-Length: 28\r\n"), "{set}");

        let get = handle("GET /get HTTP/1.1\r\n\r\n", r#"echo "$*""#);
        assert!(get.ends_with("\r\n\r\n-h 10.0.0.1 get msg\n"), "{get}");

        let bad = handle("GET /set?msg=a%20b HTTP/1.1\r\n\r\n", "echo never");
        assert!(bad.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{bad}");

        let down = handle("GET /get HTTP/1.1\r\n\r\n", "echo refused; exit 1");
        assert!(down.starts_with("HTTP/1.0 502 Bad Gateway\r\n"), "{down}");
        assert!(down.ends_with("refused\n"), "{down}");

        let post = handle("POST /get HTTP/1.1\r\n\r\n", "echo never");
        assert!(post.starts_with("HTTP/1.0 405"), "{post}");
    }
}
