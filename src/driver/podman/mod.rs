//! Podman driver: systemd-booting containers on an internal network as test hosts.
//!
//! Everything created for one scenario instance carries the label
//! `kubeforge.instance=<instance>` and the instance as name prefix, so a failed create is
//! cleaned up by [`destroy`] and two instances never collide.
//!
//! `plan` turns a plan into names and `podman run` arguments, `subnet` picks the network;
//! this module runs podman.

pub mod faults;
mod plan;
mod subnet;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub use subnet::host_ip;

use super::Healing;
use crate::net::Ipv4Net;
use crate::process::{self, CommandFailure};
use crate::report::Logger;
use plan::{
    authorized_keys_content, container_name, host_volumes, is_dns_label, keys_volume_name,
    network_name, run_args, validate_plan,
};
use subnet::{POOL, allocate_subnet, instance_seed, parse_subnet, podman_subnets, route_subnets};

/// Label put on every container, volume and network of an instance.
pub const INSTANCE_LABEL: &str = "kubeforge.instance";
/// Attempts when another process takes the subnet we picked between listing and creating.
const SUBNET_ATTEMPTS: usize = 5;
const SSH_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the instance's key volume is mounted; the image's sshd reads `<dir>/%u`.
const KEYS_MOUNT: &str = "/etc/ssh/authorized_keys";
const LOGIN_USER: &str = "core";

/// One host to start. The address is `last_octet` inside the network's subnet, because the
/// subnet may only be known once the driver has allocated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanHostSpec {
    pub name: String,
    /// Host part of the address: 2..=254 (`.1` is the gateway).
    pub last_octet: u8,
    /// Privileged hosts can run containerd/kubelet: `--privileged --cgroupns=private` plus
    /// volumes for /var/lib/containerd and /var/lib/kubelet.
    pub privileged: bool,
    pub memory_mb: Option<u64>,
}

/// The hosts of one instance, its network and the keys that may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanPlan {
    /// Unique prefix of every name, e.g. `kf-default-3fa9c1`; also the label value.
    pub instance: String,
    /// e.g. `172.30.17.0/24`; `None` picks a free /24 inside 172.30.0.0/16.
    pub subnet: Option<String>,
    pub hosts: Vec<PodmanHostSpec>,
    /// OpenSSH public key file whose keys may log in as `core`.
    pub authorized_keys: PathBuf,
}

/// A started host: its container and its address on the instance's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedHost {
    pub name: String,
    pub container: String,
    pub address: Ipv4Addr,
}

/// The instance's network as created, for the inventory and `kubeforge list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedNetwork {
    pub name: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

/// What [`destroy`] removed (names); all empty when nothing was there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestroyReport {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

async fn podman(args: &[&str]) -> Result<String, CommandFailure> {
    process::run("podman", args).await
}

/// Failures of the Podman driver; each names the instance, object, command or file.
#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    #[error("podman plan for instance {instance}: {reason}")]
    InvalidPlan { instance: String, reason: String },
    #[error("authorized keys file {}: {reason}", path.display())]
    AuthorizedKeys { path: PathBuf, reason: String },
    #[error("subnet {subnet}: {reason}")]
    InvalidSubnet { subnet: String, reason: String },
    #[error("instance {instance}: no free /24 left in {POOL} for its network")]
    NoFreeSubnet { instance: String },
    #[error("{action} {target}: {source}")]
    Command {
        action: &'static str,
        target: String,
        #[source]
        source: CommandFailure,
    },
    #[error("instance {instance}: {action} {}: {source}", path.display())]
    Io {
        instance: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hosts not answering SSH after {}s: {}", timeout.as_secs(), details.join("; "))]
    SshNotReady {
        timeout: Duration,
        details: Vec<String>,
    },
}

fn command_err(action: &'static str, target: &str) -> impl FnOnce(CommandFailure) -> PodmanError {
    let target = target.to_string();
    move |source| PodmanError::Command {
        action,
        target,
        source,
    }
}

/// Runs podman invocations concurrently; results in input order.
async fn podman_all(invocations: Vec<Vec<String>>) -> Vec<Result<String, CommandFailure>> {
    let mut set = JoinSet::new();
    for (index, args) in invocations.into_iter().enumerate() {
        set.spawn(async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            (index, podman(&refs).await)
        });
    }
    let mut results = set.join_all().await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Creates the instance's network, key volume and hosts, and waits until every host's
