//! The cluster as the installer sees it, derived once from the scenario and the inventory:
//! etcd members and their endpoints, Kubernetes nodes in order with their pod CIDRs, the
//! masters, the API server URL, the pod network and what it writes to etcd.
//!
//! Roles, verify and the report read this value; nothing recomputes it. Well-known paths on
//! the hosts ([`paths`]), the command lines that reach etcd, the API and containerd
//! ([`commands`]) and image references ([`images`]) live beside it, so verify never reaches
//! into a role for them.

pub mod commands;
pub mod images;
pub mod paths;

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::inventory::Inventory;
use crate::net::Ipv4Net;
use crate::scenario::{ClusterSettings, Group, PodNetwork, Scenario};
use crate::timeouts::TimeoutScale;

/// Prefix length of each node's pod CIDR.
pub const NODE_CIDR_PREFIX: u8 = 24;
/// Offset of the probe Service of the first Kubernetes node; the n-th node's is n further.
pub const PROBE_SERVICE_OFFSET: u32 = 210;

/// Every offset into the service range verify gives a Service of its own, for a cluster
/// of `nodes` Kubernetes nodes: no other Service (the DNS one, a workload's) may take
/// these addresses.
pub fn verify_service_offsets(nodes: usize) -> Vec<u32> {
    (0..nodes as u32)
        .map(|i| PROBE_SERVICE_OFFSET + i)
        .collect()
}

/// The etcd member's unit on every etcd host.
pub const ETCD_UNIT: &str = "etcd-member.service";
/// The seeds' flannel network configuration key (their etcd smoke test looks for it).
pub const NETWORK_KEY: &str = "/coreos.com/network/config";

/// A scenario whose cluster cannot be laid out on its hosts.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.{setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
    #[error(
        "cluster.pod_network {network} holds {available} /{NODE_CIDR_PREFIX} node networks, the scenario has {nodes} Kubernetes nodes"
    )]
    PodNetworkTooSmall {
        network: String,
        available: u64,
        nodes: usize,
    },
    #[error("no host in group 'etcd': the cluster needs at least one etcd member")]
    NoEtcd,
    #[error("no host in group 'kube-master': Kubernetes nodes need a master")]
    NoMaster,
}

/// One etcd member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
}

impl Member {
    /// The member's client URL.
    pub fn client_url(&self, port: u16) -> String {
        format!("https://{}:{port}", self.address)
    }
}

/// A Kubernetes node (master or worker) and the pod CIDR kubeforge gave it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
    pub pod_cidr: Ipv4Net,
    pub master: bool,
}

/// The derived cluster: every fact the roles and verify share.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub settings: ClusterSettings,
    /// `v1.20.2` -> 20: templates keep flags that changed across releases behind it.
    pub k8s_minor: u32,
    /// etcd members in inventory order.
    pub etcd: Vec<Member>,
    /// Client URLs of every member, comma-separated (etcdctl, the API server).
    pub etcd_endpoints: String,
    /// Kubernetes nodes in inventory order; the n-th has the n-th /24 of the pod network.
    pub nodes: Vec<Node>,
    /// How the API is reached; `None` for scenarios without Kubernetes nodes.
    pub api: Option<Api>,
    /// The `kubernetes` Service's ClusterIP: the first address of the service range (a name
    /// in the API server certificate).
    pub kubernetes_service_ip: Ipv4Addr,
    /// What the etcd role writes to [`NETWORK_KEY`] and verify reads back.
    pub network_config: serde_json::Value,
    /// The platform's timeout scale: readiness waits, verify windows and the timeouts
    /// written into commands are multiplied by it.
    pub timeouts: TimeoutScale,
}

/// Leader election of the controller-manager and scheduler, as their flags take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderElection {
    pub lease_duration: String,
    pub renew_deadline: String,
    pub retry_period: String,
}

impl Cluster {
    /// Kubernetes' defaults (lease 15 s, renew deadline 10 s, retry 2 s) on the platform's
    /// timeout scale. A leader that cannot renew within the deadline exits: on an emulated
    /// CPU a lease update took the API server over 10 s, and the controller-manager then
    /// restarted in a loop, leaving Services without endpoints.
    /// How often kubelets compute their node status: 2 s on real CPUs (a new node shows
    /// Ready up to 8 s sooner), Kubernetes' 10 s on a slower platform, where every status
    /// costs CPU an emulated master lacks (with 2 s, the Vagrant cluster's converge took
    /// 780 s instead of about 515 s).
    pub fn node_status_update_seconds(&self) -> u64 {
        if self.timeouts == TimeoutScale::NORMAL {
            2
        } else {
            10
        }
    }

    pub fn leader_election(&self) -> LeaderElection {
        let secs = |s: u64| format!("{}s", self.timeouts.secs(s));
        LeaderElection {
            lease_duration: secs(15),
            renew_deadline: secs(10),
            retry_period: secs(2),
        }
    }

