//! Smoke tests of the Kubernetes cluster, run with the admin kubeconfig on the first master
//! (and, for pod traffic, inside pod network namespaces on the workers). Everything they
//! expect comes from the derived [`Cluster`].

use super::{Check, Expect};
use crate::cluster::commands::{ctr, kubectl};
use crate::cluster::images::{GUESTBOOK_FRONTEND, PAUSE, REDIS};
use crate::cluster::paths::K8S_SSL_DIR;
use crate::cluster::{Cluster, Node};

/// Name prefix of the throwaway pods of the cross-node traffic check.
const PROBE: &str = "kubeforge-probe";
const PROBE_PORT: u16 = 9000;
/// The probe Service's fixed ClusterIP: this offset into the service range.
const PROBE_SERVICE_OFFSET: u32 = 200;
/// Label (`app=`) and name prefix of every object of the guestbook check.
const GUESTBOOK: &str = "kubeforge-guestbook";
/// Fixed ClusterIPs (offsets into the service range) of the redis-leader, redis-follower
/// and frontend Services: without cluster DNS the pods are told these addresses.
const GUESTBOOK_SERVICE_OFFSETS: [u32; 3] = [201, 202, 203];

/// A request without credentials must be refused with 401, not served. socat speaks TLS
/// (verifying the server against the cluster CA) without presenting a client certificate.
fn refuses_anonymous(address: &str, path: &str) -> String {
    format!(
        "status=$(printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | socat -T5 - OPENSSL:{address},cafile={K8S_SSL_DIR}/ca.pem 2>&1 | head -n 1 | tr -d '\\r'); case \"$status\" in *' 401 '*) echo refused ;; *) echo \"answered: $status\" ;; esac"
    )
}

/// PID of a running task of pod `pod` on this node: a way into the pod's network namespace.
fn pod_pid(pod: &str) -> String {
    format!(
        "$({ctr} task ls | awk -v ids=\"$({ctr} containers ls -q 'labels.\"io.kubernetes.pod.name\"=={pod}' | tr '\\n' ' ')\" 'BEGIN {{ n = split(ids, a, \" \"); for (i = 1; i <= n; i++) want[a[i]] = 1 }} want[$1] && $3 == \"RUNNING\" {{ print $2; exit }}')",
        ctr = ctr()
    )
}

pub fn checks(cluster: &Cluster) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(master) = cluster.first_master() else {
        return out;
    };
    let nodes = &cluster.nodes;
    let k = kubectl();
    let on_master = |name: String, command: String, expect: Expect, attempts: u32| {
        Check::new(&master.name, name, command, expect, attempts)
    };
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
    let masters: Vec<&Node> = cluster.masters().collect();
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
    for n in nodes {
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
    out.extend(access_checks(cluster, master));
    out.extend(pod_traffic_checks(cluster, master));
    out
}

