//! The seeds' add-ons: cluster DNS (CoreDNS) and the dashboard.
//!
//! Their manifests are always rendered to the first master (pinned by snapshots, ready for a
//! user to apply); their objects are applied, and their images imported on the workers, only
//! when the bundle carries every image they run. Otherwise the plan says the add-on was
//! skipped and why: no container registry is reachable here to pull them from.

use serde::Serialize;
use serde_json::json;

use super::kubernetes::{API_MANIFESTS_DIR, api_object, minor_version};
use super::network::{first_master, nodes};
use super::{InstallContext, NotExercised, RoleError, directory, manifest_objects, phase, runtime};
use crate::engine::{Phase, Task};

/// Upstream image references (what a cluster with registry access pulls), by release line.
#[derive(Debug, Serialize)]
struct AddonImages {
    dns: &'static str,
    dashboard: &'static str,
    metrics_scraper: &'static str,
}

fn images(k8s_minor: u32) -> AddonImages {
    if k8s_minor >= 30 {
        AddonImages {
            dns: "registry.k8s.io/coredns/coredns:v1.11.3",
            dashboard: "docker.io/kubernetesui/dashboard:v2.7.0",
            metrics_scraper: "docker.io/kubernetesui/metrics-scraper:v1.0.8",
        }
    } else {
        AddonImages {
            dns: "k8s.gcr.io/coredns:1.7.0",
            dashboard: "docker.io/kubernetesui/dashboard:v2.1.0",
            metrics_scraper: "docker.io/kubernetesui/metrics-scraper:v1.0.6",
        }
    }
}

/// The add-ons' phase (possibly empty of objects) and the add-ons left out.
pub struct AddonsPlan {
    pub phases: Vec<Phase>,
    pub not_exercised: Vec<NotExercised>,
}

pub fn plan(ctx: &InstallContext) -> Result<AddonsPlan, RoleError> {
    let cluster = &ctx.scenario.cluster;
    let images = images(minor_version(&cluster.kubernetes_version)?);
    let all = nodes(ctx)?;
    let master = first_master(&all)?;
    let workers: Vec<_> = all.iter().filter(|n| !n.master).collect();
    let context = json!({ "cluster": cluster, "images": images });

    let mut master_resources = vec![directory(API_MANIFESTS_DIR, 0o755)];
    let mut worker_images = Vec::new();
    let mut not_exercised = Vec::new();
    for (addon, refs) in [
        ("dns", vec![images.dns]),
        ("dashboard", vec![images.dashboard, images.metrics_scraper]),
    ] {
        let path = format!("{API_MANIFESTS_DIR}/{addon}.yaml");
        let (file, objects) =
            manifest_objects(ctx, &path, &format!("addons/{addon}.yaml"), &context)?;
        master_resources.push(file);
        let missing: Vec<&str> = refs
            .iter()
            .copied()
            .filter(|r| ctx.bundle.get(&format!("image:{r}")).is_err())
            .collect();
        if missing.is_empty() {
            master_resources.extend(objects.into_iter().map(api_object));
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
        for worker in &workers {
            let mut resources = Vec::new();
            for r in &worker_images {
                resources.extend(runtime::image(ctx, r)?);
            }
            image_hosts.push((
                worker.name.clone(),
                vec![Task {
                    name: "add-on images".into(),
                    role: "addons",
                    resources,
                }],
            ));
        }
    }
    let objects = vec![(
        master.name.clone(),
        vec![Task {
            name: "add-ons".into(),
            role: "addons",
            resources: master_resources,
        }],
    )];
    Ok(AddonsPlan {
        phases: vec![
            phase("add-on images", image_hosts),
            phase("add-ons", objects),
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
