//! Drivers create and destroy a scenario's hosts and hand back an [`Inventory`].

pub mod host_image;
pub mod podman;
pub mod vagrant;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncReadExt;

use crate::inventory::{Host, Inventory};
use crate::process;
use crate::report::Logger;
use crate::scenario::{DriverConfig, Scenario};
use crate::state::StateDir;

const SSH_POLL_INTERVAL: Duration = Duration::from_millis(100);
const SSH_BANNER_TIMEOUT: Duration = Duration::from_secs(2);

/// A driver's failure, prefixed with the driver it came from.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("podman: {0}")]
    Podman(#[from] podman::PodmanError),
    #[error("vagrant: {0}")]
    Vagrant(#[from] vagrant::VagrantError),
    #[error("host image: {0}")]
    HostImage(#[from] host_image::HostImageError),
    #[error("existing hosts: {0}")]
    UserCommand(process::CommandFailure),
}

/// What a driver works with besides the scenario: where the project and the scenario's
/// state are, the instance every created object is named after, and the logger its
/// progress lines go to (as verbose lines).
#[derive(Debug, Clone, Copy)]
pub struct DriverContext<'a> {
    /// The project directory (holding the Vagrantfile).
    pub project_root: &'a Path,
    pub state_dir: &'a StateDir,
    /// Unique prefix of everything the driver creates, e.g. `kf-default-3fa9c1`.
    pub instance: &'a str,
    pub log: &'a Logger,
}

/// A new host's SSH server, as the control machine reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEndpoint {
    pub host: String,
    pub address: SocketAddr,
}

/// A host whose SSH server did not answer in time, with the last thing that went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshNotReady {
    pub host: String,
    pub address: SocketAddr,
    pub last: String,
}

impl std::fmt::Display for SshNotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} ({}): {}", self.host, self.address, self.last)
    }
}

/// Polls every endpoint, all at once, for an SSH banner and logs when each answers.
/// Polling stops at `timeout`, so nothing keeps probing an address after create gives
/// up; the hosts that never answered come back as the error.
pub async fn wait_for_ssh(
    endpoints: &[SshEndpoint],
    timeout: Duration,
    log: &Logger,
) -> Result<(), Vec<SshNotReady>> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut polls: FuturesUnordered<_> = endpoints
        .iter()
        .map(|e| async move { (e, poll_ssh_banner(e.address, deadline).await) })
        .collect();
    let mut failed = Vec::new();
    while let Some((e, result)) = polls.next().await {
        match result {
            Ok(()) => log.verbose(format!(
                "host {}: sshd answers on {} after {:.1}s",
                e.host,
                e.address,
                started.elapsed().as_secs_f64()
            )),
            Err(last) => failed.push(SshNotReady {
                host: e.host.clone(),
                address: e.address,
                last,
            }),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        failed.sort_by(|a, b| a.host.cmp(&b.host));
        Err(failed)
    }
}

async fn poll_ssh_banner(address: SocketAddr, deadline: Instant) -> Result<(), String> {
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        match ssh_banner(address).await {
            Ok(banner) if banner.starts_with("SSH-2.0") => return Ok(()),
            Ok(banner) => last = format!("unexpected banner {banner:?}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(SSH_POLL_INTERVAL).await;
    }
    Err(last)
}

async fn ssh_banner(address: SocketAddr) -> Result<String, String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut buf = [0u8; 64];
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read banner: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
    };
    tokio::time::timeout(SSH_BANNER_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no banner within {}s", SSH_BANNER_TIMEOUT.as_secs()))?
}

/// Runs a command the user gave for the `existing` driver, on this machine.
async fn user_command(command: &str, log: &Logger) -> Result<(), DriverError> {
    log.verbose(format!("running `{command}`"));
    process::run("sh", &["-c", command])
        .await
        .map_err(DriverError::UserCommand)?;
    Ok(())
}

