//! The facts script run for real by the local `sh`: several plans of a host observed in one
//! round trip.

use super::super::tests::{LocalShell, plan, run, setup};
use super::super::*;

fn summaries(report: &HostReport) -> Vec<String> {
    report
        .tasks
        .iter()
        .flat_map(|t| &t.changes)
        .map(|c| format!("{}: {}", c.resource, c.summary()))
        .collect()
}

/// Check mode gathers the facts of several plans of a host in one round trip; each plan's
/// diff is what it would be on its own.
#[tokio::test]
async fn several_plans_of_a_host_are_observed_in_one_round_trip() {
    let (dir, bin) = setup();
    let whole = plan(dir.path(), "1", &bin);
    let split = |tasks: std::ops::Range<usize>| HostPlan {
        host: "local".into(),
        tasks: whole.tasks[tasks].to_vec(),
    };
    let (first, second) = (split(0..1), split(1..3));
    let facts = gather(&LocalShell, "local", &[&first, &second])
        .await
        .unwrap();
    assert_eq!(facts.len(), 2);
    let mut trips = 0;
    let mut changes = Vec::new();
    for (plan, facts) in [&first, &second].into_iter().zip(facts) {
        let report = run_host(
            &LocalShell,
            plan,
            Mode::Check,
            &Default::default(),
            Some(facts),
        )
        .await
        .unwrap();
        trips += report.round_trips;
        changes.extend(summaries(&report));
    }
    assert_eq!(trips, 1);
    assert_eq!(changes, summaries(&run(&whole, Mode::Check).await));
}
