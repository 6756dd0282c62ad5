//! `idempotence`: converge in check mode after a converge; it passes only when zero changes
//! are planned, and otherwise lists every change that remains. Files are compared through
//! each host's hash index unless `--full-hash` asks for every file to be read.

use super::converge::{self, ConvergeOutput, describe_changes, tally};
use super::{StepError, StepOutcome, Workspace};
use crate::connections::Connections;
use crate::engine::{Mode, Options};
use crate::roles::Scope;
use crate::state::ScenarioState;

/// The check-mode converge that idempotence judges.
pub struct IdempotenceOutput(pub ConvergeOutput);

pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
    full_hash: bool,
    scope: &Scope,
) -> Result<IdempotenceOutput, StepError> {
    let options = Options::installer(Mode::Check, full_hash);
    Ok(IdempotenceOutput(
        converge::run(ws, state, connections, &options, scope).await?,
    ))
}

impl From<&IdempotenceOutput> for StepOutcome {
    fn from(output: &IdempotenceOutput) -> StepOutcome {
        let mut outcome = StepOutcome::from(&output.0);
        let changes = output.0.changes();
        if changes > 0 {
            outcome.failure = Some(format!(
                "idempotence: {changes} change(s) still planned after converge:\n{}\n{}",
                describe_changes(&output.0.hosts, true),
                tally(&output.0.hosts)
            ));
        }
        outcome
    }
}
