//! The faults of the `side_effect` step: they hit hosts of the scenario, only Podman hosts
//! can be killed, paused or cut off by kubeforge, the step and its faults come together, and
//! a fault must leave a cluster that can still serve (etcd's quorum, a master): otherwise
//! every check under it fails minutes later for a reason the scenario file already shows.

use super::Refusal;
use crate::scenario::{DriverConfig, FaultAction, Group, Scenario, Step};

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let has_step = s.sequence.contains(&Step::SideEffect);
    if has_step && s.faults.is_empty() {
        let i = s
            .sequence
            .iter()
            .position(|&x| x == Step::SideEffect)
            .unwrap_or(0);
        return Err(Refusal::new(
            format!("sequence.{i}"),
            "sequence: side_effect has no faults to make: declare them under `faults:`",
        ));
    }
    if !s.faults.is_empty() && !has_step {
        return Err(Refusal::new(
            "faults",
            "faults: the sequence has no side_effect step to make them",
        ));
    }
    if !s.faults.is_empty() && !matches!(s.driver, DriverConfig::Podman { .. }) {
        return Err(Refusal::new(
            "faults",
            "faults: only the podman driver's hosts can be killed, paused, cut off or replaced by kubeforge",
        ));
    }
    for (i, fault) in s.faults.iter().enumerate() {
        let at = |field: &str| format!("faults.{i}.{field}");
        if fault.hosts.is_empty() {
            return Err(Refusal::new(
                at("hosts"),
                format!("fault '{}' hits no host", fault.name),
            ));
        }
        if let Some(h) = fault
            .hosts
            .iter()
            .find(|h| !s.platforms.iter().any(|p| &p.name == *h))
        {
            return Err(Refusal::new(
                at("hosts"),
                format!("fault '{}': no platform named '{h}'", fault.name),
            ));
        }
        match (fault.action, &fault.unit) {
            (FaultAction::StopService, None) => {
                return Err(Refusal::new(
                    at("action"),
                    format!(
                        "fault '{}': stop-service needs the `unit` to stop",
                        fault.name
                    ),
                ));
            }
            (action, Some(_)) if action != FaultAction::StopService => {
                return Err(Refusal::new(
                    at("unit"),
                    format!("fault '{}': `unit` is only for stop-service", fault.name),
                ));
            }
            _ => {}
        }
        if fault.action.takes_hosts_away() {
            leaves_a_cluster(s, &fault.name, &fault.hosts)
                .map_err(|m| Refusal::new(at("hosts"), m))?;
        }
    }
    Ok(())
}

/// etcd keeps a quorum and at least one master remains when `hosts` are gone.
fn leaves_a_cluster(s: &Scenario, name: &str, hosts: &[String]) -> Result<(), String> {
    let count = |group: Group| {
        let all = s.hosts_in(group).count();
        let left = s
            .hosts_in(group)
            .filter(|p| !hosts.contains(&p.name))
            .count();
        (all, left)
    };
    let (etcd, etcd_left) = count(Group::Etcd);
    if etcd_left * 2 <= etcd {
        return Err(format!(
            "fault '{name}' leaves {etcd_left} of {etcd} etcd members: below a quorum ({}), etcd stops serving and nothing under the fault can pass",
            etcd / 2 + 1
        ));
    }
    let (masters, masters_left) = count(Group::KubeMaster);
    if masters > 0 && masters_left == 0 {
        return Err(format!(
            "fault '{name}' takes every master away: no API server is left to serve"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{accepted, refused};

    const HA: &str = "platforms:
  - {name: etcd-01, groups: [etcd]}
  - {name: etcd-02, groups: [etcd]}
  - {name: etcd-03, groups: [etcd]}
  - {name: kube-master-01, groups: [kube-master]}
  - {name: kube-master-02, groups: [kube-master]}
  - {name: kube-worker-01, groups: [kube-worker]}
  - {name: kube-worker-02, groups: [kube-worker]}
sequence: [create, converge, side_effect, destroy]
";

    fn with_faults(faults: &str) -> String {
        format!("{HA}faults:\n{faults}")
    }

    #[test]
    fn faults_that_leave_a_serving_cluster_are_accepted() {
        accepted(&with_faults(
            "  - {name: one of each, action: kill, hosts: [etcd-02, kube-master-01]}\n  - {name: kubelet, action: stop-service, hosts: [kube-worker-01], unit: kubelet.service}\n",
        ));
    }

    #[test]
    fn faults_that_cannot_work_are_refused_where_they_are_written() {
        refused(
            &with_faults("  - {name: quorum, action: kill, hosts: [etcd-01, etcd-02]}\n"),
            11,
            "leaves 1 of 3 etcd members: below a quorum (2)",
        );
        refused(
            &with_faults(
                "  - {name: masters, action: pause, hosts: [kube-master-01, kube-master-02]}\n",
            ),
            11,
            "takes every master away",
        );
        refused(
            &with_faults("  - {name: typo, action: kill, hosts: [etcd-09]}\n"),
            11,
            "no platform named 'etcd-09'",
        );
        refused(
            &with_faults("  - {name: unit, action: stop-service, hosts: [etcd-01]}\n"),
            11,
            "stop-service needs the `unit`",
        );
        refused(HA, 9, "side_effect has no faults to make");
        refused(
            &with_faults("  - {name: x, action: kill, hosts: [etcd-01]}\n")
                .replace("side_effect, ", ""),
            11,
            "the sequence has no side_effect step",
        );
    }
}
