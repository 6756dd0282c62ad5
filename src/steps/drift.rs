//! `drift`: proves that idempotence cannot be fooled. On a converged cluster it makes a
//! catalogue of hand changes across the hosts (files, modes, owners, units, binaries,
//! routes, sysctls, images, static pods, API objects, certificates, etcd keys), then:
//! converge in check mode must list every one of them by host and resource, and nothing
//! else; converge must repair them; check mode must then plan nothing; and each repaired
//! state is checked directly on its host. Each drift is its own testcase.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::converge::{self, ConvergeOutput};
use super::{StepError, StepOutcome, SubCase, Workspace};
use crate::cluster::commands::{ctr, etcdctl, kubectl};
use crate::cluster::images::REDIS;
use crate::cluster::paths::{K8S_SSL_DIR, MANIFESTS_DIR, OBJECT_RECORD, unit_file};
use crate::cluster::{Cluster, NETWORK_KEY, Node};
use crate::connections::Connections;
use crate::engine::{ApiObject, Mode, Options, Transport};
use crate::report::CaseOutcome;
use crate::roles::Scope;
use crate::ssh::shell_quote;
use crate::state::ScenarioState;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// What converge does on the masters when etcd restarts.
const APISERVER_HANDLER: &str = "handler restart kube-apiserver";

/// One hand change: where it is made, how, what converge must report for it (host and
/// resource label), and a command that succeeds once the host is repaired.
pub struct Drift {
    pub name: &'static str,
    pub host: String,
    pub command: String,
    pub expect: Vec<(String, String)>,
    pub repaired: String,
}

/// How one drift fared.
pub struct DriftResult {
    pub drift: Drift,
    /// Why making the change failed, if it did.
    pub not_made: Option<String>,
    /// Expected changes check mode did not list.
    pub missed: Vec<String>,
    /// Why the direct check of the repaired state failed, if it did.
    pub not_repaired: Option<String>,
}

/// The catalogue's results, and what the runs around them saw.
pub struct DriftOutput {
    pub results: Vec<DriftResult>,
    /// Changes check mode listed that no drift explains.
    pub unexpected: Vec<String>,
    /// Changes still planned after the repairing converge.
    pub remaining: Vec<String>,
    /// Drifts this scenario cannot make, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    pub seconds: f64,
}

/// The hosts the catalogue makes its changes on.
struct Hosts<'a> {
    /// The first master.
    m: &'a String,
    /// The first worker, and a second one (the first again when there is only one).
    a: &'a String,
    b: &'a String,
    /// The first etcd member.
    e: &'a String,
}

fn at(host: &str, label: String) -> (String, String) {
    (host.to_string(), label)
}

fn file(host: &str, path: &str) -> (String, String) {
    at(host, format!("file {path}"))
}

fn service(host: &str, unit: &str) -> (String, String) {
    at(host, format!("service {unit}"))
}

