//! Kubernetes itself: a kubelet (systemd unit) on every node; on `kube-master` hosts the
//! control plane as static pods the kubelet runs from its manifests directory
//! (kube-apiserver, kube-controller-manager, kube-scheduler), kube-proxy as a static pod on
//! every node. TLS everywhere from kubeforge's PKI, RBAC + Node authorization, no anonymous
//! access to the apiserver or the kubelets. Masters register tainted NoSchedule.
//!
//! - [`credentials`]: certificates and kubeconfigs of every component;
//! - [`node`]: binaries, images and the kubelet;
//! - [`control_plane`]: the static pods;
//! - [`objects`]: waiting for the API, and the objects kubeforge keeps in it.

mod control_plane;
mod credentials;
mod node;
mod objects;

use serde_json::{Value, json};

use super::{InstallContext, RoleError, phase};
use crate::cluster::Node;
use crate::cluster::images::{HAPROXY, PAUSE};
use crate::cluster::paths::{
    BIN_DIR, CONTAINERD_SOCKET, IMAGE_BIN_DIR, K8S_SSL_DIR, LB_DIR, MANIFESTS_DIR,
};
use crate::engine::Phase;

const ROLE: &str = "kubernetes";

/// The admin kubeconfig for the control machine (`kubeforge kubectl`): the masters' own,
/// pointed at where the control machine reaches the API.
pub fn control_kubeconfig(ctx: &InstallContext) -> Result<String, RoleError> {
    credentials::admin_kubeconfig(ctx, &ctx.cluster.api().control_url)
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let mut hosts = Vec::new();
    for node in &ctx.cluster.nodes {
        let base = template_context(ctx, node);
        let mut tasks = node::binaries_and_images(ctx, node)?;
        tasks.extend(credentials::tasks(ctx, node)?);
        if let Some(lb) = &ctx.cluster.api().load_balancer {
            tasks.push(control_plane::load_balancer(ctx, lb, &base)?);
        }
        tasks.push(control_plane::static_pods(ctx, node, &base, &tasks)?);
        tasks.push(node::kubelet(ctx, &base)?);
        hosts.push((node.name.clone(), tasks));
    }
    Ok(vec![
        phase("kubernetes nodes", hosts)?,
        phase("kubernetes API", objects::api_wait(ctx))?,
        phase("kubernetes objects", objects::cluster_objects(ctx)?)?,
        phase("control plane leaders", objects::leaders_wait(ctx))?,
    ])
}

/// What the node's templates (kubelet, static pods) read.
fn template_context(ctx: &InstallContext, node: &Node) -> Value {
    let cluster = ctx.cluster;
    json!({
        "node": node,
        "k8s_minor": cluster.k8s_minor,
        "cluster": cluster.settings,
        "ssl_dir": K8S_SSL_DIR,
        "manifests_dir": MANIFESTS_DIR,
        "bin_dir": BIN_DIR,
        "image_bin_dir": IMAGE_BIN_DIR,
        "containerd_socket": CONTAINERD_SOCKET,
        "images": {
            "apiserver": cluster.component_image("kube-apiserver"),
            "controller_manager": cluster.component_image("kube-controller-manager"),
            "scheduler": cluster.component_image("kube-scheduler"),
            "proxy": cluster.component_image("kube-proxy"),
            "pause": PAUSE,
            "lb": HAPROXY,
        },
        "etcd_servers": cluster.etcd_endpoints,
        "leader_election": cluster.leader_election(),
        "node_status_update_seconds": cluster.node_status_update_seconds(),
        "lb": cluster.api().load_balancer,
        "lb_dir": LB_DIR,
    })
}