/// The API server and every kubelet refuse anonymous requests; `kubectl logs` reaches a
/// kubelet over TLS with the API server's client certificate.
fn access_checks(cluster: &Cluster, master: &Node) -> Vec<Check> {
    let mut out = Vec::new();
    let nodes = &cluster.nodes;
    let k = kubectl();
    let on_master = |name: String, command: String, expect: Expect, attempts: u32| {
        Check::new(&master.name, name, command, expect, attempts)
    };
    let port = cluster.settings.apiserver_port;
    out.push(on_master(
        "kube-apiserver refuses anonymous requests".into(),
        refuses_anonymous(&format!("{}:{port}", master.address), "/api"),
        Expect::Output("refused".into()),
        3,
    ));
    for n in nodes {
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

    out
}

/// Pods on two workers and a Service in front of one; the guestbook application.
fn pod_traffic_checks(cluster: &Cluster, master: &Node) -> Vec<Check> {
    let mut out = Vec::new();
    let k = kubectl();
    let on_master = |name: String, command: String, expect: Expect, attempts: u32| {
        Check::new(&master.name, name, command, expect, attempts)
    };
    // Two workers: a pod on each (scheduled by nodeSelector) and a Service in front of the
    // second one at a fixed ClusterIP. A TCP connection from the first pod through the
    // Service (kube-proxy) must arrive at the other node from the first pod's own address.
    let workers: Vec<&Node> = cluster.workers().collect();
    let service_ip = cluster.settings.service_range.nth(PROBE_SERVICE_OFFSET);
    if let ([a, b, ..], Some(service_ip)) = (workers.as_slice(), service_ip) {
        let pod = |w: &Node, suffix: &str| {
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
                    "containers": [{ "name": "pause", "image": PAUSE, "imagePullPolicy": "Never" }],
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
    if let [a, b, ..] = workers.as_slice() {
        out.extend(guestbook(cluster, master, a, b));
    }
    out
}

/// The guestbook application from the bundle's images: a redis leader on worker `a`, a
/// follower replicating from it and a frontend Deployment (writing to the leader, reading
/// from the follower) on worker `b`, each behind a Service at a fixed ClusterIP.
/// Its objects are removed before (leftovers of an interrupted run) and after.
fn guestbook(cluster: &Cluster, master: &Node, a: &Node, b: &Node) -> Vec<Check> {
    let net = cluster.settings.service_range;
    let [Some(leader_ip), Some(follower_ip), Some(frontend_ip)] =
        GUESTBOOK_SERVICE_OFFSETS.map(|offset| net.nth(offset).map(|ip| ip.to_string()))
    else {
        return Vec::new();
    };
    let k = kubectl();
    let on_master = |name: String, command: String, expect: Expect, attempts: u32| {
        Check::new(&master.name, name, command, expect, attempts)
    };
    let list = guestbook_objects(a, b, [&leader_ip, &follower_ip, &frontend_ip]);
    let kinds = "deployment,replicaset,pod,service";
    let delete =
        format!("{k} delete {kinds} -l app={GUESTBOOK} --ignore-not-found --wait=false >/dev/null");
    let message = format!("hello-kubeforge-{}", std::process::id());
    vec![
        on_master(
            "guestbook: no objects left from an earlier run".into(),
            format!(
                "{delete} && for i in $(seq 40); do [ -z \"$({k} get {kinds} -l app={GUESTBOOK} -o name)\" ] && {{ echo clean; exit 0; }}; sleep 1; done; {k} get {kinds} -l app={GUESTBOOK} -o name"
            ),
            Expect::Output("clean".into()),
            2,
        ),
        on_master(
            format!(
                "guestbook: redis leader on {}, follower and frontend on {} Running",
                a.name, b.name
            ),
            format!(
                "echo '{list}' | {k} apply -f - >/dev/null && {k} wait --for=condition=Ready pod/{GUESTBOOK}-redis-leader pod/{GUESTBOOK}-redis-follower --timeout=35s >/dev/null && {k} rollout status deployment/{GUESTBOOK}-frontend --timeout=15s >/dev/null && {k} get pod {GUESTBOOK}-redis-leader {GUESTBOOK}-redis-follower -o jsonpath='{{range .items[*]}}{{.spec.nodeName}} {{end}}'"
            ),
            Expect::Output(format!("{} {}", a.name, b.name)),
            2,
        ),
        on_master(
            "kubectl exec works (redis-cli ping in the redis leader pod)".into(),
            format!("{k} exec {GUESTBOOK}-redis-leader -- redis-cli ping"),
            Expect::Output("PONG".into()),
            5,
        ),
        // The client is the leader pod's network namespace on `a` (the masters have no route
        // to the service range), with the node's socat: pod -> Service -> frontend on `b`.
        // Replication is asynchronous: the follower is read until the message arrives.
        Check {
            name: "guestbook stores a message through the frontend and reads it back".into(),
            host: a.name.clone(),
            command: format!(
                "pid={pid}; [ -n \"$pid\" ] || {{ echo 'redis leader pod is not running here'; exit 1; }}; get() {{ printf 'GET %s HTTP/1.0\\r\\n\\r\\n' \"$1\" | nsenter -t \"$pid\" -n socat -T5 - TCP:{frontend_ip}:80 2>&1 | tr -d '\\r'; }}; body() {{ printf '%s\\n' \"$1\" | sed '1,/^$/d'; }}; r=$(get '/set?msg={message}'); [ \"$(body \"$r\")\" = OK ] || {{ echo \"/set answered: $r\"; exit 1; }}; for i in $(seq 20); do r=$(get /get); [ \"$(body \"$r\")\" = {message} ] && {{ echo {message}; exit 0; }}; sleep 1; done; echo \"/get answered: $r\"",
                pid = pod_pid(&format!("{GUESTBOOK}-redis-leader")),
            ),
            expect: Expect::Output(message),
            attempts: 2,
        },
        on_master(
            "guestbook objects deleted".into(),
            format!("{delete} && echo deleted"),
            Expect::Output("deleted".into()),
            3,
        ),
    ]
}

/// The guestbook's objects as one List: Services at fixed ClusterIPs (leader, follower,
/// frontend), the redis leader on `a`, the follower and the frontend Deployment on `b`.
fn guestbook_objects(
    a: &Node,
    b: &Node,
    [leader_ip, follower_ip, frontend_ip]: [&str; 3],
) -> serde_json::Value {
    let labels = |role: &str| serde_json::json!({ "app": GUESTBOOK, "role": role });
    let redis = |role: &str, node: &Node, command: Vec<String>| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": format!("{GUESTBOOK}-redis-{role}"), "namespace": "default", "labels": labels(role) },
            "spec": {
                "nodeSelector": { "kubernetes.io/hostname": node.name },
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "redis",
                    "image": REDIS,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "ports": [{ "containerPort": 6379 }],
                }],
            },
        })
    };
    let service = |name: &str, ip: &str, role: &str, port: u16| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "namespace": "default", "labels": labels(role) },
            "spec": { "clusterIP": ip, "selector": labels(role), "ports": [{ "port": port, "targetPort": port }] },
        })
    };
    let server = |extra: &[&str]| {
        ["/usr/bin/redis-server", "--protected-mode", "no"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let frontend = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": format!("{GUESTBOOK}-frontend"), "namespace": "default", "labels": labels("frontend") },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels("frontend") },
            "template": {
                "metadata": { "labels": labels("frontend") },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": b.name },
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "frontend",
                        "image": GUESTBOOK_FRONTEND,
                        "imagePullPolicy": "Never",
                        "env": [
                            { "name": "REDIS_LEADER_HOST", "value": leader_ip },
                            { "name": "REDIS_FOLLOWER_HOST", "value": follower_ip },
                        ],
                        "ports": [{ "containerPort": 80 }],
                    }],
                },
            },
        },
    });
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            service("redis-leader", leader_ip, "leader", 6379),
            service("redis-follower", follower_ip, "follower", 6379),
            service(&format!("{GUESTBOOK}-frontend"), frontend_ip, "frontend", 80),
            // Without the default 5 s wait for more replicas before a full sync.
            redis("leader", a, server(&["--repl-diskless-sync-delay", "0"])),
            redis("follower", b, server(&["--replicaof", leader_ip, "6379"])),
            frontend,
        ],
    })
}