    /// Derives the cluster from a scenario and the hosts its driver created (or planned).
    pub fn derive(scenario: &Scenario, inventory: &Inventory) -> Result<Cluster, ClusterError> {
        let settings = scenario.cluster.clone();
        let k8s_minor = minor_version(&settings.kubernetes_version)?;
        let etcd: Vec<Member> = inventory
            .group(Group::Etcd)
            .map(|h| Member {
                name: h.name.clone(),
                address: h.address,
            })
            .collect();
        if etcd.is_empty() {
            return Err(ClusterError::NoEtcd);
        }
        let etcd_endpoints = etcd
            .iter()
            .map(|m| m.client_url(settings.etcd.client_port))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = node_networks(settings.pod_network, inventory)?;
        let api = match nodes.iter().find(|n| n.master) {
            Some(_) => Some(Api::for_nodes(&nodes, settings.apiserver_port)),
            None if nodes.is_empty() => None,
            None => return Err(ClusterError::NoMaster),
        };
        let kubernetes_service_ip =
            settings
                .service_range
                .nth(1)
                .ok_or_else(|| ClusterError::Setting {
                    setting: "service_range",
                    message: format!(
                        "{} has no address for the kubernetes Service",
                        settings.service_range
                    ),
                })?;
        let network_config = serde_json::json!({
            "Network": settings.pod_network,
            "Backend": { "Type": match settings.network {
                PodNetwork::Bridge => "host-gw",
                PodNetwork::FlannelCalico => "vxlan",
            } },
        });
        Ok(Cluster {
            k8s_minor,
            etcd,
            etcd_endpoints,
            nodes,
            api,
            kubernetes_service_ip,
            network_config,
            settings,
            timeouts: scenario.timeout_scale,
        })
    }

    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.master)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.master)
    }

    /// The master that holds the objects kubeforge keeps in the API; `None` without nodes.
    pub fn first_master(&self) -> Option<&Node> {
        self.masters().next()
    }

    /// How the API is reached; only asked for by roles that run on Kubernetes nodes, which
    /// exist only together with a master (checked by [`Cluster::derive`]).
    pub fn api(&self) -> &Api {
        self.api
            .as_ref()
            .expect("a cluster with Kubernetes nodes has a master")
    }

    /// Where every client on a node reaches the API (see [`Api::node_url`]).
    pub fn apiserver_url(&self) -> &str {
        &self.api().node_url
    }

    /// The image of a Kubernetes component at the scenario's version.
    pub fn component_image(&self, component: &str) -> String {
        images::component(component, &self.settings.kubernetes_version)
    }
}

/// Port of the API servers' load balancer on every node of a cluster with several masters.
pub const API_LOAD_BALANCER_PORT: u16 = 8443;

/// How the API is reached.
#[derive(Debug, Clone)]
pub struct Api {
    /// Where every client on a node (kubelets, kube-proxy, controller-manager, scheduler,
    /// kubectl on the masters) reaches the API: the one master's API server, or with several
    /// masters the node's own load balancer (`https://127.0.0.1:8443`).
    pub node_url: String,
    /// Where the control machine's kubectl reaches it: the one master, or a worker's load
    /// balancer (workers stay when masters are taken away).
    pub control_url: String,
    /// The load balancer on every node in front of every API server; `None` with one master.
    pub load_balancer: Option<LoadBalancer>,
}

/// HAProxy on every Kubernetes node, passing TCP through to every master's API server
/// (TLS ends at the API server, whose certificate names every address a client uses).
#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub port: u16,
    /// Every master's API server.
    pub backends: Vec<Backend>,
}

/// One API server behind the load balancer.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// The master's name.
    pub name: String,
    /// `address:port` of its API server.
    pub address: String,
}

impl Api {
    fn for_nodes(nodes: &[Node], apiserver_port: u16) -> Api {
        let masters: Vec<&Node> = nodes.iter().filter(|n| n.master).collect();
        if masters.len() == 1 {
            let url = format!("https://{}:{apiserver_port}", masters[0].address);
            return Api {
                node_url: url.clone(),
                control_url: url,
                load_balancer: None,
            };
        }
        let port = API_LOAD_BALANCER_PORT;
        let entry = nodes.iter().find(|n| !n.master).unwrap_or(masters[0]);
        Api {
            node_url: format!("https://127.0.0.1:{port}"),
            control_url: format!("https://{}:{port}", entry.address),
            load_balancer: Some(LoadBalancer {
                port,
                backends: masters
                    .iter()
                    .map(|m| Backend {
                        name: m.name.clone(),
                        address: format!("{}:{apiserver_port}", m.address),
                    })
                    .collect(),
            }),
        }
    }
}

/// `v1.20.2` -> 20.
pub fn minor_version(version: &str) -> Result<u32, ClusterError> {
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| ClusterError::Setting {
            setting: "kubernetes_version",
            message: format!("'{version}' is not of the form v1.<minor>.<patch>"),
        })
}

