//! Builds the CoreOS-like node image for Podman hosts offline (debootstrap from the
//! machine's own Debian mirror, no registry) and caches it under a tag derived from
//! the recipe, so an unchanged recipe costs one `podman image exists`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::debian;
use crate::files::sha256_hex;
use crate::process::{self, CommandFailure, Outcome, Program, find_program, running_as_root};
use crate::report::Logger;

/// Bump when the build steps change in a way the package list and files do not show.
const RECIPE_VERSION: &str = "kubeforge-host-recipe-1";
const SUITE: &str = "bookworm";
const IMAGE_REPO: &str = "localhost/kubeforge-host";
/// Build directories are `<prefix><pid>-<random>`, so ones left by a killed build can be
/// recognised by their dead pid.
const WORKDIR_PREFIX: &str = "/var/tmp/kubeforge-host-";

/// Binaries a node needs; the installer configures and enables services itself.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "iproute2",
    "iptables",
    "conntrack",
    "socat",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "procps",
    "kmod",
    "mount",
    "util-linux",
    "netbase",
];

/// Units that spin, fail or touch the shared kernel when systemd runs in a container.
const MASKED_UNITS: &[&str] = &[
    // A privileged host's /proc/sys, binfmt_misc and module loading reach the shared kernel.
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.mount",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-modules-load.service",
    // No console in a container: these would restart forever.
    "console-getty.service",
    "getty@tty1.service",
];

const SYSCTL_SHIM_UNIT: &str = "kubeforge-sysctl-shim.service";

struct RecipeFile {
    path: &'static str,
    mode: u32,
    content: &'static str,
}

const FILES: &[RecipeFile] = &[
    RecipeFile {
        path: "etc/sudoers.d/core",
        mode: 0o440,
        content: "core ALL=(ALL) NOPASSWD:ALL\n",
    },
    RecipeFile {
        path: "etc/ssh/sshd_config.d/kubeforge.conf",
        mode: 0o644,
        content: "# Key-only logins; one host key generated at first boot; keys come from a volume\n\
                  # the Podman driver mounts on /etc/ssh/authorized_keys.\n\
                  PasswordAuthentication no\n\
                  KbdInteractiveAuthentication no\n\
                  PermitRootLogin no\n\
                  UseDNS no\n\
                  MaxSessions 32\n\
                  AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys/%u\n\
                  HostKey /etc/ssh/ssh_host_ed25519_key\n",
    },
    RecipeFile {
        // Host keys must differ per host, so none are baked in; ed25519 alone keeps boot fast.
        path: "etc/systemd/system/ssh.service.d/kubeforge-hostkeys.conf",
        mode: 0o644,
        content: "[Service]\n\
                  ExecStartPre=\n\
                  ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key'\n\
                  ExecStartPre=/usr/sbin/sshd -t\n",
    },
    RecipeFile {
        path: "etc/systemd/system.conf.d/kubeforge.conf",
        mode: 0o644,
        content: "[Manager]\nDefaultTimeoutStopSec=10s\n",
    },
    RecipeFile {
        path: "usr/local/sbin/kubeforge-sysctl-shim",
        mode: 0o755,
        content: r#"#!/bin/sh
# Presents the sysctl values kubelet insists on inside this node only: the files
# are bind-mounted over /proc/sys entries, so the shared kernel is never written.
# Only a privileged host has a writable /proc/sys; on others there is nothing to do.
if [ ! -w /proc/sys/vm/overcommit_memory ]; then
    echo "kubeforge-sysctl-shim: /proc/sys is read-only (unprivileged host): nothing to do"
    exit 0
fi
dir=/run/kubeforge-sysctl
mkdir -p "$dir" || exit 0
rc=0
for kv in vm.overcommit_memory=1 kernel.panic=10 kernel.panic_on_oops=1; do
    key=${kv%%=*}
    value=${kv#*=}
    target=/proc/sys/$(echo "$key" | tr . /)
    if grep -q " $target " /proc/self/mountinfo; then
        continue
    fi
    printf '%s\n' "$value" > "$dir/$key"
    mount --bind "$dir/$key" "$target" || rc=1
done
exit $rc
"#,
    },
    RecipeFile {
        path: "etc/systemd/system/kubeforge-sysctl-shim.service",
        mode: 0o644,
        content: "[Unit]\n\
                  Description=Present kubelet's sysctl values inside this node without changing the shared kernel\n\
                  Before=containerd.service kubelet.service\n\
                  \n\
                  [Service]\n\
                  Type=oneshot\n\
                  RemainAfterExit=yes\n\
                  ExecStart=-/usr/local/sbin/kubeforge-sysctl-shim\n\
                  \n\
                  [Install]\n\
                  WantedBy=multi-user.target\n",
    },
];

/// Commands run inside the rootfs (via chroot) after the files are written.
const CHROOT_STEPS: &[&[&str]] = &[
    &[
        "useradd",
        "--create-home",
        "--uid",
        "1000",
        "--user-group",
        "--shell",
        "/bin/bash",
        "core",
    ],
    // '*' = no password, but not "locked", so key logins are never refused.
    &["usermod", "-p", "*", "core"],
    &[
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        "core",
        "-g",
        "core",
        "/home/core/.ssh",
    ],
    &["install", "-d", "-m", "0755", "/opt/bin"],
    &["systemctl", "disable", "containerd.service"],
    &["systemctl", "enable", SYSCTL_SHIM_UNIT],
];

/// Failures preparing or building the host image; each names the command or path.
#[derive(Debug, thiserror::Error)]
pub enum HostImageError {
    #[error(
        "missing host tools: {missing}; install them with `{install}` (as root), or run kubeforge as root on Debian to have it installed"
    )]
    MissingTools { missing: String, install: String },
    #[error("host image: {action}: {source}")]
    Command {
        action: String,
        #[source]
        source: CommandFailure,
    },
    #[error("host image: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host image: refusing to write {path}: it resolves outside the rootfs")]
    OutsideRootfs { path: PathBuf },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostImageError {
    let path = path.to_path_buf();
    move |source| HostImageError::Io {
        action,
        path,
        source,
    }
}

