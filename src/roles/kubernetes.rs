//! Kubernetes itself: a kubelet (systemd unit) on every node; on `kube-master` hosts the
//! control plane as static pods the kubelet runs from its manifests directory
//! (kube-apiserver, kube-controller-manager, kube-scheduler), kube-proxy as a static pod on
//! every node. TLS everywhere from kubeforge's PKI, RBAC + Node authorization, no anonymous
//! access to the apiserver or the kubelets. Masters register tainted NoSchedule.
//!
//! Waiting for the API: a kubelet's readiness says nothing about the static pods it starts,
//! so a last phase holds a [`Resource::Command`] whose read-only guard is "the apiserver
//! answers /healthz" and whose command polls until it does: it runs (and waits) only while
//! the apiserver is not healthy, and an idempotence check of a healthy cluster plans nothing.

use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::network::{NodeNet, first_master, nodes};
use super::runtime::{self, BIN_DIR, GUESTBOOK_FRONTEND_IMAGE, PAUSE_IMAGE, REDIS_IMAGE, SOCKET};
use super::{
    InstallContext, RoleError, ca_file, cert_files, directory, etcd, manifest_objects, phase,
};
use crate::engine::{ApiObject, Guard, Perms, Phase, ReadyCheck, Resource, Task};
use crate::pki;
use crate::scenario::{cidr_nth, parse_cidr};

pub const K8S_DIR: &str = "/etc/kubernetes";
pub const SSL_DIR: &str = "/etc/kubernetes/ssl";
const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Cluster-admin kubeconfig on each master (certificates embedded), for verify and humans.
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.kubeconfig";
/// Manifests of the objects kubeforge keeps in the API (RBAC bindings, add-ons), as last
/// rendered: what a user can read or apply by hand.
pub const API_MANIFESTS_DIR: &str = "/etc/kubernetes/addons";
const KUBELET_UNIT: &str = "kubelet.service";
const KUBELET_UNIT_PATH: &str = "/etc/systemd/system/kubelet.service";
const KUBELET_CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// Where the bundle's images keep their binaries (kube-proxy's also carries iptables-nft
/// and conntrack, the same backend the node's kubelet uses).
const IMAGE_BIN_DIR: &str = "/usr/local/bin";
/// How long the last phase waits for the apiserver to answer.
const API_WAIT_SECS: u32 = 180;

/// `kubectl` on a master, as cluster admin.
pub fn kubectl() -> String {
    format!("{BIN_DIR}/kubectl --kubeconfig={ADMIN_KUBECONFIG}")
}

/// The image reference of a Kubernetes component at the scenario's version.
fn component_image(ctx: &InstallContext, component: &str) -> String {
    format!(
        "kubeforge.local/{component}:{}",
        ctx.scenario.cluster.kubernetes_version
    )
}

/// `v1.20.2` -> 20: templates keep flags that changed across releases behind it.
pub fn minor_version(version: &str) -> Result<u32, RoleError> {
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| {
            RoleError::Settings(format!(
                "cluster.kubernetes_version '{version}' is not of the form v1.<minor>.<patch>"
            ))
        })
}

/// The URL every kubelet, kube-proxy and kubectl uses: the first master's apiserver.
pub fn apiserver_url(ctx: &InstallContext) -> Result<String, RoleError> {
    let all = nodes(ctx)?;
    let master = first_master(&all)?;
    Ok(format!(
        "https://{}:{}",
        master.address, ctx.scenario.cluster.apiserver_port
    ))
}

/// The cluster-admin kubeconfig (certificates embedded): written to each master, and by the
/// runner to the control machine. Contains a private key: never log it.
pub fn admin_kubeconfig(ctx: &InstallContext) -> Result<String, RoleError> {
    let admin = ctx.pki.ensure(&pki::admin_spec())?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let t = json!({
        "cluster_name": ctx.scenario.cluster.name,
        "server": apiserver_url(ctx)?,
        "ca_data": b64(ctx.pki.ca_cert_pem()),
        "cert_data": b64(&admin.cert_pem),
        "key_data": b64(admin.key_pem.expose()),
    });
    Ok(ctx.templates.render("kubernetes/admin-kubeconfig", &t)?)
}

#[derive(Serialize)]
struct Images {
    apiserver: String,
    controller_manager: String,
    scheduler: String,
    proxy: String,
    pause: &'static str,
}

