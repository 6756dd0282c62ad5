//! The inventory: the hosts a driver created, how to reach them, and their groups.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::scenario::Group;

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
}

impl Inventory {
    pub fn group(&self, group: Group) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.in_group(group))
    }

    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
