//! What a cluster must still do while some of its hosts are gone (the `side_effect` step):
//! answer through the load balancer, take a write, schedule and run a new pod, have leaders
//! for controller-manager and scheduler, and keep etcd's quorum. Each check runs on a host
//! that is still there.

use super::control_plane::leaders;
use super::{Check, Expect};
use crate::cluster::commands::{etcdctl, kubectl};
use crate::cluster::images::PAUSE;
use crate::cluster::{Cluster, Node};

/// How long the cluster may take to notice the loss and serve again (leases expire after
/// 15 s, the load balancer's health checks take a host out in 2).
const WINDOW: u64 = 60;

/// The checks, with `gone` the hosts the fault took away; `tag` keeps object names apart.
pub fn checks(cluster: &Cluster, gone: &[String], tag: &str) -> Vec<Check> {
    let here = |n: &&Node| !gone.contains(&n.name);
    let mut out = Vec::new();
    if let Some(master) = cluster.masters().find(here) {
        let k = kubectl();
        let (deleted, ready) = (cluster.timeouts.secs(20), cluster.timeouts.secs(40));
        let workers: Vec<&str> = cluster
            .workers()
            .filter(here)
            .map(|w| w.name.as_str())
            .collect();
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": format!("kubeforge-fault-{tag}"), "namespace": "default" },
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{ "name": "pause", "image": PAUSE, "imagePullPolicy": "Never" }],
            },
        });
        out.extend([
            Check::on(
                &master.name,
                format!("kubectl on {} reaches the API through its load balancer", master.name),
                format!("{k} get --raw /healthz"),
                Expect::Output("ok".into()),
            )
            .within(WINDOW),
            Check::on(
                &master.name,
                "a write through the API succeeds",
                // A fresh name each try: a create that timed out may still have been
                // written, and trying that name again would only ever say AlreadyExists.
                format!(
                    "n=kubeforge-fault-{tag}-$(date +%s%N); {k} create configmap \"$n\" --from-literal=at=\"$n\" >/dev/null && [ \"$({k} get configmap \"$n\" -o jsonpath='{{.data.at}}')\" = \"$n\" ] && {k} get configmap -o name | grep \"/kubeforge-fault-{tag}-\" | xargs {k} delete >/dev/null && echo written"
                ),
                Expect::Output("written".into()),
            )
            .within(WINDOW),
            Check::on(
                &master.name,
                "a new pod is scheduled on a node that is there and runs",
                format!(
                    "{k} delete pod kubeforge-fault-{tag} --ignore-not-found --wait=true --timeout={deleted}s >/dev/null; echo '{pod}' | {k} apply -f - >/dev/null && {k} wait --for=condition=Ready pod/kubeforge-fault-{tag} --timeout={ready}s >/dev/null && n=$({k} get pod kubeforge-fault-{tag} -o jsonpath='{{.spec.nodeName}}') && {k} delete pod kubeforge-fault-{tag} --wait=false >/dev/null && case \" {} \" in *\" $n \"*) echo running ;; *) echo \"on $n\" ;; esac",
                    workers.join(" ")
                ),
                Expect::Output("running".into()),
            )
            .within(WINDOW),
            leaders(cluster, master).within(WINDOW),
        ]);
    }
    let members: Vec<String> = cluster
        .etcd
        .iter()
        .filter(|m| !gone.contains(&m.name))
        .map(|m| m.client_url(cluster.settings.etcd.client_port))
        .collect();
    if let Some(member) = cluster.etcd.iter().find(|m| !gone.contains(&m.name)) {
        let e = etcdctl(&members.join(","));
        let key = format!("/kubeforge/fault/{tag}");
        out.push(
            Check::on(
                &member.name,
                "etcd keeps its quorum: a write is read back",
                format!(
                    "{e} put {key} ok >/dev/null && {e} get --print-value-only {key} && {e} del {key} >/dev/null"
                ),
                Expect::Output("ok".into()),
            )
            .within(WINDOW),
        );
    }
    out
}