/// The Vagrant plan of a scenario: the project's Vagrantfile, Vagrant's state inside the
/// scenario's state directory.
fn vagrant_plan(
    scenario: &Scenario,
    ctx: &DriverContext<'_>,
) -> Result<vagrant::VagrantPlan, DriverError> {
    let instance = ctx.instance;
    let DriverConfig::Vagrant {
        provider,
        box_name,
        network,
        management_network,
        emulate_cpu,
        cpus,
    } = &scenario.driver
    else {
        return Err(vagrant::VagrantError::InvalidPlan {
            instance: instance.to_string(),
            reason: "the scenario's driver is not vagrant".into(),
        }
        .into());
    };
    let hosts = scenario
        .platforms
        .iter()
        .zip(scenario.address_octets())
        .map(|(p, octet)| {
            Ok(vagrant::VagrantHostSpec {
                name: p.name.clone(),
                ip: vagrant::private_ip(network, octet).map_err(|reason| {
                    vagrant::VagrantError::InvalidPlan {
                        instance: instance.to_string(),
                        reason: format!("host {}: {reason}", p.name),
                    }
                })?,
                memory_mb: p
                    .memory_mb
                    .unwrap_or_else(|| vagrant::seed_memory_mb(&p.groups)),
                cpus: *cpus,
            })
        })
        .collect::<Result<Vec<_>, vagrant::VagrantError>>()?;
    Ok(vagrant::VagrantPlan {
        instance: instance.to_string(),
        provider: *provider,
        box_name: box_name.clone(),
        emulate_cpu: *emulate_cpu,
        management_network: management_network.clone(),
        hosts,
        vagrantfile_dir: ctx.project_root.to_path_buf(),
        work_dir: ctx.state_dir.root.join("vagrant"),
    })
}

/// The inventory hosts for the VMs `vagrant up` created, in scenario order.
fn vagrant_hosts(scenario: &Scenario, instance: &str, created: &[vagrant::CreatedVm]) -> Vec<Host> {
    scenario
        .platforms
        .iter()
        .filter_map(|p| {
            let vm = created.iter().find(|vm| vm.name == p.name)?;
            Some(Host {
                name: p.name.clone(),
                // The cluster talks on the private network; SSH goes where
                // `vagrant ssh-config` says.
                address: vm.ip.into(),
                ssh_address: vm.ssh_address,
                ssh_port: vm.ssh_port,
                user: vm.user.clone(),
                groups: p.groups.clone(),
                handle: Some(format!("{instance}-{}", p.name)),
            })
        })
        .collect()
}

/// The Podman plan of a scenario: one container per platform at the seeds' address plan.
fn podman_plan(
    scenario: &Scenario,
    instance: &str,
    subnet: Option<String>,
    authorized_keys: &Path,
) -> podman::PodmanPlan {
    podman::PodmanPlan {
        instance: instance.to_string(),
        subnet,
        hosts: scenario
            .platforms
            .iter()
            .zip(scenario.address_octets())
            .map(|(p, octet)| podman::PodmanHostSpec {
                name: p.name.clone(),
                last_octet: octet,
                privileged: p.is_privileged(),
                memory_mb: p.memory_mb,
            })
            .collect(),
        authorized_keys: authorized_keys.to_path_buf(),
    }
}

/// What healing did for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healing {
    /// It was running.
    Running,
    /// It was stopped or paused and was started: same disk, same host keys.
    Started,
    /// It was gone and was created again: new host keys.
    Recreated,
}

impl std::fmt::Display for Healing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Healing::Running => "running",
            Healing::Started => "was stopped: started again",
            Healing::Recreated => "was gone: created again",
        })
    }
}

/// The hosts of a created scenario after [`heal`].
#[derive(Debug)]
pub struct Healed {
    /// The inventory as it is now: a VM that came back may answer SSH elsewhere.
    pub inventory: Inventory,
    /// Hosts created again, whose host-key pins must go.
    pub recreated: Vec<String>,
}

/// Brings back hosts of a created scenario that stopped or vanished, as Molecule's
/// `create` does (Podman: started or run again; Vagrant: `vagrant up`). Existing hosts are
/// not the run's to bring back: they are left as they are.
pub async fn heal(
    scenario: &Scenario,
    ctx: &DriverContext<'_>,
    authorized_keys: &Path,
    inventory: &Inventory,
) -> Result<Healed, DriverError> {
    let recreated = |healing: &[(String, Healing)]| {
        healing
            .iter()
            .filter(|(_, h)| *h == Healing::Recreated)
            .map(|(name, _)| name.clone())
            .collect()
    };
    match &scenario.driver {
        DriverConfig::Podman { subnet, packages } => {
            let image = host_image::ensure_host_image_with(packages, ctx.log).await?;
            let plan = podman_plan(scenario, ctx.instance, subnet.clone(), authorized_keys);
            let healing = podman::heal(&plan, &image, ctx.log).await?;
            Ok(Healed {
                inventory: inventory.clone(),
                recreated: recreated(&healing),
            })
        }
        DriverConfig::Vagrant { .. } => {
            let plan = vagrant_plan(scenario, ctx)?;
            let healing = vagrant::heal(&plan, authorized_keys, ctx.log).await?;
            let inventory = match &healing.endpoints {
                Some(vms) => Inventory {
                    hosts: vagrant_hosts(scenario, ctx.instance, vms),
                    ..inventory.clone()
                },
                None => inventory.clone(),
            };
            Ok(Healed {
                inventory,
                recreated: recreated(&healing.hosts),
            })
        }
        DriverConfig::Existing { .. } => Ok(Healed {
            inventory: inventory.clone(),
            recreated: Vec::new(),
        }),
    }
}

