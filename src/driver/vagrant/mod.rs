//! Vagrant driver: the seeds' platform, virtual machines from the project's `Vagrantfile`.
//!
//! kubeforge runs the same Vagrantfile a user runs by hand and hands it the scenario's hosts
//! in `KUBEFORGE_*` variables, so there is one description of the VMs. Vagrant's own state
//! lives in the scenario's state directory (`VAGRANT_DOTFILE_PATH`), and every VM, libvirt
//! network and the run's own storage pool (box volume and disks, a directory in that state)
//! are named after the instance, so two scenarios never collide and [`destroy`] finds what a
//! failed `vagrant up` left behind. The cluster uses the private network's addresses; SSH
//! goes where `vagrant ssh-config` says.
//!
//! `output` reads what vagrant prints, `libvirt` talks to libvirt directly; this module
//! plans and runs vagrant.

mod heal;
mod libvirt;
mod output;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::net::{Ipv4Net, NetError};
use crate::process::{self, CommandFailure, Program};
use crate::report::Logger;
use crate::scenario::{Group, VagrantProvider};

pub use heal::{VagrantHealing, heal};
pub use output::{SshConfigEntry, parse_ssh_config, vms_from_ssh_config};

use libvirt::ensure_pool;
use output::{failure_of_last_command, parse_machine_line, progress_line};

/// Prefix of the boxes `cargo xtask vagrant-box` builds (Vagrant stores `/` as `-VAGRANTSLASH-`).
const LOCAL_BOX_DIR_PREFIX: &str = "kubeforge-VAGRANTSLASH-bookworm-";
/// A whole `vagrant up` under software emulation on a busy machine stays well below this.
const UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `vagrant up` returns once Vagrant itself logged in, so sshd answers at once; this only
/// bounds a VM that went away right after.
const SSH_READY_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "run `cargo xtask vagrant-box` (as root) to install vagrant, \
                            vagrant-libvirt, libvirt and QEMU and build the box";

/// One VM to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VagrantHostSpec {
    pub name: String,
    /// Address on the private network (the cluster's address for the host).
    pub ip: Ipv4Addr,
    pub memory_mb: u64,
    pub cpus: u32,
}

/// Everything `vagrant up` and the clean-up need for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VagrantPlan {
    /// Prefix of every VM, volume and network name, e.g. `kf-vagrant-etcd-3fa9c1`.
    pub instance: String,
    pub provider: VagrantProvider,
    /// `None`: the newest locally built box (libvirt) or the Vagrantfile's Flatcar box.
    pub box_name: Option<String>,
    pub emulate_cpu: bool,
    pub management_network: String,
    pub hosts: Vec<VagrantHostSpec>,
    /// Directory holding the project's Vagrantfile.
    pub vagrantfile_dir: PathBuf,
    /// Vagrant's dotfile directory, the raw log and consoles: inside the scenario's state.
    pub work_dir: PathBuf,
}

/// A VM `vagrant up` created: where the cluster reaches it and where SSH does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedVm {
    pub name: String,
    /// Address on the private network: the cluster's address for the host.
    pub ip: Ipv4Addr,
    /// SSH endpoint from `vagrant ssh-config`: the management network's address (libvirt)
    /// or 127.0.0.1 with a forwarded port (VirtualBox).
    pub ssh_address: IpAddr,
    pub ssh_port: u16,
    pub user: String,
}

/// What [`destroy`] removed besides what `vagrant destroy` did itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestroyReport {
    pub vagrant_ran: bool,
    pub domains: Vec<String>,
    /// Volumes left in the run's storage pool (the box volume at least).
    pub volumes: Vec<String>,
    pub pools: Vec<String>,
    pub networks: Vec<String>,
}

