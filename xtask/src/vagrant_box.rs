//! `cargo xtask vagrant-box`: everything the Vagrant driver needs on a Debian machine, offline.
//!
//! No box can be downloaded and VirtualBox is not available here, so this installs vagrant,
//! vagrant-libvirt, libvirt and QEMU from Debian, starts libvirt by hand when no systemd runs
//! it, and builds a Debian bookworm libvirt box with debootstrap from the machine's own
//! mirror. The box is cached under a name carrying the hash of its recipe
//! (`kubeforge/bookworm-<hash>`): a second run only checks that vagrant knows it.

use anyhow::{Context, Result, ensure};
use kubeforge::debian;
use kubeforge::files::sha256_hex;
use kubeforge::process::{Program, running_as_root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bundle::{remove_dir_if_exists, write_atomic};
use crate::logged::run_logged;
use crate::packages::{apt_get, missing_packages};

/// Bump when the build steps below change what the box holds: part of the recipe hash.
const RECIPE_VERSION: &str = "kubeforge-vagrant-box-1";
const SUITE: &str = "bookworm";
const BOX_PREFIX: &str = "kubeforge/bookworm-";
/// Virtual disk size in GB; the qcow2 only holds what is written.
const DISK_GB: u64 = 8;
const WORKDIR: &str = "/var/tmp/kubeforge-vagrant-box";
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/kubeforge-backports.sources";
const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";
const QEMU_CONF_MARK: &str = "# kubeforge: libvirt without systemd or cgroup delegation";
/// Runs QEMU as root without relabelling or cgroups: there is no systemd to delegate them.
const QEMU_CONF_BLOCK: &str = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
                               security_driver = \"none\"\ncgroup_controllers = [ ]\n";
const INSECURE_KEY: &str =
    "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub";

/// Packages the guest gets: a bootable VM plus what the installer's roles expect on a node.
const GUEST_PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "grub-pc",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "sudo",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "procps",
    "kmod",
    "netbase",
    "iptables",
    "conntrack",
    "socat",
    "containerd",
    "runc",
    "containernetworking-plugins",
];

/// Host packages from bookworm; QEMU is added separately (its suite must match qemu-utils).
const HOST_PACKAGES: &[&str] = &[
    "vagrant",
    "vagrant-libvirt",
    "libvirt-daemon-system",
    "libvirt-clients",
    "libvirt-daemon-driver-qemu",
    "dnsmasq-base",
    "debootstrap",
    "fdisk",
    "e2fsprogs",
    "qemu-utils",
];
const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
];

/// Options of `cargo xtask vagrant-box`.
pub struct Options {
    /// Cache root; the box file lives in `<cache>/vagrant-box/<hash>/`.
    pub cache_dir: PathBuf,
    /// Rebuild and re-add the box even when vagrant already has it.
    pub force: bool,
}

fn say(line: &str) {
    eprintln!("vagrant-box: {line}");
}

/// Installs and starts what the driver needs, then builds or reuses the box; returns its name.
pub fn run(root: &Path, opts: &Options) -> Result<String> {
    let started = Instant::now();
    ensure!(
        running_as_root(),
        "must run as root: it installs packages, starts libvirtd and mounts a loop device"
    );
    let dir = opts.cache_dir.join("vagrant-box");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("build.log");
    fs::File::create(&log).with_context(|| format!("creating log {}", log.display()))?;

    ensure_packages(&log)?;
    ensure_libvirt(&log)?;

    let recipe = Recipe::load(root)?;
    let name = recipe.box_name();
    if !opts.force && box_listed(&name)? {
        say(&format!(
            "{name} ready (nothing to do, {:.1}s)",
            started.elapsed().as_secs_f64()
        ));
        return Ok(name);
    }
    let box_dir = dir.join(&recipe.hash[..12]);
    let box_file = box_dir.join("kubeforge-bookworm.box");
    if opts.force || !box_file.is_file() {
        remove_dir_if_exists(&box_dir)?;
        fs::create_dir_all(&box_dir).with_context(|| format!("creating {}", box_dir.display()))?;
        let built = Instant::now();
        build_box(&recipe, &box_file, &log)?;
        let size = fs::metadata(&box_file).map(|m| m.len()).unwrap_or(0);
        say(&format!(
            "built {} in {:.0}s ({} MB)",
            box_file.display(),
            built.elapsed().as_secs_f64(),
            size / 1_000_000
        ));
    }
    let mut add = Command::new("vagrant");
    quiet_vagrant(&mut add)
        .args(["box", "add", "--force", "--name", &name])
        .arg(&box_file);
    run_logged(add, &log)?;
    say(&format!(
        "{name} added to vagrant in {:.0}s total",
        started.elapsed().as_secs_f64()
    ));
    Ok(name)
}