/// Makes a fault happen to `host` (the `side_effect` step); only Podman hosts take faults
/// (the scenario's rules refuse faults on other drivers).
pub async fn hit(
    ctx: &DriverContext<'_>,
    host: &Host,
    action: crate::scenario::FaultAction,
) -> Result<(), DriverError> {
    podman::faults::hit(ctx.instance, &host.name, action).await?;
    Ok(())
}

/// Undoes a fault on `host` where only the fault knows how (a disconnected host); hosts
/// killed, stopped, paused or replaced come back through [`heal`], which waits for SSH.
pub async fn undo(
    ctx: &DriverContext<'_>,
    host: &Host,
    action: crate::scenario::FaultAction,
) -> Result<(), DriverError> {
    podman::faults::undo(ctx.instance, &host.name, host.address, action).await?;
    Ok(())
}

/// Creates every host of the scenario; `authorized_keys` is the scenario's public key.
/// Returns the inventory and the name of the network created for it.
pub async fn create(
    scenario: &Scenario,
    ctx: &DriverContext<'_>,
    authorized_keys: &Path,
) -> Result<(Inventory, String), DriverError> {
    let (instance, log) = (ctx.instance, ctx.log);
    match &scenario.driver {
        DriverConfig::Podman { subnet, packages } => {
            host_image::ensure_prerequisites(log).await?;
            let image = host_image::ensure_host_image_with(packages, log).await?;
            let plan = podman_plan(scenario, instance, subnet.clone(), authorized_keys);
            let (network, created) = podman::create(&plan, &image, log).await?;
            let hosts = scenario
                .platforms
                .iter()
                .filter_map(|p| {
                    let c = created.iter().find(|c| c.name == p.name)?;
                    Some(Host {
                        name: p.name.clone(),
                        address: c.address.into(),
                        ssh_address: c.address.into(),
                        ssh_port: 22,
                        user: "core".into(),
                        groups: p.groups.clone(),
                        handle: Some(c.container.clone()),
                    })
                })
                .collect();
            Ok((
                Inventory {
                    hosts,
                    ssh_key: None,
                    kept_hosts: false,
                },
                format!("{} ({})", network.name, network.subnet),
            ))
        }
        DriverConfig::Vagrant { network, .. } => {
            let plan = vagrant_plan(scenario, ctx)?;
            let created = vagrant::create(&plan, authorized_keys, log).await?;
            let hosts = vagrant_hosts(scenario, instance, &created);
            Ok((
                Inventory {
                    hosts,
                    ssh_key: None,
                    kept_hosts: false,
                },
                format!("{instance}-net ({network})"),
            ))
        }
        DriverConfig::Existing {
            user,
            key,
            port,
            create_command,
            ..
        } => {
            if let Some(cmd) = create_command {
                user_command(cmd, log).await?;
            }
            let hosts = scenario
                .platforms
                .iter()
                .filter_map(|p| {
                    let address = p.address?;
                    Some(Host {
                        name: p.name.clone(),
                        address,
                        ssh_address: address,
                        ssh_port: *port,
                        user: user.clone(),
                        groups: p.groups.clone(),
                        handle: None,
                    })
                })
                .collect();
            Ok((
                Inventory {
                    hosts,
                    ssh_key: key.clone(),
                    kept_hosts: true,
                },
                "existing hosts".into(),
            ))
        }
    }
}

