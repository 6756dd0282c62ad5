//! The default pod network, `bridge`, has no overlay: each Kubernetes node gets a pod CIDR
//! (by host order), a CNI bridge + host-local config for it, and routes to every other
//! node's pod CIDR via that node's address, kept across reboots by a oneshot unit. Pods
//! reach each other across nodes with their own addresses (no NAT), like flannel's host-gw
//! backend in the seeds.

use serde::Serialize;

use super::ROLE;
use crate::cluster::Node;
use crate::cluster::paths::unit_file;
use crate::engine::{Hop, Resource, Task};
use crate::roles::builders::{service, task};
use crate::roles::{InstallContext, RoleError};

const ROUTES_UNIT: &str = "kubeforge-pod-routes.service";
/// CNI plugins the conflist uses; containerd itself calls `loopback`.
const PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];
const ROUTES: &str = "routes to other nodes' pods";

#[derive(Serialize)]
struct NetworkTemplate<'a> {
    node: &'a Node,
    peers: Vec<&'a Node>,
}

pub(super) fn node_tasks(ctx: &InstallContext, node: &Node) -> Result<Vec<Task>, RoleError> {
    let t = NetworkTemplate {
        node,
        peers: ctx
            .cluster
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .collect(),
    };
    let mut plugins = Vec::new();
    for name in PLUGINS {
        plugins.push(ctx.cni_plugin(name)?);
    }
    // The unit keeps the routes across reboots; the routes themselves are what converge
    // compares, so a deleted route is found and put back.
    let mut routes = vec![
        ctx.template(
            &unit_file(ROUTES_UNIT),
            "cni/kubeforge-pod-routes.service",
            &t,
            0o644,
        )?,
        service(ROUTES_UNIT, &[ROUTES], None),
    ];
    routes.extend(t.peers.iter().map(|peer| Resource::Route {
        destination: peer.pod_cidr.to_string(),
        via: Hop::Gateway(peer.address),
    }));
    Ok(vec![
        task(ROLE, "CNI plugins", plugins),
        task(
            ROLE,
            "CNI bridge network",
            ctx.cni_config("10-kubeforge.conflist", "cni/10-kubeforge.conflist", &t)?,
        ),
        task(ROLE, ROUTES, routes),
    ])
}
