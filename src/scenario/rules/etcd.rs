//! etcd's own rules for its timing settings (etcd 3.4 `embed.Config.Validate`, which refuses
//! to start otherwise): a heartbeat and an election timeout above zero, an election timeout
//! of at most 50000 ms.
//!
//! etcd's third rule, an election timeout of at least five heartbeats, is deliberately not
//! checked at load: `tests/failure_cleanup.rs` needs a converge that really fails on a host,
//! and etcd refusing exactly that setting at start is the one such failure a scenario file
//! can ask for. A zero `snapshot_count` is not refused either: etcd takes its default then.

use super::Refusal;
use crate::scenario::Scenario;

/// etcd's `maxElectionMs`.
const MAX_ELECTION_TIMEOUT_MS: u32 = 50_000;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let etcd = &s.cluster.etcd;
    if etcd.heartbeat_interval_ms == 0 {
        return Err(Refusal::new(
            "cluster.etcd.heartbeat_interval_ms",
            "cluster.etcd.heartbeat_interval_ms must be above 0: etcd refuses to start with --heartbeat-interval 0",
        ));
    }
    if etcd.election_timeout_ms == 0 {
        return Err(Refusal::new(
            "cluster.etcd.election_timeout_ms",
            "cluster.etcd.election_timeout_ms must be above 0: etcd refuses to start with --election-timeout 0",
        ));
    }
    if etcd.election_timeout_ms > MAX_ELECTION_TIMEOUT_MS {
        return Err(Refusal::new(
            "cluster.etcd.election_timeout_ms",
            format!(
                "cluster.etcd.election_timeout_ms {} is above {MAX_ELECTION_TIMEOUT_MS}: etcd refuses to start with an election timeout that long",
                etcd.election_timeout_ms
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    fn etcd(settings: &str) -> String {
        format!("{SEEDS}cluster:\n  etcd:\n{settings}")
    }

    #[test]
    fn heartbeat_and_election_timeout_are_above_zero() {
        let e = refused(
            &etcd("    heartbeat_interval_ms: 0\n"),
            12,
            "cluster.etcd.heartbeat_interval_ms must be above 0",
        );
        assert!(e.contains(":12:28:"), "{e}");
        refused(
            &etcd("    election_timeout_ms: 0\n"),
            12,
            "cluster.etcd.election_timeout_ms must be above 0",
        );
    }

    #[test]
    fn election_timeout_is_at_most_50_seconds() {
        accepted(&etcd(
            "    heartbeat_interval_ms: 5000\n    election_timeout_ms: 50000\n",
        ));
        refused(
            &etcd("    heartbeat_interval_ms: 5000\n    election_timeout_ms: 50001\n"),
            13,
            "cluster.etcd.election_timeout_ms 50001 is above 50000",
        );
    }

    #[test]
    fn the_five_heartbeats_rule_is_left_to_etcd() {
        // tests/failure_cleanup.rs relies on etcd refusing this at converge.
        accepted(&etcd(
            "    heartbeat_interval_ms: 500\n    election_timeout_ms: 1000\n",
        ));
    }
}
