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
                Inventory { hosts },
                format!("{} ({})", network.name, network.subnet),
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
    }
}
