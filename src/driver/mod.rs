//! Drivers create and destroy a scenario's hosts and hand back an [`Inventory`].

pub mod host_image;
pub mod podman;
pub mod vagrant;

use std::path::Path;

use crate::inventory::{Host, Inventory};
use crate::scenario::{DriverConfig, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("podman: {0}")]
    Podman(#[from] podman::PodmanError),
    #[error("vagrant: {0}")]
    Vagrant(#[from] vagrant::VagrantError),
    #[error("host image: {0}")]
    HostImage(#[from] host_image::HostImageError),
    #[error("existing hosts: `{command}` failed: {detail}")]
    UserCommand { command: String, detail: String },
}

/// Runs a command the user gave for the `existing` driver, on this machine.
async fn user_command(command: &str, log: &(dyn Fn(&str) + Sync)) -> Result<(), DriverError> {
    log(&format!("running `{command}`"));
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .await
        .map_err(|e| DriverError::UserCommand {
            command: command.to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(DriverError::UserCommand {
            command: command.to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The Vagrant plan of a scenario loaded from `<project>/scenarios/<name>`: the project's
/// Vagrantfile, Vagrant's state inside the scenario's state directory.
fn vagrant_plan(scenario: &Scenario, instance: &str) -> Result<vagrant::VagrantPlan, DriverError> {
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
    let project = scenario
        .dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&scenario.dir);
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
        vagrantfile_dir: project.to_path_buf(),
        work_dir: crate::state::StateDir::for_scenario(project, &scenario.name)
            .root
            .join("vagrant"),
    })
}

/// Creates every host of the scenario; `authorized_keys` is the scenario's public key.
/// Returns the inventory and the name of the network created for it.
pub async fn create(
    scenario: &Scenario,
    instance: &str,
    authorized_keys: &Path,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(Inventory, String), DriverError> {
    match &scenario.driver {
        DriverConfig::Podman { subnet } => {
            host_image::ensure_prerequisites(log).await?;
            let image = host_image::ensure_host_image(log).await?;
            let plan = podman::PodmanPlan {
                instance: instance.to_string(),
                subnet: subnet.clone(),
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
            };
            let (network, created) = podman::create(&plan, &image, log).await?;
            let hosts = scenario
                .platforms
                .iter()
                .filter_map(|p| {
                    let c = created.iter().find(|c| c.name == p.name)?;
                    Some(Host {
                        name: p.name.clone(),
                        address: c.address.into(),
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
                },
                format!("{} ({})", network.name, network.subnet),
            ))
        }
        DriverConfig::Vagrant { network, .. } => {
            let plan = vagrant_plan(scenario, instance)?;
            let created = vagrant::create(&plan, authorized_keys, log).await?;
            let hosts = scenario
                .platforms
                .iter()
                .filter_map(|p| {
                    let vm = created.iter().find(|vm| vm.name == p.name)?;
                    Some(Host {
                        name: p.name.clone(),
                        // The private address serves both the cluster and SSH: this machine
                        // sits on that network too.
                        address: vm.ip.into(),
                        ssh_port: 22,
                        user: vm.ssh.user.clone(),
                        groups: p.groups.clone(),
                        handle: Some(format!("{instance}-{}", p.name)),
                    })
                })
                .collect();
            Ok((
                Inventory {
                    hosts,
                    ssh_key: None,
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
                    Some(Host {
                        name: p.name.clone(),
                        address: p.address?,
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
                },
                "existing hosts".into(),
            ))
        }
    }
}

/// Removes everything the driver created for `instance`; nothing there is not an error.
pub async fn destroy(
    scenario: &Scenario,
    instance: &str,
    log: &(dyn Fn(&str) + Sync),
) -> Result<String, DriverError> {
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
            let plan = vagrant_plan(scenario, instance)?;
            let r = vagrant::destroy(&plan, log).await?;
            Ok(format!(
                "vagrant destroy {}; removed {} leftover VMs, {} volumes, {} libvirt networks",
                if r.vagrant_ran {
                    "ran"
                } else {
                    "skipped (no Vagrant state)"
                },
                r.domains.len(),
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
