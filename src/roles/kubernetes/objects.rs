//! The API: a readiness wait on every master until its apiserver answers /healthz (a
//! kubelet's readiness says nothing about the static pods it starts), then the objects
//! kubeforge keeps in the API (RBAC bindings), created or updated through the first master.

use std::time::Duration;

use serde_json::json;

use super::ROLE;
use crate::cluster::commands::kubectl;
use crate::cluster::paths::API_MANIFESTS_DIR;
use crate::engine::{Resource, Task};
use crate::roles::builders::{directory, task};
use crate::roles::{InstallContext, RoleError};

/// How long the wait gives the apiserver to answer.
const API_WAIT: Duration = Duration::from_secs(180);

/// On every master: wait until its apiserver is healthy. Check mode of a healthy cluster
/// plans nothing here.
pub(super) fn api_wait(ctx: &InstallContext) -> Vec<(String, Vec<Task>)> {
    let health = format!("{} get --raw /healthz", kubectl());
    ctx.cluster
        .masters()
        .map(|m| {
            (
                m.name.clone(),
                vec![task(
                    ROLE,
                    "wait for kube-apiserver",
                    vec![Resource::Wait {
                        name: "kube-apiserver /healthz".into(),
                        until: health.clone(),
                        timeout: ctx.cluster.timeouts.of(API_WAIT),
                        failure: format!("kube-apiserver on {} not healthy", m.name),
                    }],
                )],
            )
        })
        .collect()
}

/// The cluster objects, rendered to the first master and applied through its kubectl.
pub(super) fn cluster_objects(ctx: &InstallContext) -> Result<Vec<(String, Vec<Task>)>, RoleError> {
    let first = ctx
        .cluster
        .first_master()
        .expect("a cluster with nodes has a master");
    let (file, objects) = ctx.manifest_objects(
        &format!("{API_MANIFESTS_DIR}/cluster-objects.yaml"),
        "kubernetes/cluster-objects.yaml",
        &json!({ "cluster": ctx.cluster.settings }),
    )?;
    let resources = [directory(API_MANIFESTS_DIR, 0o755), file]
        .into_iter()
        .chain(objects)
        .collect();
    Ok(vec![(
        first.name.clone(),
        vec![task(ROLE, "cluster objects", resources)],
    )])
}