/// The drifts for a cluster, and those it cannot make.
pub struct Catalogue {
    pub drifts: Vec<Drift>,
    /// A drift's name and why this scenario cannot make it.
    pub skipped: Vec<(&'static str, String)>,
}

/// The catalogue for this cluster.
pub fn catalogue(
    cluster: &Cluster,
    workloads: &[crate::scenario::Workload],
    prune_objects: bool,
) -> Result<Catalogue, StepError> {
    let (Some(master), Some(w1)) = (cluster.first_master(), cluster.workers().next()) else {
        return Err(StepError::Drift(
            "the drift step needs a master and a worker".into(),
        ));
    };
    let h = Hosts {
        m: &master.name,
        a: &w1.name,
        b: &cluster.workers().nth(1).unwrap_or(w1).name,
        e: &cluster.etcd[0].name,
    };
    let mut drifts = file_and_unit_drifts(&h);
    // The etcd key before the binaries: it is written with etcdctl.
    drifts.extend(cluster_drifts(&h, cluster));
    drifts.extend(runtime_drifts(&h, cluster));
    let mut skipped = Vec::new();
    let k = kubectl();
    match first_config_map(workloads) {
        Some(object) => drifts.push(Drift {
            name: "deleted Kubernetes object",
            host: h.m.clone(),
            command: format!(
                "{k} delete configmap {} -n {} >/dev/null",
                object.name(),
                object.namespace().unwrap_or("default")
            ),
            expect: vec![at(h.m, format!("object {}", object.label()))],
            repaired: format!(
                "{k} get configmap {} -n {} >/dev/null",
                object.name(),
                object.namespace().unwrap_or("default")
            ),
        }),
        None => skipped.push((
            "deleted Kubernetes object",
            "the scenario has no ConfigMap among its workloads to delete".to_string(),
        )),
    }
    drifts.push(object_no_longer_rendered(&h, prune_objects));
    Ok(Catalogue { drifts, skipped })
}

/// An object kubeforge applied once and renders no more, as a converge of an older
/// manifest leaves it: a ConfigMap applied and written into the object record. Converge
/// deletes it when the scenario prunes, else names it and forgets it.
fn object_no_longer_rendered(h: &Hosts, prune_objects: bool) -> Drift {
    let k = kubectl();
    let name = "kubeforge-drift-orphan";
    let orphan = shell_quote(&format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}}}}"#
    ));
    let get = format!("{k} get configmap {name} -n default >/dev/null 2>&1");
    Drift {
        name: "an applied object no longer rendered",
        host: h.m.clone(),
        command: format!(
            "printf '%s\\n' {orphan} | {k} apply -f - >/dev/null && printf '%s\\n' {orphan} >> {OBJECT_RECORD}"
        ),
        expect: vec![at(h.m, format!("object record {OBJECT_RECORD}"))],
        repaired: if prune_objects {
            format!("! {get}")
        } else {
            format!("{get} && ! grep -q {name} {OBJECT_RECORD}")
        },
    }
}

/// Files (content, mode, owner, deletion) and units (stopped, disabled).
fn file_and_unit_drifts(h: &Hosts) -> Vec<Drift> {
    let routes_unit = unit_file("kubeforge-pod-routes.service");
    let kubelet_key = format!("{K8S_SSL_DIR}/kubelet-key.pem");
    vec![
        Drift {
            name: "file content (a unit edited by hand)",
            host: h.b.clone(),
            command: format!("echo '# kubeforge-drift' >> {routes_unit}"),
            expect: vec![
                file(h.b, &routes_unit),
                service(h.b, "kubeforge-pod-routes.service"),
            ],
            repaired: format!("! grep -q kubeforge-drift {routes_unit}"),
        },
        Drift {
            name: "file mode (a private key made world-readable)",
            host: h.b.clone(),
            command: format!("chmod 0644 {kubelet_key}"),
            expect: vec![file(h.b, &kubelet_key)],
            repaired: format!("[ \"$(stat -c %a {kubelet_key})\" = 600 ]"),
        },
        Drift {
            name: "file owner",
            host: h.a.clone(),
            command: "chown 65534:65534 /etc/containerd/config.toml".into(),
            expect: vec![file(h.a, "/etc/containerd/config.toml")],
            repaired: "[ \"$(stat -c %u:%g /etc/containerd/config.toml)\" = 0:0 ]".into(),
        },
        Drift {
            name: "deleted file",
            host: h.a.clone(),
            command: "rm /etc/kubernetes/kube-proxy.kubeconfig".into(),
            expect: vec![file(h.a, "/etc/kubernetes/kube-proxy.kubeconfig")],
            repaired: "[ -s /etc/kubernetes/kube-proxy.kubeconfig ]".into(),
        },
        Drift {
            name: "stopped unit",
            host: h.a.clone(),
            command: "systemctl stop kubeforge-node-sysctl.service".into(),
            expect: vec![service(h.a, "kubeforge-node-sysctl.service")],
            repaired: "systemctl is-active --quiet kubeforge-node-sysctl.service".into(),
        },
        Drift {
            name: "disabled unit",
            host: h.b.clone(),
            command: "systemctl disable --quiet kubelet.service".into(),
            expect: vec![service(h.b, "kubelet.service")],
            repaired: "systemctl is-enabled --quiet kubelet.service".into(),
        },
    ]
}

