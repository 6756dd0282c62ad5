//! `create`: the driver makes the scenario's hosts; their SSH host keys are pinned on first
//! contact. On a scenario that already has hosts, the ones that stopped or vanished are
//! brought back (as Molecule's create does).

use std::time::Instant;

use super::{StepError, StepOutcome, Workspace};
use crate::connections::Connections;
use crate::driver;
use crate::ssh::{ClientKey, HostKeyPins};
use crate::state::ScenarioState;

/// What `create` did.
pub enum CreateOutput {
    /// The scenario had hosts; those that stopped or vanished were brought back.
    AlreadyCreated {
        hosts: usize,
        recreated: Vec<String>,
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
    if let Some(inventory) = state.inventory.clone() {
        let recreated = heal(ws, state, &inventory, connections).await?;
        let output = CreateOutput::AlreadyCreated {
            hosts: inventory.hosts.len(),
            recreated,
        };
        ws.say(StepOutcome::from(&output).summary);
        return Ok(output);
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

/// Brings back the hosts of `inventory` that stopped or vanished and connects to every
/// host; returns those created again (their new host keys replace the old pins).
pub(super) async fn heal(
    ws: &Workspace,
    state: &ScenarioState,
    inventory: &crate::inventory::Inventory,
    connections: &mut Connections,
) -> Result<Vec<String>, StepError> {
    let pub_key = ws.state_dir.ssh_key().with_extension("pub");
    let ctx = ws.driver_context(&state.instance);
    let recreated = driver::heal(&ws.scenario, &ctx, &pub_key).await?;
    if !recreated.is_empty() {
        let pins_file = ws.state_dir.host_key_pins(inventory);
        let mut pins = HostKeyPins::load(&pins_file)?;
        for host in &recreated {
            pins.remove(host);
        }
        pins.save(&pins_file)?;
        connections.forget(&recreated).await;
    }
    connections.connect_all(inventory, &ws.state_dir).await?;
    Ok(recreated)
}

impl From<&CreateOutput> for StepOutcome {
    fn from(output: &CreateOutput) -> StepOutcome {
        let summary = match output {
            CreateOutput::AlreadyCreated { hosts, recreated } if recreated.is_empty() => {
                format!("already created: {hosts} hosts")
            }
            CreateOutput::AlreadyCreated { hosts, recreated } => format!(
                "already created: {hosts} hosts; created again: {}",
                recreated.join(", ")
            ),
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
