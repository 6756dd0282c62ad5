//! Pod traffic across the whole cluster: a probe pod on every node (masters tolerate it),
//! a listener in each that answers with the address it saw, then from every node's pod to
//! every other node's pod, by pod IP and through a ClusterIP Service, the answer must be the
//! client pod's own address (no NAT); and every node's host network reaches a pod on
//! another node, by its address and through its Service.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Check, CheckResult, Expect, Selection, Verdict, run_stage};
use crate::cluster::commands::{ctr, kubectl};
use crate::cluster::images::PAUSE;
use crate::cluster::{Cluster, Node, PROBE_SERVICE_OFFSET as SERVICE_OFFSET};
use crate::connections::Connections;

/// Label (`app=`) and name prefix of the probe pods and Services.
const PROBE: &str = "kubeforge-probe";
const PROBE_PORT: u16 = 9000;
/// How long a connection check may retry (a route or a rule settling).
const WINDOW: u64 = 20;

/// PID of a running task of pod `pod` on this node: a way into the pod's network namespace.
pub(super) fn pod_pid(pod: &str) -> String {
    task_pid(&format!("'labels.\"io.kubernetes.pod.name\"=={pod}'"))
}

/// PID of a running task of the containers `filter` (one shell word: a ctr filter) finds.
pub(super) fn task_pid(filter: &str) -> String {
    format!(
        "$({ctr} task ls | awk -v ids=\"$({ctr} containers ls -q {filter} | tr '\\n' ' ')\" 'BEGIN {{ n = split(ids, a, \" \"); for (i = 1; i <= n; i++) want[a[i]] = 1 }} want[$1] && $3 == \"RUNNING\" {{ print $2; exit }}')",
        ctr = ctr()
    )
}

fn probe_name(node: &Node) -> String {
    format!("{PROBE}-{}", node.name)
}

/// The probe pods (one per node, pinned by nodeSelector) and a Service for each.
fn probe_objects(cluster: &Cluster, services: &[Ipv4Addr]) -> serde_json::Value {
    let mut items = Vec::new();
    for (node, ip) in cluster.nodes.iter().zip(services) {
        let labels = serde_json::json!({ "app": PROBE, "node": node.name });
        items.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": probe_name(node), "namespace": "default", "labels": labels },
            "spec": {
                "nodeSelector": { "kubernetes.io/hostname": node.name },
                "tolerations": [{ "key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule" }],
                "terminationGracePeriodSeconds": 0,
                "containers": [{ "name": "pause", "image": PAUSE, "imagePullPolicy": "Never" }],
            },
        }));
        items.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": probe_name(node), "namespace": "default", "labels": { "app": PROBE } },
            "spec": {
                "clusterIP": ip.to_string(),
                "selector": labels,
                "ports": [{ "port": PROBE_PORT, "targetPort": PROBE_PORT }],
            },
        }));
    }
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// The probes, the listeners and every selected connection between nodes; nothing when
/// `selection` wants none of these checks.
pub(super) async fn run(
    cluster: &Cluster,
    connections: &Connections,
    selection: &Selection,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let Some(master) = cluster.first_master() else {
        return Vec::new();
    };
    let support = ["probe pod", "listener", "probe pods and Services deleted"];
    let wanted = pairs(cluster).iter().any(|p| selection.wants(&p.name))
        || support.iter().any(|s| selection.wants(s));
    if !wanted {
        return Vec::new();
    }
    let n = cluster.nodes.len();
    let services: Option<Vec<Ipv4Addr>> = (0..n as u32)
        .map(|i| cluster.settings.service_range.nth(SERVICE_OFFSET + i))
        .collect();
    if n < 2 {
        return skip_all(
            &["pod traffic between nodes"],
            "fewer than two Kubernetes nodes: no traffic between nodes to check",
            report,
        );
    }
    let Some(services) = services else {
        return skip_all(
            &["pod traffic between nodes"],
            &format!(
                "the service range {} has no room for a probe Service per node (offsets {SERVICE_OFFSET}-{})",
                cluster.settings.service_range,
                SERVICE_OFFSET + n as u32 - 1
            ),
            report,
        );
    };
    let mut results = run_stage(
        vec![deploy(cluster, master, &services)],
        connections,
        report,
    )
    .await;
    let pods = pod_addresses(cluster, &mut results[0]);
    let Some(pods) = pods else {
        results.extend(skip_all(
            &["listeners and pod traffic"],
            "the probe pods are not Running on every node",
            report,
        ));
        results.extend(run_stage(vec![cleanup(master)], connections, report).await);
        return results;
    };
    let listeners = cluster.nodes.iter().map(listener).collect();
    results.extend(run_stage(listeners, connections, report).await);
    results.extend(
        run_stage(
            connections_between(cluster, &pods, &services, selection),
            connections,
            report,
        )
        .await,
    );
    results.extend(run_stage(vec![cleanup(master)], connections, report).await);
    results
}

