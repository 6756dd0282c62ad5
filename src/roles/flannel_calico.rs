//! The seeds' pod network (`cluster.network: flannel-calico`): flanneld gives every node a
//! subnet of the pod network from its configuration in etcd and carries traffic over vxlan;
//! the CNI config calls the flannel plugin, which delegates to Calico so that Calico's
//! per-node agent enforces network policy, with Calico's policy controller as a static pod
//! on the masters in the seeds' `calico-system` namespace.
//!
//! Neither flanneld nor Calico can be had offline here: this is rendered and pinned by
//! snapshots (fixtures/flannel-calico.yml), and a run of the default network reports it as
//! not exercised. A bundle that carries their binaries and images makes it installable.

use serde::Serialize;
use serde_json::json;

use super::kubernetes::{SSL_DIR, kubeconfig, minor_version, ssl};
use super::network::{NodeNet, cni_config, cni_plugin};
use super::runtime::{self, BIN_DIR};
use super::{InstallContext, NotExercised, RoleError, ca_file, cert_files, directory, etcd};
use crate::engine::{Resource, Task};
use crate::pki;

const OPTIONS_ENV: &str = "/etc/flannel/options.env";
const FLANNEL_UNIT: &str = "flanneld.service";
const FLANNEL_UNIT_PATH: &str = "/etc/systemd/system/flanneld.service";
const CONTAINERD_DROP_IN: &str = "/etc/systemd/system/containerd.service.d/40-flannel.conf";
const CNI_CONF: &str = "/etc/cni/net.d/10-calico.conf";
const CALICO_UNIT: &str = "calico-node.service";
const CALICO_UNIT_PATH: &str = "/etc/systemd/system/calico-node.service";
const CALICO_KUBECONFIG: &str = "/etc/kubernetes/calico.kubeconfig";
const POLICY_CONTROLLER: &str = "/etc/kubernetes/manifests/calico-policy-controller.yaml";
/// CNI plugins: flannel delegating to calico; containerd itself calls `loopback`.
const PLUGINS: &[&str] = &["flannel", "calico", "loopback"];
/// flanneld's backend in the network configuration it reads from etcd.
pub const BACKEND: &str = "vxlan";

/// Calico's images (upstream references) by release line.
#[derive(Debug, Serialize)]
struct CalicoImages {
    node: &'static str,
    kube_controllers: &'static str,
}

fn images(k8s_minor: u32) -> CalicoImages {
    if k8s_minor >= 30 {
        CalicoImages {
            node: "docker.io/calico/node:v3.28.2",
            kube_controllers: "docker.io/calico/kube-controllers:v3.28.2",
        }
    } else {
        CalicoImages {
            node: "docker.io/calico/node:v3.17.1",
            kube_controllers: "docker.io/calico/kube-controllers:v3.17.1",
        }
    }
}

/// What a run on the default (bridge) network says about this one.
pub fn not_exercised() -> NotExercised {
    NotExercised {
        what: "network flannel-calico".into(),
        reason: "the seeds' flannel + Calico network (cluster.network: flannel-calico) is rendered and pinned by snapshots only: flanneld, the flannel and calico CNI plugins and Calico's images cannot be had offline here".into(),
    }
}

/// Fails with one message naming every binary and image of this network the bundle lacks
/// (`cargo xtask artifacts` cannot build them offline; a scenario's `artifacts` can bring them).
fn require_artifacts(ctx: &InstallContext, images: &CalicoImages) -> Result<(), RoleError> {
    let missing: Vec<String> = std::iter::once("flanneld".to_string())
        .chain(PLUGINS.iter().map(|p| p.to_string()))
        .chain([images.node, images.kube_controllers].map(|i| format!("image:{i}")))
        .filter(|name| ctx.bundle.get(name).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RoleError::Settings(format!(
        "cluster.network flannel-calico needs {} in the artifacts bundle ({}); they cannot be built offline: give the scenario an `artifacts` download_url and pins that carry them, or use network: bridge",
        missing.join(", "),
        ctx.bundle.dir.display()
    )))
}

