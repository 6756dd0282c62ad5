//! The seeds' pod network (`cluster.network: flannel-calico`): flanneld gives every node a
//! subnet of the pod network from its configuration in etcd and carries traffic over vxlan;
//! the CNI config calls the flannel plugin, which delegates to Calico so that Calico's
//! per-node agent enforces network policy, with Calico's policy controller as a static pod
//! on the masters in the seeds' `calico-system` namespace.
//!
//! Neither flanneld nor Calico can be had offline here: this is rendered and pinned by
//! snapshots (fixtures/flannel-calico.yml), and a run of the default network reports it as
//! not exercised. A bundle that carries their binaries and images makes it installable.

use serde_json::json;

use super::ROLE;
use crate::cluster::commands::ctr;
use crate::cluster::images::{CalicoImages, calico};
use crate::cluster::paths::{BIN_DIR, K8S_SSL_DIR, MANIFESTS_DIR, unit_file};
use crate::cluster::{NETWORK_KEY, Node};
use crate::engine::Task;
use crate::pki;
use crate::roles::builders::{cert_files, directory, service, task};
use crate::roles::{InstallContext, NotExercised, RoleError};

const OPTIONS_ENV: &str = "/etc/flannel/options.env";
const FLANNEL_UNIT: &str = "flanneld.service";
const CONTAINERD_DROP_IN: &str = "/etc/systemd/system/containerd.service.d/40-flannel.conf";
const CALICO_UNIT: &str = "calico-node.service";
const CALICO_KUBECONFIG: &str = "/etc/kubernetes/calico.kubeconfig";
/// CNI plugins: flannel delegating to calico; containerd itself calls `loopback`.
const PLUGINS: &[&str] = &["flannel", "calico", "loopback"];

const FLANNELD_BINARY: &str = "flanneld binary";
const CLUSTER_CA: &str = "CA certificates";
const FLANNEL_CREDENTIALS: &str = "flannel credentials";
const FLANNELD: &str = "flanneld";
const CALICO_CREDENTIALS: &str = "Calico credentials";
const CALICO: &str = "Calico";

/// What a run on the default (bridge) network says about this one.
pub(super) fn not_exercised() -> NotExercised {
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
    Err(RoleError::MissingArtifacts {
        network: "flannel-calico",
        missing,
        bundle: ctx.bundle.dir.display().to_string(),
    })
}

/// The tasks of one node.
pub(super) fn node_tasks(ctx: &InstallContext, node: &Node) -> Result<Vec<Task>, RoleError> {
    let cluster = ctx.cluster;
    let images = calico(cluster.k8s_minor);
    require_artifacts(ctx, &images)?;
    let t = json!({
        "node": node,
        "cluster": cluster.settings,
        "bin_dir": BIN_DIR,
        "ssl_dir": K8S_SSL_DIR,
        "etcd_servers": cluster.etcd_endpoints,
        "etcd_prefix": NETWORK_KEY.trim_end_matches("/config"),
        "calico_kubeconfig": CALICO_KUBECONFIG,
        "ctr": ctr(),
        "images": images,
    });

    let mut plugins = Vec::new();
    for name in PLUGINS {
        plugins.push(ctx.cni_plugin(name)?);
    }
    let credentials = |specs: &[pki::CertSpec]| -> Result<Vec<_>, RoleError> {
        let mut files = Vec::new();
        for spec in specs {
            files.extend(cert_files(
                K8S_SSL_DIR,
                &spec.name,
                &ctx.pki.etcd.ensure(spec)?,
            ));
        }
        Ok(files)
    };
    let mut calico_credentials = credentials(&[
        pki::etcd_client_spec("calico-etcd-client"),
        pki::calico_spec(),
    ])?;
    calico_credentials.push(ctx.kubeconfig(
        CALICO_KUBECONFIG,
        "calico",
        "calico",
        cluster.apiserver_url(),
    )?);

    let mut calico = vec![ctx.image(images.node)?];
    calico.extend([
        ctx.template(
            &unit_file(CALICO_UNIT),
            "flannel-calico/calico-node.service",
            &t,
            0o644,
        )?,
        service(CALICO_UNIT, &[CLUSTER_CA, CALICO_CREDENTIALS, CALICO], None),
    ]);
    if node.master {
        calico.push(ctx.image(images.kube_controllers)?);
        calico.push(ctx.template(
            &format!("{MANIFESTS_DIR}/calico-policy-controller.yaml"),
            "flannel-calico/calico-policy-controller.yaml",
            &t,
            0o644,
        )?);
    }

    Ok(vec![
        task(ROLE, FLANNELD_BINARY, vec![ctx.binary("flanneld")?]),
        task(ROLE, "CNI plugins", plugins),
        task(
            ROLE,
            CLUSTER_CA,
            vec![
                directory(K8S_SSL_DIR, 0o700),
                ctx.ca_file(&format!("{K8S_SSL_DIR}/ca.pem")),
                ctx.etcd_ca_file(&format!("{K8S_SSL_DIR}/etcd-ca.pem")),
            ],
        ),
        task(
            ROLE,
            FLANNEL_CREDENTIALS,
            credentials(&[pki::etcd_client_spec("flannel-etcd-client")])?,
        ),
        task(ROLE, CALICO_CREDENTIALS, calico_credentials),
        task(
            ROLE,
            FLANNELD,
            vec![
                directory("/etc/flannel", 0o755),
                ctx.template(OPTIONS_ENV, "flannel-calico/options.env", &t, 0o644)?,
                ctx.template(
                    &unit_file(FLANNEL_UNIT),
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
                service(
                    FLANNEL_UNIT,
                    &[FLANNELD_BINARY, CLUSTER_CA, FLANNEL_CREDENTIALS, FLANNELD],
                    None,
                ),
            ],
        ),
        task(
            ROLE,
            "CNI flannel delegating to Calico",
            ctx.cni_config("10-calico.conf", "flannel-calico/10-calico.conf", &t)?,
        ),
        task(ROLE, CALICO, calico),
    ])
}

#[cfg(test)]
mod tests {
    use crate::roles::test_support::{bundle, with_context};
    use crate::roles::{RoleError, Scope, plan};

    #[test]
    fn a_bundle_without_flannel_and_calico_is_refused_naming_what_is_missing() {
        let have: Vec<String> = ["flanneld", "flannel", "image:docker.io/calico/node:v3.17.1"]
            .map(String::from)
            .to_vec();
        let err = with_context("fixtures/flannel-calico.yml", &bundle(&have), |ctx| {
            plan(
                ctx,
                &Scope {
                    tags: vec!["network".into()],
                    ..Scope::default()
                },
            )
            .unwrap_err()
        });
        let message = err.to_string();
        assert!(
            matches!(err, RoleError::MissingArtifacts { .. }),
            "{message}"
        );
        assert!(
            message.starts_with("cluster.network flannel-calico needs calico, loopback, image:docker.io/calico/kube-controllers:v3.17.1 in the artifacts bundle"),
            "{message}"
        );
    }
}
