//! The seeds' add-ons: cluster DNS (CoreDNS) and the dashboard.
//!
//! Their manifests are always rendered to the first master (pinned by snapshots, ready for a
//! user to apply); their objects are applied, and their images imported on the workers, only
//! when the bundle carries every image they run. Otherwise the plan says the add-on was
//! skipped and why: no container registry is reachable here to pull them from.

use serde_json::json;

use super::builders::{directory, task};
use super::{InstallContext, NotExercised, RoleError, phase};
use crate::cluster::images::addons;
use crate::cluster::paths::API_MANIFESTS_DIR;
use crate::engine::Phase;

const ROLE: &str = "addons";

/// The add-ons' phase (possibly empty of objects) and the add-ons left out.
pub struct AddonsPlan {
    pub phases: Vec<Phase>,
    pub not_exercised: Vec<NotExercised>,
}

pub fn plan(ctx: &InstallContext) -> Result<AddonsPlan, RoleError> {
    let cluster = ctx.cluster;
    let images = addons(cluster.k8s_minor);
    let master = cluster
        .first_master()
        .expect("a cluster with nodes has a master");
    let context = json!({ "cluster": cluster.settings, "images": images });

    let mut master_resources = vec![directory(API_MANIFESTS_DIR, 0o755)];
    let mut worker_images = Vec::new();
    let mut not_exercised = Vec::new();
    for (addon, refs) in [
        ("dns", vec![images.dns]),
        ("dashboard", vec![images.dashboard, images.metrics_scraper]),
    ] {
        let path = format!("{API_MANIFESTS_DIR}/{addon}.yaml");
        let (file, objects) =
            ctx.manifest_objects(&path, &format!("addons/{addon}.yaml"), &context)?;
        master_resources.push(file);
        let missing: Vec<&str> = refs
            .iter()
            .copied()
            .filter(|r| ctx.bundle.get(&format!("image:{r}")).is_err())
            .collect();
        if missing.is_empty() {
            master_resources.extend(objects);
            worker_images.extend(refs);
        } else {
            not_exercised.push(NotExercised {
                what: format!("add-on {addon}"),
                reason: format!(
                    "skipped: image {} not in the artifact bundle (no container registry is reachable); its manifest is {path} on {}",
                    missing.join(", "),
                    master.name
                ),
            });
        }
    }

    let mut image_hosts = Vec::new();
    if !worker_images.is_empty() {
        for worker in cluster.workers() {
            let mut resources = Vec::new();
            for r in &worker_images {
                resources.push(ctx.image(r)?);
            }
            image_hosts.push((
                worker.name.clone(),
                vec![task(ROLE, "add-on images", resources)],
            ));
        }
    }
    let objects = vec![(
        master.name.clone(),
        vec![task(ROLE, "add-ons", master_resources)],
    )];
    Ok(AddonsPlan {
        phases: vec![
            phase("add-on images", image_hosts)?,
            phase("add-ons", objects)?,
        ],
        not_exercised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Resource;
    use crate::roles::test_support::{bundle, with_context};

    fn run(extra_images: &[&str]) -> AddonsPlan {
        let names: Vec<String> = extra_images.iter().map(|i| format!("image:{i}")).collect();
        with_context("scenarios/default/scenario.yml", &bundle(&names), |ctx| {
            plan(ctx).unwrap()
        })
    }

    fn objects(p: &AddonsPlan) -> Vec<String> {
        p.phases
            .iter()
            .flat_map(|ph| &ph.hosts)
            .flat_map(|h| &h.tasks)
            .flat_map(|t| &t.resources)
            .filter(|r| matches!(r, Resource::ApiObject { .. }))
            .map(Resource::label)
            .collect()
    }

    #[test]
    fn without_images_addons_are_rendered_and_reported_skipped() {
        let p = run(&[]);
        assert!(objects(&p).is_empty());
        let what: Vec<&str> = p.not_exercised.iter().map(|n| n.what.as_str()).collect();
        assert_eq!(what, ["add-on dns", "add-on dashboard"]);
        assert!(
            p.not_exercised[0]
                .reason
                .contains("image k8s.gcr.io/coredns:1.7.0 not in the artifact bundle"),
            "{:?}",
            p.not_exercised[0]
        );
        let files: Vec<&str> = p
            .phases
            .iter()
            .flat_map(|ph| &ph.hosts)
            .flat_map(|h| &h.tasks)
            .flat_map(|t| &t.resources)
            .filter_map(Resource::path)
            .collect();
        assert!(
            files.contains(&"/etc/kubernetes/addons/dns.yaml"),
            "{files:?}"
        );
        assert!(files.contains(&"/etc/kubernetes/addons/dashboard.yaml"));
    }

    #[test]
    fn an_addon_whose_images_are_bundled_is_applied_and_imported_on_workers() {
        let p = run(&["k8s.gcr.io/coredns:1.7.0"]);
        let objs = objects(&p);
        assert!(
            objs.contains(&"object Service kube-system/kube-dns".to_string()),
            "{objs:?}"
        );
        assert!(objs.contains(&"object Deployment kube-system/coredns".to_string()));
        assert!(!objs.iter().any(|o| o.contains("kubernetes-dashboard")));
        let importers: Vec<&str> = p.phases[0].hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(importers, ["kube-worker-01", "kube-worker-02"]);
        let what: Vec<&str> = p.not_exercised.iter().map(|n| n.what.as_str()).collect();
        assert_eq!(what, ["add-on dashboard"]);
    }
}
