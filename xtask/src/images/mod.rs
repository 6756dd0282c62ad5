//! Container images for the cluster, written as `docker save` archives by plain Rust.
//!
//! No registry is reachable and no image builder is installed, so each image is one layer
//! assembled from the bundle's own binaries and files of pinned Debian packages (with the
//! shared libraries they load), then wrapped in the docker-archive format that
//! `ctr -n k8s.io images import` names from its `RepoTags`. (containerd 1.6's `ctr` drops
//! the `org.opencontainers.image.ref.name` of an OCI layout unless `--base-name` matches it.)
//! The tar streams are deterministic: sorted entries, mtime 0, uid/gid 0, normalised modes,
//! so the same inputs give the same sha256.
//!
//! `tree` writes the tars, `docker` the archive around the layer, `rootfs` picks files out
//! of the unpacked packages; this module says what each image holds and builds it.

mod docker;
mod rootfs;
mod tree;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use kubeforge::files::sha256_hex;

use crate::bundle::{Artifact, Stamp, remove_dir_if_exists, valid_stamp, write_atomic};
use crate::logged::{progress, run_logged};
use crate::packages::{cached_deb, download_debs};
use docker::docker_archive;
use rootfs::take_with_libraries;
use tree::{Data, Tree, write_tar};

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
const DEBS: [(&str, &str); 43] = [
    ("conntrack", "1:1.4.7-1+b2"),
    ("dash", "0.5.12-2"),
    ("haproxy", "2.6.12-1+deb12u4"),
    ("iptables", "1.8.9-2"),
    ("libatomic1", "12.2.0-14+deb12u1"),
    ("libc6", "2.36-9+deb12u14"),
    ("libcap2", "1:2.66-4+deb12u3+b1"),
    ("libcom-err2", "1.47.0-2+b2"),
    ("libcrypt1", "1:4.4.33-2"),
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
    ("liblua5.3-0", "5.3.6-2"),
    ("liblz4-1", "1.9.4-1"),
    ("liblzf1", "3.6-3"),
    ("liblzma5", "5.4.1-1+deb12u2"),
    ("libmnl0", "1.0.4-3"),
    ("libnetfilter-conntrack3", "1.0.9-3"),
    ("libnfnetlink0", "1.0.2-2"),
    ("libnftnl11", "1.2.4-2"),
    ("libnsl2", "1.3.0-2"),
    ("libopentracing-c-wrapper0", "1.1.3-3+b1"),
    ("libopentracing1", "1.6.0-4"),
    ("libpcre2-8-0", "10.42-1+deb12u2"),
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

const IMAGES: [ImageSpec; 8] = [
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
    // The API servers' load balancer on every node of a cluster with several masters.
    ImageSpec {
        repo: "haproxy",
        tag: Tag::Fixed("2.6"),
        binaries: &[],
        packages: &[
            "haproxy",
            "libc6",
            "libcrypt1",
            "liblua5.3-0",
            "libopentracing-c-wrapper0",
            "libopentracing1",
            "libpcre2-8-0",
            "libssl3",
            "libsystemd0",
            "libcap2",
            "libgcrypt20",
            "libgpg-error0",
            "liblz4-1",
            "liblzma5",
            "libzstd1",
            "libstdc++6",
            "libgcc-s1",
        ],
        take: &["usr/sbin/haproxy"],
        symlinks: &[],
        files: &[],
        dirs: &[],
        base: true,
        // In the foreground, configured from the directory the static pod mounts.
        entrypoint: &[
            "/usr/sbin/haproxy",
            "-db",
            "-f",
            "/usr/local/etc/haproxy/haproxy.cfg",
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
            download_debs(&debs_dir(dirs), &DEBS, dirs.log)?;
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

fn debs_dir(dirs: &ImageDirs) -> PathBuf {
    dirs.downloads.join("image-debs")
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    pub(super) fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kubeforge-images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
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
