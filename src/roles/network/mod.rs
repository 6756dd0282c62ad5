//! The pod network: how pods on different nodes reach each other. `bridge` (the default)
//! routes each node's pod CIDR through that node's address; `flannel-calico` is the seeds'
//! network, rendered and pinned here but not runnable offline.

mod bridge;
mod flannel_calico;

use super::{InstallContext, NotExercised, RoleError, phase};
use crate::engine::Phase;
use crate::scenario::PodNetwork;

const ROLE: &str = "network";

/// The network's phase, and the network this run leaves out.
pub struct NetworkPlan {
    pub phases: Vec<Phase>,
    pub not_exercised: Vec<NotExercised>,
}

pub fn plan(ctx: &InstallContext) -> Result<NetworkPlan, RoleError> {
    let mut hosts = Vec::new();
    for node in &ctx.cluster.nodes {
        let tasks = match ctx.cluster.settings.network {
            PodNetwork::Bridge => bridge::node_tasks(ctx, node)?,
            PodNetwork::FlannelCalico => flannel_calico::node_tasks(ctx, node)?,
        };
        hosts.push((node.name.clone(), tasks));
    }
    let not_exercised = match ctx.cluster.settings.network {
        PodNetwork::Bridge => vec![flannel_calico::not_exercised()],
        PodNetwork::FlannelCalico => Vec::new(),
    };
    Ok(NetworkPlan {
        phases: vec![phase("pod network", hosts)?],
        not_exercised,
    })
}