fn cmd_err(action: impl Into<String>) -> impl FnOnce(CommandFailure) -> HostImageError {
    let action = action.into();
    move |source| HostImageError::Command { action, source }
}

/// Tools the image build and the driver call, with the Debian package providing each.
const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("runc", "runc"),
    ("debootstrap", "debootstrap"),
];

/// Makes sure podman, runc and debootstrap exist; installs them with apt when running
/// as root on Debian, otherwise says exactly what to install.
pub async fn ensure_prerequisites(log: &Logger) -> Result<(), HostImageError> {
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .filter(|(tool, _)| find_program(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    let is_debian = Path::new("/etc/debian_version").exists();
    if !(running_as_root() && is_debian) {
        return Err(HostImageError::MissingTools {
            missing: missing.join(", "),
            install,
        });
    }
    log.verbose(format!(
        "installing missing packages: {}",
        missing.join(" ")
    ));
    let mut args = vec!["install"];
    args.extend(missing.iter().copied());
    debian::apt_get(&args, log)
        .await
        .map_err(cmd_err(install))?;
    Ok(())
}

/// The image reference for the current recipe: the tag changes whenever the recipe does.
pub fn image_ref() -> String {
    image_ref_with(&[])
}

/// The image reference of the recipe plus `extra` packages (a scenario's
/// `driver.packages`). Without extras it is the plain recipe's, exactly as before extras
/// existed (CI caches that image by its tag); with them, a repository of its own per set
/// of extras, so cleaning up one set's older recipes never removes the plain image or
/// another set's.
pub fn image_ref_with(extra: &[String]) -> String {
    let extra = normalized(extra);
    if extra.is_empty() {
        return format!("{IMAGE_REPO}:{}", recipe_hash(&[]));
    }
    let set = sha256_hex(extra.join(" ").as_bytes());
    format!("{IMAGE_REPO}-with-{}:{}", &set[..8], recipe_hash(&extra))
}

/// The packages the plain image holds; extras repeating one are refused at load.
pub fn base_packages() -> &'static [&'static str] {
    PACKAGES
}

/// Extras in a canonical order, so the same set always names the same image.
fn normalized(extra: &[String]) -> Vec<String> {
    let mut extra = extra.to_vec();
    extra.sort();
    extra.dedup();
    extra
}

fn recipe_hash(extra: &[String]) -> String {
    let mut recipe = Vec::new();
    let mut feed = |part: &str| {
        recipe.extend_from_slice(part.as_bytes());
        recipe.push(0);
    };
    feed(RECIPE_VERSION);
    feed(SUITE);
    PACKAGES.iter().for_each(|p| feed(p));
    MASKED_UNITS.iter().for_each(|u| feed(u));
    for file in FILES {
        feed(file.path);
        feed(&format!("{:o}", file.mode));
        feed(file.content);
    }
    for step in CHROOT_STEPS {
        feed(&step.join(" "));
    }
    // Fed only when present: the plain recipe's hash stays what it always was.
    if !extra.is_empty() {
        feed("extra-packages");
        extra.iter().for_each(|p| feed(p));
    }
    sha256_hex(&recipe)[..12].to_string()
}

/// Returns the node image reference, building and importing it first if Podman lacks it.
pub async fn ensure_host_image(log: &Logger) -> Result<String, HostImageError> {
    ensure_host_image_with(&[], log).await
}

/// [`ensure_host_image`] for the recipe plus `extra` packages (see [`image_ref_with`]).
pub async fn ensure_host_image_with(
    extra: &[String],
    log: &Logger,
) -> Result<String, HostImageError> {
    let extra = normalized(extra);
    let reference = image_ref_with(&extra);
    if process::run("podman", &["image", "exists", &reference])
        .await
        .is_ok()
    {
        log.verbose(format!("host image {reference} is cached"));
        return Ok(reference);
    }
    remove_abandoned_workdirs(log).await;
    let workdir = PathBuf::from(format!(
        "{WORKDIR_PREFIX}{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    tokio::fs::create_dir(&workdir)
        .await
        .map_err(io_err("create", &workdir))?;
    let rootfs = workdir.join("rootfs");
    let built = build(&rootfs, &reference, &extra, log).await;
    let cleaned = remove_workdir(&workdir).await;
    built?;
    cleaned?;
    log.verbose(format!("host image {reference} is ready"));
    remove_stale_images(&reference, log).await;
    Ok(reference)
}

/// Drops images of older recipes so iterating on the recipe does not fill the disk;
/// ones still used by some instance's containers stay (podman refuses, which is fine).
/// Only `current`'s own repository is cleaned: the plain image and each set of extra
/// packages keep theirs.
async fn remove_stale_images(current: &str, log: &Logger) {
    let Some((repository, _)) = current.rsplit_once(':') else {
        return;
    };
    let filter = format!("reference={repository}");
    let Ok(listed) = process::run(
        "podman",
        &[
            "images",
            "--filter",
            &filter,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    )
    .await
    else {
        return;
    };
    for stale in stale_images(&listed, current) {
        if process::run("podman", &["rmi", stale]).await.is_ok() {
            log.verbose(format!("removed stale host image {stale}"));
        }
    }
}

/// The images of `podman images` output that are `current`'s repository under another tag.
fn stale_images<'a>(listed: &'a str, current: &str) -> Vec<&'a str> {
    let repository = current.rsplit_once(':').map_or(current, |(r, _)| r);
    listed
        .lines()
        .map(str::trim)
        .filter(|r| {
            r.rsplit_once(':')
                .is_some_and(|(repo, _)| repo == repository)
        })
        .filter(|r| *r != current)
        .collect()
}

async fn build(
    rootfs: &Path,
    reference: &str,
    extra: &[String],
    log: &Logger,
) -> Result<(), HostImageError> {
    let mirror = debian::mirror(SUITE);
    log.verbose(format!(
        "building host image {reference}: debootstrap {SUITE} from {mirror} (takes a few minutes)"
    ));
    let packages: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    let include = format!("--include={}", packages.join(","));
    let rootfs_str = rootfs.to_string_lossy().into_owned();
    let args = [
        "--variant=minbase",
        "--components=main",
        &include,
        SUITE,
        &rootfs_str,
        &mirror,
    ];
    let debootstrap = process::run("debootstrap", &args);
    with_heartbeat(debootstrap, "debootstrap", log)
        .await
        .map_err(cmd_err(format!("debootstrap {SUITE} from {mirror}")))?;
    log.verbose("configuring host rootfs");
    configure(rootfs).await?;
    log.verbose(format!("importing rootfs as {reference}"));
    with_heartbeat(import(rootfs, reference), "podman import", log).await
}

/// Awaits `work`, logging every 30 s that it is still running, so a long silent step
/// does not look hung.
async fn with_heartbeat<T>(work: impl Future<Output = T>, what: &str, log: &Logger) -> T {
    let started = std::time::Instant::now();
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(30));
    ticks.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => log.verbose(format!(
                "{what} still running ({}s)",
                started.elapsed().as_secs()
            )),
        }
    }
}

