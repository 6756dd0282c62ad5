//! Drivers create and destroy a scenario's hosts and hand back an [`Inventory`].

pub mod host_image;
pub mod podman;

use std::path::Path;

use crate::inventory::{Host, Inventory};
use crate::scenario::{DriverConfig, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("podman: {0}")]
    Podman(#[from] podman::PodmanError),
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