/// What decides the box's bytes; its hash names the box.
struct Recipe {
    configure_sh: Vec<u8>,
    box_vagrantfile: Vec<u8>,
    insecure_key: Vec<u8>,
    hash: String,
}

impl Recipe {
    fn load(root: &Path) -> Result<Recipe> {
        let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
        let images = root.join("images/vagrant");
        let configure_sh = read(&images.join("configure.sh"))?;
        let box_vagrantfile = read(&images.join("Vagrantfile"))?;
        let insecure_key = read(Path::new(INSECURE_KEY))?;
        let mut recipe = Vec::new();
        recipe.extend_from_slice(RECIPE_VERSION.as_bytes());
        recipe.extend_from_slice(SUITE.as_bytes());
        recipe.extend_from_slice(GUEST_PACKAGES.join(" ").as_bytes());
        recipe.extend_from_slice(DISK_GB.to_string().as_bytes());
        for part in [&configure_sh, &box_vagrantfile, &insecure_key] {
            recipe.extend_from_slice(&(part.len() as u64).to_le_bytes());
            recipe.extend_from_slice(part);
        }
        let hash = sha256_hex(&recipe);
        Ok(Recipe {
            configure_sh,
            box_vagrantfile,
            insecure_key,
            hash,
        })
    }

    fn box_name(&self) -> String {
        format!("{BOX_PREFIX}{}", &self.hash[..12])
    }

