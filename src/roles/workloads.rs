//! The scenario's own workloads (`workloads:` in the scenario file): manifests written to
//! the first master and their objects kept in the API exactly like the installer's own
//! (check mode shows their diff, idempotence covers them, removed fields are removed).
//! A bare Pod waits for its namespace's default ServiceAccount, which the
//! controller-manager makes shortly after the API is up: without it the API refuses pods.

use std::collections::BTreeSet;
use std::time::Duration;

use super::builders::{directory, manifest_file, task};
use super::{InstallContext, RoleError, phase};
use crate::cluster::commands::kubectl;
use crate::engine::{ApiObject, Phase, Resource, Until};

const ROLE: &str = "workloads";
/// Where the workload manifests are kept on the first master.
const WORKLOADS_DIR: &str = "/etc/kubernetes/workloads";
/// How long a namespace's default ServiceAccount may take to appear.
const SERVICE_ACCOUNT_WAIT: Duration = Duration::from_secs(60);

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    if ctx.workloads.is_empty() {
        return Ok(Vec::new());
    }
    let master = ctx
        .cluster
        .first_master()
        .expect("a cluster with nodes has a master");
    let mut resources = vec![directory(WORKLOADS_DIR, 0o755)];
    for w in ctx.workloads {
        let name = w.path.display().to_string().replace('/', "-");
        let (file, objects) = manifest_file(
            &format!("{WORKLOADS_DIR}/{name}"),
            &format!("workload {}", w.path.display()),
            w.text.clone(),
        )?;
        resources.push(file);
        resources.extend(objects);
    }
    let resources =
        with_service_account_waits(resources, ctx.cluster.timeouts.of(SERVICE_ACCOUNT_WAIT));
    Ok(vec![phase(
        "workloads",
        vec![(
            master.name.clone(),
            vec![task(ROLE, "workloads", resources)],
        )],
    )?])
}

/// `resources` with a wait for the default ServiceAccount before the first Pod of each
/// namespace (after the objects before it, so a Namespace the workload creates comes first).
fn with_service_account_waits(resources: Vec<Resource>, timeout: Duration) -> Vec<Resource> {
    let mut waited = BTreeSet::new();
    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        if let Resource::ApiObject { object, .. } = &r
            && object.kind() == "Pod"
        {
            let ns = object.namespace().unwrap_or("default").to_string();
            if waited.insert(ns.clone()) {
                out.push(Resource::Wait {
                    name: format!("ServiceAccount {ns}/default"),
                    until: Until::Exists {
                        kubectl: kubectl(),
                        object: ApiObject::named("v1", "ServiceAccount", Some(&ns), "default"),
                    },
                    timeout,
                    failure: format!(
                        "no ServiceAccount {ns}/default: the API refuses pods in {ns} until the controller-manager makes it"
                    ),
                });
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::engine::Resource;
    use crate::roles::test_support::{bundle, with_context};

    #[test]
    fn the_first_pod_of_a_namespace_waits_for_its_service_account() {
        let labels = with_context("scenarios/default/scenario.yml", &bundle(&[]), |ctx| {
            let phases = super::phases(ctx).unwrap();
            phases[0].hosts[0].tasks[0]
                .resources
                .iter()
                .map(Resource::label)
                .collect::<Vec<_>>()
        });
        let at = |label: &str| labels.iter().position(|l| l == label).unwrap();
        let wait = at("wait ServiceAccount default/default");
        assert_eq!(labels.iter().filter(|l| l.starts_with("wait ")).count(), 1);
        assert!(at("object Service default/kubeforge-guestbook-frontend") < wait);
        assert_eq!(
            wait + 1,
            at("object Pod default/kubeforge-guestbook-redis-leader")
        );
    }
}