/// A kubeconfig for `user`, authenticating with `<SSL_DIR>/<stem>.pem`.
pub(super) fn kubeconfig(
    ctx: &InstallContext,
    path: &str,
    user: &str,
    stem: &str,
    server: &str,
) -> Result<Resource, RoleError> {
    let t = json!({
        "cluster_name": ctx.scenario.cluster.name,
        "server": server,
        "ssl_dir": SSL_DIR,
        "user": user,
        "stem": stem,
    });
    ctx.template(path, "kubernetes/kubeconfig", &t, 0o600)
}

/// sha256 over the contents of the files at `paths` among `resources`: put in a static
/// pod's annotations so the pod is recreated when a certificate it reads changes.
fn inputs_sha256(resources: &[Resource], paths: &[String]) -> String {
    let mut h = Sha256::new();
    for r in resources {
        if let Resource::File { path, content, .. } = r
            && paths.contains(path)
        {
            h.update(path.as_bytes());
            h.update(content);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A static pod manifest rendered from `kubernetes/manifests/<component>.yaml`.
fn manifest(
    ctx: &InstallContext,
    base: &Value,
    component: &str,
    kubeconfig: Option<String>,
    inputs: String,
) -> Result<Resource, RoleError> {
    let mut t = base.clone();
    t["inputs_sha256"] = json!(inputs);
    if let Some(k) = kubeconfig {
        t["kubeconfig"] = json!(k);
    }
    ctx.template(
        &format!("{MANIFESTS_DIR}/{component}.yaml"),
        &format!("kubernetes/manifests/{component}.yaml"),
        &t,
        0o644,
    )
}

pub(super) fn ssl(stem: &str) -> String {
    format!("{SSL_DIR}/{stem}.pem")
}

fn ssl_key(stem: &str) -> String {
    format!("{SSL_DIR}/{stem}-key.pem")
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let cluster = &ctx.scenario.cluster;
    let k8s_minor = minor_version(&cluster.kubernetes_version)?;
    let all = nodes(ctx)?;
    let server = apiserver_url(ctx)?;
    let masters: Vec<&NodeNet> = all.iter().filter(|n| n.master).collect();
    let service_net = parse_cidr(&cluster.service_range)
        .map_err(|m| RoleError::Settings(format!("cluster.service_range: {m}")))?;
    let apiserver_cert = ctx.pki.ensure(&pki::apiserver_spec(
        cidr_nth(service_net, 1).into(),
        &masters.iter().map(|m| m.address).collect::<Vec<_>>(),
        &masters.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    ))?;
    let proxy_cert = ctx.pki.ensure(&pki::kube_proxy_spec())?;
    let images = Images {
        apiserver: component_image(ctx, "kube-apiserver"),
        controller_manager: component_image(ctx, "kube-controller-manager"),
        scheduler: component_image(ctx, "kube-scheduler"),
        proxy: component_image(ctx, "kube-proxy"),
        pause: PAUSE_IMAGE,
    };

    let mut hosts = Vec::new();
    for node in &all {
        let base = json!({
            "node": node,
            "k8s_minor": k8s_minor,
            "cluster": cluster,
            "ssl_dir": SSL_DIR,
            "manifests_dir": MANIFESTS_DIR,
            "bin_dir": BIN_DIR,
            "image_bin_dir": IMAGE_BIN_DIR,
            "containerd_socket": SOCKET,
            "images": images,
            "etcd_servers": etcd::endpoints(ctx),
        });
        let kubelet_cert = ctx
            .pki
            .ensure(&pki::kubelet_spec(&node.name, node.address))?;

        let mut binaries = vec![directory(BIN_DIR, 0o755), ctx.binary("kubelet")?];
        let mut image_refs = vec![images.proxy.clone()];
        if node.master {
            binaries.push(ctx.binary("kubectl")?);
            image_refs.extend([
                images.apiserver.clone(),
                images.controller_manager.clone(),
                images.scheduler.clone(),
            ]);
        } else {
            image_refs.extend([REDIS_IMAGE.into(), GUESTBOOK_FRONTEND_IMAGE.into()]);
        }
        let mut image_resources = Vec::new();
        for r in &image_refs {
            image_resources.extend(runtime::image(ctx, r)?);
        }

        let mut files = vec![
            directory(K8S_DIR, 0o755),
            directory(SSL_DIR, 0o700),
            ca_file(&ssl("ca"), ctx.pki),
        ];
        files.extend(cert_files(SSL_DIR, "kubelet", &kubelet_cert));
        files.extend(cert_files(SSL_DIR, "kube-proxy", &proxy_cert));
        files.push(kubeconfig(
            ctx,
            "/etc/kubernetes/kubelet.kubeconfig",
            &format!("system:node:{}", node.name),
            "kubelet",
            &server,
        )?);
        files.push(kubeconfig(
            ctx,
            "/etc/kubernetes/kube-proxy.kubeconfig",
            "system:kube-proxy",
            "kube-proxy",
            &server,
        )?);
        if node.master {
            // Components on the master talk to their own apiserver.
            let local = format!("https://{}:{}", node.address, cluster.apiserver_port);
            files.extend(cert_files(SSL_DIR, "apiserver", &apiserver_cert));
            for spec in [
                pki::apiserver_kubelet_client_spec(),
                pki::etcd_client_spec("apiserver-etcd-client"),
                pki::controller_manager_spec(),
                pki::scheduler_spec(),
            ] {
                files.extend(cert_files(SSL_DIR, &spec.name, &ctx.pki.ensure(&spec)?));
            }
            let (sa_key, sa_pub) = ctx.pki.service_account_keypair()?;
            files.push(Resource::File {
                path: ssl_key("sa"),
                content: sa_key.expose().as_bytes().to_vec(),
                perms: Perms::root(0o600),
                secret: true,
                origin: None,
            });
            files.push(Resource::File {
                path: format!("{SSL_DIR}/sa.pub"),
                content: sa_pub.into_bytes(),
                perms: Perms::root(0o644),
                secret: false,
                origin: None,
            });
            files.push(kubeconfig(
                ctx,
                "/etc/kubernetes/controller-manager.kubeconfig",
                "system:kube-controller-manager",
                "controller-manager",
                &local,
            )?);
            files.push(kubeconfig(
                ctx,
                "/etc/kubernetes/scheduler.kubeconfig",
                "system:kube-scheduler",
                "scheduler",
                &local,
            )?);
            files.push(Resource::File {
                path: ADMIN_KUBECONFIG.into(),
                content: admin_kubeconfig(ctx)?.into_bytes(),
                perms: Perms::root(0o600),
                secret: true,
                origin: Some("kubernetes/admin-kubeconfig".into()),
            });
        }

        let paths = |stems: &[&str], extra: &[&str]| -> Vec<String> {
            stems
                .iter()
                .flat_map(|s| [ssl(s), ssl_key(s)])
                .chain(extra.iter().map(|e| e.to_string()))
                .collect()
        };
        let mut pods = vec![directory(MANIFESTS_DIR, 0o755)];
        pods.push(manifest(
            ctx,
            &base,
            "kube-proxy",
            Some("/etc/kubernetes/kube-proxy.kubeconfig".into()),
            inputs_sha256(
                &files,
                &paths(
                    &["ca", "kube-proxy"],
                    &["/etc/kubernetes/kube-proxy.kubeconfig"],
                ),
            ),
        )?);
        if node.master {
            pods.push(manifest(
                ctx,
                &base,
                "kube-apiserver",
                None,
                inputs_sha256(
                    &files,
                    &paths(
                        &[
                            "ca",
                            "apiserver",
                            "apiserver-kubelet-client",
                            "apiserver-etcd-client",
                            "sa",
                        ],
                        &["/etc/kubernetes/ssl/sa.pub"],
                    ),
                ),
            )?);
            for (component, stem) in [
                ("kube-controller-manager", "controller-manager"),
                ("kube-scheduler", "scheduler"),
            ] {
                let kc = format!("/etc/kubernetes/{stem}.kubeconfig");
                let mut stems = vec!["ca", stem];
                if stem == "controller-manager" {
                    stems.push("sa");
                }
                pods.push(manifest(
                    ctx,
                    &base,
                    component,
                    Some(kc.clone()),
                    inputs_sha256(&files, &paths(&stems, &[&kc])),
                )?);
            }
        }

        let restart_on = vec![
            format!("{BIN_DIR}/kubelet"),
            KUBELET_UNIT_PATH.to_string(),
            KUBELET_CONFIG.to_string(),
            "/etc/kubernetes/kubelet.kubeconfig".to_string(),
            ssl("ca"),
            ssl("kubelet"),
            ssl_key("kubelet"),
        ];
        let tasks = vec![
            Task {
                name: "kubernetes binaries".into(),
                role: "kubernetes",
                resources: binaries,
            },
            Task {
                name: "kubernetes images".into(),
                role: "kubernetes",
                resources: image_resources,
            },
            Task {
                name: "kubernetes certificates and kubeconfigs".into(),
                role: "kubernetes",
                resources: files,
            },
            Task {
                name: "static pods".into(),
                role: "kubernetes",
                resources: pods,
            },
            Task {
                name: "kubelet".into(),
                role: "kubernetes",
                resources: vec![
                    directory("/var/lib/kubelet", 0o700),
                    ctx.template(
                        KUBELET_CONFIG,
                        "kubernetes/kubelet-config.yaml",
                        &base,
                        0o644,
                    )?,
                    ctx.template(
                        KUBELET_UNIT_PATH,
                        "kubernetes/kubelet.service",
                        &base,
                        0o644,
                    )?,
                    Resource::Service {
                        unit: KUBELET_UNIT.into(),
                        restart_on,
                        ready: Some(ReadyCheck {
                            command: KUBELET_HEALTHY.into(),
                            timeout: Duration::from_secs(60),
                        }),
                    },
                ],
            },
        ];
        hosts.push((node.name.clone(), tasks));
    }

    let health = format!("{} get --raw /healthz", kubectl());
    let wait = masters
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                vec![Task {
                    name: "wait for kube-apiserver".into(),
                    role: "kubernetes",
                    resources: vec![Resource::Command {
                        name: "kube-apiserver /healthz".into(),
                        command: format!(
                            "i=0; until {health} >/dev/null 2>&1; do i=$((i+1)); if [ \"$i\" -ge {API_WAIT_SECS} ]; then echo \"kube-apiserver on {name} not healthy after {API_WAIT_SECS}s: $({health} 2>&1 | tail -n 2)\" >&2; exit 1; fi; sleep 1; done",
                            name = m.name
                        ),
                        guard: Guard::Unless(health.clone()),
                    }],
                }],
            )
        })
        .collect();

    let first = first_master(&all)?;
    let (file, objects) = manifest_objects(
        ctx,
        &format!("{API_MANIFESTS_DIR}/cluster-objects.yaml"),
        "kubernetes/cluster-objects.yaml",
        &json!({ "cluster": cluster }),
    )?;
    let objects = vec![Task {
        name: "cluster objects".into(),
        role: "kubernetes",
        resources: [directory(API_MANIFESTS_DIR, 0o755), file]
            .into_iter()
            .chain(objects.into_iter().map(api_object))
            .collect(),
    }];

    Ok(vec![
        phase("kubernetes nodes", hosts),
        phase("kubernetes API", wait),
        phase("kubernetes objects", vec![(first.name.clone(), objects)]),
    ])
}

