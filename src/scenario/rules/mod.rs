//! The rules a scenario must follow beyond its types, checked when it is loaded: every
//! mistake that would otherwise show up only after hosts exist (at etcd start, API server
//! start, pod scheduling, routing, certificate issuing) is refused here, with the setting's
//! line and column, before anything is created.
//!
//! One module per concern; each rule says in its message which setting is wrong and what
//! would fail later. The first rule broken is reported.

mod artifacts;
mod checks;
mod drivers;
mod etcd;
mod faults;
mod groups;
mod names;
mod networks;
mod ports;
mod sequence;
mod versions;
mod workloads;

use super::Scenario;

/// Why a scenario is refused, and where: setting paths (`cluster.etcd.client_port`,
/// `platforms.2.name`), the first one the file writes being the one pointed at.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) at: Vec<String>,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(at: impl Into<String>, message: impl Into<String>) -> Refusal {
        Refusal {
            at: vec![at.into()],
            message: message.into(),
        }
    }

    /// Points at `path` when the file does not write the first setting (a default has no
    /// line of its own; the other setting involved may have one).
    pub(crate) fn or_at(mut self, path: impl Into<String>) -> Refusal {
        self.at.push(path.into());
        self
    }
}

/// A rule: passes, or says what is wrong.
type Rule = fn(&Scenario) -> Result<(), Refusal>;

/// Every concern's rules, in the order a reader fixes things: the hosts and their groups
/// first (later rules count nodes), then names, versions, etcd, address plans, drivers,
/// ports, the step sequence, where artifacts come from and the scenario's own checks.
const RULES: &[Rule] = &[
    groups::check,
    names::check,
    versions::check,
    etcd::check,
    drivers::check,
    networks::check,
    ports::check,
    sequence::check,
    faults::check,
    artifacts::check,
    checks::check,
];

pub(crate) use groups::workloads_have_a_cluster;
/// The rules on the workloads' objects, checked once their manifests are read.
pub(crate) use workloads::check as workloads;

/// The first rule `scenario` breaks.
pub(crate) fn check(scenario: &Scenario) -> Result<(), Refusal> {
    RULES.iter().try_for_each(|rule| rule(scenario))
}

/// How the rules' tests state a scenario and what they expect of it.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use crate::scenario::{Scenario, ScenarioError};

    /// The seeds' four hosts, nothing else: every default applies.
    pub const SEEDS: &str = "platforms:
  - name: etcd-01
    groups: [etcd]
  - name: kube-master-01
    groups: [kube-master]
  - name: kube-worker-01
    groups: [kube-worker]
  - name: kube-worker-02
    groups: [kube-worker]
";

    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse("t", Path::new("scenarios/t/scenario.yml"), text)
    }

    /// Asserts `text` loads.
    #[track_caller]
    pub fn accepted(text: &str) -> Scenario {
        parse(text).unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
    }

    /// Asserts `text` is refused at `line` with a message containing `fragment`; returns
    /// the message as printed.
    #[track_caller]
    pub fn refused(text: &str, line: u64, fragment: &str) -> String {
        let e = match parse(text) {
            Ok(_) => panic!("accepted, expected a refusal with '{fragment}':\n{text}"),
            Err(e) => e.to_string(),
        };
        let prefix = format!("scenarios/t/scenario.yml:{line}:");
        assert!(
            e.starts_with(&prefix) && e.contains(fragment),
            "expected {prefix}... '{fragment}', got: {e}"
        );
        e
    }
}
