//! The control plane's checks, run with the admin kubeconfig on the first master: the API
//! answers, every node is Ready, masters carry their taint, the control-plane and kube-proxy
//! pods are Ready and do not restart, nobody anonymous is served, `kubectl logs` works.

use super::{Check, Expect};
use crate::cluster::commands::{self, kubectl};
use crate::cluster::paths::K8S_SSL_DIR;
use crate::cluster::{Cluster, Node};

/// How long nodes and pods may take to settle after converge.
const SETTLE: u64 = 60;
/// The window over which restart counts must stay the same.
const RESTART_WINDOW_SECS: u32 = 5;
const MASTER_TAINT: &str = "node-role.kubernetes.io/master:NoSchedule";

/// The API answers and every node is registered and Ready: what node-level checks need.
pub(super) fn api_and_nodes(cluster: &Cluster) -> Vec<Check> {
    let Some(master) = cluster.first_master() else {
        return vec![Check::skipped(
            "Kubernetes",
            "the scenario has no Kubernetes nodes",
        )];
    };
    let k = kubectl();
    let mut ready: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("{}=True", n.name))
        .collect();
    ready.sort();
    vec![
        Check::on(
            &master.name,
            "kube-apiserver healthy over TLS",
            format!("{k} get --raw /healthz"),
            Expect::Output("ok".into()),
        )
        .within(SETTLE),
        Check::on(
            &master.name,
            format!("all {} nodes registered and Ready", cluster.nodes.len()),
            format!(
                "{k} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}}={{.status.conditions[?(@.type==\"Ready\")].status}}{{\"\\n\"}}{{end}}' | sort"
            ),
            Expect::Output(ready.join("\n")),
        )
        .within(SETTLE),
    ]
}

/// Once nodes are Ready: taints, the control plane's pods, anonymous access, logs.
pub(super) fn node_checks(cluster: &Cluster) -> Vec<Check> {
    let Some(master) = cluster.first_master() else {
        return Vec::new();
    };
    let k = kubectl();
    let mut out: Vec<Check> = cluster
        .masters()
        .map(|m| {
            Check::on(
                &master.name,
                format!("{} registered with the NoSchedule master taint", m.name),
                format!(
                    "{k} get node {} -o jsonpath='{{range .spec.taints[*]}}{{.key}}:{{.effect}}{{\"\\n\"}}{{end}}' | grep -qxF '{MASTER_TAINT}' && echo present",
                    m.name
                ),
                Expect::Output("present".into()),
            )
            .within(10)
        })
        .collect();
    out.push(pods_ready_and_steady(cluster, master));
    out.push(leaders(cluster, master).within(SETTLE));
    out.extend(access(cluster, master));
    out
}

/// The control plane's static pods (mirror pods `<component>-<node>`) and every node's
/// kube-proxy are Ready, and their restart counts do not grow over a short window: a
/// crash-looping component fails even while it happens to be up.
fn pods_ready_and_steady(cluster: &Cluster, master: &Node) -> Check {
    let k = kubectl();
    let mut pods: Vec<String> = Vec::new();
    for m in cluster.masters() {
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            pods.push(format!("{c}-{}", m.name));
        }
    }
    pods.extend(
        cluster
            .nodes
            .iter()
            .map(|n| format!("kube-proxy-{}", n.name)),
    );
    let expected: Vec<String> = pods.iter().map(|p| format!("{p}=Ready")).collect();
    let snapshot = format!(
        "snap() {{ for p in {}; do echo \"$p $({k} -n kube-system get pod \"$p\" -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}} {{.status.containerStatuses[0].restartCount}}' 2>/dev/null)\"; done; }}",
        pods.join(" ")
    );
    Check::on(
        &master.name,
        format!(
            "control plane and kube-proxy pods Ready, not restarting over {RESTART_WINDOW_SECS}s ({})",
            pods.len()
        ),
        format!(
            "{snapshot}; a=$(snap); sleep {RESTART_WINDOW_SECS}; b=$(snap); \
             echo \"$a\" | while read -r p ready n; do \
               now=$(echo \"$b\" | awk -v p=\"$p\" '$1 == p {{ print $3 }}'); \
               if [ \"$ready\" != True ]; then echo \"$p=NotReady\"; \
               elif [ \"$n\" != \"$now\" ]; then echo \"$p=restarting($n->$now)\"; \
               else echo \"$p=Ready\"; fi; done"
        ),
        Expect::Output(expected.join("\n")),
    )
    .within(SETTLE)
}

/// controller-manager and scheduler each have a leader among the masters, holding a lease
/// renewed within its duration: with several masters one of them leads, and takes over when
/// the other goes.
pub(super) fn leaders(cluster: &Cluster, on: &Node) -> Check {
    let masters: Vec<&str> = cluster.masters().map(|m| m.name.as_str()).collect();
    Check::on(
        &on.name,
        "controller-manager and scheduler each have a leader, a master renewing its lease",
        commands::leaders(&masters),
        Expect::Output(commands::all_led()),
    )
}

/// A request without credentials must be refused with 401, not served. socat speaks TLS
/// (verifying the server against the cluster CA) without presenting a client certificate.
fn refuses_anonymous(address: &str, path: &str) -> String {
    format!(
        "status=$(printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | socat -T5 - OPENSSL:{address},cafile={K8S_SSL_DIR}/ca.pem 2>&1 | head -n 1 | tr -d '\\r'); case \"$status\" in *' 401 '*) echo refused ;; *) echo \"answered: $status\" ;; esac"
    )
}

/// The API server and every kubelet refuse anonymous requests; `kubectl logs` reaches a
/// kubelet over TLS with the API server's client certificate.
fn access(cluster: &Cluster, master: &Node) -> Vec<Check> {
    let port = cluster.settings.apiserver_port;
    let mut out = vec![
        Check::on(
            &master.name,
            "kube-apiserver refuses anonymous requests",
            refuses_anonymous(&format!("{}:{port}", master.address), "/api"),
            Expect::Output("refused".into()),
        )
        .within(5),
    ];
    out.extend(cluster.nodes.iter().map(|n| {
        Check::on(
            &master.name,
            format!("kubelet on {} refuses anonymous requests", n.name),
            refuses_anonymous(&format!("{}:10250", n.address), "/pods"),
            Expect::Output("refused".into()),
        )
        .within(5)
    }));
    let last = cluster
        .nodes
        .last()
        .expect("a cluster with a master has nodes");
    out.push(
        Check::on(
            &master.name,
            "kubectl logs reaches a kubelet (apiserver -> kubelet TLS)",
            format!(
                "{} -n kube-system logs kube-proxy-{} --tail=1 >/dev/null && echo ok",
                kubectl(),
                last.name
            ),
            Expect::Output("ok".into()),
        )
        .within(15),
    );
    out
}
