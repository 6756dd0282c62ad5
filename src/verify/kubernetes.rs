//! Smoke tests of the Kubernetes cluster, run with the admin kubeconfig on the first master
//! (and, for pod traffic, inside pod network namespaces on the workers).

use super::{Check, Expect};
use crate::inventory::{Host, Inventory};
use crate::roles::kubernetes::{SSL_DIR, kubectl};
use crate::roles::runtime::{PAUSE_IMAGE, ctr};
use crate::scenario::{Group, Scenario, cidr_nth, parse_cidr};

/// Name prefix of the throwaway pods of the cross-node traffic check.
const PROBE: &str = "kubeforge-probe";
const PROBE_PORT: u16 = 9000;
/// The probe Service's fixed ClusterIP: this offset into the service range.
const PROBE_SERVICE_OFFSET: u32 = 200;

fn is_node(h: &&Host) -> bool {
    h.in_group(Group::KubeMaster) || h.in_group(Group::KubeWorker)
}

/// A request without credentials must be refused with 401, not served. socat speaks TLS
/// (verifying the server against the cluster CA) without presenting a client certificate.
fn refuses_anonymous(address: &str, path: &str) -> String {
    format!(
        "status=$(printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | socat -T5 - OPENSSL:{address},cafile={SSL_DIR}/ca.pem 2>&1 | head -n 1 | tr -d '\\r'); case \"$status\" in *' 401 '*) echo refused ;; *) echo \"answered: $status\" ;; esac"
    )
}

/// PID of a running task of pod `pod` on this node: a way into the pod's network namespace.
fn pod_pid(pod: &str) -> String {
    format!(
        "$({ctr} task ls | awk -v ids=\"$({ctr} containers ls -q 'labels.\"io.kubernetes.pod.name\"=={pod}' | tr '\\n' ' ')\" 'BEGIN {{ n = split(ids, a, \" \"); for (i = 1; i <= n; i++) want[a[i]] = 1 }} want[$1] && $3 == \"RUNNING\" {{ print $2; exit }}')",
        ctr = ctr()
    )
}