fn skip_all(
    names: &[&str],
    reason: &str,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    names
        .iter()
        .map(|name| {
            let result = CheckResult {
                check: Check::skipped(*name, reason),
                verdict: Verdict::Skipped,
                seconds: 0.0,
                detail: reason.to_string(),
            };
            report(&result);
            result
        })
        .collect()
}

/// Applies the probe objects, waits for the pods to be Ready, prints `node=pod IP`.
fn deploy(cluster: &Cluster, master: &Node, services: &[Ipv4Addr]) -> Check {
    let k = kubectl();
    let list = probe_objects(cluster, services);
    let (gone, ready) = (cluster.timeouts.secs(30), cluster.timeouts.secs(40));
    Check::on(
        &master.name,
        format!("a probe pod Running on each of the {} nodes", cluster.nodes.len()),
        format!(
            "{k} delete pods,services -l app={PROBE} --ignore-not-found --wait=true --timeout={gone}s >/dev/null; echo '{list}' | {k} apply -f - >/dev/null && {k} wait --for=condition=Ready pod -l app={PROBE} --timeout={ready}s >/dev/null && {k} get pods -l app={PROBE} -o jsonpath='{{range .items[*]}}{{.spec.nodeName}}={{.status.podIP}}{{\"\\n\"}}{{end}}' | sort"
        ),
        Expect::Success,
    )
    .within(45)
}

/// Each node's probe pod address from the deploy check's output; the check fails unless
/// every node has one, inside that node's pod CIDR.
fn pod_addresses(
    cluster: &Cluster,
    deployed: &mut CheckResult,
) -> Option<BTreeMap<String, Ipv4Addr>> {
    if !deployed.passed() {
        return None;
    }
    let seen: BTreeMap<String, Ipv4Addr> = deployed
        .detail
        .lines()
        .filter_map(|l| {
            let (node, ip) = l.split_once('=')?;
            Some((node.to_string(), ip.parse().ok()?))
        })
        .collect();
    let wrong: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| !seen.get(&n.name).is_some_and(|ip| n.pod_cidr.contains(*ip)))
        .map(|n| format!("{} (pod CIDR {})", n.name, n.pod_cidr))
        .collect();
    if wrong.is_empty() {
        return Some(seen);
    }
    deployed.verdict = Verdict::Failed;
    deployed.detail = format!(
        "no probe pod with an address of its node's pod CIDR on: {}; seen: {}",
        wrong.join(", "),
        deployed.detail
    );
    None
}

/// In the node's probe pod, a listener that answers each connection with the peer address
/// it saw.
fn listener(node: &Node) -> Check {
    Check::on(
        &node.name,
        format!("listener in the probe pod on {}", node.name),
        format!(
            "pid={pid}; [ -n \"$pid\" ] || {{ echo 'the probe pod is not running here'; exit 1; }}; setsid timeout 90 nsenter -t \"$pid\" -n socat TCP-LISTEN:{PROBE_PORT},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' </dev/null >/dev/null 2>&1 & sleep 1; echo listening",
            pid = pod_pid(&probe_name(node))
        ),
        Expect::Output("listening".into()),
    )
    .within(10)
}