/// Binaries (replaced, replaced under a running process), a route, a sysctl, an image.
fn runtime_drifts(h: &Hosts, cluster: &Cluster) -> Vec<Drift> {
    let peer = other_node(cluster, h.a);
    vec![
        Drift {
            name: "replaced binary",
            host: h.e.clone(),
            command: "cp /bin/true /opt/bin/etcdctl".into(),
            expect: vec![
                at(h.e, "binary /opt/bin/etcdctl".into()),
                service(h.e, "etcd-member.service"),
                at(h.m, APISERVER_HANDLER.into()),
            ],
            repaired: "/opt/bin/etcdctl version | grep -q 'etcdctl version'".into(),
        },
        Drift {
            name: "binary replaced under its running process",
            host: h.e.clone(),
            command: "cp /opt/bin/etcd /opt/bin/etcd.kf-drift && mv -f /opt/bin/etcd.kf-drift /opt/bin/etcd".into(),
            expect: vec![
                service(h.e, "etcd-member.service"),
                at(h.m, APISERVER_HANDLER.into()),
            ],
            repaired: "pid=$(systemctl show -p MainPID --value etcd-member.service); [ \"$pid\" -gt 0 ] && ! readlink /proc/$pid/exe | grep -q deleted".into(),
        },
        Drift {
            name: "deleted route to another node's pods",
            host: h.a.clone(),
            command: format!("ip route del {}", peer.pod_cidr),
            expect: vec![at(h.a, format!("route {}", peer.pod_cidr))],
            repaired: format!(
                "ip route show exact {} | grep -q 'via {} '",
                peer.pod_cidr, peer.address
            ),
        },
        Drift {
            name: "reset sysctl",
            host: h.b.clone(),
            command: "echo 0 > /proc/sys/net/ipv4/ip_forward".into(),
            expect: vec![at(h.b, "sysctl net.ipv4.ip_forward".into())],
            repaired: "[ \"$(cat /proc/sys/net/ipv4/ip_forward)\" = 1 ]".into(),
        },
        Drift {
            name: "image removed from containerd",
            host: h.b.clone(),
            command: format!("{} images rm {REDIS} >/dev/null", ctr()),
            expect: vec![at(h.b, format!("image {REDIS}"))],
            repaired: format!("{} images ls -q | grep -qxF {REDIS}", ctr()),
        },
    ]
}

/// The etcd key, a static pod manifest, an API object, a certificate from another CA.
fn cluster_drifts(h: &Hosts, cluster: &Cluster) -> Vec<Drift> {
    let (k, eps) = (kubectl(), etcdctl(&cluster.etcd_endpoints));
    let kubelet_cert = format!("{K8S_SSL_DIR}/kubelet.pem");
    let scheduler = format!("{MANIFESTS_DIR}/kube-scheduler.yaml");
    let binding = "clusterrolebinding/kubeforge:kube-apiserver-kubelet-client";
    vec![
        // Before the etcdctl drift below: it writes with etcdctl.
        Drift {
            name: "etcd key changed",
            host: h.e.clone(),
            command: format!(
                "{eps} put {NETWORK_KEY} '{{\"Network\":\"10.99.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}' >/dev/null"
            ),
            expect: vec![at(h.e, format!("key {NETWORK_KEY}"))],
            repaired: format!(
                "[ \"$({eps} get --print-value-only {NETWORK_KEY})\" = {} ]",
                shell_quote(&cluster.network_config.to_string())
            ),
        },
        Drift {
            name: "edited static pod manifest",
            host: h.m.clone(),
            command: format!("echo '# kubeforge-drift' >> {scheduler}"),
            expect: vec![file(h.m, &scheduler)],
            repaired: format!("! grep -q kubeforge-drift {scheduler}"),
        },
        Drift {
            name: "edited Kubernetes object",
            host: h.m.clone(),
            command: format!(
                "{k} patch {binding} --type=json -p '[{{\"op\":\"replace\",\"path\":\"/subjects/0/name\",\"value\":\"kubeforge-drift\"}}]' >/dev/null"
            ),
            expect: vec![at(
                h.m,
                "object ClusterRoleBinding kubeforge:kube-apiserver-kubelet-client".into(),
            )],
            repaired: format!(
                "[ \"$({k} get {binding} -o jsonpath='{{.subjects[0].name}}')\" = kube-apiserver-kubelet-client ]"
            ),
        },
        Drift {
            name: "certificate replaced by one from another CA",
            host: h.a.clone(),
            command: format!(
                "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -out {kubelet_cert}.kf-drift -subj /CN=kubeforge-drift -days 1 2>/dev/null && mv -f {kubelet_cert}.kf-drift {kubelet_cert}"
            ),
            expect: vec![file(h.a, &kubelet_cert), service(h.a, "kubelet.service")],
            repaired: format!(
                "openssl verify -CAfile {K8S_SSL_DIR}/ca.pem {kubelet_cert} >/dev/null"
            ),
        },
    ]
}