/// The tasks of one node.
pub fn node_tasks(ctx: &InstallContext, node: &NodeNet) -> Result<Vec<Task>, RoleError> {
    let cluster = &ctx.scenario.cluster;
    let images = images(minor_version(&cluster.kubernetes_version)?);
    require_artifacts(ctx, &images)?;
    let t = json!({
        "node": node,
        "cluster": cluster,
        "bin_dir": BIN_DIR,
        "ssl_dir": SSL_DIR,
        "etcd_servers": etcd::endpoints(ctx),
        "etcd_prefix": etcd::NETWORK_KEY.trim_end_matches("/config"),
        "calico_kubeconfig": CALICO_KUBECONFIG,
        "ctr": runtime::ctr(),
        "images": images,
    });

    let mut binaries = vec![ctx.binary("flanneld")?];
    for name in PLUGINS {
        binaries.push(cni_plugin(ctx, name)?);
    }
    let mut credentials = vec![directory(SSL_DIR, 0o700), ca_file(&ssl("ca"), ctx.pki)];
    for spec in [
        pki::etcd_client_spec("flannel-etcd-client"),
        pki::etcd_client_spec("calico-etcd-client"),
        pki::calico_spec(),
    ] {
        credentials.extend(cert_files(SSL_DIR, &spec.name, &ctx.pki.ensure(&spec)?));
    }
    credentials.push(kubeconfig(
        ctx,
        CALICO_KUBECONFIG,
        "calico",
        "calico",
        &super::kubernetes::apiserver_url(ctx)?,
    )?);

    let flannel_inputs = vec![
        format!("{BIN_DIR}/flanneld"),
        OPTIONS_ENV.to_string(),
        FLANNEL_UNIT_PATH.to_string(),
        ssl("ca"),
        ssl("flannel-etcd-client"),
    ];
    let mut calico = runtime::image(ctx, images.node)?;
    calico.extend([
        ctx.template(
            CALICO_UNIT_PATH,
            "flannel-calico/calico-node.service",
            &t,
            0o644,
        )?,
        Resource::Service {
            unit: CALICO_UNIT.into(),
            restart_on: vec![
                CALICO_UNIT_PATH.into(),
                ssl("ca"),
                ssl("calico-etcd-client"),
            ],
            ready: None,
        },
    ]);
    if node.master {
        calico.extend(runtime::image(ctx, images.kube_controllers)?);
        calico.push(ctx.template(
            POLICY_CONTROLLER,
            "flannel-calico/calico-policy-controller.yaml",
            &t,
            0o644,
        )?);
    }

    Ok(vec![
        Task {
            name: "flannel and Calico binaries".into(),
            role: "network",
            resources: binaries,
        },
        Task {
            name: "flannel and Calico credentials".into(),
            role: "network",
            resources: credentials,
        },
        Task {
            name: "flanneld".into(),
            role: "network",
            resources: vec![
                directory("/etc/flannel", 0o755),
                ctx.template(OPTIONS_ENV, "flannel-calico/options.env", &t, 0o644)?,
                ctx.template(
                    FLANNEL_UNIT_PATH,
                    "flannel-calico/flanneld.service",
                    &t,
                    0o644,
                )?,
                ctx.template(
                    CONTAINERD_DROP_IN,
                    "flannel-calico/40-flannel.conf",
                    &t,
                    0o644,
                )?,
                Resource::Service {
                    unit: FLANNEL_UNIT.into(),
                    restart_on: flannel_inputs,
                    ready: None,
                },
            ],
        },
        Task {
            name: "CNI flannel delegating to Calico".into(),
            role: "network",
            resources: cni_config(ctx, CNI_CONF, "flannel-calico/10-calico.conf", &t)?,
        },
        Task {
            name: "Calico".into(),
            role: "network",
            resources: calico,
        },
    ])
}

#[cfg(test)]
mod tests {
    use crate::roles::test_support::{bundle, with_context};
    use crate::roles::{RoleError, plan};

    #[test]
    fn a_bundle_without_flannel_and_calico_is_refused_naming_what_is_missing() {
        let have: Vec<String> = ["flanneld", "flannel", "image:docker.io/calico/node:v3.17.1"]
            .map(String::from)
            .to_vec();
        let err = with_context("fixtures/flannel-calico.yml", &bundle(&have), |ctx| {
            plan(ctx, &["network".to_string()]).unwrap_err()
        });
        let RoleError::Settings(message) = err else {
            panic!("unexpected error: {err}")
        };
        assert!(
            message.starts_with("cluster.network flannel-calico needs calico, loopback, image:docker.io/calico/kube-controllers:v3.17.1 in the artifacts bundle"),
            "{message}"
        );
    }
}