/// From `from`'s probe pod (or its host network), connect to `target` and print what the
/// listener saw; the check expects the client's own address.
fn connect(from: &Node, in_pod: bool, target: &str, name: String, expect: String) -> Check {
    let (enter, mine) = if in_pod {
        (
            format!(
                "pid={pid}; [ -n \"$pid\" ] || {{ echo 'the probe pod is not running here'; exit 1; }}; ",
                pid = pod_pid(&probe_name(from))
            ),
            "nsenter -t \"$pid\" -n ",
        )
    } else {
        (String::new(), "")
    };
    Check::on(
        &from.name,
        name,
        format!(
            "{enter}seen=$({mine}socat -T3 - TCP:{target}:{PROBE_PORT},connect-timeout=3 </dev/null 2>&1); echo \"$seen\""
        ),
        Expect::Output(expect),
    )
    .within(WINDOW)
}

/// One connection check: from a node's probe pod (or its host network) to another node's
/// pod, by pod IP or through that pod's Service.
struct Pair<'a> {
    from: &'a Node,
    to: &'a Node,
    in_pod: bool,
    via_service: bool,
    name: String,
}

/// Every ordered pair of nodes: by pod IP and through the target's Service; and each node's
/// host network to the next node's pod, by pod IP and through its Service (a host needs a
/// route to the service range for that). Names only: addresses are known once pods run.
fn pairs(cluster: &Cluster) -> Vec<Pair<'_>> {
    let nodes = &cluster.nodes;
    let mut out = Vec::new();
    for a in nodes {
        for b in nodes.iter().filter(|b| b.name != a.name) {
            for via_service in [false, true] {
                let how = if via_service {
                    "through a ClusterIP Service"
                } else {
                    "by pod IP"
                };
                out.push(Pair {
                    from: a,
                    to: b,
                    in_pod: true,
                    via_service,
                    name: format!("pod on {} reaches pod on {} {how} (no NAT)", a.name, b.name),
                });
            }
        }
    }
    for (i, a) in nodes.iter().enumerate() {
        let b = &nodes[(i + 1) % nodes.len()];
        for via_service in [false, true] {
            let how = if via_service {
                "through its ClusterIP Service"
            } else {
                "by pod IP"
            };
            out.push(Pair {
                from: a,
                to: b,
                in_pod: false,
                via_service,
                name: format!(
                    "host network of {} reaches the pod on {} {how}",
                    a.name, b.name
                ),
            });
        }
    }
    out
}

/// The selected pairs as checks: each expects the client's own address (its pod's, or its
/// host's from the host network).
fn connections_between(
    cluster: &Cluster,
    pods: &BTreeMap<String, Ipv4Addr>,
    services: &[Ipv4Addr],
    selection: &Selection,
) -> Vec<Check> {
    let service_of = |node: &Node| {
        let i = cluster.nodes.iter().position(|n| n.name == node.name);
        i.map(|i| services[i]).expect("a service per node")
    };
    pairs(cluster)
        .into_iter()
        .filter(|p| selection.wants(&p.name))
        .map(|p| {
            let target = if p.via_service {
                service_of(p.to)
            } else {
                pods[&p.to.name]
            };
            let mine = if p.in_pod {
                pods[&p.from.name].to_string()
            } else {
                p.from.address.to_string()
            };
            connect(p.from, p.in_pod, &target.to_string(), p.name, mine)
        })
        .collect()
}

fn cleanup(master: &Node) -> Check {
    Check::on(
        &master.name,
        "probe pods and Services deleted",
        format!(
            "{} delete pods,services -l app={PROBE} --wait=false >/dev/null && echo deleted",
            kubectl()
        ),
        Expect::Output("deleted".into()),
    )
    .within(10)
}
