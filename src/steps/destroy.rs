//! `destroy`: every host, network and volume the driver created goes, and the scenario's
//! state with it.

use std::time::Instant;

use super::{StepError, StepOutcome, Workspace};
use crate::connections::Connections;
use crate::driver;
use crate::state::{ScenarioState, StateError};

/// What `destroy` removed (the driver's own words) and how long it took.
pub struct DestroyOutput {
    pub removed: String,
    pub seconds: f64,
}

pub async fn run(
    ws: &Workspace,
    state: &mut ScenarioState,
    connections: &mut Connections,
) -> Result<DestroyOutput, StepError> {
    let start = Instant::now();
    connections.close_all().await;
    let removed = driver::destroy(&ws.scenario, &ws.driver_context(&state.instance)).await?;
    let root = &ws.state_dir.root;
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(|source| StateError::Io {
            path: root.clone(),
            action: "remove state directory",
            source,
        })?;
    }
    *state = ScenarioState {
        instance: state.instance.clone(),
        ..Default::default()
    };
    let output = DestroyOutput {
        removed,
        seconds: start.elapsed().as_secs_f64(),
    };
    ws.say(StepOutcome::from(&output).summary);
    Ok(output)
}

impl From<&DestroyOutput> for StepOutcome {
    fn from(output: &DestroyOutput) -> StepOutcome {
        StepOutcome {
            summary: format!("{} in {:.1}s", output.removed, output.seconds),
            ..Default::default()
        }
    }
}
