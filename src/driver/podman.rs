//! Podman driver: systemd-booting containers on an internal network as test hosts.
//!
//! Everything created for one scenario instance carries the label
//! `kubeforge.instance=<instance>` and the instance as name prefix, so a failed create is
//! cleaned up by [`destroy`] and two instances never collide.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::net::{Ipv4Net, NetError};
use crate::process::{self, CommandFailure};
use crate::report::Logger;

/// Label put on every container, volume and network of an instance.
pub const INSTANCE_LABEL: &str = "kubeforge.instance";
/// Where auto-allocated /24 networks come from; clear of Podman's default 10.88.0.0/16.
const POOL: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 16).expect("a network");
const PODMAN_DEFAULT: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(10, 88, 0, 0), 16).expect("a network");
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedHost {
    pub name: String,
    pub container: String,
    pub address: Ipv4Addr,
}

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

/// Address `last_octet` inside `subnet` (prefix /16../24); refuses the network address,
/// the gateway (`.1`) and the broadcast address.
pub fn host_ip(subnet: &str, last_octet: u8) -> Result<Ipv4Addr, PodmanError> {
    let net = parse_subnet(subnet)?;
    let reserved = [net.nth(0), net.nth(1), Some(net.broadcast())];
    match net.nth(u32::from(last_octet)) {
        Some(addr) if !reserved.contains(&Some(addr)) => Ok(addr),
        _ => Err(PodmanError::InvalidSubnet {
            subnet: subnet.to_string(),
            reason: format!("host octet {last_octet} is the network, gateway or broadcast address"),
        }),
    }
}

fn parse_subnet(subnet: &str) -> Result<Ipv4Net, PodmanError> {
    let invalid = |reason: &str| PodmanError::InvalidSubnet {
        subnet: subnet.to_string(),
        reason: reason.to_string(),
    };
    let net = match subnet.trim().parse::<Ipv4Net>() {
        Ok(net) => net,
        Err(NetError::HostBits(_)) => {
            return Err(invalid("host bits are set; give the network address"));
        }
        Err(_) => return Err(invalid("not an IPv4 CIDR like 172.30.17.0/24")),
    };
    if !(16..=24).contains(&net.prefix()) {
        return Err(invalid("prefix must be between /16 and /24"));
    }
    if net.overlaps(&PODMAN_DEFAULT) {
        return Err(invalid("overlaps Podman's default network 10.88.0.0/16"));
    }
    Ok(net)
}

/// A free /24 of the pool, scanning from `start` (spreads concurrent instances apart).
fn allocate_subnet(used: &[Ipv4Net], start: u8) -> Option<Ipv4Net> {
    (0..=255u8)
        .filter_map(|i| POOL.subnet(24, u32::from(start.wrapping_add(i))))
        .find(|candidate| used.iter().all(|u| !u.overlaps(candidate)))
}

/// Subnets of existing Podman networks, from `podman network ls --format json`.
fn podman_subnets(json: &str) -> Vec<Ipv4Net> {
    let Ok(networks) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return Vec::new();
    };
    networks
        .iter()
        .filter_map(|n| n.get("subnets")?.as_array())
        .flatten()
        .filter_map(|s| s.get("subnet")?.as_str()?.parse().ok())
        .collect()
}

/// Non-default IPv4 routes of the machine (/proc/net/route), so a test network never
/// shadows a network the machine is really on.
fn route_subnets(proc_net_route: &str) -> Vec<Ipv4Net> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The file holds addresses in the kernel's (little-endian) byte order.
            let dest = u32::from_be(dest.to_le());
            let mask = u32::from_be(mask.to_le());
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            (prefix > 0).then(|| Ipv4Net::containing(Ipv4Addr::from(dest), prefix))?
        })
        .collect()
}

fn instance_seed(instance: &str) -> u8 {
    Sha256::digest(instance.as_bytes())[0]
}

