//! The pod network. The default, `bridge`, has no overlay: each Kubernetes node gets a pod CIDR (by host order),
//! a CNI bridge + host-local config for it, and routes to every other node's pod CIDR via
//! that node's address, kept across reboots by a oneshot unit. Pods reach each other across
//! nodes with their own addresses (no NAT), like flannel's host-gw backend in the seeds.
//! The seeds' flannel + Calico network is in [`flannel_calico`].

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::{InstallContext, RoleError, directory, flannel_calico, phase};
use crate::engine::{Phase, Resource, Task};
use crate::scenario::{Group, PodNetwork, parse_cidr};

/// Prefix length of each node's pod CIDR.
pub const NODE_CIDR_PREFIX: u8 = 24;
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
const CONFLIST_PATH: &str = "/etc/cni/net.d/10-kubeforge.conflist";
const ROUTES_UNIT: &str = "kubeforge-pod-routes.service";
const ROUTES_UNIT_PATH: &str = "/etc/systemd/system/kubeforge-pod-routes.service";
/// CNI plugins the conflist uses; containerd itself calls `loopback`.
const PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// A Kubernetes node (master or worker) and the pod CIDR kubeforge gave it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeNet {
    pub name: String,
    pub address: IpAddr,
    pub pod_cidr: String,
    pub master: bool,
}

/// Every Kubernetes node in inventory order; the n-th gets the n-th /24 of the pod network,
/// so the assignment is stable as long as the scenario's host order is.
pub fn nodes(ctx: &InstallContext) -> Result<Vec<NodeNet>, RoleError> {
    let network = &ctx.scenario.cluster.pod_network;
    let (base, prefix) = parse_cidr(network)
        .map_err(|m| RoleError::Inventory(format!("cluster.pod_network: {m}")))?;
    let hosts: Vec<_> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| h.in_group(Group::KubeMaster) || h.in_group(Group::KubeWorker))
        .collect();
    let available = if prefix > NODE_CIDR_PREFIX {
        0
    } else {
        1u64 << (NODE_CIDR_PREFIX - prefix)
    };
    if hosts.len() as u64 > available {
        return Err(RoleError::Inventory(format!(
            "cluster.pod_network {network} holds {available} /{NODE_CIDR_PREFIX} node networks, the scenario has {} Kubernetes nodes",
            hosts.len()
        )));
    }
    Ok(hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let net = Ipv4Addr::from(u32::from(base) + ((i as u32) << (32 - NODE_CIDR_PREFIX)));
            NodeNet {
                name: h.name.clone(),
                address: h.address,
                pod_cidr: format!("{net}/{NODE_CIDR_PREFIX}"),
                master: h.in_group(Group::KubeMaster),
            }
        })
        .collect())
}

/// The first master among `nodes`: it serves the API to every node and holds the objects
/// kubeforge keeps in it.
pub fn first_master(nodes: &[NodeNet]) -> Result<&NodeNet, RoleError> {
    nodes
        .iter()
        .find(|n| n.master)
        .ok_or_else(|| RoleError::Inventory("no host in group 'kube-master'".into()))
}

#[derive(Serialize)]
struct NetworkTemplate<'a> {
    node: &'a NodeNet,
    peers: Vec<&'a NodeNet>,
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let all = nodes(ctx)?;
    let mut hosts = Vec::new();
    for node in &all {
        if ctx.scenario.cluster.network == PodNetwork::FlannelCalico {
            hosts.push((node.name.clone(), flannel_calico::node_tasks(ctx, node)?));
            continue;
        }
        let t = NetworkTemplate {
            node,
            peers: all.iter().filter(|n| n.name != node.name).collect(),
        };
        let mut plugins = Vec::new();
        for name in PLUGINS {
            plugins.push(cni_plugin(ctx, name)?);
        }
        let tasks = vec![
            Task {
                name: "CNI plugins".into(),
                role: "network",
                resources: plugins,
            },
            Task {
                name: "CNI bridge network".into(),
                role: "network",
                resources: cni_config(ctx, CONFLIST_PATH, "cni/10-kubeforge.conflist", &t)?,
            },
            Task {
                name: "routes to other nodes' pods".into(),
                role: "network",
                resources: vec![
                    ctx.template(
                        ROUTES_UNIT_PATH,
                        "cni/kubeforge-pod-routes.service",
                        &t,
                        0o644,
                    )?,
                    Resource::Service {
                        unit: ROUTES_UNIT.into(),
                        restart_on: vec![ROUTES_UNIT_PATH.into()],
                        ready: None,
                    },
                ],
            },
        ];
        hosts.push((node.name.clone(), tasks));
    }
    Ok(vec![phase("pod network", hosts)])
}

/// The node's one CNI network configuration, in the directory containerd reads.
pub(super) fn cni_config(
    ctx: &InstallContext,
    path: &str,
    template: &str,
    context: &impl Serialize,
) -> Result<Vec<Resource>, RoleError> {
    Ok(vec![
        directory("/etc/cni", 0o755),
        directory("/etc/cni/net.d", 0o755),
        ctx.template(path, template, context, 0o644)?,
    ])
}

pub(super) fn cni_plugin(ctx: &InstallContext, name: &str) -> Result<Resource, RoleError> {
    let (local, artifact) = ctx.bundle.get(name)?;
    Ok(Resource::Upload {
        path: format!("{CNI_BIN_DIR}/{name}"),
        local,
        sha256: artifact.sha256.clone(),
        perms: crate::engine::Perms::root(0o755),
    })
}