/// An object the cluster admin's kubectl on a master creates or updates.
pub fn api_object(object: ApiObject) -> Resource {
    Resource::ApiObject {
        kubectl: kubectl(),
        object,
    }
}

/// The kubelet's local healthz endpoint answers `ok` (plain HTTP on 127.0.0.1; bash's
/// /dev/tcp, since the nodes have no curl).
const KUBELET_HEALTHY: &str = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/10248 && printf \"GET /healthz HTTP/1.0\\r\\n\\r\\n\" >&3 && grep -qx ok <&3'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_version_parses_and_rejects() {
        assert_eq!(minor_version("v1.20.2").unwrap(), 20);
        assert_eq!(minor_version("1.31.0").unwrap(), 31);
        assert!(minor_version("latest").is_err());
    }

    #[test]
    fn inputs_hash_follows_listed_files_only() {
        let file = |p: &str, c: &str| Resource::File {
            path: p.into(),
            content: c.as_bytes().to_vec(),
            perms: Perms::root(0o600),
            secret: true,
            origin: None,
        };
        let a = vec![file("/a", "1"), file("/b", "2")];
        let b = vec![file("/a", "1"), file("/b", "3")];
        let only_a = vec!["/a".to_string()];
        assert_eq!(inputs_sha256(&a, &only_a), inputs_sha256(&b, &only_a));
        let both = vec!["/a".to_string(), "/b".to_string()];
        assert_ne!(inputs_sha256(&a, &both), inputs_sha256(&b, &both));
    }
}