/// Removes build directories whose builder process is gone (killed or crashed builds).
async fn remove_abandoned_workdirs(log: &Logger) {
    let Some((parent, name_prefix)) = WORKDIR_PREFIX.rsplit_once('/') else {
        return;
    };
    let Ok(mut entries) = tokio::fs::read_dir(parent).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(name_prefix)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        match remove_workdir(&entry.path()).await {
            Ok(()) => log.verbose(format!(
                "removed abandoned build directory {}",
                entry.path().display()
            )),
            Err(e) => log.verbose(format!("could not remove abandoned build directory: {e}")),
        }
    }
}

async fn configure(rootfs: &Path) -> Result<(), HostImageError> {
    let root = tokio::fs::canonicalize(rootfs)
        .await
        .map_err(io_err("resolve", rootfs))?;
    for file in FILES {
        write_in_rootfs(&root, file).await?;
    }
    let root_str = root.to_string_lossy().into_owned();
    for step in CHROOT_STEPS {
        let mut args = vec![root_str.as_str()];
        args.extend_from_slice(step);
        process::run("chroot", &args)
            .await
            .map_err(cmd_err(format!("in rootfs: {}", step.join(" "))))?;
    }
    let mut mask = vec![root_str.as_str(), "systemctl", "mask"];
    mask.extend_from_slice(MASKED_UNITS);
    process::run("chroot", &mask)
        .await
        .map_err(cmd_err("in rootfs: systemctl mask"))?;

    // Per-host identity must come from first boot, never from the build machine.
    let ssh_dir = root.join("etc/ssh");
    let mut entries = tokio::fs::read_dir(&ssh_dir)
        .await
        .map_err(io_err("list", &ssh_dir))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_err("list", &ssh_dir))?
    {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            let path = entry.path();
            tokio::fs::remove_file(&path)
                .await
                .map_err(io_err("remove", &path))?;
        }
    }
    for relative in ["etc/hostname", "etc/resolv.conf", "var/lib/dbus/machine-id"] {
        remove_if_present(&root.join(relative)).await?;
    }
    let machine_id = root.join("etc/machine-id");
    remove_if_present(&machine_id).await?;
    tokio::fs::write(&machine_id, b"")
        .await
        .map_err(io_err("write", &machine_id))?;
    // Package indexes and caches only add size; the node never runs apt offline.
    for relative in ["var/lib/apt/lists", "var/cache/apt"] {
        clear_dir_files(&root.join(relative)).await?;
    }
    Ok(())
}

