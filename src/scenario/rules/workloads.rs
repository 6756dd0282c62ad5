//! The scenario's own workloads against the cluster they are applied to: a Service's fixed
//! clusterIP must be one the API server can give it (in the service range, not the
//! kubernetes or DNS Service's, not one verify gives its probes, not another workload's),
//! and a pod pinned to a node by `kubernetes.io/hostname` must name a Kubernetes node of
//! the scenario. Either mistake would otherwise show only at converge or as a pod that
//! stays Pending.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::Refusal;
use crate::scenario::{Group, Scenario};

/// Where a pod's spec sits in the workload kinds that carry one.
const POD_SPECS: [&str; 3] = [
    "/spec",
    "/spec/template/spec",
    "/spec/jobTemplate/spec/template/spec",
];
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

pub(crate) fn check(s: &Scenario) -> Result<(), Refusal> {
    let mut taken: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for (i, w) in s.workloads.iter().enumerate() {
        let at = format!("workloads.{i}");
        let file = w.path.display();
        // Already read as objects when the workload was loaded: the text is YAML.
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(&w.text).unwrap_or_default();
        for doc in docs.iter().filter(|d| !d.is_null()) {
            let what = format!(
                "{} {} in workload {file}",
                doc["kind"].as_str().unwrap_or_default(),
                object_name(doc)
            );
            if let Some(ip) = cluster_ip(doc) {
                service_address(s, &at, &what, ip, &taken)?;
                taken.insert(ip, what.clone());
            }
            pinned_node(s, &at, &what, doc)?;
        }
    }
    Ok(())
}

/// `namespace/name`, the namespace being `default` when the manifest gives none.
fn object_name(doc: &Value) -> String {
    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{}/{name}", ns.unwrap_or("default"))
}

/// A Service's fixed clusterIP (not `None`, not left to the allocator).
fn cluster_ip(doc: &Value) -> Option<Ipv4Addr> {
    if doc["kind"] != "Service" {
        return None;
    }
    doc.pointer("/spec/clusterIP")?.as_str()?.parse().ok()
}

fn service_address(
    s: &Scenario,
    at: &str,
    what: &str,
    ip: Ipv4Addr,
    taken: &BTreeMap<Ipv4Addr, String>,
) -> Result<(), Refusal> {
    let range = s.cluster.service_range;
    let refuse = |why: String| Refusal::new(at, format!("{what}: clusterIP {ip} {why}"));
    if !range.contains(ip) || ip == range.network() || ip == range.broadcast() {
        return Err(refuse(format!(
            "is not an address cluster.service_range {range} gives Services: the API server would refuse it"
        )));
    }
    if range.nth(1) == Some(ip) {
        return Err(refuse("is the kubernetes Service's address".into()));
    }
    if ip == s.cluster.dns_service_ip {
        return Err(Refusal::new(
            "cluster.dns_service_ip",
            format!(
                "cluster.dns_service_ip {ip} is also the clusterIP of {what}: one of the two Services could not be created"
            ),
        )
        .or_at(at));
    }
    let nodes = s
        .platforms
        .iter()
        .filter(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker))
        .count();
    if let Some(offset) = crate::cluster::verify_service_offsets(nodes)
        .into_iter()
        .find(|&o| range.nth(o) == Some(ip))
    {
        return Err(refuse(format!(
            "is the address verify gives a probe Service (offset {offset} of {range}): verify would fail with 'provided IP is already allocated'"
        )));
    }
    if let Some(other) = taken.get(&ip) {
        return Err(refuse(format!("is also the clusterIP of {other}")));
    }
    Ok(())
}

