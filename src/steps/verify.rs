//! `verify`: the smoke tests against the live cluster, one testcase each; the step fails
//! when any check fails, after every check has run.

use super::{StepError, StepOutcome, SubCase, Workspace};
use crate::cluster::Cluster;
use crate::connections::Connections;
use crate::report::CaseOutcome;
use crate::state::ScenarioState;
use crate::verify::{self, CheckResult, Selection, Verdict};

/// Every check's result, in the order they ran.
pub struct VerifyOutput {
    pub results: Vec<CheckResult>,
}

/// Runs the checks `selection` wants (every check when it is empty).
pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
    selection: &Selection,
) -> Result<VerifyOutput, StepError> {
    let inventory = state
        .inventory
        .clone()
        .ok_or_else(|| StepError::NotCreated(ws.scenario.name.clone()))?;
    connections.connect_all(&inventory, &ws.state_dir).await?;
    let cluster = Cluster::derive(&ws.scenario, &inventory)?;
    let log = &ws.log;
    let report = |r: &CheckResult| match r.verdict {
        Verdict::Passed => log.info(format!("  ok    {} ({:.1}s)", r.check.name, r.seconds)),
        Verdict::Skipped => log.info(format!("  skip  {}: {}", r.check.name, r.detail)),
        Verdict::Failed => log.error(format!(
            "  FAIL  {} on {} ({:.1}s): {}",
            r.check.name, r.check.host, r.seconds, r.detail
        )),
    };
    let results = verify::run(&cluster, &ws.scenario, connections, selection, &report).await;
    Ok(VerifyOutput { results })
}

impl From<&VerifyOutput> for StepOutcome {
    fn from(output: &VerifyOutput) -> StepOutcome {
        let failed: Vec<&str> = output
            .results
            .iter()
            .filter(|r| r.verdict == Verdict::Failed)
            .map(|r| r.check.name.as_str())
            .collect();
        let total = output.results.len();
        let skipped = output
            .results
            .iter()
            .filter(|r| r.verdict == Verdict::Skipped)
            .count();
        StepOutcome {
            summary: format!("{} checks passed, {skipped} skipped", total - skipped),
            failure: if total == 0 {
                // Only a --check that matches nothing leaves verify without a check.
                Some(
                    "verify: no check matches --check (`kubeforge list` shows a scenario's checks)"
                        .into(),
                )
            } else {
                (!failed.is_empty()).then(|| {
                    format!(
                        "verify: {} of {total} checks failed: {}",
                        failed.len(),
                        failed.join("; ")
                    )
                })
            },
            subcases: output
                .results
                .iter()
                .map(|r| SubCase {
                    group: "verify",
                    name: format!("verify: {}", r.check.name),
                    seconds: r.seconds,
                    outcome: match r.verdict {
                        Verdict::Passed => CaseOutcome::Passed,
                        Verdict::Skipped => CaseOutcome::Skipped {
                            reason: r.detail.clone(),
                        },
                        Verdict::Failed => CaseOutcome::Failed {
                            message: format!("{}: check '{}' failed", r.check.host, r.check.name),
                            detail: r.detail.clone(),
                        },
                    },
                    output: r.detail.clone(),
                    properties: vec![("host".into(), r.check.host.clone())],
                })
                .collect(),
            properties: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_that_matches_nothing_fails_verify() {
        let outcome = StepOutcome::from(&VerifyOutput {
            results: Vec::new(),
        });
        assert!(
            outcome
                .failure
                .is_some_and(|f| f.contains("no check matches --check")),
        );
    }
}
