//! The inventory: the hosts a driver created, how to reach them, and their groups.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::scenario::{Group, Scenario};

/// One reachable host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredHost")]
pub struct Host {
    pub name: String,
    /// Address the cluster uses between hosts (rendered into every config).
    pub address: IpAddr,
    /// Where the control machine reaches the host's SSH server: the same as `address`
    /// for containers and existing hosts, what `vagrant ssh-config` reports for VMs
    /// (a management network, or a port forwarded to 127.0.0.1).
    pub ssh_address: IpAddr,
    pub ssh_port: u16,
    pub user: String,
    pub groups: Vec<Group>,
    /// The driver's handle for the host (container name, VM name), if any.
    pub handle: Option<String>,
}

/// [`Host`] as state files hold it: files written before `ssh_address` existed have none,
/// and their hosts took SSH on `address`.
#[derive(Deserialize)]
struct StoredHost {
    name: String,
    address: IpAddr,
    #[serde(default)]
    ssh_address: Option<IpAddr>,
    ssh_port: u16,
    user: String,
    groups: Vec<Group>,
    handle: Option<String>,
}

impl From<StoredHost> for Host {
    fn from(h: StoredHost) -> Host {
        Host {
            ssh_address: h.ssh_address.unwrap_or(h.address),
            name: h.name,
            address: h.address,
            ssh_port: h.ssh_port,
            user: h.user,
            groups: h.groups,
            handle: h.handle,
        }
    }
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
    /// Hosts the run did not create and does not destroy (driver `existing`): their host
    /// keys stay pinned across runs, so a changed key is refused on the next run too.
    #[serde(default)]
    pub kept_hosts: bool,
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
                .map(|(p, octet)| {
                    let address = std::net::Ipv4Addr::new(192, 0, 2, octet).into();
                    Host {
                        name: p.name.clone(),
                        address,
                        ssh_address: address,
                        ssh_port: 22,
                        user: "core".into(),
                        groups: p.groups.clone(),
                        handle: None,
                    }
                })
                .collect(),
            ssh_key: None,
            kept_hosts: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_address_round_trips_and_defaults_to_the_cluster_address() {
        let host = Host {
            name: "etcd-01".into(),
            address: "10.0.0.101".parse().unwrap(),
            ssh_address: "127.0.0.1".parse().unwrap(),
            ssh_port: 2222,
            user: "core".into(),
            groups: vec![Group::Etcd],
            handle: Some("kf-a-etcd-01".into()),
        };
        let json = serde_json::to_string(&host).unwrap();
        assert_eq!(serde_json::from_str::<Host>(&json).unwrap(), host);

        // A state file from before ssh_address: SSH went to the cluster address.
        let old = r#"{"name":"etcd-01","address":"10.0.0.101","ssh_port":22,"user":"core",
                      "groups":["etcd"],"handle":null}"#;
        let old: Host = serde_json::from_str(old).unwrap();
        assert_eq!(old.ssh_address, old.address);
        assert_eq!(old.ssh_port, 22);
    }
}
