//! What every Kubernetes node runs outside containers: the kubelet (and kubectl on masters)
//! from the bundle, the component images the node's pods use, and the kubelet service.

use std::time::Duration;

use serde_json::Value;

use super::ROLE;
use super::credentials::{CLUSTER_CA, KUBELET};
use crate::cluster::Node;
use crate::cluster::commands::KUBELET_HEALTHY;
use crate::cluster::images::{GUESTBOOK_FRONTEND, HAPROXY, REDIS};
use crate::cluster::paths::{BIN_DIR, KUBELET_DIR, unit_file};
use crate::engine::{ReadyCheck, Task};
use crate::roles::builders::{directory, service, task};
use crate::roles::{InstallContext, RoleError};

const KUBELET_UNIT: &str = "kubelet.service";
const KUBELET_CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
const KUBELET_BINARY: &str = "kubelet binary";
const KUBELET_TASK: &str = "kubelet";

/// The kubelet (and, on masters, kubectl) and the images of the node's pods: the control
/// plane's on masters, kube-proxy everywhere, the guestbook's on workers (where its pods run).
pub(super) fn binaries_and_images(
    ctx: &InstallContext,
    node: &Node,
) -> Result<Vec<Task>, RoleError> {
    let cluster = ctx.cluster;
    let mut images = vec![cluster.component_image("kube-proxy")];
    let mut tasks = vec![task(
        ROLE,
        KUBELET_BINARY,
        vec![directory(BIN_DIR, 0o755), ctx.binary("kubelet")?],
    )];
    if node.master {
        tasks.push(task(ROLE, "kubectl", vec![ctx.binary("kubectl")?]));
        images.extend(
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ]
            .map(|c| cluster.component_image(c)),
        );
    } else {
        images.extend([REDIS.to_string(), GUESTBOOK_FRONTEND.to_string()]);
    }
    if cluster.api().load_balancer.is_some() {
        images.push(HAPROXY.to_string());
    }
    let mut resources = Vec::new();
    for r in &images {
        resources.push(ctx.image(r)?);
    }
    tasks.push(task(ROLE, "kubernetes images", resources));
    Ok(tasks)
}

/// The kubelet's configuration and unit, and the service, restarted when its binary, the
/// CA, its credentials or its configuration change.
pub(super) fn kubelet(ctx: &InstallContext, base: &Value) -> Result<Task, RoleError> {
    Ok(task(
        ROLE,
        KUBELET_TASK,
        vec![
            directory(KUBELET_DIR, 0o700),
            ctx.template(
                KUBELET_CONFIG,
                "kubernetes/kubelet-config.yaml",
                base,
                0o644,
            )?,
            ctx.template(
                &unit_file(KUBELET_UNIT),
                "kubernetes/kubelet.service",
                base,
                0o644,
            )?,
            service(
                KUBELET_UNIT,
                &[KUBELET_BINARY, CLUSTER_CA, KUBELET, KUBELET_TASK],
                Some(ReadyCheck {
                    command: KUBELET_HEALTHY.into(),
                    timeout: ctx.cluster.timeouts.of(Duration::from_secs(60)),
                }),
            ),
        ],
    ))
}
