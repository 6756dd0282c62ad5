//! `verify`: the smoke tests against the live cluster, one testcase each; the step fails
//! when any check fails, after every check has run.

use super::{StepError, StepOutcome, SubCase, Workspace};
use crate::cluster::Cluster;
use crate::connections::Connections;
use crate::report::CaseOutcome;
use crate::state::ScenarioState;
use crate::verify::{self, CheckResult};

/// Every check's result, in the order they ran.
pub struct VerifyOutput {
    pub results: Vec<CheckResult>,
}

pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
) -> Result<VerifyOutput, StepError> {
    let inventory = state
        .inventory
        .clone()
        .ok_or_else(|| StepError::NotCreated(ws.scenario.name.clone()))?;
    connections.connect_all(&inventory, &ws.state_dir).await?;
    let cluster = Cluster::derive(&ws.scenario, &inventory)?;
    let mut results = Vec::new();
    for check in verify::checks(&cluster) {
        let session = connections.session(&check.host)?;
        let result = verify::run(&session, &check).await;
        if result.passed {
            ws.log.info(format!("  ok    {}", check.name));
        } else {
            ws.log.error(format!(
                "  FAIL  {} on {}: {}",
                check.name, check.host, result.detail
            ));
        }
        results.push(result);
    }
    Ok(VerifyOutput { results })
}

impl From<&VerifyOutput> for StepOutcome {
    fn from(output: &VerifyOutput) -> StepOutcome {
        let failed: Vec<&str> = output
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.check.name.as_str())
            .collect();
        let total = output.results.len();
        StepOutcome {
            summary: format!("{total} checks passed"),
            failure: (!failed.is_empty()).then(|| {
                format!(
                    "verify: {} of {total} checks failed: {}",
                    failed.len(),
                    failed.join("; ")
                )
            }),
            subcases: output
                .results
                .iter()
                .map(|r| SubCase {
                    group: "verify",
                    name: format!("verify: {}", r.check.name),
                    seconds: r.seconds,
                    outcome: if r.passed {
                        CaseOutcome::Passed
                    } else {
                        CaseOutcome::Failed {
                            message: format!("{}: check '{}' failed", r.check.host, r.check.name),
                            detail: r.detail.clone(),
                        }
                    },
                    output: r.detail.clone(),
                    properties: vec![("host".into(), r.check.host.clone())],
                })
                .collect(),
            properties: Vec::new(),
        }
    }
}
