//! `converge`: the installer's plan, phase by phase over the hosts (hosts of a phase run
//! concurrently); in check mode only the plan, with diffs, from facts gathered for every
//! phase at once (one round trip per host). Apply mode also writes the admin kubeconfig
//! for `kubeforge kubectl` and reports what the plan leaves out.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::{StepError, StepOutcome, SubCase, Workspace};
use crate::connections::Connections;
use crate::engine::{self, Change, ChangeKind, Cost, Facts, HostReport, Mode, Options, TaskReport};
use crate::report::CaseOutcome;
use crate::roles::{NotExercised, Scope};
use crate::state::ScenarioState;

/// What a converge did (or, in check mode, would do) on every host.
pub struct ConvergeOutput {
    pub mode: Mode,
    pub hosts: Vec<HostReport>,
    pub not_exercised: Vec<NotExercised>,
}

impl ConvergeOutput {
    pub fn changes(&self) -> usize {
        self.hosts.iter().map(HostReport::change_count).sum()
    }

    /// What the run cost on each host (the control machine has no cost), over all phases.
    pub fn costs(&self) -> BTreeMap<String, Cost> {
        let mut out: BTreeMap<String, Cost> = BTreeMap::new();
        for h in self.hosts.iter().filter(|h| h.host != CONTROL_MACHINE) {
            *out.entry(h.host.clone()).or_default() += h.cost;
        }
        out
    }

    fn verb(&self) -> &'static str {
        match self.mode {
            Mode::Apply => "applied",
            Mode::Check => "planned",
        }
    }
}

pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
    options: &Options,
    scope: &Scope,
) -> Result<ConvergeOutput, StepError> {
    let mode = options.mode;
    let inventory = state
        .inventory
        .clone()
        .ok_or_else(|| StepError::NotCreated(ws.scenario.name.clone()))?;
    connections.connect_all(&inventory, &ws.state_dir).await?;
    let pki = ws.pki()?;
    let (plan, _) = ws.plan(&inventory, &pki, scope)?;
    // Certificates and keys the plan made exist only in memory until here: written before
    // any host gets them, never in check mode.
    let mut hosts = Vec::new();
    if let Some(local) = pki_changes(&pki) {
        if mode == Mode::Apply {
            pki.commit()?;
        }
        ws.log
            .info(describe_changes(std::slice::from_ref(&local), false));
        hosts.push(local);
    }
    // Check mode changes nothing between phases: every phase's facts at once.
    let mut gathered = match mode {
        Mode::Check => gather_all(ws, connections, &plan.phases, options).await?,
        Mode::Apply => BTreeMap::new(),
    };
    // Units (re)started so far on any host: later phases' handlers react to them.
    let mut restarted = std::collections::BTreeSet::new();
    for phase in &plan.phases {
        let start = Instant::now();
        let sessions = phase
            .hosts
            .iter()
            .map(|hp| {
                let facts = gathered.get_mut(&hp.host).and_then(VecDeque::pop_front);
                connections.session(&hp.host).map(|s| (s, facts))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let so_far = &restarted;
        let results = connections
            .per_host(
                phase
                    .hosts
                    .iter()
                    .zip(sessions)
                    .map(|(hp, (s, facts))| async move {
                        engine::run_host(&s, hp, options, so_far, facts).await
                    }),
            )
            .await;
        let reports = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        restarted.extend(reports.iter().flat_map(|r| r.restarted.iter().cloned()));
        let changed: usize = reports.iter().map(HostReport::change_count).sum();
        let verb = if mode == Mode::Apply {
            "applied"
        } else {
            "planned"
        };
        ws.say(format!(
            "phase '{}': {changed} change(s) {verb} in {:.1}s",
            phase.name,
            start.elapsed().as_secs_f64()
        ));
        let text = describe_changes(&reports, mode == Mode::Check);
        if !text.is_empty() {
            // Check mode shows the plan; -v shows what apply changed.
            match mode {
                Mode::Check => ws.log.info(text),
                Mode::Apply => ws.log.verbose(text),
            }
        }
        hosts.extend(reports);
    }
    if mode == Mode::Apply
        && let Some(kubeconfig) = &plan.control_kubeconfig
    {
        write_admin_kubeconfig(ws, kubeconfig.as_bytes())?;
    }
    let output = ConvergeOutput {
        mode,
        hosts,
        not_exercised: if mode == Mode::Apply {
            plan.not_exercised
        } else {
            Vec::new()
        },
    };
    for item in &output.not_exercised {
        ws.say(format!("not exercised: {}: {}", item.what, item.reason));
    }
    ws.say(StepOutcome::from(&output).summary);
    Ok(output)
}

/// Every phase's facts of every host, one round trip per host (hosts concurrently): per
/// host, the facts of its plans in phase order.
async fn gather_all(
    ws: &Workspace,
    connections: &Connections,
    phases: &[engine::Phase],
    options: &Options,
) -> Result<BTreeMap<String, VecDeque<Facts>>, StepError> {
    let start = Instant::now();
    let mut plans: BTreeMap<&str, Vec<&engine::HostPlan>> = BTreeMap::new();
    for hp in phases.iter().flat_map(|p| &p.hosts) {
        plans.entry(hp.host.as_str()).or_default().push(hp);
    }
    let sessions = plans
        .keys()
        .map(|host| connections.session(host))
        .collect::<Result<Vec<_>, _>>()?;
    let gathered = connections
        .per_host(
            plans
                .iter()
                .zip(sessions)
                .map(|((host, plans), s)| async move {
                    engine::gather(&s, host, plans, &options.hashing)
                        .await
                        .map(|facts| (host.to_string(), VecDeque::from(facts)))
                }),
        )
        .await
        .into_iter()
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    ws.say(format!(
        "facts of {} phase(s) gathered from {} host(s) in {:.1}s",
        phases.len(),
        gathered.len(),
        start.elapsed().as_secs_f64()
    ));
    Ok(gathered)
}

/// The PKI files the plan made, as the control machine's changes (never shown: keys).
fn pki_changes(pki: &crate::pki::ClusterPki) -> Option<HostReport> {
    let pending = pki.pending();
    if pending.is_empty() {
        return None;
    }
    let changes = pending
        .into_iter()
        .map(|(path, mode)| Change {
            resource: format!("file {}", path.display()),
            kind: ChangeKind::Create { mode },
            diff: None,
        })
        .collect();
    Some(HostReport {
        host: CONTROL_MACHINE.into(),
        tasks: vec![TaskReport {
            host: CONTROL_MACHINE.into(),
            task: "cluster PKI".into(),
            changes,
        }],
        cost: Cost::default(),
        restarted: Vec::new(),
    })
}

/// The host name the control machine's own changes are reported under.
const CONTROL_MACHINE: &str = "control-machine";

/// The admin kubeconfig (it embeds the admin key: 0600) on the control machine, for
/// `kubeforge kubectl`.
fn write_admin_kubeconfig(ws: &Workspace, kubeconfig: &[u8]) -> Result<(), StepError> {
    let path = ws.state_dir.kubeconfig();
    crate::state::write_atomic(&path, kubeconfig, 0o600)?;
    ws.say(format!(
        "kubectl access: `kubeforge kubectl {} -- get nodes` or export KUBECONFIG={}",
        ws.scenario.name,
        path.display()
    ));
    Ok(())
}

/// Each planned change, grouped by host and task, with diffs when `diffs`.
pub fn describe_changes(hosts: &[HostReport], diffs: bool) -> String {
    let mut out = String::new();
    let mut last_host = None;
    for h in hosts {
        for t in h.tasks.iter().filter(|t| !t.changes.is_empty()) {
            if last_host != Some(&h.host) {
                out.push_str(&format!("  {}\n", h.host));
                last_host = Some(&h.host);
            }
            out.push_str(&format!("    {}\n", t.task));
            for c in &t.changes {
                out.push_str(&format!("      {}: {}\n", c.resource, c.summary()));
                if diffs && let Some(d) = &c.diff {
                    for line in d.lines() {
                        out.push_str("          ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out.trim_end().to_string()
}

/// One line: how many changes of each kind (`3 changes: 1 restart, 2 update`).
pub fn tally(hosts: &[HostReport]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in hosts.iter().flat_map(|h| &h.tasks).flat_map(|t| &t.changes) {
        *counts.entry(c.kind.tally()).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let kinds: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{total} change(s): {}", kinds.join(", "))
}

impl From<&ConvergeOutput> for StepOutcome {
    fn from(output: &ConvergeOutput) -> StepOutcome {
        let costs = output.costs();
        let mut properties: Vec<(String, String)> = costs
            .iter()
            .flat_map(|(host, c)| {
                [
                    ("ssh_round_trips", c.round_trips.to_string()),
                    ("ssh_bytes_sent", c.bytes_sent.to_string()),
                    ("ssh_bytes_received", c.bytes_received.to_string()),
                    ("facts_cpu_seconds", format!("{:.2}", c.facts_cpu_seconds)),
                ]
                .map(|(what, value)| (format!("{what}.{host}"), value))
            })
            .collect();
        properties.push(("changes".into(), output.changes().to_string()));
        let per_host: Vec<String> = costs
            .iter()
            .map(|(h, c)| format!("{h}={}", c.round_trips))
            .collect();
        StepOutcome {
            summary: format!(
                "{} change(s) {}; SSH round trips per host: {}",
                output.changes(),
                output.verb(),
                per_host.join(" ")
            ),
            properties,
            subcases: output
                .not_exercised
                .iter()
                .map(|item| SubCase {
                    group: "not-exercised",
                    name: format!("converge: {}", item.what),
                    seconds: 0.0,
                    outcome: CaseOutcome::Skipped {
                        reason: item.reason.clone(),
                    },
                    output: String::new(),
                    properties: Vec::new(),
                })
                .collect(),
            failure: None,
        }
    }
}
