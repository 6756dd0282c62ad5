//! `create`: the driver makes the scenario's hosts; their SSH host keys are pinned on first
//! contact. A scenario that already has hosts is left as it is.

use std::time::Instant;

use super::{StepError, StepOutcome, Workspace};
use crate::connections::Connections;
use crate::driver;
use crate::ssh::{ClientKey, HostKeyPins};
use crate::state::ScenarioState;

/// What `create` did.
pub enum CreateOutput {
    AlreadyCreated {
        hosts: usize,
    },
    Created {
        hosts: usize,
        network: String,
        ssh_ready_seconds: f64,
        connected_seconds: f64,
    },
}

pub async fn run(
    ws: &Workspace,
    state: &mut ScenarioState,
    connections: &mut Connections,
) -> Result<CreateOutput, StepError> {
    if let Some(inv) = &state.inventory {
        return Ok(CreateOutput::AlreadyCreated {
            hosts: inv.hosts.len(),
        });
    }
    ClientKey::load_or_generate(&ws.state_dir.ssh_key())?;
    let start = Instant::now();
    // Saved before the driver runs, so a failed create is still destroyed by name.
    ws.state_dir.save(state)?;
    let pub_key = ws.state_dir.ssh_key().with_extension("pub");
    let (inventory, network) =
        driver::create(&ws.scenario, &ws.driver_context(&state.instance), &pub_key).await?;
    let ssh_ready_seconds = start.elapsed().as_secs_f64();
    // New hosts have new host keys: forget old pins, pin the new ones on first contact.
    // Kept hosts (driver `existing`) are the same machines: their pins stay.
    if !inventory.kept_hosts {
        let pins_file = ws.state_dir.host_key_pins(&inventory);
        let mut pins = HostKeyPins::load(&pins_file)?;
        for h in &inventory.hosts {
            pins.remove(&h.name);
        }
        pins.save(&pins_file)?;
    }
    let hosts = inventory.hosts.len();
    state.inventory = Some(inventory);
    state.network = Some(network.clone());
    ws.state_dir.save(state)?;
    connections
        .connect_all(state.inventory.as_ref().expect("just set"), &ws.state_dir)
        .await?;
    let output = CreateOutput::Created {
        hosts,
        network,
        ssh_ready_seconds,
        connected_seconds: start.elapsed().as_secs_f64(),
    };
    ws.say(StepOutcome::from(&output).summary);
    Ok(output)
}

impl From<&CreateOutput> for StepOutcome {
    fn from(output: &CreateOutput) -> StepOutcome {
        let summary = match output {
            CreateOutput::AlreadyCreated { hosts } => format!("already created: {hosts} hosts"),
            CreateOutput::Created {
                hosts,
                network,
                ssh_ready_seconds,
                connected_seconds,
            } => format!(
                "{hosts} hosts on {network}: SSH-ready in {ssh_ready_seconds:.1}s, connected in {connected_seconds:.1}s"
            ),
        };
        StepOutcome {
            summary,
            ..Default::default()
        }
    }
}
