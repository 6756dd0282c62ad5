//! The static pods the kubelet runs from its manifests directory: kube-proxy on every node,
//! kube-apiserver, kube-controller-manager and kube-scheduler on masters. Each manifest
//! carries a digest of the tasks whose files the component reads and of the image it runs
//! (a rebuilt image keeps its tag), so the kubelet recreates the pod when one changes.

use serde_json::{Value, json};

use super::ROLE;
use super::credentials::{
    APISERVER, CLUSTER_CA, CONTROLLER_MANAGER, KUBE_PROXY, KUBE_PROXY_KUBECONFIG, SCHEDULER,
    SERVICE_ACCOUNT, component_kubeconfig,
};
use crate::cluster::commands::ctr;
use crate::cluster::images::HAPROXY;
use crate::cluster::paths::{LB_DIR, MANIFESTS_DIR};
use crate::cluster::{ETCD_UNIT, LoadBalancer, Node};
use crate::engine::{Resource, Task};
use crate::files::sha256_hex;
use crate::roles::builders::{directory, inputs_digest, task};
use crate::roles::{InstallContext, RoleError};

/// A control-plane component: its manifest template, its kubeconfig (if it has one) and
/// the tasks holding what it reads.
struct Component {
    name: &'static str,
    image: String,
    kubeconfig: Option<String>,
    inputs: &'static [&'static str],
}

/// The task holding the load balancer's configuration (its static pod's input).
const LOAD_BALANCER: &str = "API load balancer";

/// With several masters: HAProxy's configuration on every node, in front of every API
/// server; its static pod comes with the others.
pub(super) fn load_balancer(
    ctx: &InstallContext,
    lb: &LoadBalancer,
    base: &Value,
) -> Result<Task, RoleError> {
    let mut t = base.clone();
    t["lb"] = json!(lb);
    Ok(task(
        ROLE,
        LOAD_BALANCER,
        vec![
            directory(LB_DIR, 0o755),
            ctx.template(
                &format!("{LB_DIR}/haproxy.cfg"),
                "kubernetes/haproxy.cfg",
                &t,
                0o644,
            )?,
        ],
    ))
}

pub(super) fn static_pods(
    ctx: &InstallContext,
    node: &Node,
    base: &Value,
    earlier: &[Task],
) -> Result<Task, RoleError> {
    let image = |name: &str| ctx.cluster.component_image(name);
    let mut components = vec![Component {
        name: "kube-proxy",
        image: image("kube-proxy"),
        kubeconfig: Some(KUBE_PROXY_KUBECONFIG.into()),
        inputs: &[CLUSTER_CA, KUBE_PROXY],
    }];
    if ctx.cluster.api().load_balancer.is_some() {
        components.push(Component {
            name: "kube-lb",
            image: HAPROXY.into(),
            kubeconfig: None,
            inputs: &[LOAD_BALANCER],
        });
    }
    if node.master {
        components.extend([
            Component {
                name: "kube-apiserver",
                image: image("kube-apiserver"),
                kubeconfig: None,
                inputs: &[CLUSTER_CA, APISERVER, SERVICE_ACCOUNT],
            },
            Component {
                name: "kube-controller-manager",
                image: image("kube-controller-manager"),
                kubeconfig: Some(component_kubeconfig("controller-manager")),
                inputs: &[CLUSTER_CA, CONTROLLER_MANAGER, SERVICE_ACCOUNT],
            },
            Component {
                name: "kube-scheduler",
                image: image("kube-scheduler"),
                kubeconfig: Some(component_kubeconfig("scheduler")),
                inputs: &[CLUSTER_CA, SCHEDULER],
            },
        ]);
    }
    let mut pods = vec![directory(MANIFESTS_DIR, 0o755)];
    for c in components {
        let (_, artifact) = ctx.bundle.get(&format!("image:{}", c.image))?;
        let inputs = format!("{}{}", inputs_digest(earlier, c.inputs)?, artifact.sha256);
        pods.push(manifest(ctx, base, &c, sha256_hex(inputs.as_bytes()))?);
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

#[cfg(test)]
mod tests {
    use crate::artifacts::Bundle;
    use crate::engine::Resource;
    use crate::roles::test_support::{bundle, with_context};
    use crate::roles::{InstallContext, Scope, plan};

    const APISERVER: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
    const SCHEDULER: &str = "/etc/kubernetes/manifests/kube-scheduler.yaml";

    /// The bundle the kubernetes role needs, the kube-apiserver image's sha256 made of `c`.
    fn images(c: &str) -> Bundle {
        let names: Vec<String> = [
            "kubelet",
            "kubectl",
            "image:kubeforge.local/kube-proxy:v1.20.2",
            "image:kubeforge.local/kube-apiserver:v1.20.2",
            "image:kubeforge.local/kube-controller-manager:v1.20.2",
            "image:kubeforge.local/kube-scheduler:v1.20.2",
            "image:kubeforge.local/redis:7",
            "image:kubeforge.local/guestbook-frontend:v1",
        ]
        .map(String::from)
        .to_vec();
        let mut b = bundle(&names);
        for a in b
            .artifacts
            .iter_mut()
            .filter(|a| a.name.contains("kube-apiserver"))
        {
            a.sha256 = c.repeat(64);
        }
        b
    }

    /// The contents of the static pod manifests the plan writes, in order.
    fn manifests(ctx: &InstallContext) -> Vec<(String, Vec<u8>)> {
        plan(
            ctx,
            &Scope {
                tags: vec!["kubernetes".into()],
                ..Scope::default()
            },
        )
        .unwrap()
        .phases
        .iter()
        .flat_map(|ph| &ph.hosts)
        .flat_map(|h| &h.tasks)
        .flat_map(|t| &t.resources)
        .filter_map(|r| match r {
            Resource::File { path, content, .. }
                if [APISERVER, SCHEDULER].contains(&path.as_str()) =>
            {
                Some((path.clone(), content.clone()))
            }
            _ => None,
        })
        .collect()
    }

    /// A rebuilt image under the same tag recreates only the pod that runs it.
    #[test]
    fn a_static_pod_follows_its_image() {
        let (one, two) = (images("1"), images("2"));
        let (before, after) = with_context("scenarios/default/scenario.yml", &one, |ctx| {
            let rebuilt = InstallContext {
                bundle: &two,
                cluster: ctx.cluster,
                workloads: ctx.workloads,
                prune_objects: ctx.prune_objects,
                pki: ctx.pki,
                templates: ctx.templates,
            };
            (manifests(ctx), manifests(&rebuilt))
        });
        let changed: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, _)| b.0.as_str())
            .collect();
        assert_eq!(changed, [APISERVER]);
    }
}