/// The node whose pod network `worker`'s route is cut from: another worker, else the master.
fn other_node<'a>(cluster: &'a Cluster, worker: &str) -> &'a Node {
    cluster
        .nodes
        .iter()
        .find(|n| n.name != worker && !n.master)
        .or_else(|| cluster.first_master())
        .expect("a cluster with a worker has a master")
}

fn first_config_map(workloads: &[crate::scenario::Workload]) -> Option<ApiObject> {
    workloads
        .iter()
        .flat_map(|w| ApiObject::from_manifest("workload", &w.text).unwrap_or_default())
        .find(|o| o.kind() == "ConfigMap")
}

pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
) -> Result<DriftOutput, StepError> {
    let start = Instant::now();
    let inventory = state
        .inventory
        .clone()
        .ok_or_else(|| StepError::NotCreated(ws.scenario.name.clone()))?;
    connections.connect_all(&inventory, &ws.state_dir).await?;
    let cluster = Cluster::derive(&ws.scenario, &inventory)?;
    let Catalogue { drifts, skipped } =
        catalogue(&cluster, &ws.scenario.workloads, ws.scenario.prune_objects)?;

    let mut results = Vec::new();
    for drift in drifts {
        let session = connections.session(&drift.host)?;
        let not_made = run_on(&session, &drift.command).await.err();
        ws.say(format!(
            "drift '{}' on {}: {}",
            drift.name,
            drift.host,
            not_made.as_deref().unwrap_or("made")
        ));
        results.push(DriftResult {
            drift,
            not_made,
            missed: Vec::new(),
            not_repaired: None,
        });
    }

    let found = changed(
        &converge::run(
            ws,
            state,
            connections,
            &indexed(Mode::Check),
            &Scope::default(),
        )
        .await?,
    );
    let mut expected = BTreeSet::new();
    for r in &mut results {
        for e in &r.drift.expect {
            expected.insert(e.clone());
            if !found.contains(e) {
                r.missed.push(format!("{}: {}", e.0, e.1));
            }
        }
    }
    let unexpected = found
        .difference(&expected)
        .map(|(h, r)| format!("{h}: {r}"))
        .collect();

    converge::run(
        ws,
        state,
        connections,
        &indexed(Mode::Apply),
        &Scope::default(),
    )
    .await?;
    let remaining = changed(
        &converge::run(
            ws,
            state,
            connections,
            &indexed(Mode::Check),
            &Scope::default(),
        )
        .await?,
    )
    .into_iter()
    .map(|(h, r)| format!("{h}: {r}"))
    .collect();
    for r in &mut results {
        let session = connections.session(&r.drift.host)?;
        r.not_repaired = run_on(&session, &r.drift.repaired).await.err();
    }
    Ok(DriftOutput {
        results,
        unexpected,
        remaining,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// (host, resource) of every change a converge listed.
fn changed(output: &ConvergeOutput) -> BTreeSet<(String, String)> {
    output
        .hosts
        .iter()
        .flat_map(|h| {
            h.tasks
                .iter()
                .flat_map(|t| &t.changes)
                .map(|c| (h.host.clone(), c.resource.clone()))
        })
        .collect()
}

/// Runs a command as root; its failure is the exit status and output.
async fn run_on<T: Transport>(transport: &T, command: &str) -> Result<(), String> {
    let out = transport
        .exec_root(command, None, COMMAND_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if out.status == 0 {
        return Ok(());
    }
    Err(format!(
        "exit {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl From<&DriftOutput> for StepOutcome {
    fn from(output: &DriftOutput) -> StepOutcome {
        let mut subcases: Vec<SubCase> = output.results.iter().map(drift_case).collect();
        subcases.extend(output.skipped.iter().map(|(name, reason)| SubCase {
            group: "drift",
            name: format!("drift: {name}"),
            seconds: 0.0,
            outcome: CaseOutcome::Skipped {
                reason: reason.clone(),
            },
            output: String::new(),
            properties: Vec::new(),
        }));
        for (name, problems, what) in [
            (
                "drift: check mode lists nothing else",
                &output.unexpected,
                "changes no drift explains",
            ),
            (
                "drift: converge repairs everything",
                &output.remaining,
                "changes still planned after the repairing converge",
            ),
        ] {
            subcases.push(SubCase {
                group: "drift",
                name: name.into(),
                seconds: 0.0,
                outcome: if problems.is_empty() {
                    CaseOutcome::Passed
                } else {
                    CaseOutcome::Failed {
                        message: format!("{} {what}", problems.len()),
                        detail: problems.join("\n"),
                    }
                },
                output: String::new(),
                properties: Vec::new(),
            });
        }
        let failed: Vec<String> = subcases
            .iter()
            .filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. }))
            .map(|c| c.name.clone())
            .collect();
        StepOutcome {
            summary: format!(
                "{} drifts made, found and repaired in {:.1}s",
                output.results.len(),
                output.seconds
            ),
            failure: (!failed.is_empty())
                .then(|| format!("drift: {} failed: {}", failed.len(), failed.join("; "))),
            subcases,
            properties: Vec::new(),
        }
    }
}

fn drift_case(r: &DriftResult) -> SubCase {
    let mut problems = Vec::new();
    if let Some(e) = &r.not_made {
        problems.push(format!("making it failed: {e}"));
    }
    if !r.missed.is_empty() {
        problems.push(format!("check mode did not list: {}", r.missed.join("; ")));
    }
    if let Some(e) = &r.not_repaired {
        problems.push(format!(
            "not repaired on {} (`{}`): {e}",
            r.drift.host, r.drift.repaired
        ));
    }
    let expected: Vec<String> = r
        .drift
        .expect
        .iter()
        .map(|(h, res)| format!("{h}: {res}"))
        .collect();
    SubCase {
        group: "drift",
        name: format!("drift: {}", r.drift.name),
        seconds: 0.0,
        outcome: if problems.is_empty() {
            CaseOutcome::Passed
        } else {
            CaseOutcome::Failed {
                message: format!("{}: drift '{}' {}", r.drift.host, r.drift.name, problems[0]),
                detail: problems.join("\n"),
            }
        },
        output: format!(
            "made on {}: {}\nfound: {}\nrepaired: {}",
            r.drift.host,
            r.drift.command,
            expected.join("; "),
            r.drift.repaired
        ),
        properties: vec![("host".into(), r.drift.host.clone())],
    }
}

/// Drift is found through the hash index, as every idempotence run finds it: a hand change
/// must show without `--full-hash`.
fn indexed(mode: Mode) -> Options {
    Options::installer(mode, false)
}