    /// The root filesystem's UUID, fixed by the recipe so fstab and grub are known up front.
    fn fs_uuid(&self) -> String {
        let h = &self.hash;
        format!(
            "{}-{}-4{}-8{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
}

/// vagrant never asks HashiCorp for updates: nothing leaves the machine.
const VAGRANT_ENV: [(&str, &str); 1] = [("VAGRANT_CHECKPOINT_DISABLE", "1")];

/// vagrant run outside any project (it would create `.vagrant/` next to a Vagrantfile
/// found from the current directory) and without asking for updates.
fn quiet_vagrant(cmd: &mut Command) -> &mut Command {
    cmd.current_dir("/").envs(VAGRANT_ENV)
}

/// Whether `program args` runs and exits 0.
fn succeeds(program: &str, args: &[&str]) -> bool {
    Program::new(program, args).run_blocking().is_ok()
}

/// Installs vagrant, vagrant-libvirt, libvirt and QEMU when any is missing. QEMU comes from
/// bookworm-backports when the installed qemu-utils does (their versions must match).
fn ensure_packages(log: &Path) -> Result<()> {
    let wanted: Vec<&str> = HOST_PACKAGES.iter().chain(QEMU_PACKAGES).copied().collect();
    let missing = missing_packages(&wanted)?;
    if missing.is_empty() {
        return Ok(());
    }
    // Not installed: dpkg-query fails and there is no version to look at.
    let backports = Program::new("dpkg-query", &["-W", "-f=${Version}", "qemu-utils"])
        .run_blocking()
        .is_ok_and(|version| version.contains("bpo"));
    if backports && !Path::new(BACKPORTS_SOURCE).exists() {
        let mirror = debian::mirror(SUITE);
        write_atomic(
            Path::new(BACKPORTS_SOURCE),
            format!(
                "# Added by `cargo xtask vagrant-box`: qemu-system-x86 must match qemu-utils.\n\
                 Types: deb\nURIs: {mirror}\nSuites: {SUITE}-backports\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            )
            .as_bytes(),
        )?;
    }
    say(&format!("installing {}", missing.join(" ")));
    let mut args = vec!["install".to_string(), "--no-install-recommends".to_string()];
    args.extend(HOST_PACKAGES.iter().map(|p| p.to_string()));
    args.extend(QEMU_PACKAGES.iter().map(|p| {
        if backports {
            format!("{p}/{SUITE}-backports")
        } else {
            p.to_string()
        }
    }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    apt_get(&["update"], None, log)?;
    apt_get(&args, None, log)
}

/// qemu.conf for a machine without systemd, then virtlogd and libvirtd started by hand
/// when nothing runs them, then the `default` storage pool vagrant-libvirt uses.
fn ensure_libvirt(log: &Path) -> Result<()> {
    let conf = fs::read_to_string(QEMU_CONF).with_context(|| format!("reading {QEMU_CONF}"))?;
    let changed = !conf.contains(QEMU_CONF_MARK);
    if changed {
        let text = format!("{}\n{QEMU_CONF_MARK}\n{QEMU_CONF_BLOCK}", conf.trim_end());
        // qemu.conf may hold passwords: keep the mode Debian gave it.
        let mode = fs::metadata(QEMU_CONF)
            .with_context(|| format!("reading {QEMU_CONF}"))?
            .permissions()
            .mode();
        kubeforge::files::write_atomic(Path::new(QEMU_CONF), text.as_bytes(), mode & 0o7777)
            .with_context(|| format!("writing {QEMU_CONF}"))?;
    }
    for daemon in ["virtlogd", "libvirtd"] {
        if daemon_running(daemon) {
            ensure!(
                !(changed && daemon == "libvirtd"),
                "{QEMU_CONF} was just changed but libvirtd is already running: restart libvirtd, then run this again"
            );
            continue;
        }
        say(&format!("starting {daemon}"));
        let mut cmd = Command::new(daemon);
        cmd.arg("-d");
        run_logged(cmd, log)?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !succeeds("virsh", &["-c", "qemu:///system", "version"]) {
        ensure!(
            Instant::now() < deadline,
            "libvirtd does not answer on qemu:///system after 20s (see /var/log/libvirt)"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    if !succeeds("virsh", &["pool-info", "default"]) {
        say("defining libvirt storage pool 'default' in /var/lib/libvirt/images");
        for args in [
            &[
                "pool-define-as",
                "default",
                "dir",
                "--target",
                "/var/lib/libvirt/images",
            ][..],
            &["pool-build", "default"],
            &["pool-start", "default"],
            &["pool-autostart", "default"],
        ] {
            let mut cmd = Command::new("virsh");
            cmd.args(args);
            run_logged(cmd, log)?;
        }
    }
    Ok(())
}

/// A daemon started with `-d` writes its pid file under /run.
fn daemon_running(daemon: &str) -> bool {
    fs::read_to_string(format!("/run/{daemon}.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .is_some_and(|comm| comm.trim() == daemon)
}

fn box_listed(name: &str) -> Result<bool> {
    let out = Program::new("vagrant", &["box", "list", "--machine-readable"])
        .env(&VAGRANT_ENV)
        .current_dir(Path::new("/"))
        .run_blocking()?;
    Ok(listed_boxes(&out)
        .iter()
        .any(|(n, provider)| n == name && provider == "libvirt"))
}

/// (name, provider) pairs from `vagrant box list --machine-readable`.
fn listed_boxes(text: &str) -> Vec<(String, String)> {
    let mut boxes = Vec::new();
    let mut name = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        match fields.get(2..4) {
            Some(["box-name", n]) => name = Some(n.to_string()),
            Some(["box-provider", p]) => {
                if let Some(n) = name.take() {
                    boxes.push((n, p.to_string()));
                }
            }
            _ => {}
        }
    }
    boxes
}

/// Loop device, partition and mounts of the disk being built; released on drop, so a
/// failed build leaves nothing attached or mounted.
struct Disk {
    loop_dev: Option<String>,
    mounts: Vec<PathBuf>,
}

impl Drop for Disk {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        if let Some(dev) = self.loop_dev.take() {
            let _ = Command::new("partx").args(["-d", &dev]).status();
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
    }
}

impl Disk {
    fn mount(&mut self, log: &Path, args: &[&str], target: &Path) -> Result<()> {
        let mut cmd = Command::new("mount");
        cmd.args(args).arg(target);
        run_logged(cmd, log)?;
        self.mounts.push(target.to_path_buf());
        Ok(())
    }
}

fn chroot(log: &Path, root: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    run_logged(cmd, log)
}

/// debootstrap → configured root → raw disk with one MBR partition and grub → qcow2 → box.
fn build_box(recipe: &Recipe, box_file: &Path, log: &Path) -> Result<()> {
    let work = Path::new(WORKDIR);
    remove_dir_if_exists(work)?;
    let rootfs = work.join("rootfs");
    let mnt = work.join("mnt");
    for d in [&rootfs, &mnt] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mirror = debian::mirror(SUITE);
    say(&format!(
        "debootstrap {SUITE} from {mirror} (a few minutes; log {})",
        log.display()
    ));
    let step = Instant::now();
    let mut cmd = Command::new("debootstrap");
    cmd.args(["--variant=minbase", "--merged-usr"])
        .arg(format!("--include={}", GUEST_PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(&mirror);
    run_logged(cmd, log)?;
    say(&format!(
        "debootstrap: {:.0}s",
        step.elapsed().as_secs_f64()
    ));

    let step = Instant::now();
    let uuid = recipe.fs_uuid();
    let write = |rel: &str, bytes: &[u8]| {
        let p = rootfs.join(rel);
        fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    write("tmp/configure.sh", &recipe.configure_sh)?;
    write("tmp/vagrant-insecure.pub", &recipe.insecure_key)?;
    chroot(log, &rootfs, &["/bin/sh", "/tmp/configure.sh", &uuid])?;
    fs::remove_file(rootfs.join("tmp/configure.sh")).context("removing configure.sh")?;

    let raw = disk_image(work, &rootfs, &mnt, &uuid, log)?;
    say(&format!("disk image: {:.0}s", step.elapsed().as_secs_f64()));

    let step = Instant::now();
    package_box(recipe, work, &raw, box_file, log)?;
    say(&format!(
        "qcow2 and box: {:.0}s",
        step.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A raw disk with one bootable MBR partition holding `rootfs`, grub installed, booting by
/// the filesystem UUID.
fn disk_image(work: &Path, rootfs: &Path, mnt: &Path, uuid: &str, log: &Path) -> Result<PathBuf> {
    let raw = work.join("disk.raw");
    let file = fs::File::create(&raw).with_context(|| format!("creating {}", raw.display()))?;
    file.set_len(DISK_GB << 30)
        .with_context(|| format!("sizing {}", raw.display()))?;
    drop(file);
    let mut sfdisk = Command::new("sh");
    sfdisk
        .arg("-c")
        .arg("printf 'label: dos\\nstart=2048, type=83, bootable\\n' | sfdisk --quiet \"$1\"")
        .arg("sh")
        .arg(&raw);
    run_logged(sfdisk, log)?;

    let mut disk = Disk {
        loop_dev: None,
        mounts: Vec::new(),
    };
    let raw_path = raw.to_string_lossy();
    let dev = Program::new("losetup", &["--find", "--show", &raw_path])
        .run_blocking()?
        .trim()
        .to_string();
    disk.loop_dev = Some(dev.clone());
    // No udev: the kernel makes no loopNp1 for an MBR partition until partx asks.
    let mut partx = Command::new("partx");
    partx.args(["-a", &dev]);
    run_logged(partx, log)?;
    let part = format!("{dev}p1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(&part).exists() {
        ensure!(
            Instant::now() < deadline,
            "{part} did not appear after partx"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-L", "root", "-U", uuid, &part]);
    run_logged(mkfs, log)?;
    disk.mount(log, &[&part], mnt)?;
    let mut copy = Command::new("cp");
    copy.arg("-a").arg(rootfs.join(".")).arg(mnt);
    run_logged(copy, log)?;
    for (fs_type, dir) in [("proc", "proc"), ("sysfs", "sys")] {
        disk.mount(log, &["-t", fs_type, fs_type], &mnt.join(dir))?;
    }
    disk.mount(log, &["--bind", "/dev"], &mnt.join("dev"))?;
    chroot(
        log,
        mnt,
        &["grub-install", "--target=i386-pc", "--no-floppy", &dev],
    )?;
    chroot(log, mnt, &["update-grub"])?;
    // Without udev, update-grub names the loop partition: boot by the filesystem UUID.
    let cfg_path = mnt.join("boot/grub/grub.cfg");
    let cfg =
        fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
    let cfg = cfg.replace(&format!("root={part}"), &format!("root=UUID={uuid}"));
    ensure!(
        !cfg.contains("/dev/loop"),
        "grub.cfg still names a loop device"
    );
    fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;
    drop(disk);
    Ok(raw)
}

/// qcow2 from the raw disk, with libvirt metadata and the box Vagrantfile, as a box file.
fn package_box(
    recipe: &Recipe,
    work: &Path,
    raw: &Path,
    box_file: &Path,
    log: &Path,
) -> Result<()> {
    let staging = work.join("box");
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let mut convert = Command::new("qemu-img");
    convert
        .args(["convert", "-O", "qcow2"])
        .arg(raw)
        .arg(staging.join("box.img"));
    run_logged(convert, log)?;
    fs::remove_file(raw).with_context(|| format!("removing {}", raw.display()))?;
    let metadata = serde_json::json!({
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": DISK_GB,
    });
    fs::write(staging.join("metadata.json"), metadata.to_string())
        .context("writing metadata.json")?;
    fs::write(staging.join("Vagrantfile"), &recipe.box_vagrantfile)
        .context("writing the box Vagrantfile")?;
    let tmp = box_file.with_extension("box.tmp");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(&staging).arg("-cf").arg(&tmp).args([
        "metadata.json",
        "Vagrantfile",
        "box.img",
    ]);
    run_logged(tar, log)?;
    fs::rename(&tmp, box_file).with_context(|| format!("moving {}", box_file.display()))?;
    remove_dir_if_exists(work)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_readable_box_list_pairs_names_with_providers() {
        let text = "1700000000,,ui,info,x\n\
                    1700000000,,box-name,kubeforge/bookworm-0123456789ab\n\
                    1700000000,,box-provider,libvirt\n\
                    1700000000,,box-version,0\n\
                    1700000000,,box-name,flatcar\n\
                    1700000000,,box-provider,virtualbox\n";
        assert_eq!(
            listed_boxes(text),
            vec![
                (
                    "kubeforge/bookworm-0123456789ab".to_string(),
                    "libvirt".to_string()
                ),
                ("flatcar".to_string(), "virtualbox".to_string()),
            ]
        );
        assert!(listed_boxes("").is_empty());
    }

    #[test]
    fn recipe_uuid_is_a_valid_v4_shape() {
        let r = Recipe {
            configure_sh: Vec::new(),
            box_vagrantfile: Vec::new(),
            insecure_key: Vec::new(),
            hash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(r.fs_uuid(), "01234567-89ab-4def-8123-456789abcdef");
        assert_eq!(r.box_name(), "kubeforge/bookworm-0123456789ab");
    }
}
