//! Hosts and group membership: every host has a unique name that can be a host name, node
//! name and certificate name, belongs to a group, and the groups make a cluster (etcd always;
//! a master wherever there are workers; no host asked to be a master and a worker at once).

use std::collections::HashSet;

use super::Refusal;
use crate::scenario::{Group, Scenario};

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    if s.platforms.is_empty() {
        return Err(Refusal::new(
            "platforms",
            "platforms: at least one host is needed",
        ));
    }
    names(s)?;
    membership(s)
}

/// A platform's name becomes the host name, the Kubernetes node name, the etcd member name
/// and part of certificate names (`system:node:<name>`) and file names: a DNS label.
fn names(s: &Scenario) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    for (i, p) in s.platforms.iter().enumerate() {
        let at = format!("platforms.{i}.name");
        if !is_dns_label(&p.name) {
            return Err(Refusal::new(
                at,
                format!(
                    "platform name '{}' is not a valid host name (lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'): it becomes the host name, the node name and certificate names",
                    p.name
                ),
            ));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(Refusal::new(
                at,
                format!("platform '{}' is declared twice", p.name),
            ));
        }
    }
    Ok(())
}

/// What the roles make of the groups: etcd members hold the cluster's state, every
/// kube-master host is a master node (registered with a NoSchedule taint), kubelets and
/// kube-proxy of every node talk to the first master.
fn membership(s: &Scenario) -> Result<(), Refusal> {
    for (i, p) in s.platforms.iter().enumerate() {
        let at = format!("platforms.{i}.groups");
        if p.groups.is_empty() {
            return Err(Refusal::new(
                at,
                format!("platform '{}' belongs to no group", p.name),
            ));
        }
        if p.in_group(Group::KubeMaster) && p.in_group(Group::KubeWorker) {
            return Err(Refusal::new(
                at,
                format!(
                    "platform '{}' is in both kube-master and kube-worker: a master is registered with the NoSchedule taint, so it would never run pods as a worker; put it in one of the two",
                    p.name
                ),
            ));
        }
    }
    if !s.platforms.iter().any(|p| p.in_group(Group::Etcd)) {
        return Err(Refusal::new(
            "platforms",
            "no host in group 'etcd': the cluster needs at least one etcd member",
        ));
    }
    let has_master = s.platforms.iter().any(|p| p.in_group(Group::KubeMaster));
    if let Some(i) = s
        .platforms
        .iter()
        .position(|p| p.in_group(Group::KubeWorker))
        && !has_master
    {
        return Err(Refusal::new(
            format!("platforms.{i}.groups"),
            format!(
                "platform '{}' is a kube-worker but no host is in group 'kube-master': its kubelet and kube-proxy would have no API server to register with",
                s.platforms[i].name
            ),
        ));
    }
    Ok(())
}

/// The scenario's own manifests are applied through the API server after the cluster is
/// up; a scenario without Kubernetes nodes would skip them without a word.
pub(crate) fn workloads_have_a_cluster(s: &Scenario, workloads: usize) -> Result<(), Refusal> {
    let has_nodes = s
        .platforms
        .iter()
        .any(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker));
    if workloads > 0 && !has_nodes {
        return Err(Refusal::new(
            "workloads",
            "workloads: the scenario has no Kubernetes nodes to apply them to; converge would skip them",
        ));
    }
    Ok(())
}

/// RFC 1123 label in lowercase: what Kubernetes requires of names that are DNS labels.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    #[test]
    fn hosts_need_a_name_that_is_a_dns_label_and_unique() {
        accepted(SEEDS);
        refused(
            &SEEDS.replace("kube-worker-02", "Kube_Worker"),
            8,
            "platform name 'Kube_Worker' is not a valid host name",
        );
        refused(
            &SEEDS.replace("kube-worker-02", "kube-worker-01"),
            8,
            "platform 'kube-worker-01' is declared twice",
        );
        refused("platforms: []\n", 1, "at least one host is needed");
    }

    #[test]
    fn every_host_is_in_a_group_and_etcd_has_a_member() {
        refused(
            &SEEDS.replace("groups: [etcd]", "groups: []"),
            3,
            "platform 'etcd-01' belongs to no group",
        );
        refused(
            &SEEDS.replace("groups: [etcd]", "groups: [kube-worker]"),
            2,
            "no host in group 'etcd'",
        );
    }

    #[test]
    fn workers_need_a_master() {
        let e = refused(
            &SEEDS.replace("[kube-master]", "[kube-worker]"),
            5,
            "platform 'kube-master-01' is a kube-worker but no host is in group 'kube-master'",
        );
        assert!(e.contains(":5:13:"), "{e}");
        // A master without workers is a cluster (verify skips the pod traffic checks); so
        // is etcd alone.
        accepted(&SEEDS.replace("[kube-worker]", "[kube-master]"));
        accepted("platforms:\n  - {name: etcd-01, groups: [etcd]}\n");
    }

    #[test]
    fn workloads_need_kubernetes_nodes() {
        refused(
            "platforms:\n  - {name: etcd-01, groups: [etcd]}\nworkloads:\n  - app.yaml\n",
            4,
            "workloads: the scenario has no Kubernetes nodes to apply them to",
        );
    }

    #[test]
    fn a_host_is_a_master_or_a_worker_not_both() {
        refused(
            &SEEDS.replace("[kube-master]", "[kube-master, kube-worker]"),
            5,
            "is in both kube-master and kube-worker",
        );
        // etcd on a master is a valid layout (ports permitting).
        accepted(&SEEDS.replace("[kube-master]", "[etcd, kube-master]"));
    }
}
