//! The static pods the kubelet runs from its manifests directory: kube-proxy on every node,
//! kube-apiserver, kube-controller-manager and kube-scheduler on masters. Each manifest
//! carries a digest of the tasks whose files the component reads, so the kubelet recreates
//! the pod when one of them changes.

use serde_json::{Value, json};

use super::ROLE;
use super::credentials::{
    APISERVER, CLUSTER_CA, CONTROLLER_MANAGER, KUBE_PROXY, KUBE_PROXY_KUBECONFIG, SCHEDULER,
    SERVICE_ACCOUNT, component_kubeconfig,
};
use crate::cluster::commands::ctr;
use crate::cluster::paths::MANIFESTS_DIR;
use crate::cluster::{ETCD_UNIT, Node};
use crate::engine::{Resource, Task};
use crate::roles::builders::{directory, inputs_digest, task};
use crate::roles::{InstallContext, RoleError};

/// A control-plane component: its manifest template, its kubeconfig (if it has one) and
/// the tasks holding what it reads.
struct Component {
    name: &'static str,
    kubeconfig: Option<String>,
    inputs: &'static [&'static str],
}

pub(super) fn static_pods(
    ctx: &InstallContext,
    node: &Node,
    base: &Value,
    earlier: &[Task],
) -> Result<Task, RoleError> {
    let mut components = vec![Component {
        name: "kube-proxy",
        kubeconfig: Some(KUBE_PROXY_KUBECONFIG.into()),
        inputs: &[CLUSTER_CA, KUBE_PROXY],
    }];
    if node.master {
        components.extend([
            Component {
                name: "kube-apiserver",
                kubeconfig: None,
                inputs: &[CLUSTER_CA, APISERVER, SERVICE_ACCOUNT],
            },
            Component {
                name: "kube-controller-manager",
                kubeconfig: Some(component_kubeconfig("controller-manager")),
                inputs: &[CLUSTER_CA, CONTROLLER_MANAGER, SERVICE_ACCOUNT],
            },
            Component {
                name: "kube-scheduler",
                kubeconfig: Some(component_kubeconfig("scheduler")),
                inputs: &[CLUSTER_CA, SCHEDULER],
            },
        ]);
    }
    let mut pods = vec![directory(MANIFESTS_DIR, 0o755)];
    for c in components {
        pods.push(manifest(ctx, base, &c, inputs_digest(earlier, c.inputs)?)?);
    }
    if node.master {
        pods.push(apiserver_restart_after_etcd());
    }
    Ok(task(ROLE, "static pods", pods))
}

/// kube-apiserver is restarted when etcd (re)starts in the same run: an etcd restart can
/// make the apiserver drop every watch of its cache, and clients such as kube-proxy then
/// miss every later change until their watch times out (minutes). A restarted apiserver
/// closes their connections, so they list again. The kubelet restarts the killed
/// container; the next phase waits for /healthz.
fn apiserver_restart_after_etcd() -> Resource {
    let c = ctr();
    Resource::Handler {
        name: "restart kube-apiserver".into(),
        command: format!(
            "for id in $({c} containers ls -q 'labels.\"io.kubernetes.container.name\"==kube-apiserver'); do {c} tasks kill --signal SIGTERM \"$id\" 2>/dev/null || true; done"
        ),
        after_units: vec![ETCD_UNIT.to_string()],
    }
}

/// A static pod manifest rendered from `kubernetes/manifests/<component>.yaml`.
fn manifest(
    ctx: &InstallContext,
    base: &Value,
    component: &Component,
    inputs: String,
) -> Result<Resource, RoleError> {
    let mut t = base.clone();
    t["inputs_sha256"] = json!(inputs);
    if let Some(k) = &component.kubeconfig {
        t["kubeconfig"] = json!(k);
    }
    ctx.template(
        &format!("{MANIFESTS_DIR}/{}.yaml", component.name),
        &format!("kubernetes/manifests/{}.yaml", component.name),
        &t,
        0o644,
    )
}
