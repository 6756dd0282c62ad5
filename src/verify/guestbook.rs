//! The guestbook application from the bundle's images, the seeds' example workload: a redis
//! leader on one worker, a follower and a web frontend on another, each behind a Service at
//! a fixed ClusterIP (there is no cluster DNS); a message stored through the frontend is
//! read back from the follower.

use super::traffic::pod_pid;
use super::{Check, Expect};
use crate::cluster::commands::kubectl;
use crate::cluster::images::{GUESTBOOK_FRONTEND, REDIS};
use crate::cluster::{Cluster, GUESTBOOK_SERVICE_OFFSETS, Node};

/// Label (`app=`) and name prefix of every object of the guestbook check.
const GUESTBOOK: &str = "kubeforge-guestbook";

/// The guestbook's checks in stages (each depends on the one before); skipped with the
/// reason when the cluster has fewer than two workers or too small a service range.
pub(super) fn stages(cluster: &Cluster) -> Vec<Vec<Check>> {
    let workers: Vec<&Node> = cluster.workers().collect();
    let (Some(master), [a, b, ..]) = (cluster.first_master(), workers.as_slice()) else {
        return vec![vec![Check::skipped(
            "guestbook stores a message and reads it back",
            "the guestbook needs two workers",
        )]];
    };
    let net = cluster.settings.service_range;
    let [Some(leader_ip), Some(follower_ip), Some(frontend_ip)] =
        GUESTBOOK_SERVICE_OFFSETS.map(|offset| net.nth(offset).map(|ip| ip.to_string()))
    else {
        return vec![vec![Check::skipped(
            "guestbook stores a message and reads it back",
            format!("the service range {net} has no room for the guestbook's fixed ClusterIPs"),
        )]];
    };
    guestbook(
        cluster,
        master,
        a,
        b,
        [&leader_ip, &follower_ip, &frontend_ip],
    )
    .into_iter()
    .map(|c| vec![c])
    .collect()
}

/// The guestbook's checks, in order.
fn guestbook(cluster: &Cluster, master: &Node, a: &Node, b: &Node, ips: [&str; 3]) -> Vec<Check> {
    let [_, _, frontend_ip] = ips;
    let k = kubectl();
    let (ready, rollout) = (cluster.timeouts.secs(35), cluster.timeouts.secs(15));
    let on_master = |name: String, command: String, expect: Expect, seconds: u64| {
        Check::on(&master.name, name, command, expect).within(seconds)
    };
    let list = guestbook_objects(a, b, ips);
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
                "echo '{list}' | {k} apply -f - >/dev/null && {k} wait --for=condition=Ready pod/{GUESTBOOK}-redis-leader pod/{GUESTBOOK}-redis-follower --timeout={ready}s >/dev/null && {k} rollout status deployment/{GUESTBOOK}-frontend --timeout={rollout}s >/dev/null && {k} get pod {GUESTBOOK}-redis-leader {GUESTBOOK}-redis-follower -o jsonpath='{{range .items[*]}}{{.spec.nodeName}} {{end}}'"
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
        Check::on(
            &a.name,
            "guestbook stores a message through the frontend and reads it back",
            format!(
                "pid={pid}; [ -n \"$pid\" ] || {{ echo 'redis leader pod is not running here'; exit 1; }}; get() {{ printf 'GET %s HTTP/1.0\\r\\n\\r\\n' \"$1\" | nsenter -t \"$pid\" -n socat -T5 - TCP:{frontend_ip}:80,connect-timeout=3 2>&1 | tr -d '\\r'; }}; body() {{ printf '%s\\n' \"$1\" | sed '1,/^$/d'; }}; r=$(get '/set?msg={message}'); [ \"$(body \"$r\")\" = OK ] || {{ echo \"/set answered: $r\"; exit 1; }}; for i in $(seq 20); do r=$(get /get); [ \"$(body \"$r\")\" = {message} ] && {{ echo {message}; exit 0; }}; sleep 1; done; echo \"/get answered: $r\"",
                pid = pod_pid(&format!("{GUESTBOOK}-redis-leader")),
            ),
            Expect::Output(message),
        )
        .within(5),
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
