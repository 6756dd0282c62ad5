//! The API: a readiness wait on every master until its apiserver answers /healthz (a
//! kubelet's readiness says nothing about the static pods it starts), then the objects
//! kubeforge keeps in the API (RBAC bindings), created or updated through the first master.

use std::time::Duration;

use serde_json::json;

use super::ROLE;
use crate::cluster::commands::{all_led, kubectl, leaders};
use crate::cluster::paths::API_MANIFESTS_DIR;
use crate::engine::{Resource, Task, Until};
use crate::roles::builders::{directory, task};
use crate::roles::{InstallContext, RoleError};
use crate::ssh::shell_quote;

/// How long the wait gives the apiserver to answer.
const API_WAIT: Duration = Duration::from_secs(180);
/// How long controller-manager and scheduler get to lead: past the kubelet's longest
/// restart back-off (300 s).
const LEADERS_WAIT: Duration = Duration::from_secs(360);

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
                        until: Until::Command(health.clone()),
                        timeout: ctx.cluster.timeouts.of(API_WAIT),
                        failure: format!("kube-apiserver on {} not healthy", m.name),
                    }],
                )],
            )
        })
        .collect()
}

/// On the first master: wait until controller-manager and scheduler each have a leader
/// renewing its lease. Their static pods start after the API answers, and on Kubernetes
/// before 1.22 a changed manifest can start the new pod while the old one still holds its
/// port, leaving the component in a restart back-off for minutes: converge is not done
/// while it is, and check mode of a cluster in that state plans this wait.
pub(super) fn leaders_wait(ctx: &InstallContext) -> Vec<(String, Vec<Task>)> {
    let masters: Vec<&str> = ctx.cluster.masters().map(|m| m.name.as_str()).collect();
    let first = ctx
        .cluster
        .first_master()
        .expect("a cluster with nodes has a master");
    let until = format!(
        "[ \"$({})\" = {} ]",
        leaders(&masters),
        shell_quote(&all_led())
    );
    vec![(
        first.name.clone(),
        vec![task(
            ROLE,
            "wait for leaders",
            vec![Resource::Wait {
                name: "controller-manager and scheduler leaders".into(),
                until: Until::Command(until),
                timeout: ctx.cluster.timeouts.of(LEADERS_WAIT),
                failure: "controller-manager or scheduler has no leader renewing its lease".into(),
            }],
        )],
    )]
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
