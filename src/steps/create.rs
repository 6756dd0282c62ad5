//! `create`: the driver makes the scenario's hosts; their SSH host keys are pinned on first
//! contact. On a scenario that already has hosts, the ones that stopped or vanished are
//! brought back (as Molecule's create does).

use std::time::Instant;

use super::{StepError, StepOutcome, Workspace};
use crate::connections::Connections;
use crate::driver;
use crate::inventory::Inventory;
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
        let healed = heal(ws, state, &inventory, connections).await?;
        if healed.inventory != inventory {
            state.inventory = Some(healed.inventory);
            ws.state_dir.save(state)?;
        }
        let output = CreateOutput::AlreadyCreated {
            hosts: inventory.hosts.len(),
            recreated: healed.recreated,
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
/// host. Hosts created again lose their host-key pins (new keys); a host that answers SSH
/// elsewhere now (a VM back on another management address) is connected to there.
pub(super) async fn heal(
    ws: &Workspace,
    state: &ScenarioState,
    inventory: &Inventory,
    connections: &mut Connections,
) -> Result<driver::Healed, StepError> {
    let pub_key = ws.state_dir.ssh_key().with_extension("pub");
    let ctx = ws.driver_context(&state.instance);
    let healed = driver::heal(&ws.scenario, &ctx, &pub_key, inventory).await?;
    if !healed.recreated.is_empty() {
        let pins_file = ws.state_dir.host_key_pins(inventory);
        let mut pins = HostKeyPins::load(&pins_file)?;
        for host in &healed.recreated {
            pins.remove(host);
        }
        pins.save(&pins_file)?;
    }
    let moved: Vec<String> = healed
        .inventory
        .hosts
        .iter()
        .filter(|h| {
            healed.recreated.contains(&h.name)
                || !inventory.hosts.iter().any(|old| {
                    old.name == h.name
                        && old.ssh_address == h.ssh_address
                        && old.ssh_port == h.ssh_port
                })
        })
        .map(|h| h.name.clone())
        .collect();
    connections.forget(&moved).await;
    connections
        .connect_all(&healed.inventory, &ws.state_dir)
        .await?;
    Ok(healed)
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
