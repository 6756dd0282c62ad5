//! The step sequence, as `runner::Runner::sequence` runs it: steps in order, stopping at the
//! first failure, and `destroy` always at the end whatever its place in the list. So a
//! sequence reads the way it runs only with `destroy` last (once), and a step that needs
//! hosts or a converged cluster must not come before the step that makes them.

use super::Refusal;
use crate::scenario::{Scenario, Step};

/// Steps that work on the hosts (after `create`).
const ON_HOSTS: [Step; 5] = [
    Step::Converge,
    Step::Idempotence,
    Step::Drift,
    Step::SideEffect,
    Step::Verify,
];
/// Steps that expect a converged cluster (after `converge`).
const ON_CLUSTER: [Step; 4] = [
    Step::Idempotence,
    Step::Drift,
    Step::SideEffect,
    Step::Verify,
];

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let steps = &s.sequence;
    let at = |i: usize| format!("sequence.{i}");
    if steps.is_empty() {
        return Err(Refusal::new("sequence", "sequence: no steps"));
    }
    if let Some(i) = steps.iter().position(|&step| step == Step::Destroy)
        && i + 1 != steps.len()
    {
        return Err(Refusal::new(
            at(i),
            "sequence: destroy must be the last step: the runner always destroys at the end, after every other step",
        ));
    }
    let orders = [
        (
            Step::Create,
            &ON_HOSTS[..],
            "on hosts that do not exist yet",
        ),
        (
            Step::Converge,
            &ON_CLUSTER[..],
            "on a cluster not installed yet: it would fail",
        ),
    ];
    for (maker, users, why) in orders {
        if let Some(i) = first_before(steps, maker, users) {
            return Err(Refusal::new(
                at(i),
                format!("sequence: {} comes before {maker}, {why}", steps[i]),
            ));
        }
    }
    Ok(())
}

/// Where the first of `users` stands before the first `maker`, when `maker` is there at all.
fn first_before(steps: &[Step], maker: Step, users: &[Step]) -> Option<usize> {
    let first = steps.iter().position(|&s| s == maker)?;
    steps[..first].iter().position(|s| users.contains(s))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    fn sequence(steps: &str) -> String {
        format!("{SEEDS}sequence: [{steps}]\n")
    }

    #[test]
    fn destroy_comes_last() {
        accepted(&sequence(
            "create, syntax, converge, idempotence, verify, destroy",
        ));
        accepted(&sequence("create, converge"));
        let e = refused(
            &sequence("create, destroy, converge"),
            10,
            "sequence: destroy must be the last step",
        );
        assert!(e.contains(":10:20:"), "{e}");
        refused(
            &sequence("create, destroy, destroy"),
            10,
            "destroy must be the last step",
        );
        refused(
            "platforms:\n  - {name: etcd-01, groups: [etcd]}\nsequence: []\n",
            3,
            "sequence: no steps",
        );
    }

    #[test]
    fn steps_on_hosts_and_clusters_come_after_what_makes_them() {
        refused(
            &sequence("converge, create"),
            10,
            "sequence: converge comes before create",
        );
        refused(
            &sequence("create, verify, converge"),
            10,
            "sequence: verify comes before converge, on a cluster not installed yet",
        );
        refused(
            &sequence("create, idempotence, converge"),
            10,
            "idempotence comes before converge",
        );
        // Without create or converge in the list, the hosts or the cluster may already be
        // there (`kubeforge create` earlier): those steps run on what exists.
        accepted(&sequence("verify"));
        accepted(&sequence("converge, idempotence, verify"));
        // The drift scenario's sequence.
        accepted(&sequence(
            "create, syntax, converge, idempotence, drift, idempotence, verify, destroy",
        ));
        accepted(&sequence("syntax, create, converge"));
    }
}