/// Failures of the Vagrant driver; each names the instance, host, command or file.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("{what} is not available: {INSTALL_HINT}")]
    Missing { what: String },
    #[error("vagrant plan for instance {instance}: {reason}")]
    InvalidPlan { instance: String, reason: String },
    #[error("{action} {target}: {source}")]
    Command {
        action: &'static str,
        target: String,
        #[source]
        source: CommandFailure,
    },
    #[error("`{command}` for {instance} failed ({status}); log {}:\n{message}", log.display())]
    Vagrant {
        /// The whole command line, `vagrant up ...`.
        command: String,
        instance: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        /// Vagrant's own message, without Ruby backtraces.
        message: String,
        /// Vagrant reported an exception of its own (or a plugin's), not a refusal.
        internal: bool,
    },
    #[error("`vagrant up` for {instance} did not finish within {}s; log {}", timeout.as_secs(), log.display())]
    Timeout {
        instance: String,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("instance {instance}: {action} {}: {source}", path.display())]
    Io {
        instance: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "storage pool {pool} ({}) still holds disks or the base image of VM(s) {}, which are \
         not this run's: destroy those first, then destroy this scenario again",
        dir.display(), users.join(", ")
    )]
    PoolInUse {
        pool: String,
        dir: PathBuf,
        users: Vec<String>,
    },
    #[error("host {host}: `vagrant ssh-config` reports nothing for it")]
    NoSshConfig { host: String },
    #[error("host {host}: `vagrant ssh-config` reports HostName {hostname:?}, not an IP address")]
    SshHostName { host: String, hostname: String },
    #[error("VMs not answering SSH after {}s: {}", timeout.as_secs(), details.join("; "))]
    SshNotReady {
        timeout: Duration,
        details: Vec<String>,
    },
}

/// The seeds' memory per group (MiB) when a platform gives none.
pub fn seed_memory_mb(groups: &[Group]) -> u64 {
    if groups
        .iter()
        .any(|g| matches!(g, Group::KubeMaster | Group::KubeWorker))
    {
        2048
    } else {
        1024
    }
}

/// Why a host has no address on the private network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateIpError {
    #[error(transparent)]
    Network(#[from] NetError),
    #[error("network '{0}' must be a /24")]
    NotSlash24(Ipv4Net),
    #[error("address octet {0} is outside 2-254")]
    Octet(u8),
}

/// `last_octet` inside a /24 given as `a.b.c.0/24`.
pub fn private_ip(network: &str, last_octet: u8) -> Result<Ipv4Addr, PrivateIpError> {
    let net: Ipv4Net = network.parse()?;
    if net.prefix() != 24 {
        return Err(PrivateIpError::NotSlash24(net));
    }
    if !(2..=254).contains(&last_octet) {
        return Err(PrivateIpError::Octet(last_octet));
    }
    Ok(net
        .nth(u32::from(last_octet))
        .expect("a /24 has 256 addresses"))
}