fn is_dns_label(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn network_name(instance: &str) -> String {
    format!("{instance}-net")
}

fn container_name(instance: &str, host: &str) -> String {
    format!("{instance}-{host}")
}

fn keys_volume_name(instance: &str) -> String {
    format!("{instance}-ssh-keys")
}

/// Named volumes of a privileged host: (volume name, mount point).
fn host_volumes(instance: &str, host: &PodmanHostSpec) -> Vec<(String, &'static str)> {
    if !host.privileged {
        return Vec::new();
    }
    vec![
        (
            format!("{instance}-{}-containerd", host.name),
            "/var/lib/containerd",
        ),
        (
            format!("{instance}-{}-kubelet", host.name),
            "/var/lib/kubelet",
        ),
    ]
}

fn validate_plan(plan: &PodmanPlan) -> Result<(), PodmanError> {
    let invalid = |reason: String| PodmanError::InvalidPlan {
        instance: plan.instance.clone(),
        reason,
    };
    if !is_dns_label(&plan.instance, 40) {
        return Err(invalid(
            "instance must be 1-40 of [a-z0-9-], not starting or ending with '-'".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut octets = std::collections::HashSet::new();
    for host in &plan.hosts {
        if !is_dns_label(&host.name, 63) {
            return Err(invalid(format!(
                "host name {:?} must be a DNS label of [a-z0-9-]",
                host.name
            )));
        }
        if !names.insert(host.name.as_str()) {
            return Err(invalid(format!("host name {} is used twice", host.name)));
        }
        if !(2..=254).contains(&host.last_octet) {
            return Err(invalid(format!(
                "host {}: last octet {} is outside 2..=254",
                host.name, host.last_octet
            )));
        }
        if !octets.insert(host.last_octet) {
            return Err(invalid(format!(
                "host {}: last octet {} is used twice",
                host.name, host.last_octet
            )));
        }
        if host.memory_mb == Some(0) {
            return Err(invalid(format!("host {}: memory_mb is 0", host.name)));
        }
    }
    Ok(())
}

/// Checks the key file holds only OpenSSH public keys (never a private key) and returns
/// its content.
fn authorized_keys_content(path: &Path, text: &str) -> Result<String, PodmanError> {
    let reject = |reason: &str| PodmanError::AuthorizedKeys {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if text.contains("PRIVATE KEY") {
        return Err(reject("holds a private key; pass the .pub file"));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() {
        return Err(reject("holds no public key"));
    }
    let known = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    if let Some(bad) = keys.iter().find(|l| {
        !l.split_whitespace()
            .any(|w| known.iter().any(|k| w.starts_with(k)))
    }) {
        let shown: String = bad.chars().take(20).collect();
        return Err(reject(&format!(
            "line starting {shown:?} is not an OpenSSH public key"
        )));
    }
    Ok(keys.iter().map(|k| format!("{k}\n")).collect())
}

/// `podman run` arguments for one host (everything after `podman`).
fn run_args(
    plan: &PodmanPlan,
    host: &PodmanHostSpec,
    network: &str,
    subnet: &str,
    image: &str,
) -> Result<Vec<String>, PodmanError> {
    let instance = &plan.instance;
    let label = format!("{INSTANCE_LABEL}={instance}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        container_name(instance, &host.name),
        "--hostname".into(),
        host.name.clone(),
        "--label".into(),
        label,
        "--label".into(),
        format!("kubeforge.host={}", host.name),
        "--network".into(),
        network.into(),
        "--ip".into(),
        host_ip(subnet, host.last_octet)?.to_string(),
        "--systemd=always".into(),
        "--runtime".into(),
        "runc".into(),
        // Podman's default limits exceed the VM's hard limits; these fit.
        "--ulimit".into(),
        "nofile=20000:20000".into(),
        "--ulimit".into(),
        "nproc=32768:32768".into(),
        // systemd would otherwise cap each service at a few hundred tasks.
        "--pids-limit=0".into(),
        "-v".into(),
        format!("{}:{KEYS_MOUNT}:ro", keys_volume_name(instance)),
    ];
    for other in plan.hosts.iter().filter(|o| o.name != host.name) {
        args.push("--add-host".into());
        args.push(format!(
            "{}:{}",
            other.name,
            host_ip(subnet, other.last_octet)?
        ));
    }
    if let Some(mb) = host.memory_mb {
        args.push("--memory".into());
        args.push(format!("{mb}m"));
    }
    if host.privileged {
        // Without a private cgroup namespace the nested runtime fails and the host's
        // systemd writes into the machine's own cgroup tree.
        args.push("--privileged".into());
        args.push("--cgroupns=private".into());
        for (volume, mount) in host_volumes(instance, host) {
            args.push("-v".into());
            args.push(format!("{volume}:{mount}"));
        }
    }
    args.push(image.into());
    args.push("/sbin/init".into());
    Ok(args)
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

    fn cidr(text: &str) -> Ipv4Net {
        text.parse().expect("valid cidr")
    }

    fn spec(name: &str, last_octet: u8, privileged: bool) -> PodmanHostSpec {
        PodmanHostSpec {
            name: name.into(),
            last_octet,
            privileged,
            memory_mb: None,
        }
    }

    fn plan(hosts: Vec<PodmanHostSpec>) -> PodmanPlan {
        PodmanPlan {
            instance: "kf-default-3fa9c1".into(),
            subnet: None,
            hosts,
            authorized_keys: PathBuf::from("/tmp/key.pub"),
        }
    }

    #[test]
    fn allocation_skips_used_and_overlapping_subnets() {
        let used = [
            cidr("10.88.0.0/16"),
            cidr("172.30.5.0/24"),
            cidr("172.30.6.0/23"), // covers .6 and .7
        ];
        assert_eq!(allocate_subnet(&used, 5), Some(cidr("172.30.8.0/24")));
        assert_eq!(allocate_subnet(&used, 4), Some(cidr("172.30.4.0/24")));
        // Wraps around the end of the pool.
        let used = [cidr("172.30.255.0/24")];
        assert_eq!(allocate_subnet(&used, 255), Some(cidr("172.30.0.0/24")));
    }

    #[test]
    fn allocation_fails_when_pool_is_covered() {
        assert_eq!(allocate_subnet(&[cidr("172.16.0.0/12")], 9), None);
        let all: Vec<Ipv4Net> = (0..=255u32)
            .map(|i| POOL.subnet(24, i).expect("inside the pool"))
            .collect();
        assert_eq!(allocate_subnet(&all, 0), None);
    }

    #[test]
    fn podman_network_json_yields_subnets() {
        let json = r#"[{"name":"podman","subnets":[{"subnet":"10.88.0.0/16","gateway":"10.88.0.1"}]},
                       {"name":"other","subnets":[{"subnet":"172.30.3.0/24"},{"subnet":"fd00::/64"}]},
                       {"name":"nosubnets"}]"#;
        assert_eq!(
            podman_subnets(json),
            vec![cidr("10.88.0.0/16"), cidr("172.30.3.0/24")]
        );
        assert!(podman_subnets("not json").is_empty());
    }

    #[test]
    fn proc_net_route_skips_default_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    br0\t00001EAC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            route_subnets(text),
            vec![cidr("192.0.2.0/24"), cidr("172.30.0.0/16")]
        );
    }

    #[test]
    fn host_ip_rejects_reserved_addresses_and_bad_subnets() {
        assert_eq!(
            host_ip("172.30.17.0/24", 11).ok(),
            Some(Ipv4Addr::new(172, 30, 17, 11))
        );
        for octet in [0, 1, 255] {
            assert!(host_ip("172.30.17.0/24", octet).is_err(), "octet {octet}");
        }
        assert!(host_ip("172.30.17.5/24", 11).is_err(), "host bits set");
        assert!(host_ip("172.30.0.0/28", 11).is_err(), "prefix too long");
        assert!(host_ip("10.88.3.0/24", 11).is_err(), "podman default");
        assert!(host_ip("nonsense", 11).is_err());
        // In a /16 the last octet 255 of the first /24 is an ordinary address.
        assert_eq!(
            host_ip("172.31.0.0/16", 255).ok(),
            Some(Ipv4Addr::new(172, 31, 0, 255))
        );
    }

    #[test]
    fn plan_validation_catches_duplicates_and_bad_names() {
        assert!(
            validate_plan(&plan(vec![
                spec("node-1", 11, true),
                spec("node-2", 12, false)
            ]))
            .is_ok()
        );
        let dup_name = plan(vec![spec("node", 11, false), spec("node", 12, false)]);
        assert!(validate_plan(&dup_name).is_err());
        let dup_octet = plan(vec![spec("a", 11, false), spec("b", 11, false)]);
        assert!(validate_plan(&dup_octet).is_err());
        assert!(validate_plan(&plan(vec![spec("Node_1", 11, false)])).is_err());
        assert!(validate_plan(&plan(vec![spec("gw", 1, false)])).is_err());
        let mut bad_instance = plan(vec![]);
        bad_instance.instance = "kf;rm".into();
        assert!(validate_plan(&bad_instance).is_err());
    }

    #[test]
    fn names_carry_the_instance_prefix() {
        assert_eq!(network_name("kf-a"), "kf-a-net");
        assert_eq!(container_name("kf-a", "node1"), "kf-a-node1");
        assert_eq!(keys_volume_name("kf-a"), "kf-a-ssh-keys");
        let volumes: Vec<String> = host_volumes("kf-a", &spec("node1", 11, true))
            .into_iter()
            .map(|(name, mount)| format!("{name}:{mount}"))
            .collect();
        assert_eq!(
            volumes,
            [
                "kf-a-node1-containerd:/var/lib/containerd",
                "kf-a-node1-kubelet:/var/lib/kubelet"
            ]
        );
        assert!(host_volumes("kf-a", &spec("node1", 11, false)).is_empty());
    }

    #[test]
    fn run_args_for_unprivileged_host() {
        let p = plan(vec![spec("cp", 11, false), spec("worker", 12, true)]);
        let args = run_args(
            &p,
            &p.hosts[0],
            "kf-default-3fa9c1-net",
            "172.30.17.0/24",
            "img:tag",
        )
        .expect("args");
        let joined = args.join(" ");
        assert!(joined.starts_with("run -d --name kf-default-3fa9c1-cp --hostname cp "));
        assert!(joined.contains("--label kubeforge.instance=kf-default-3fa9c1"));
        assert!(joined.contains("--network kf-default-3fa9c1-net --ip 172.30.17.11"));
        assert!(joined.contains("--add-host worker:172.30.17.12"));
        assert!(!joined.contains("--add-host cp:"));
        assert!(joined.contains("-v kf-default-3fa9c1-ssh-keys:/etc/ssh/authorized_keys:ro"));
        assert!(joined.contains("--systemd=always --runtime runc"));
        assert!(!joined.contains("--privileged"));
        assert!(!joined.contains("--memory"));
        assert!(joined.ends_with("img:tag /sbin/init"));
    }

    #[test]
    fn run_args_for_privileged_host_with_memory() {
        let mut worker = spec("worker", 12, true);
        worker.memory_mb = Some(2048);
        let p = plan(vec![spec("cp", 11, false), worker]);
        let args = run_args(&p, &p.hosts[1], "n", "172.30.17.0/24", "img").expect("args");
        let joined = args.join(" ");
        assert!(joined.contains("--privileged --cgroupns=private"));
        assert!(joined.contains("-v kf-default-3fa9c1-worker-containerd:/var/lib/containerd"));
        assert!(joined.contains("-v kf-default-3fa9c1-worker-kubelet:/var/lib/kubelet"));
        assert!(joined.contains("--memory 2048m"));
        assert!(joined.contains("--add-host cp:172.30.17.11"));
    }

    #[test]
    fn authorized_keys_accepts_public_and_refuses_private_keys() {
        let path = Path::new("/k");
        let public = "# comment\nssh-ed25519 AAAAC3Nza test@x\n\nfrom=\"10.0.0.1\" ecdsa-sha2-nistp256 AAAA y\n";
        assert_eq!(
            authorized_keys_content(path, public).ok().as_deref(),
            Some("ssh-ed25519 AAAAC3Nza test@x\nfrom=\"10.0.0.1\" ecdsa-sha2-nistp256 AAAA y\n")
        );
        let private =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(authorized_keys_content(path, private).is_err());
        assert!(authorized_keys_content(path, "# nothing\n").is_err());
        assert!(authorized_keys_content(path, "hello world\n").is_err());
    }

    #[test]
    fn instance_seed_is_deterministic() {
        assert_eq!(instance_seed("kf-a"), instance_seed("kf-a"));
        let seeds: std::collections::HashSet<u8> =
            (0..20).map(|i| instance_seed(&format!("kf-{i}"))).collect();
        assert!(seeds.len() > 10, "seeds should spread instances apart");
    }

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

    /// Real round trip against rootful Podman: `cargo test -- --ignored --nocapture podman_round_trip`.
    #[tokio::test]
    #[ignore = "needs root, podman and the Debian mirror; builds the host image"]
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
                    let (ok, state) =
                        ssh(&key, host, "sudo -n systemctl is-system-running --wait").await;
                    if !(ok && state == "running") {
                        let (_, failed) = ssh(&key, host, "systemctl --failed --no-legend").await;
                        failures.push(format!("{}: {state} / failed units: {failed}", host.name));
                    }
                    let (_, containerd) = ssh(
                        &key,
                        host,
                        "command -v containerd runc; systemctl is-enabled containerd; \
                         systemctl is-active containerd; true",
                    )
                    .await;
                    if containerd != "/usr/bin/containerd\n/usr/bin/runc\ndisabled\ninactive" {
                        failures.push(format!("{}: containerd state {containerd:?}", host.name));
                    }
                    let (_, resolve) =
                        ssh(&key, host, "getent hosts plain node-1 node-2 node-3").await;
                    if resolve.lines().count() != 4 {
                        failures.push(format!("{}: host names resolve as {resolve:?}", host.name));
                    }
                    let (_, sysctl) = ssh(&key, host, "cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops").await;
                    if host.name != "plain" && sysctl != "1\n10\n1" {
                        failures.push(format!("{}: sysctls {sysctl:?}", host.name));
                    }
                    eprintln!(
                        "{}: {state}; sysctls {:?}",
                        host.name,
                        sysctl.replace('\n', " ")
                    );
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