async fn write_in_rootfs(root: &Path, file: &RecipeFile) -> Result<(), HostImageError> {
    let target = root.join(file.path);
    let parent = target
        .parent()
        .ok_or_else(|| HostImageError::OutsideRootfs {
            path: target.clone(),
        })?;
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(io_err("create", parent))?;
    // An absolute symlink inside the rootfs would otherwise redirect the write to the machine.
    let resolved = tokio::fs::canonicalize(parent)
        .await
        .map_err(io_err("resolve", parent))?;
    if !resolved.starts_with(root) {
        return Err(HostImageError::OutsideRootfs { path: target });
    }
    remove_if_present(&target).await?;
    tokio::fs::write(&target, file.content)
        .await
        .map_err(io_err("write", &target))?;
    tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
        .await
        .map_err(io_err("chmod", &target))
}

async fn remove_if_present(path: &Path) -> Result<(), HostImageError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Removes regular files (recursively) below `dir`, keeping the directory tree apt expects.
async fn clear_dir_files(dir: &Path) -> Result<(), HostImageError> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&current).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", &current)(e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io_err("list", &current))?
        {
            let path = entry.path();
            let kind = entry.file_type().await.map_err(io_err("inspect", &path))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && entry.file_name() != "lock" {
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(io_err("remove", &path))?;
            }
        }
    }
    Ok(())
}