/// Removes everything the driver created for the instance; nothing there is not an error.
pub async fn destroy(scenario: &Scenario, ctx: &DriverContext<'_>) -> Result<String, DriverError> {
    let (instance, log) = (ctx.instance, ctx.log);
    match &scenario.driver {
        DriverConfig::Podman { .. } => {
            let r = podman::destroy(instance, log).await?;
            Ok(format!(
                "removed {} containers, {} volumes, {} networks",
                r.containers.len(),
                r.volumes.len(),
                r.networks.len()
            ))
        }
        DriverConfig::Vagrant { .. } => {
            let plan = vagrant_plan(scenario, ctx)?;
            let r = vagrant::destroy(&plan, log).await?;
            Ok(format!(
                "vagrant destroy {}; removed {} leftover VMs, {} storage pools ({} volumes), \
                 {} libvirt networks",
                if r.vagrant_ran {
                    "ran"
                } else {
                    "skipped (no Vagrant state)"
                },
                r.domains.len(),
                r.pools.len(),
                r.volumes.len(),
                r.networks.len()
            ))
        }
        DriverConfig::Existing {
            destroy_command, ..
        } => {
            if let Some(cmd) = destroy_command {
                user_command(cmd, log).await?;
            }
            Ok("existing hosts left as they are".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VirtualBox forwards each VM's SSH to a port on 127.0.0.1: SSH goes there while
    /// the cluster keeps the private addresses.
    #[test]
    fn vagrant_ssh_config_gives_the_ssh_endpoint_not_the_cluster_address() {
        let dir = Path::new("/project/scenarios/vagrant-etcd");
        let scenario = Scenario::parse(
            "vagrant-etcd",
            &dir.join("scenario.yml"),
            "driver: {name: vagrant, provider: virtualbox}\n\
             platforms:\n  - {name: etcd-01, groups: [etcd]}\n  - {name: etcd-02, groups: [etcd]}\n",
        )
        .expect("scenario");
        let state_dir = StateDir {
            root: "/state/vagrant-etcd".into(),
        };
        let log = Logger::new(false, None);
        let ctx = DriverContext {
            project_root: Path::new("/project"),
            state_dir: &state_dir,
            instance: "kf-a-1",
            log: &log,
        };
        let plan = vagrant_plan(&scenario, &ctx).expect("plan");
        assert_eq!(plan.vagrantfile_dir, Path::new("/project"));
        assert_eq!(plan.work_dir, Path::new("/state/vagrant-etcd/vagrant"));
        let ssh_config = "Host etcd-01\n  HostName 127.0.0.1\n  User core\n  Port 2222\n  \
                          UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  \
                          IdentityFile /p/.vagrant/machines/etcd-01/virtualbox/private_key\n\n\
                          Host etcd-02\n  HostName 127.0.0.1\n  User core\n  Port 2200\n";
        let vms = vagrant::vms_from_ssh_config(&plan.hosts, ssh_config).expect("vms");
        let hosts = vagrant_hosts(&scenario, "kf-a-1", &vms);
        let localhost: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            hosts[0].address,
            "10.0.0.101".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!((hosts[0].ssh_address, hosts[0].ssh_port), (localhost, 2222));
        assert_eq!(
            hosts[1].address,
            "10.0.0.102".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!((hosts[1].ssh_address, hosts[1].ssh_port), (localhost, 2200));
        assert_eq!(hosts[0].user, "core");
        assert_eq!(hosts[0].handle.as_deref(), Some("kf-a-1-etcd-01"));

        let missing =
            vagrant::vms_from_ssh_config(&plan.hosts, "Host etcd-01\n  HostName 127.0.0.1\n");
        assert!(missing.unwrap_err().to_string().contains("etcd-02"));
        let named =
            vagrant::vms_from_ssh_config(&plan.hosts[..1], "Host etcd-01\n  HostName localhost\n");
        assert!(named.unwrap_err().to_string().contains("\"localhost\""));
    }

    #[tokio::test]
    async fn ssh_wait_reports_each_silent_host_by_name() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let speaking = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = server.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            }
        });
        // Bound, never accepted from and never speaking: connects, then no banner.
        let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = mute.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log_file = dir.path().join("run.log");
        let log = Logger::new(false, Some(log_file.clone()));
        let endpoints = [
            SshEndpoint {
                host: "up".into(),
                address: speaking,
            },
            SshEndpoint {
                host: "down".into(),
                address: silent,
            },
        ];
        let failed = wait_for_ssh(&endpoints, Duration::from_secs(3), &log)
            .await
            .unwrap_err();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].host, "down");
        assert!(
            failed[0]
                .to_string()
                .starts_with(&format!("host down ({silent}): ")),
            "{}",
            failed[0]
        );
        assert!(failed[0].last.contains("no banner"), "{}", failed[0].last);
        // Each log file line is `<date> <time> <message>`.
        let logged: Vec<String> = std::fs::read_to_string(&log_file)
            .unwrap()
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
            .collect();
        assert_eq!(logged.len(), 1);
        assert!(
            logged[0].starts_with(&format!("host up: sshd answers on {speaking}")),
            "{logged:?}"
        );
        assert!(
            wait_for_ssh(&endpoints[..1], Duration::from_secs(3), &log)
                .await
                .is_ok()
        );
    }
}