/// A pod spec's `nodeSelector: {kubernetes.io/hostname: NODE}` names a Kubernetes node.
fn pinned_node(s: &Scenario, at: &str, what: &str, doc: &Value) -> Result<(), Refusal> {
    let pinned = POD_SPECS.iter().find_map(|p| {
        doc.pointer(&format!("{p}/nodeSelector"))?
            .get(HOSTNAME_LABEL)?
            .as_str()
    });
    let Some(node) = pinned else {
        return Ok(());
    };
    let nodes: Vec<&str> = s
        .platforms
        .iter()
        .filter(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker))
        .map(|p| p.name.as_str())
        .collect();
    if nodes.contains(&node) {
        return Ok(());
    }
    Err(Refusal::new(
        at,
        format!(
            "{what}: nodeSelector {HOSTNAME_LABEL}: {node} is not a Kubernetes node of the scenario (nodes: {}): its pods would stay Pending",
            nodes.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;
    use crate::scenario::rules::testing::SEEDS;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: ADDR, ports: [{port: 80}]}\n";
    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  nodeSelector: {kubernetes.io/hostname: NODE}\n  containers: [{name: c, image: i}]\n";

    /// Loads the seeds' scenario (with `extra` settings) whose one workload is `manifest`.
    fn load(extra: &str, manifest: &str) -> Result<Scenario, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.yaml"), manifest).unwrap();
        let file = dir.path().join("scenario.yml");
        std::fs::write(&file, format!("{SEEDS}{extra}workloads:\n  - app.yaml\n")).unwrap();
        Scenario::load("t", &file).map_err(|e| e.to_string())
    }

    #[track_caller]
    fn refused(extra: &str, manifest: &str, at: &str, fragment: &str) {
        let e = load(extra, manifest).expect_err("accepted");
        assert!(e.contains(at) && e.contains(fragment), "{e}");
    }

    #[test]
    fn a_service_address_is_one_the_api_server_can_give() {
        load("", &SERVICE.replace("ADDR", "10.3.0.201")).unwrap();
        load("", &SERVICE.replace("ADDR", "None")).unwrap();
        refused(
            "",
            &SERVICE.replace("ADDR", "10.9.0.1"),
            "scenario.yml:11:5:",
            "Service default/web in workload app.yaml: clusterIP 10.9.0.1 is not an address cluster.service_range 10.3.0.0/24 gives Services",
        );
        refused(
            "",
            &SERVICE.replace("ADDR", "10.3.0.1"),
            ":11:5:",
            "is the kubernetes Service's address",
        );
        refused(
            "",
            &SERVICE.replace("ADDR", "10.3.0.211"),
            ":11:5:",
            "is the address verify gives a probe Service (offset 211",
        );
        let twice = format!(
            "{}---\n{}",
            SERVICE.replace("ADDR", "10.3.0.9"),
            SERVICE.replace("ADDR", "10.3.0.9").replace("web", "api")
        );
        refused(
            "",
            &twice,
            ":11:5:",
            "Service default/api in workload app.yaml: clusterIP 10.3.0.9 is also the clusterIP of Service default/web",
        );
    }

    #[test]
    fn the_dns_service_keeps_its_address() {
        refused(
            "cluster:\n  dns_service_ip: 10.3.0.201\n",
            &SERVICE.replace("ADDR", "10.3.0.201"),
            "scenario.yml:11:19:",
            "cluster.dns_service_ip 10.3.0.201 is also the clusterIP of Service default/web in workload app.yaml",
        );
    }

    #[test]
    fn a_pinned_pod_names_a_kubernetes_node() {
        load("", &POD.replace("NODE", "kube-worker-02")).unwrap();
        refused(
            "",
            &POD.replace("NODE", "kube-worker-03"),
            ":11:5:",
            "Pod default/web in workload app.yaml: nodeSelector kubernetes.io/hostname: kube-worker-03 is not a Kubernetes node of the scenario (nodes: kube-master-01, kube-worker-01, kube-worker-02)",
        );
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      nodeSelector: {kubernetes.io/hostname: etcd-01}\n";
        refused("", deployment, ":11:5:", "etcd-01 is not a Kubernetes node");
    }
}