fn io_err(
    instance: &str,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> VagrantError {
    let (instance, path) = (instance.to_string(), path.to_path_buf());
    move |source| VagrantError::Io {
        instance,
        action,
        path,
        source,
    }
}

fn dotfile_dir(plan: &VagrantPlan) -> PathBuf {
    plan.work_dir.join("dot")
}

fn log_file(plan: &VagrantPlan) -> PathBuf {
    plan.work_dir.join("vagrant.log")
}

fn console_dir(plan: &VagrantPlan) -> PathBuf {
    plan.work_dir.join("console")
}

/// The Vagrantfile writes a libvirt VM's serial console here.
fn console_log(plan: &VagrantPlan, host: &str) -> PathBuf {
    console_dir(plan).join(format!("{host}.log"))
}

fn domain_name(instance: &str, host: &str) -> String {
    format!("{instance}-{host}")
}

fn pool_name(instance: &str) -> String {
    format!("{instance}-pool")
}

fn pool_dir(plan: &VagrantPlan) -> PathBuf {
    plan.work_dir.join("pool")
}

fn network_names(instance: &str) -> [String; 2] {
    [format!("{instance}-mgmt"), format!("{instance}-net")]
}

/// `KUBEFORGE_HOSTS` for the Vagrantfile.
fn hosts_json(hosts: &[VagrantHostSpec]) -> String {
    let list: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| {
            serde_json::json!({
                "name": h.name,
                "ip": h.ip.to_string(),
                "memory": h.memory_mb,
                "cpus": h.cpus,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// Everything the Vagrantfile and vagrant read from the environment.
fn vagrant_env(
    plan: &VagrantPlan,
    box_name: Option<&str>,
    pubkey: Option<&Path>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("VAGRANT_CWD", plan.vagrantfile_dir.display().to_string()),
        (
            "VAGRANT_DOTFILE_PATH",
            dotfile_dir(plan).display().to_string(),
        ),
        // Never ask HashiCorp's servers for updates: nothing leaves the machine.
        ("VAGRANT_CHECKPOINT_DISABLE", "1".into()),
        ("VAGRANT_NO_COLOR", "1".into()),
        ("KUBEFORGE_HOSTS", hosts_json(&plan.hosts)),
        ("KUBEFORGE_NETWORK", plan.instance.clone()),
        ("KUBEFORGE_MGMT_NETWORK", plan.management_network.clone()),
        ("KUBEFORGE_STORAGE_POOL", pool_name(&plan.instance)),
        (
            "KUBEFORGE_LIBVIRT_DRIVER",
            if plan.emulate_cpu { "qemu" } else { "kvm" }.into(),
        ),
        (
            "KUBEFORGE_CONSOLE_DIR",
            console_dir(plan).display().to_string(),
        ),
    ];
    if let Some(b) = box_name {
        env.push(("KUBEFORGE_BOX", b.to_string()));
    }
    if let Some(k) = pubkey {
        env.push(("KUBEFORGE_SSH_PUBKEY", k.display().to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The newest box `cargo xtask vagrant-box` added, from Vagrant's box directory.
fn newest_local_box() -> Option<String> {
    let home = std::env::var_os("VAGRANT_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vagrant.d")))?;
    std::fs::read_dir(home.join("boxes"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hash = name.strip_prefix(LOCAL_BOX_DIR_PREFIX)?;
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, format!("kubeforge/bookworm-{hash}")))
        })
        .max()
        .map(|(_, name)| name)
}

async fn tool_works(program: &str, args: &[&str]) -> bool {
    process::run(program, args).await.is_ok()
}

/// vagrant outside the project: run from the Vagrantfile's directory without
/// `VAGRANT_DOTFILE_PATH` it would create `.vagrant/` there.
async fn vagrant_output(plan: &VagrantPlan, args: &[&str]) -> Result<String, CommandFailure> {
    let dot = dotfile_dir(plan).display().to_string();
    Program::new("vagrant", args)
        .env(&[
            ("VAGRANT_DOTFILE_PATH", dot.as_str()),
            ("VAGRANT_CHECKPOINT_DISABLE", "1"),
        ])
        .run()
        .await
}

/// The output of a vagrant command that only reads (`ssh-config`, `status`), run with the
/// instance's environment; `action` names it in the error.
async fn vagrant_read(
    plan: &VagrantPlan,
    env: &[(String, String)],
    args: &[&str],
    action: &'static str,
) -> Result<String, VagrantError> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Program::new("vagrant", args)
        .env(&env)
        .run()
        .await
        .map_err(|source| VagrantError::Command {
            action,
            target: plan.instance.clone(),
            source,
        })
}

/// vagrant, its provider plugin and (libvirt) a running libvirtd, else a clear error.
async fn check_prerequisites(plan: &VagrantPlan) -> Result<(), VagrantError> {
    let missing = |what: &str| VagrantError::Missing {
        what: what.to_string(),
    };
    if vagrant_output(plan, &["--version"]).await.is_err() {
        return Err(missing("vagrant"));
    }
    match plan.provider {
        VagrantProvider::Libvirt => {
            let plugins = vagrant_output(plan, &["plugin", "list"])
                .await
                .unwrap_or_default();
            if !plugins.contains("vagrant-libvirt") {
                return Err(missing("the vagrant-libvirt plugin"));
            }
            if !tool_works("virsh", &["-c", "qemu:///system", "version"]).await {
                return Err(missing("libvirtd (qemu:///system does not answer)"));
            }
        }
        VagrantProvider::Virtualbox => {
            if !tool_works("VBoxManage", &["--version"]).await {
                return Err(VagrantError::Missing {
                    what: "VirtualBox (VBoxManage)".into(),
                });
            }
        }
    }
    Ok(())
}

fn validate_plan(plan: &VagrantPlan) -> Result<(), VagrantError> {
    let invalid = |reason: String| VagrantError::InvalidPlan {
        instance: plan.instance.clone(),
        reason,
    };
    if plan.hosts.is_empty() {
        return Err(invalid("no hosts".into()));
    }
    if !plan.vagrantfile_dir.join("Vagrantfile").is_file() {
        return Err(invalid(format!(
            "no Vagrantfile in {}",
            plan.vagrantfile_dir.display()
        )));
    }
    plan.management_network
        .parse::<Ipv4Net>()
        .map_err(|m| invalid(format!("management_network: {m}")))?;
    for h in &plan.hosts {
        if h.memory_mb < 256 || h.cpus == 0 {
            return Err(invalid(format!(
                "host {}: {} MiB and {} CPUs is too small for a VM",
                h.name, h.memory_mb, h.cpus
            )));
        }
    }
    Ok(())
}

/// Runs one vagrant command, streaming its machine-readable output to the log file and
/// its headlines to `log`.
async fn vagrant(
    plan: &VagrantPlan,
    env: &[(String, String)],
    args: &[&str],
    log: &Logger,
) -> Result<(), VagrantError> {
    let path = log_file(plan);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(io_err(&plan.instance, "open log", &path))?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let program = Program::new("vagrant", args).env(&env);
    let shown = program.command_line();
    let header = format!("\n$ {shown}\n");
    file.write_all(header.as_bytes())
        .await
        .map_err(io_err(&plan.instance, "write log", &path))?;
    let mut child = program
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| VagrantError::Missing {
            what: "vagrant".into(),
        })?;
    let stdout = child.stdout.take().map(BufReader::new);
    let stderr = child.stderr.take().map(BufReader::new);
    let pump = async {
        let (mut out_lines, mut err_lines) = (stdout.map(|s| s.lines()), stderr.map(|s| s.lines()));
        let (mut out_done, mut err_done) = (out_lines.is_none(), err_lines.is_none());
        while !(out_done && err_done) {
            let line = tokio::select! {
                l = async { out_lines.as_mut()?.next_line().await.ok().flatten() }, if !out_done => {
                    if l.is_none() { out_done = true; }
                    l.map(|l| (l, false))
                }
                l = async { err_lines.as_mut()?.next_line().await.ok().flatten() }, if !err_done => {
                    if l.is_none() { err_done = true; }
                    l.map(|l| (l, true))
                }
            };
            let Some((line, is_err)) = line else { continue };
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
            if is_err {
                log.verbose(format!("vagrant: {}", line.trim()));
            } else if let Some(p) = parse_machine_line(&line).as_ref().and_then(progress_line) {
                log.verbose(&p);
            }
        }
        let _ = file.flush().await;
        child.wait().await
    };
    let status = match tokio::time::timeout(UP_TIMEOUT, pump).await {
        Ok(status) => status.map_err(io_err(&plan.instance, "wait for vagrant", &path))?,
        Err(_) => {
            return Err(VagrantError::Timeout {
                instance: plan.instance.clone(),
                timeout: UP_TIMEOUT,
                log: path,
            });
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let failure = failure_of_last_command(&text);
    Err(VagrantError::Vagrant {
        command: shown,
        instance: plan.instance.clone(),
        status,
        log: path,
        message: failure.message,
        internal: failure.internal,
    })
}

/// Waits for every VM's sshd at its ssh-config endpoint; a VM that never answers is
/// reported with its serial console log.
async fn wait_for_ssh(
    plan: &VagrantPlan,
    vms: &[CreatedVm],
    log: &Logger,
) -> Result<(), VagrantError> {
    let endpoints: Vec<super::SshEndpoint> = vms
        .iter()
        .map(|vm| super::SshEndpoint {
            host: vm.name.clone(),
            address: (vm.ssh_address, vm.ssh_port).into(),
        })
        .collect();
    super::wait_for_ssh(&endpoints, SSH_READY_TIMEOUT, log)
        .await
        .map_err(|failed| VagrantError::SshNotReady {
            timeout: SSH_READY_TIMEOUT,
            details: failed
                .iter()
                .map(|f| format!("{f}; console {}", console_log(plan, &f.host).display()))
                .collect(),
        })
}

/// `vagrant up` of every host, then `vagrant ssh-config`; `authorized_keys` is the
/// scenario's public key, installed for `core` by the Vagrantfile's provisioner.
pub async fn create(
    plan: &VagrantPlan,
    authorized_keys: &Path,
    log: &Logger,
) -> Result<Vec<CreatedVm>, VagrantError> {
    validate_plan(plan)?;
    check_prerequisites(plan).await?;
    let box_name = box_name(plan)?;
    for dir in [plan.work_dir.clone(), console_dir(plan)] {
        tokio::fs::create_dir_all(&dir).await.map_err(io_err(
            &plan.instance,
            "create directory",
            &dir,
        ))?;
    }
    if plan.provider == VagrantProvider::Libvirt {
        ensure_pool(plan, log).await?;
    }
    let env = vagrant_env(plan, box_name.as_deref(), Some(authorized_keys));
    log.verbose(format!(
        "vagrant up: {} VMs ({}, box {}), log {}",
        plan.hosts.len(),
        plan.provider.as_str(),
        box_name.as_deref().unwrap_or("from the Vagrantfile"),
        log_file(plan).display()
    ));
    up(plan, &env, log).await
}

/// The box a libvirt instance boots (the newest local one unless the plan names one);
/// VirtualBox takes the Vagrantfile's.
fn box_name(plan: &VagrantPlan) -> Result<Option<String>, VagrantError> {
    match (&plan.box_name, plan.provider) {
        (Some(b), _) => Ok(Some(b.clone())),
        (None, VagrantProvider::Libvirt) => {
            newest_local_box()
                .map(Some)
                .ok_or_else(|| VagrantError::Missing {
                    what: "a kubeforge/bookworm-* libvirt box".into(),
                })
        }
        (None, VagrantProvider::Virtualbox) => Ok(None),
    }
}

/// `vagrant up` (once more after an error of vagrant's own), then every VM's endpoint from
/// `vagrant ssh-config`, once SSH answers there.
async fn up(
    plan: &VagrantPlan,
    env: &[(String, String)],
    log: &Logger,
) -> Result<Vec<CreatedVm>, VagrantError> {
    let started = Instant::now();
    let provider = format!("--provider={}", plan.provider.as_str());
    let up = ["up", provider.as_str(), "--machine-readable"];
    match vagrant(plan, env, &up, log).await {
        // vagrant-libvirt brings machines up in parallel threads, and those threads race
        // inside vagrant (seen once in CI as an exception during config validation, 5 s
        // in): `vagrant up` resumes what it started, so an internal error gets one more try.
        Err(VagrantError::Vagrant {
            internal: true,
            message,
            ..
        }) => {
            log.warn(format!(
                "vagrant up stopped on an error of vagrant itself, running it once more: {}",
                message.lines().last().unwrap_or_default()
            ));
            vagrant(plan, env, &up, log).await?;
        }
        other => other?,
    }
    log.verbose(format!(
        "vagrant up: {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    let text = vagrant_read(plan, env, &["ssh-config"], "read ssh-config of").await?;
    let created = vms_from_ssh_config(&plan.hosts, &text)?;
    for vm in &created {
        log.verbose(format!(
            "{}: ssh {}@{}:{}, private address {}",
            vm.name, vm.user, vm.ssh_address, vm.ssh_port, vm.ip
        ));
    }
    wait_for_ssh(plan, &created, log).await?;
    Ok(created)
}

/// `vagrant destroy -f`, then whatever of the instance libvirt still holds (VMs, the
/// storage pool with the box volume and any disk, the two networks), then Vagrant's state.
/// Nothing there is not an error, so this also cleans up after a failed create.
pub async fn destroy(plan: &VagrantPlan, log: &Logger) -> Result<DestroyReport, VagrantError> {
    let mut report = DestroyReport::default();
    if dotfile_dir(plan).is_dir() && vagrant_output(plan, &["--version"]).await.is_ok() {
        let env = vagrant_env(plan, plan.box_name.as_deref(), None);
        vagrant(plan, &env, &["destroy", "-f", "--machine-readable"], log).await?;
        report.vagrant_ran = true;
    }
    if plan.provider == VagrantProvider::Libvirt && tool_works("virsh", &["version"]).await {
        libvirt::remove_leftovers(plan, &mut report).await?;
    }
    match tokio::fs::remove_dir_all(&plan.work_dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&plan.instance, "remove", &plan.work_dir)(e)),
    }
    Ok(report)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(in crate::driver::vagrant) fn plan() -> VagrantPlan {
        VagrantPlan {
            instance: "kf-vagrant-etcd-3fa9c1".into(),
            provider: VagrantProvider::Libvirt,
            box_name: None,
            emulate_cpu: true,
            management_network: "192.168.121.0/24".into(),
            hosts: vec![
                VagrantHostSpec {
                    name: "etcd-01".into(),
                    ip: Ipv4Addr::new(10, 0, 0, 101),
                    memory_mb: 512,
                    cpus: 1,
                },
                VagrantHostSpec {
                    name: "etcd-02".into(),
                    ip: Ipv4Addr::new(10, 0, 0, 102),
                    memory_mb: 512,
                    cpus: 1,
                },
            ],
            vagrantfile_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            work_dir: PathBuf::from("/state/vagrant"),
        }
    }

    #[test]
    fn environment_carries_hosts_and_isolates_state() {
        let p = plan();
        let env: BTreeMap<String, String> = vagrant_env(
            &p,
            Some("kubeforge/bookworm-abc"),
            Some(Path::new("/k.pub")),
        )
        .into_iter()
        .collect();
        assert_eq!(env["VAGRANT_DOTFILE_PATH"], "/state/vagrant/dot");
        assert_eq!(env["KUBEFORGE_NETWORK"], "kf-vagrant-etcd-3fa9c1");
        assert_eq!(env["KUBEFORGE_STORAGE_POOL"], "kf-vagrant-etcd-3fa9c1-pool");
        assert_eq!(env["KUBEFORGE_LIBVIRT_DRIVER"], "qemu");
        assert_eq!(env["KUBEFORGE_BOX"], "kubeforge/bookworm-abc");
        assert_eq!(env["KUBEFORGE_SSH_PUBKEY"], "/k.pub");
        assert_eq!(env["VAGRANT_CHECKPOINT_DISABLE"], "1");
        let hosts: serde_json::Value = serde_json::from_str(&env["KUBEFORGE_HOSTS"]).expect("json");
        assert_eq!(
            hosts,
            serde_json::json!([
                {"name": "etcd-01", "ip": "10.0.0.101", "memory": 512, "cpus": 1},
                {"name": "etcd-02", "ip": "10.0.0.102", "memory": 512, "cpus": 1},
            ])
        );
        let destroy_env: BTreeMap<String, String> =
            vagrant_env(&p, None, None).into_iter().collect();
        assert!(!destroy_env.contains_key("KUBEFORGE_SSH_PUBKEY"));
        assert!(!destroy_env.contains_key("KUBEFORGE_BOX"));
    }

    #[test]
    fn plan_checks_and_addresses() {
        assert!(validate_plan(&plan()).is_ok());
        let mut small = plan();
        small.hosts[0].memory_mb = 64;
        assert!(validate_plan(&small).is_err());
        let mut nowhere = plan();
        nowhere.vagrantfile_dir = PathBuf::from("/nonexistent");
        assert!(validate_plan(&nowhere).is_err());
        assert_eq!(
            private_ip("10.0.0.0/24", 121),
            Ok(Ipv4Addr::new(10, 0, 0, 121))
        );
        assert!(private_ip("10.0.0.0/16", 121).is_err());
        assert!(private_ip("10.0.0.0/24", 255).is_err());
        assert_eq!(seed_memory_mb(&[Group::Etcd]), 1024);
        assert_eq!(seed_memory_mb(&[Group::KubeWorker]), 2048);
        assert_eq!(domain_name("kf-a-1", "etcd-01"), "kf-a-1-etcd-01");
        assert_eq!(network_names("kf-a-1"), ["kf-a-1-mgmt", "kf-a-1-net"]);
    }

    /// The project's Vagrantfile parses and defines the seeds' four VMs when kubeforge
    /// passes nothing (vagrant is installed by the README's test command).
    #[tokio::test]
    async fn vagrantfile_defaults_are_the_seeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = env!("CARGO_MANIFEST_DIR");
        let dot = dir.path().display().to_string();
        let out = Program::new("vagrant", &["status", "--machine-readable"])
            .env(&[
                ("VAGRANT_CWD", cwd),
                ("VAGRANT_DOTFILE_PATH", &dot),
                ("VAGRANT_CHECKPOINT_DISABLE", "1"),
                ("VAGRANT_DEFAULT_PROVIDER", "libvirt"),
            ])
            .run()
            .await
            .expect("vagrant status (vagrant is installed by `cargo xtask vagrant-box`, which the README's test command runs)");
        let machines: Vec<String> = out
            .lines()
            .filter_map(parse_machine_line)
            .filter(|m| m.kind == "state")
            .map(|m| m.target)
            .collect();
        assert_eq!(
            machines,
            [
                "etcd-01",
                "kube-master-01",
                "kube-worker-01",
                "kube-worker-02"
            ]
        );
    }
}