/// Every Kubernetes node in inventory order; the n-th gets the n-th /24 of the pod network,
/// so the assignment is stable as long as the scenario's host order is.
fn node_networks(network: Ipv4Net, inventory: &Inventory) -> Result<Vec<Node>, ClusterError> {
    let hosts: Vec<_> = inventory
        .hosts
        .iter()
        .filter(|h| h.in_group(Group::KubeMaster) || h.in_group(Group::KubeWorker))
        .collect();
    let too_small = || ClusterError::PodNetworkTooSmall {
        network: network.to_string(),
        available: if network.prefix() > NODE_CIDR_PREFIX {
            0
        } else {
            1u64 << (NODE_CIDR_PREFIX - network.prefix())
        },
        nodes: hosts.len(),
    };
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let pod_cidr = network
                .subnet(NODE_CIDR_PREFIX, i as u32)
                .ok_or_else(too_small)?;
            Ok(Node {
                name: h.name.clone(),
                address: h.address,
                pod_cidr,
                master: h.in_group(Group::KubeMaster),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse("t", Path::new("scenarios/t/scenario.yml"), text).unwrap()
    }

    const DEFAULT: &str = "platforms:
  - {name: etcd-01, groups: [etcd]}
  - {name: kube-master-01, groups: [kube-master]}
  - {name: kube-worker-01, groups: [kube-worker]}
  - {name: kube-worker-02, groups: [kube-worker]}
";

    #[test]
    fn nodes_get_pod_cidrs_in_host_order_and_the_first_master_serves_the_api() {
        let s = scenario(DEFAULT);
        let c = Cluster::derive(&s, &Inventory::planned(&s)).unwrap();
        let cidrs: Vec<(&str, String, bool)> = c
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.pod_cidr.to_string(), n.master))
            .collect();
        assert_eq!(
            cidrs,
            [
                ("kube-master-01", "10.2.0.0/24".into(), true),
                ("kube-worker-01", "10.2.1.0/24".into(), false),
                ("kube-worker-02", "10.2.2.0/24".into(), false),
            ]
        );
        assert_eq!(c.apiserver_url(), "https://192.0.2.111:6443");
        assert_eq!(c.etcd_endpoints, "https://192.0.2.101:2379");
        assert_eq!(c.kubernetes_service_ip, Ipv4Addr::new(10, 3, 0, 1));
        assert_eq!(c.k8s_minor, 20);
        assert_eq!(
            c.network_config.to_string(),
            r#"{"Backend":{"Type":"host-gw"},"Network":"10.2.0.0/16"}"#
        );
        assert_eq!(c.workers().count(), 2);
    }

    /// The cluster of a scenario text, on its planned hosts.
    fn derived(text: &str) -> Cluster {
        let s = scenario(text);
        Cluster::derive(&s, &Inventory::planned(&s)).unwrap()
    }

    #[test]
    fn leader_election_keeps_kubernetes_defaults_and_stretches_on_a_slow_platform() {
        let at = |text: &str| derived(text).leader_election();
        let le = |lease: &str, renew: &str, retry: &str| LeaderElection {
            lease_duration: lease.into(),
            renew_deadline: renew.into(),
            retry_period: retry.into(),
        };
        assert_eq!(at(DEFAULT), le("15s", "10s", "2s"));
        assert_eq!(
            at(&format!("{DEFAULT}timeout_scale: 4\n")),
            le("60s", "40s", "8s")
        );
    }

    #[test]
    fn node_status_is_computed_often_only_on_real_cpus() {
        let at = |text: &str| derived(text).node_status_update_seconds();
        assert_eq!(at(DEFAULT), 2);
        assert_eq!(at(&format!("{DEFAULT}timeout_scale: 4\n")), 10);
    }

    #[test]
    fn the_network_config_follows_the_pod_network_option() {
        let s = scenario(&format!("{DEFAULT}cluster: {{network: flannel-calico}}\n"));
        let c = Cluster::derive(&s, &Inventory::planned(&s)).unwrap();
        assert_eq!(c.network_config["Backend"]["Type"], "vxlan");
    }

    #[test]
    fn layouts_that_cannot_work_are_refused() {
        // Scenario files with these layouts are refused at load (scenario::rules); a
        // scenario changed in code after loading still meets these checks.
        let mut s = scenario(DEFAULT);
        s.cluster.pod_network = "10.2.0.0/23".parse().unwrap();
        let e = Cluster::derive(&s, &Inventory::planned(&s)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cluster.pod_network 10.2.0.0/23 holds 2 /24 node networks, the scenario has 3 Kubernetes nodes"
        );
        let mut s = scenario(DEFAULT);
        s.platforms[1].groups = vec![Group::KubeWorker];
        let e = Cluster::derive(&s, &Inventory::planned(&s)).unwrap_err();
        assert!(matches!(e, ClusterError::NoMaster), "{e}");
        let s = scenario("platforms:\n  - {name: etcd-01, groups: [etcd]}\n");
        let c = Cluster::derive(&s, &Inventory::planned(&s)).unwrap();
        assert!(c.nodes.is_empty() && c.api.is_none());
    }

    #[test]
    fn minor_version_parses_and_rejects() {
        assert_eq!(minor_version("v1.20.2").unwrap(), 20);
        assert_eq!(minor_version("1.31.0").unwrap(), 31);
        assert!(minor_version("latest").is_err());
    }
}