pub fn checks(scenario: &Scenario, inventory: &Inventory) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(master) = inventory.group(Group::KubeMaster).next() else {
        return out;
    };
    let nodes: Vec<&Host> = inventory.hosts.iter().filter(is_node).collect();
    let k = kubectl();
    let on_master = |name: String, command: String, expect: Expect, attempts: u32| Check {
        name,
        host: master.name.clone(),
        command,
        expect,
        attempts,
    };
    let port = scenario.cluster.apiserver_port;
    out.push(on_master(
        "kube-apiserver healthy over TLS".into(),
        format!("{k} get --raw /healthz"),
        Expect::Output("ok".into()),
        60,
    ));
    let mut ready: Vec<String> = nodes.iter().map(|h| format!("{}=True", h.name)).collect();
    ready.sort();
    out.push(on_master(
        format!("all {} nodes registered and Ready", nodes.len()),
        format!(
            "{k} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}}={{.status.conditions[?(@.type==\"Ready\")].status}}{{\"\\n\"}}{{end}}' | sort"
        ),
        Expect::Output(ready.join("\n")),
        120,
    ));
    let masters: Vec<&Host> = inventory.group(Group::KubeMaster).collect();
    for m in &masters {
        out.push(on_master(
            format!("{} registered with the NoSchedule master taint", m.name),
            format!(
                "{k} get node {} -o jsonpath='{{range .spec.taints[*]}}{{.key}}:{{.effect}}{{end}}'",
                m.name
            ),
            Expect::Output("node-role.kubernetes.io/master:NoSchedule".into()),
            10,
        ));
    }
    // Static pods appear in the API as mirror pods named <component>-<node>.
    let mut pods: Vec<String> = Vec::new();
    for m in &masters {
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            pods.push(format!("{c}-{}", m.name));
        }
    }
    for n in &nodes {
        pods.push(format!("kube-proxy-{}", n.name));
    }
    let phases = pods
        .iter()
        .map(|p| format!("{p}=Running"))
        .collect::<Vec<_>>()
        .join("\n");
    out.push(on_master(
        format!("control plane and kube-proxy pods Running ({})", pods.len()),
        format!(
            "for p in {}; do echo \"$p=$({k} -n kube-system get pod \"$p\" -o jsonpath='{{.status.phase}}' 2>/dev/null)\"; done",
            pods.join(" ")
        ),
        Expect::Output(phases),
        120,
    ));
    out.push(on_master(
        "kube-apiserver refuses anonymous requests".into(),
        refuses_anonymous(&format!("{}:{port}", master.address), "/api"),
        Expect::Output("refused".into()),
        3,
    ));
    for n in &nodes {
        out.push(on_master(
            format!("kubelet on {} refuses anonymous requests", n.name),
            refuses_anonymous(&format!("{}:10250", n.address), "/pods"),
            Expect::Output("refused".into()),
            3,
        ));
    }
    out.push(on_master(
        "kubectl logs reaches a kubelet (apiserver -> kubelet TLS)".into(),
        format!(
            "{k} -n kube-system logs kube-proxy-{} --tail=1 >/dev/null && echo ok",
            nodes.last().map_or("", |n| n.name.as_str())
        ),
        Expect::Output("ok".into()),
        10,
    ));

    // Two workers: a pod on each (scheduled by nodeSelector) and a Service in front of the
    // second one at a fixed ClusterIP. A TCP connection from the first pod through the
    // Service (kube-proxy) must arrive at the other node from the first pod's own address.
    let workers: Vec<&Host> = inventory.group(Group::KubeWorker).collect();
    let service_ip = parse_cidr(&scenario.cluster.service_range)
        .ok()
        .filter(|(_, prefix)| *prefix <= 24)
        .map(|net| cidr_nth(net, PROBE_SERVICE_OFFSET));
    if let ([a, b, ..], Some(service_ip)) = (workers.as_slice(), service_ip) {
        let pod = |w: &Host, suffix: &str| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": format!("{PROBE}-{suffix}"),
                    "namespace": "default",
                    "labels": { "app": format!("{PROBE}-{suffix}") },
                },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": w.name },
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{ "name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never" }],
                },
            })
        };
        let service = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": PROBE, "namespace": "default" },
            "spec": {
                "clusterIP": service_ip.to_string(),
                "selector": { "app": format!("{PROBE}-b") },
                "ports": [{ "port": PROBE_PORT, "targetPort": PROBE_PORT }],
            },
        });
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [pod(a, "a"), pod(b, "b"), service],
        });
        out.push(on_master(
            format!("probe pods scheduled and Running on {} and {}", a.name, b.name),
            format!(
                "echo '{list}' | {k} apply -f - >/dev/null && {k} wait --for=condition=Ready pod/{PROBE}-a pod/{PROBE}-b --timeout=60s >/dev/null && {k} get pod {PROBE}-a {PROBE}-b -o jsonpath='{{range .items[*]}}{{.spec.nodeName}} {{end}}'"
            ),
            Expect::Output(format!("{} {}", a.name, b.name)),
            2,
        ));
        // The listener answers each connection with the peer address it saw.
        out.push(Check {
            name: format!("listener in the probe pod on {}", b.name),
            host: b.name.clone(),
            command: format!(
                "pid={pid}; [ -n \"$pid\" ] || {{ echo 'probe pod b is not running here'; exit 1; }}; setsid timeout 60 nsenter -t \"$pid\" -n socat TCP-LISTEN:{PROBE_PORT},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' </dev/null >/dev/null 2>&1 & sleep 1; echo listening",
                pid = pod_pid(&format!("{PROBE}-b"))
            ),
            expect: Expect::Output("listening".into()),
            attempts: 3,
        });
        out.push(Check {
            name: format!(
                "pod on {} reaches pod on {} through a Service, with its own address (no NAT)",
                a.name, b.name
            ),
            host: a.name.clone(),
            command: format!(
                "pid={pid}; [ -n \"$pid\" ] || {{ echo 'probe pod a is not running here'; exit 1; }}; mine=$(nsenter -t \"$pid\" -n ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1); seen=$(nsenter -t \"$pid\" -n socat -T5 - TCP:{service_ip}:{PROBE_PORT} </dev/null 2>&1); if [ \"$seen\" = \"$mine\" ]; then echo no-nat; else echo \"pod $mine reached {service_ip}:{PROBE_PORT}, which saw '$seen'\"; fi",
                pid = pod_pid(&format!("{PROBE}-a")),
            ),
            expect: Expect::Output("no-nat".into()),
            attempts: 5,
        });
        out.push(on_master(
            "probe pods and Service deleted".into(),
            format!("{k} delete pod/{PROBE}-a pod/{PROBE}-b service/{PROBE} --wait=false >/dev/null && echo deleted"),
            Expect::Output("deleted".into()),
            3,
        ));
    }
    out
}