/// sshd answers. On error, partial state remains labelled for [`destroy`].
pub async fn create(
    plan: &PodmanPlan,
    image: &str,
    log: &Logger,
) -> Result<(CreatedNetwork, Vec<CreatedHost>), PodmanError> {
    validate_plan(plan)?;
    load_bridge_netfilter().await?;
    ensure_inotify_instances(plan, log).await?;
    let keys_text = tokio::fs::read_to_string(&plan.authorized_keys)
        .await
        .map_err(|e| PodmanError::AuthorizedKeys {
            path: plan.authorized_keys.clone(),
            reason: format!("cannot read: {e}"),
        })?;
    let keys = authorized_keys_content(&plan.authorized_keys, &keys_text)?;
    if let Some(subnet) = &plan.subnet {
        for host in &plan.hosts {
            host_ip(subnet, host.last_octet)?;
        }
    }
    let started = Instant::now();
    let network = create_network(plan, log).await?;
    install_keys(plan, &keys, log).await?;

    let volumes: Vec<Vec<String>> = plan
        .hosts
        .iter()
        .flat_map(|h| host_volumes(&plan.instance, h))
        .map(|(name, _)| volume_create_args(&plan.instance, &name))
        .collect();
    for result in podman_all(volumes).await {
        result.map_err(command_err("create volume for instance", &plan.instance))?;
    }

    let mut runs = Vec::new();
    for host in &plan.hosts {
        runs.push(run_args(plan, host, &network.name, &network.subnet, image)?);
    }
    let mut hosts = Vec::new();
    for (host, result) in plan.hosts.iter().zip(podman_all(runs).await) {
        let container = container_name(&plan.instance, &host.name);
        result.map_err(command_err("start container", &container))?;
        let address = host_ip(&network.subnet, host.last_octet)?;
        log.verbose(format!(
            "host {}: container {container} started at {address}",
            host.name
        ));
        hosts.push(CreatedHost {
            name: host.name.clone(),
            container,
            address,
        });
    }
    wait_for_ssh(&hosts, log).await?;
    log.verbose(format!(
        "instance {}: {} host(s) ready in {:.1}s",
        plan.instance,
        hosts.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok((network, hosts))
}

/// Podman hosts share this machine's kernel, and a container cannot load a module (it has
/// no /lib/modules): the module the node role needs for bridged pod traffic
/// (`br_netfilter`) is loaded here, on the machine, instead.
async fn load_bridge_netfilter() -> Result<(), PodmanError> {
    if std::path::Path::new("/proc/sys/net/bridge").exists() {
        return Ok(());
    }
    process::run("modprobe", &["br_netfilter"])
        .await
        .map(drop)
        .map_err(command_err("load kernel module", "br_netfilter"))
}

/// inotify instances one host's systemd, journald, logind, dbus and sshd take (6-7 seen).
const INOTIFY_PER_HOST: u64 = 8;
/// What the machine keeps for itself, the kernel's default limit.
const INOTIFY_BASE: u64 = 128;
const INOTIFY_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// Raises the machine's per-user inotify limit when the plan's systemd hosts (all root's)
/// would exceed it: systemd without an inotify instance exits at boot, and the default of
/// 128 holds about 16 hosts. A machine-wide setting, like the bridge module above.
async fn ensure_inotify_instances(plan: &PodmanPlan, log: &Logger) -> Result<(), PodmanError> {
    let want = INOTIFY_BASE + INOTIFY_PER_HOST * plan.hosts.len() as u64;
    let io_err = |action| {
        move |source| PodmanError::Io {
            instance: plan.instance.clone(),
            action,
            path: INOTIFY_INSTANCES.into(),
            source,
        }
    };
    let current: u64 = tokio::fs::read_to_string(INOTIFY_INSTANCES)
        .await
        .map_err(io_err("read"))?
        .trim()
        .parse()
        .unwrap_or(0);
    if current >= want {
        return Ok(());
    }
    tokio::fs::write(INOTIFY_INSTANCES, format!("{want}\n"))
        .await
        .map_err(io_err("raise the inotify limit (root can) in"))?;
    log.info(format!(
        "raised fs.inotify.max_user_instances from {current} to {want} for {} systemd hosts",
        plan.hosts.len()
    ));
    Ok(())
}

/// Brings back the hosts of an instance that stopped or vanished, as Molecule's `create`
/// does: a stopped container is started, a missing one is run again from the plan on the
/// instance's network, and every host that was not running is waited for until SSH answers.
pub async fn heal(
    plan: &PodmanPlan,
    image: &str,
    log: &Logger,
) -> Result<Vec<(String, Healing)>, PodmanError> {
    let network = network_name(&plan.instance);
    let subnet = podman(&[
        "network",
        "inspect",
        "--format",
        "{{range .Subnets}}{{.Subnet}}{{end}}",
        &network,
    ])
    .await
    .map_err(command_err("find the network of instance", &plan.instance))?;
    let subnet = subnet.trim();
    let mut outcome = Vec::new();
    let mut waiting = Vec::new();
    for host in &plan.hosts {
        let container = container_name(&plan.instance, &host.name);
        let state = podman(&["inspect", "--format", "{{.State.Status}}", &container]).await;
        let healing = match state.as_deref().map(str::trim) {
            Ok("running") => Healing::Running,
            Ok("paused") => {
                podman(&["unpause", &container])
                    .await
                    .map_err(command_err("unpause container", &container))?;
                Healing::Started
            }
            Ok(_) => {
                podman(&["start", &container])
                    .await
                    .map_err(command_err("start container", &container))?;
                Healing::Started
            }
            Err(_) => {
                for (volume, _) in host_volumes(&plan.instance, host) {
                    if podman(&["volume", "exists", &volume]).await.is_err() {
                        let args = volume_create_args(&plan.instance, &volume);
                        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                        podman(&refs)
                            .await
                            .map_err(command_err("create volume", &volume))?;
                    }
                }
                let args = run_args(plan, host, &network, subnet, image)?;
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                podman(&refs)
                    .await
                    .map_err(command_err("start container", &container))?;
                Healing::Recreated
            }
        };
        if healing != Healing::Running {
            log.info(format!("host {}: {healing} ({container})", host.name));
            waiting.push(CreatedHost {
                name: host.name.clone(),
                container,
                address: host_ip(subnet, host.last_octet)?,
            });
        }
        outcome.push((host.name.clone(), healing));
    }
    wait_for_ssh(&waiting, log).await?;
    Ok(outcome)
}

fn volume_create_args(instance: &str, name: &str) -> Vec<String> {
    vec![
        "volume".into(),
        "create".into(),
        "--label".into(),
        format!("{INSTANCE_LABEL}={instance}"),
        name.into(),
    ]
}

async fn create_network(plan: &PodmanPlan, log: &Logger) -> Result<CreatedNetwork, PodmanError> {
    let name = network_name(&plan.instance);
    let label = format!("{INSTANCE_LABEL}={}", plan.instance);
    let create = |subnet: String| {
        let name = name.clone();
        let label = label.clone();
        async move {
            podman(&[
                "network",
                "create",
                "--internal",
                "--subnet",
                &subnet,
                "--label",
                &label,
                &name,
            ])
            .await
        }
    };
    let subnet =
        match &plan.subnet {
            Some(subnet) => {
                parse_subnet(subnet)?;
                create(subnet.clone())
                    .await
                    .map_err(command_err("create network", &name))?;
                subnet.clone()
            }
            None => {
                let mut used = used_subnets().await?;
                let mut attempt = 0;
                loop {
                    let candidate = allocate_subnet(&used, instance_seed(&plan.instance))
                        .ok_or_else(|| PodmanError::NoFreeSubnet {
                            instance: plan.instance.clone(),
                        })?;
                    match create(candidate.to_string()).await {
                        Ok(_) => break candidate.to_string(),
                        // Another instance took it since we listed: try the next one.
                        Err(e)
                            if attempt + 1 < SUBNET_ATTEMPTS
                                && e.stderr_tail().contains("already used") =>
                        {
                            used.push(candidate);
                            attempt += 1;
                        }
                        Err(e) => return Err(command_err("create network", &name)(e)),
                    }
                }
            }
        };
    let gateway = parse_subnet(&subnet)?
        .nth(1)
        .expect("a /16../24 network has a second address");
    log.verbose(format!(
        "network {name} created: {subnet}, gateway {gateway}"
    ));
    Ok(CreatedNetwork {
        name,
        subnet,
        gateway,
    })
}

async fn used_subnets() -> Result<Vec<Ipv4Net>, PodmanError> {
    let json = podman(&["network", "ls", "--format", "json"])
        .await
        .map_err(command_err("list networks", "to allocate a subnet"))?;
    let mut used = podman_subnets(&json);
    if let Ok(routes) = tokio::fs::read_to_string("/proc/net/route").await {
        used.extend(route_subnets(&routes));
    }
    Ok(used)
}

/// Puts the public keys into a labelled volume that every host mounts read-only: it
/// outlives the caller's file, survives host restarts and goes away with [`destroy`].
async fn install_keys(plan: &PodmanPlan, keys: &str, log: &Logger) -> Result<(), PodmanError> {
    let volume = keys_volume_name(&plan.instance);
    let args = volume_create_args(&plan.instance, &volume);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    podman(&refs)
        .await
        .map_err(command_err("create volume", &volume))?;
    let mountpoint = podman(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume])
        .await
        .map_err(command_err("inspect volume", &volume))?;
    let dir = PathBuf::from(mountpoint.trim());
    let io = |action: &'static str, path: &Path| {
        let instance = plan.instance.clone();
        let path = path.to_path_buf();
        move |source| PodmanError::Io {
            instance,
            action,
            path,
            source,
        }
    };
    use std::os::unix::fs::PermissionsExt;
    // sshd's StrictModes wants root-owned, non-writable paths; it reads the file as `core`.
    tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(io("chmod", &dir))?;
    let file = dir.join(LOGIN_USER);
    tokio::fs::write(&file, keys)
        .await
        .map_err(io("write", &file))?;
    tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .await
        .map_err(io("chmod", &file))?;
    log.verbose(format!(
        "volume {volume}: authorized keys for {LOGIN_USER} installed"
    ));
    Ok(())
}

