//! Bringing back the VMs of a created instance, as Molecule's `create` does.

use std::collections::BTreeMap;
use std::path::Path;

use super::output::vm_states;
use super::{
    CreatedVm, VagrantError, VagrantHostSpec, VagrantPlan, box_name, check_prerequisites,
    domain_name, ensure_pool, up, vagrant_env, vagrant_read,
};
use crate::driver::Healing;
use crate::report::Logger;
use crate::scenario::VagrantProvider;

/// What [`heal`] found and did.
#[derive(Debug)]
pub struct VagrantHealing {
    pub hosts: Vec<(String, Healing)>,
    /// Every VM's SSH endpoint read again, when any VM was brought back.
    pub endpoints: Option<Vec<CreatedVm>>,
}

/// Brings back the VMs of a created instance that stopped or vanished, as Molecule's
/// `create` does: `vagrant up` starts a stopped VM (same disk, same host keys) and creates
/// a missing one again (new host keys). Every endpoint is then read again: a VM that came
/// back may have another address on the management network.
pub async fn heal(
    plan: &VagrantPlan,
    authorized_keys: &Path,
    log: &Logger,
) -> Result<VagrantHealing, VagrantError> {
    check_prerequisites(plan).await?;
    let env = vagrant_env(plan, box_name(plan)?.as_deref(), Some(authorized_keys));
    let status = vagrant_read(
        plan,
        &env,
        &["status", "--machine-readable"],
        "read the VM states of",
    )
    .await?;
    let hosts = healing_of(&plan.hosts, &vm_states(&status));
    if hosts.iter().all(|(_, h)| *h == Healing::Running) {
        return Ok(VagrantHealing {
            hosts,
            endpoints: None,
        });
    }
    for (host, healing) in hosts.iter().filter(|(_, h)| *h != Healing::Running) {
        log.info(format!(
            "host {host}: {healing} ({})",
            domain_name(&plan.instance, host)
        ));
    }
    if plan.provider == VagrantProvider::Libvirt {
        ensure_pool(plan, log).await?;
    }
    let endpoints = up(plan, &env, log).await?;
    Ok(VagrantHealing {
        hosts,
        endpoints: Some(endpoints),
    })
}

/// What becomes of each host given the states `vagrant status` reported: a VM vagrant
/// does not know is created again.
fn healing_of(
    hosts: &[VagrantHostSpec],
    states: &BTreeMap<String, String>,
) -> Vec<(String, Healing)> {
    hosts
        .iter()
        .map(|h| {
            let healing = match states.get(&h.name).map(String::as_str) {
                Some("running") => Healing::Running,
                Some("not_created") | None => Healing::Recreated,
                Some(_) => Healing::Started,
            };
            (h.name.clone(), healing)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_vm_is_started_and_one_vagrant_does_not_know_is_created_again() {
        let hosts = super::super::tests::plan().hosts;
        let states = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(h, s)| (h.to_string(), s.to_string()))
                .collect()
        };
        let healing = |pairs| {
            healing_of(&hosts, &states(pairs))
                .into_iter()
                .map(|(_, h)| h)
                .collect::<Vec<_>>()
        };
        use Healing::*;
        assert_eq!(
            healing(&[("etcd-01", "running"), ("etcd-02", "running")]),
            [Running, Running]
        );
        assert_eq!(
            healing(&[("etcd-01", "shutoff"), ("etcd-02", "paused")]),
            [Started, Started]
        );
        assert_eq!(
            healing(&[("etcd-01", "not_created")]),
            [Recreated, Recreated]
        );
    }
}
