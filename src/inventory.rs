//! The inventory: the hosts a driver created, how to reach them, and their groups.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::scenario::{Group, Scenario};

/// One reachable host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    /// Address the control machine uses for SSH and the cluster uses between hosts.
    pub address: IpAddr,
    pub ssh_port: u16,
    pub user: String,
    pub groups: Vec<Group>,
    /// The driver's handle for the host (container name, VM name), if any.
    pub handle: Option<String>,
}

impl Host {
    pub fn in_group(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }
}

/// All hosts of a scenario, in scenario order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    /// The user's own SSH key for these hosts; `None` means the scenario's generated key.
    #[serde(default)]
    pub ssh_key: Option<std::path::PathBuf>,
}

impl Inventory {
    pub fn group(&self, group: Group) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.in_group(group))
    }

    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }
}

impl Inventory {
    /// The scenario's hosts at addresses of its plan in 192.0.2.0/24 (TEST-NET-1, never
    /// contacted): for rendering before any host exists (syntax step, snapshot tests).
    pub fn planned(scenario: &Scenario) -> Inventory {
        Inventory {
            hosts: scenario
                .platforms
                .iter()
                .zip(scenario.address_octets())
                .map(|(p, octet)| Host {
                    name: p.name.clone(),
                    address: std::net::Ipv4Addr::new(192, 0, 2, octet).into(),
                    ssh_port: 22,
                    user: "core".into(),
                    groups: p.groups.clone(),
                    handle: None,
                })
                .collect(),
            ssh_key: None,
        }
    }
}