/// Waits for every host's sshd; a host that never answers is reported with its
/// container's state.
async fn wait_for_ssh(hosts: &[CreatedHost], log: &Logger) -> Result<(), PodmanError> {
    let endpoints: Vec<super::SshEndpoint> = hosts
        .iter()
        .map(|h| super::SshEndpoint {
            host: h.name.clone(),
            address: (h.address, 22).into(),
        })
        .collect();
    let Err(failed) = super::wait_for_ssh(&endpoints, SSH_READY_TIMEOUT, log).await else {
        return Ok(());
    };
    let mut details = Vec::new();
    for (f, host) in failed
        .iter()
        .filter_map(|f| Some((f, hosts.iter().find(|h| h.name == f.host)?)))
    {
        let state = podman(&[
            "inspect",
            "--format",
            "{{.State.Status}} (exit code {{.State.ExitCode}})",
            &host.container,
        ])
        .await
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| e.to_string());
        details.push(format!("{f}; container {} {state}", host.container));
    }
    Err(PodmanError::SshNotReady {
        timeout: SSH_READY_TIMEOUT,
        details,
    })
}

/// Removes everything labelled with `instance`: containers (with their anonymous
/// volumes), then named volumes, then the network. Nothing there is success.
pub async fn destroy(instance: &str, log: &Logger) -> Result<DestroyReport, PodmanError> {
    if !is_dns_label(instance, 40) {
        return Err(PodmanError::InvalidPlan {
            instance: instance.to_string(),
            reason: "not a valid instance name".into(),
        });
    }
    let filter = format!("label={INSTANCE_LABEL}={instance}");
    let containers = remove_labelled(
        &["ps", "-a", "--format", "{{.Names}}"],
        &["rm", "-f", "-t", "0", "-v", "--ignore"],
        &filter,
        instance,
        log,
    )
    .await?;
    let volumes = remove_labelled(
        &["volume", "ls", "--format", "{{.Name}}"],
        &["volume", "rm", "-f"],
        &filter,
        instance,
        log,
    )
    .await?;
    let networks = remove_labelled(
        &["network", "ls", "--format", "{{.Name}}"],
        &["network", "rm", "-f"],
        &filter,
        instance,
        log,
    )
    .await?;
    Ok(DestroyReport {
        containers,
        volumes,
        networks,
    })
}