/// `tar -C ROOTFS -c . | podman import - REF`, with the image set to boot systemd.
async fn import(rootfs: &Path, reference: &str) -> Result<(), HostImageError> {
    let root = rootfs.to_string_lossy();
    let tar_args = ["-C", &root, "--numeric-owner", "--xattrs", "-c", "."];
    let tar = Program::new("tar", &tar_args);
    let mut tarring = tar
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cmd_err("tar the rootfs")(tar.failure(Outcome::NotStarted(e))))?;
    let tar_out: Stdio = tarring
        .stdout
        .take()
        .and_then(|out| out.try_into().ok())
        .ok_or_else(|| {
            io_err("pipe tar output of", rootfs)(std::io::Error::other("no stdout pipe"))
        })?;
    let import_args = [
        "import",
        "--change",
        "CMD [\"/sbin/init\"]",
        "--change",
        "STOPSIGNAL SIGRTMIN+3",
        "-",
        reference,
    ];
    let podman = Program::new("podman", &import_args);
    let importing = podman
        .command()
        .stdin(tar_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let (imported, tarred) = tokio::join!(importing, tarring.wait_with_output());
    tar.check(tarred).map_err(cmd_err("tar the rootfs"))?;
    podman
        .check(imported)
        .map_err(cmd_err(format!("podman import {reference}")))?;
    Ok(())
}

/// Deletes the build directory, first lazily unmounting anything debootstrap left mounted
/// inside it (an aborted run can leave /proc or /sys mounted in the rootfs).
async fn remove_workdir(workdir: &Path) -> Result<(), HostImageError> {
    let mounts = tokio::fs::read_to_string("/proc/self/mounts")
        .await
        .map_err(io_err("read", Path::new("/proc/self/mounts")))?;
    let prefix = workdir.to_string_lossy().into_owned();
    let mut inside: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|mount| mount.starts_with(&format!("{prefix}/")))
        .collect();
    inside.sort_by_key(|mount| std::cmp::Reverse(mount.len()));
    for mount in &inside {
        process::run("umount", &["-l", mount])
            .await
            .map_err(cmd_err(format!("unmount {mount} before cleanup")))?;
    }
    tokio::fs::remove_dir_all(workdir)
        .await
        .map_err(io_err("remove", workdir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ref_is_stable_and_tagged_by_recipe() {
        let reference = image_ref();
        assert_eq!(reference, image_ref());
        let tag = reference
            .strip_prefix("localhost/kubeforge-host:")
            .expect("repository prefix");
        assert_eq!(tag.len(), 12);
        assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
    }

    /// The plain image's tag is what CI caches: extras must not change it. Update the pin
    /// only together with a deliberate change of the recipe.
    #[test]
    fn extra_packages_never_change_the_plain_image() {
        assert_eq!(image_ref(), "localhost/kubeforge-host:970591aa6df4");
        assert_eq!(image_ref_with(&[]), image_ref());
    }

    #[test]
    fn extra_packages_name_an_image_of_their_own() {
        let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let python = image_ref_with(&set(&["python3"]));
        let (repository, tag) = python.rsplit_once(':').expect("a tag");
        assert!(
            repository.starts_with("localhost/kubeforge-host-with-"),
            "{python}"
        );
        assert_eq!(tag.len(), 12);
        assert_ne!(tag, image_ref().rsplit_once(':').unwrap().1);
        // The same set in any order, or repeated, is the same image; another set is not.
        assert_eq!(image_ref_with(&set(&["python3", "python3"])), python);
        let two = image_ref_with(&set(&["jq", "python3"]));
        assert_eq!(image_ref_with(&set(&["python3", "jq"])), two);
        assert_ne!(two.rsplit_once(':').unwrap().0, repository);
    }

    #[test]
    fn stale_images_are_older_recipes_of_the_same_repository_only() {
        let python = image_ref_with(&["python3".to_string()]);
        let (python_repo, _) = python.rsplit_once(':').unwrap();
        let listed = format!(
            "{plain}\nlocalhost/kubeforge-host:0123456789ab\n{python}\n{python_repo}:0123456789ab\nlocalhost/kubeforge-host-with-ffffffff:0123456789ab\n",
            plain = image_ref(),
        );
        assert_eq!(
            stale_images(&listed, &image_ref()),
            vec!["localhost/kubeforge-host:0123456789ab"]
        );
        assert_eq!(
            stale_images(&listed, &python),
            vec![format!("{python_repo}:0123456789ab")]
        );
    }

    #[test]
    fn recipe_never_enables_containerd_or_bakes_host_keys() {
        assert!(
            CHROOT_STEPS
                .iter()
                .any(|step| step == &["systemctl", "disable", "containerd.service"])
        );
        assert!(
            FILES
                .iter()
                .all(|f| !f.path.starts_with("etc/ssh/ssh_host_"))
        );
        let sudoers = FILES.iter().find(|f| f.path == "etc/sudoers.d/core");
        assert_eq!(sudoers.map(|f| f.mode), Some(0o440));
    }
}
