//! Certificates and kubeconfigs: the cluster CA on every node, each component's client or
//! server certificate, the service-account key pair and the admin kubeconfig on masters.
//! One task per component, so that what a component reads is one task its service or static
//! pod is notified by.

use base64::Engine as _;
use serde_json::json;

use super::ROLE;
use crate::cluster::Node;
use crate::cluster::paths::{ADMIN_KUBECONFIG, K8S_DIR, K8S_SSL_DIR, k8s_cert};
use crate::engine::{Resource, Task};
use crate::pki::{self, CertSpec, Pki};
use crate::roles::builders::{cert_files, directory, plain_file, secret_file, task};
use crate::roles::{InstallContext, RoleError};

pub(super) const CLUSTER_CA: &str = "cluster CA";
pub(super) const KUBELET: &str = "kubelet credentials";
pub(super) const KUBE_PROXY: &str = "kube-proxy credentials";
pub(super) const APISERVER: &str = "kube-apiserver credentials";
pub(super) const SERVICE_ACCOUNT: &str = "service account key pair";
pub(super) const CONTROLLER_MANAGER: &str = "controller-manager credentials";
pub(super) const SCHEDULER: &str = "scheduler credentials";

pub(super) const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.kubeconfig";
pub(super) const KUBE_PROXY_KUBECONFIG: &str = "/etc/kubernetes/kube-proxy.kubeconfig";

/// The kubeconfig of a control-plane component, which talks to its own master's apiserver.
pub(super) fn component_kubeconfig(stem: &str) -> String {
    format!("{K8S_DIR}/{stem}.kubeconfig")
}

pub(super) fn tasks(ctx: &InstallContext, node: &Node) -> Result<Vec<Task>, RoleError> {
    let server = ctx.cluster.apiserver_url();
    let mut tasks = vec![
        task(
            ROLE,
            CLUSTER_CA,
            vec![
                directory(K8S_DIR, 0o755),
                directory(K8S_SSL_DIR, 0o700),
                ctx.ca_file(&k8s_cert("ca")),
            ],
        ),
        task(
            ROLE,
            KUBELET,
            with_kubeconfig(
                ctx,
                "kubelet",
                pki::kubelet_spec(&node.name, node.address),
                KUBELET_KUBECONFIG,
                &format!("system:node:{}", node.name),
                server,
            )?,
        ),
        task(
            ROLE,
            KUBE_PROXY,
            with_kubeconfig(
                ctx,
                "kube-proxy",
                pki::kube_proxy_spec(),
                KUBE_PROXY_KUBECONFIG,
                "system:kube-proxy",
                server,
            )?,
        ),
    ];
    if node.master {
        tasks.extend(master_tasks(ctx)?);
    }
    Ok(tasks)
}

/// Certificate files named by their stem on the node (`kubelet.pem`): the spec's name
/// except for per-node certificates (`kubelet-<node>` in the PKI).
fn certs(pki: &Pki, specs: &[(&str, CertSpec)]) -> Result<Vec<Resource>, RoleError> {
    let mut files = Vec::new();
    for (stem, spec) in specs {
        files.extend(cert_files(K8S_SSL_DIR, stem, &pki.ensure(spec)?));
    }
    Ok(files)
}

/// The API server's serving certificate, its client certificate for the kubelets (from the
/// Kubernetes CA), and its client certificate for etcd with etcd's CA (from etcd's own CA:
/// the only Kubernetes component that talks to etcd).
fn apiserver_credentials(
    ctx: &InstallContext,
    serving: CertSpec,
) -> Result<Vec<Resource>, RoleError> {
    let mut files = certs(
        &ctx.pki.kubernetes,
        &[
            ("apiserver", serving),
            (
                "apiserver-kubelet-client",
                pki::apiserver_kubelet_client_spec(),
            ),
        ],
    )?;
    files.extend(certs(
        &ctx.pki.etcd,
        &[(
            "apiserver-etcd-client",
            pki::etcd_client_spec("apiserver-etcd-client"),
        )],
    )?);
    files.push(ctx.etcd_ca_file(&k8s_cert("etcd-ca")));
    Ok(files)
}

/// A client certificate and the kubeconfig that uses it against `server`.
fn with_kubeconfig(
    ctx: &InstallContext,
    stem: &str,
    spec: CertSpec,
    path: &str,
    user: &str,
    server: &str,
) -> Result<Vec<Resource>, RoleError> {
    let mut files = certs(&ctx.pki.kubernetes, &[(stem, spec)])?;
    files.push(ctx.kubeconfig(path, user, stem, server)?);
    Ok(files)
}

/// The control plane's credentials: the API server's, the service-account keys, the
/// controller-manager's and scheduler's (reaching the API as every node's client does), the
/// admin's.
fn master_tasks(ctx: &InstallContext) -> Result<Vec<Task>, RoleError> {
    let cluster = ctx.cluster;
    let masters: Vec<&Node> = cluster.masters().collect();
    // Clients reach an API server at its master's address, and with a load balancer on
    // every node through any node's address (the control machine uses a worker's).
    let reached_at: Vec<&Node> = match cluster.api().load_balancer {
        Some(_) => cluster.nodes.iter().collect(),
        None => masters.clone(),
    };
    let apiserver = pki::apiserver_spec(
        cluster.kubernetes_service_ip.into(),
        &reached_at.iter().map(|n| n.address).collect::<Vec<_>>(),
        &masters.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    );
    let (sa_key, sa_pub) = ctx.pki.kubernetes.service_account_keypair()?;
    let local = cluster.apiserver_url();
    Ok(vec![
        task(ROLE, APISERVER, apiserver_credentials(ctx, apiserver)?),
        task(
            ROLE,
            SERVICE_ACCOUNT,
            vec![
                secret_file(
                    &format!("{K8S_SSL_DIR}/sa-key.pem"),
                    sa_key.expose().as_bytes(),
                    None,
                ),
                plain_file(&format!("{K8S_SSL_DIR}/sa.pub"), sa_pub.as_bytes()),
            ],
        ),
        task(
            ROLE,
            CONTROLLER_MANAGER,
            with_kubeconfig(
                ctx,
                "controller-manager",
                pki::controller_manager_spec(),
                &component_kubeconfig("controller-manager"),
                "system:kube-controller-manager",
                local,
            )?,
        ),
        task(
            ROLE,
            SCHEDULER,
            with_kubeconfig(
                ctx,
                "scheduler",
                pki::scheduler_spec(),
                &component_kubeconfig("scheduler"),
                "system:kube-scheduler",
                local,
            )?,
        ),
        task(
            ROLE,
            "admin kubeconfig",
            vec![secret_file(
                ADMIN_KUBECONFIG,
                admin_kubeconfig(ctx, ctx.cluster.apiserver_url())?.as_bytes(),
                Some("kubernetes/admin-kubeconfig"),
            )],
        ),
    ])
}

/// The cluster-admin kubeconfig (certificates embedded) for a client reaching the API at
/// `server`: each master's, and the control machine's. Contains a private key: never log it.
pub(super) fn admin_kubeconfig(ctx: &InstallContext, server: &str) -> Result<String, RoleError> {
    let admin = ctx.pki.kubernetes.ensure(&pki::admin_spec())?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let t = json!({
        "cluster_name": ctx.cluster.settings.name,
        "server": server,
        "ca_data": b64(ctx.pki.kubernetes.ca_cert_pem()),
        "cert_data": b64(&admin.cert_pem),
        "key_data": b64(admin.key_pem.expose()),
    });
    Ok(ctx.templates.render("kubernetes/admin-kubeconfig", &t)?)
}