/// Lists the objects matching `filter` with `list` and removes them with `remove`.
async fn remove_labelled(
    list: &[&str],
    remove: &[&str],
    filter: &str,
    instance: &str,
    log: &Logger,
) -> Result<Vec<String>, PodmanError> {
    let names = list_labelled(list, filter, instance).await?;
    if !names.is_empty() {
        let mut args = remove.to_vec();
        args.extend(names.iter().map(String::as_str));
        podman(&args)
            .await
            .map_err(command_err("remove objects of instance", instance))?;
        log.verbose(format!("instance {instance}: removed {}", names.join(", ")));
    }
    Ok(names)
}

async fn list_labelled(
    command: &[&str],
    filter: &str,
    instance: &str,
) -> Result<Vec<String>, PodmanError> {
    let mut args = command.to_vec();
    args.extend(["--filter", filter]);
    let out = podman(&args)
        .await
        .map_err(command_err("list objects of instance", instance))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::tests::spec;

    async fn ssh(key: &Path, host: &CreatedHost, command: &str) -> (bool, String) {
        let target = format!("core@{}", host.address);
        let key = key.to_string_lossy().into_owned();
        let out = process::run(
            "ssh",
            &[
                "-i",
                &key,
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                &target,
                command,
            ],
        )
        .await;
        match out {
            Ok(stdout) => (true, stdout.trim().to_string()),
            Err(e) => (false, e.to_string()),
        }
    }

    /// What is wrong with a created host: systemd not running, containerd in the image
    /// enabled, host names not resolving, a node's presented sysctls missing.
    async fn host_problems(key: &Path, host: &CreatedHost) -> Vec<String> {
        let mut failures = Vec::new();
        let (ok, state) = ssh(key, host, "sudo -n systemctl is-system-running --wait").await;
        if !(ok && state == "running") {
            let (_, failed) = ssh(key, host, "systemctl --failed --no-legend").await;
            failures.push(format!("{}: {state} / failed units: {failed}", host.name));
        }
        let (_, containerd) = ssh(
            key,
            host,
            "command -v containerd runc; systemctl is-enabled containerd; \
             systemctl is-active containerd; true",
        )
        .await;
        if containerd != "/usr/bin/containerd\n/usr/bin/runc\ndisabled\ninactive" {
            failures.push(format!("{}: containerd state {containerd:?}", host.name));
        }
        let (_, resolve) = ssh(key, host, "getent hosts plain node-1 node-2 node-3").await;
        if resolve.lines().count() != 4 {
            failures.push(format!("{}: host names resolve as {resolve:?}", host.name));
        }
        let (_, sysctl) = ssh(
            key,
            host,
            "cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops",
        )
        .await;
        if host.name != "plain" && sysctl != "1\n10\n1" {
            failures.push(format!("{}: sysctls {sysctl:?}", host.name));
        }
        eprintln!(
            "{}: {state}; sysctls {:?}",
            host.name,
            sysctl.replace('\n', " ")
        );
        failures
    }

    /// Real round trip against rootful Podman (the README's test command runs it as root):
    /// four hosts created, checked and destroyed, nothing of a neighbour's touched.
    #[tokio::test]
    async fn podman_round_trip() {
        let log = Logger::new(true, None);
        crate::driver::host_image::ensure_prerequisites(&log)
            .await
            .expect("prerequisites");
        let image = crate::driver::host_image::ensure_host_image(&log)
            .await
            .expect("image");
        let warm = Instant::now();
        assert_eq!(
            crate::driver::host_image::ensure_host_image(&log)
                .await
                .expect("warm"),
            image
        );
        eprintln!("warm image check: {:.2}s", warm.elapsed().as_secs_f64());

        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id");
        process::run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &key.to_string_lossy(),
            ],
        )
        .await
        .expect("ssh-keygen");
        let overcommit_before =
            std::fs::read_to_string("/proc/sys/vm/overcommit_memory").expect("read");

        let instance = format!("kf-it-{}", std::process::id());
        let plan = PodmanPlan {
            instance: instance.clone(),
            subnet: None,
            hosts: vec![
                spec("plain", 11, false),
                spec("node-1", 12, true),
                spec("node-2", 13, true),
                spec("node-3", 14, true),
            ],
            authorized_keys: key.with_extension("pub"),
        };
        let created = Instant::now();
        let result = create(&plan, &image, &log).await;
        eprintln!(
            "create 4 hosts -> ssh-ready: {:.2}s",
            created.elapsed().as_secs_f64()
        );
        let mut failures = Vec::new();
        match &result {
            Ok((network, hosts)) => {
                eprintln!("{network:?}");
                for host in hosts {
                    failures.extend(host_problems(&key, host).await);
                }
            }
            Err(e) => failures.push(format!("create: {e}")),
        }
        let overcommit_after =
            std::fs::read_to_string("/proc/sys/vm/overcommit_memory").expect("read");
        // A neighbour whose instance name extends ours must survive our destroy.
        let neighbour = format!("{instance}x");
        let neighbour_volume = format!("{neighbour}-probe");
        let probe = volume_create_args(&neighbour, &neighbour_volume);
        podman(&probe.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .expect("neighbour volume");
        let destroyed = Instant::now();
        let report = destroy(&instance, &log).await.expect("destroy");
        eprintln!(
            "destroy: {:.2}s {report:?}",
            destroyed.elapsed().as_secs_f64()
        );
        assert_eq!(
            overcommit_before, overcommit_after,
            "the machine's own sysctl changed"
        );
        assert_eq!(report.containers.len(), 4);
        assert_eq!(report.volumes.len(), 7);
        assert_eq!(report.networks, vec![network_name(&instance)]);
        let again = destroy(&instance, &log).await.expect("second destroy");
        assert_eq!(again, DestroyReport::default());
        let neighbour_report = destroy(&neighbour, &log).await.expect("neighbour destroy");
        assert_eq!(neighbour_report.volumes, vec![neighbour_volume]);
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
