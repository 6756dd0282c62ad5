//! `side_effect`: the scenario's faults, one after the other (Molecule's step, made
//! declarative). Each fault hits its hosts all at once; while they are gone the cluster must
//! keep serving (checks run on the hosts that are there); then the fault is undone (a
//! replaced host is created again, empty), converge repairs whatever is missing, and the
//! time it took is reported. A key written before the first fault must still be on every
//! etcd member after the last, a replaced one included.

use std::time::Instant;

use super::converge;
use super::create::heal;
use super::{StepError, StepOutcome, SubCase, Workspace};
use crate::cluster::Cluster;
use crate::cluster::commands::etcdctl;
use crate::connections::Connections;
use crate::driver;
use crate::engine::{Mode, Options};
use crate::inventory::Inventory;
use crate::report::CaseOutcome;
use crate::roles::Scope;
use crate::scenario::{Fault, FaultAction};
use crate::state::ScenarioState;
use crate::verify::{self, Check, CheckResult, Expect, Verdict};

/// How one fault went.
pub struct FaultOutcome {
    pub fault: Fault,
    /// Why making the fault failed, if it did.
    pub not_made: Option<String>,
    /// The checks run while it lasted.
    pub under: Vec<CheckResult>,
    /// Seconds from the fault until the API answered through a load balancer again.
    pub api_back_after: Option<f64>,
    /// Seconds to undo it and converge, or why that failed.
    pub recovery: Result<f64, String>,
}

/// Every fault's outcome, and whether the data written before them survived.
pub struct SideEffectOutput {
    pub faults: Vec<FaultOutcome>,
    pub kept: Vec<CheckResult>,
}

pub async fn run(
    ws: &Workspace,
    state: &ScenarioState,
    connections: &mut Connections,
) -> Result<SideEffectOutput, StepError> {
    let inventory = state
        .inventory
        .clone()
        .ok_or_else(|| StepError::NotCreated(ws.scenario.name.clone()))?;
    connections.connect_all(&inventory, &ws.state_dir).await?;
    let cluster = Cluster::derive(&ws.scenario, &inventory)?;
    let report = |r: &CheckResult| match r.verdict {
        Verdict::Passed => ws
            .log
            .info(format!("  ok    {} ({:.1}s)", r.check.name, r.seconds)),
        Verdict::Skipped => ws
            .log
            .info(format!("  skip  {}: {}", r.check.name, r.detail)),
        Verdict::Failed => ws.log.error(format!(
            "  FAIL  {} on {} ({:.1}s): {}",
            r.check.name, r.check.host, r.seconds, r.detail
        )),
    };
    let key = format!("/kubeforge/side-effect/{}", std::process::id());
    let written = verify::run_stage(vec![write_key(&cluster, &key)], connections, &report).await;
    let mut faults = Vec::new();
    for (i, fault) in ws.scenario.faults.iter().enumerate() {
        ws.say(format!(
            "fault '{}': {} {}",
            fault.name,
            fault.action.as_str(),
            fault.hosts.join(", ")
        ));
        let tag = format!("{}-{i}", std::process::id());
        let outcome = one_fault(
            ws,
            state,
            &inventory,
            &cluster,
            connections,
            fault,
            &tag,
            &report,
        )
        .await?;
        faults.push(outcome);
    }
    let mut kept = written;
    kept.extend(verify::run_stage(read_key_everywhere(&cluster, &key), connections, &report).await);
    Ok(SideEffectOutput { faults, kept })
}

#[allow(clippy::too_many_arguments)]
async fn one_fault(
    ws: &Workspace,
    state: &ScenarioState,
    inventory: &Inventory,
    cluster: &Cluster,
    connections: &mut Connections,
    fault: &Fault,
    tag: &str,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Result<FaultOutcome, StepError> {
    let ctx = ws.driver_context(&state.instance);
    let hosts: Vec<_> = inventory
        .hosts
        .iter()
        .filter(|h| fault.hosts.contains(&h.name))
        .collect();
    let mut not_made = None;
    for host in &hosts {
        let made = match (fault.action, &fault.unit) {
            (FaultAction::StopService, Some(unit)) => {
                systemctl(connections, &host.name, "stop", unit).await
            }
            (action, _) => driver::hit(&ctx, host, action)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = made {
            not_made = Some(format!("{}: {e}", host.name));
        }
    }
    if fault.action.takes_hosts_away() {
        connections.forget(&fault.hosts).await;
    }
    let gone: Vec<String> = if fault.action.takes_hosts_away() {
        fault.hosts.clone()
    } else {
        Vec::new()
    };
    let under = verify::run_stage(
        verify::under_fault::checks(cluster, &gone, tag),
        connections,
        report,
    )
    .await;
    let api_back_after = under
        .iter()
        .find(|r| r.check.name.contains("through its load balancer") && r.passed())
        .map(|r| r.seconds);

    let started = Instant::now();
    let recovery = recover(ws, state, inventory, connections, fault).await;
    let recovery = recovery.map(|()| started.elapsed().as_secs_f64());
    match &recovery {
        Ok(s) => ws.say(format!(
            "fault '{}': undone and converged in {s:.1}s",
            fault.name
        )),
        Err(e) => ws
            .log
            .error(format!("fault '{}': recovery failed: {e}", fault.name)),
    }
    Ok(FaultOutcome {
        fault: fault.clone(),
        not_made,
        under,
        api_back_after,
        recovery,
    })
}

/// Undoes the fault on every host, brings back replaced hosts, converges.
async fn recover(
    ws: &Workspace,
    state: &ScenarioState,
    inventory: &Inventory,
    connections: &mut Connections,
    fault: &Fault,
) -> Result<(), String> {
    let ctx = ws.driver_context(&state.instance);
    for host in inventory
        .hosts
        .iter()
        .filter(|h| fault.hosts.contains(&h.name))
    {
        match (fault.action, &fault.unit) {
            (FaultAction::StopService, Some(unit)) => {
                systemctl(connections, &host.name, "start", unit).await?
            }
            (action, _) => driver::undo(&ctx, host, action)
                .await
                .map_err(|e| e.to_string())?,
        }
    }
    // Faults hit Podman hosts only, whose addresses never move: the inventory stays.
    heal(ws, state, inventory, connections)
        .await
        .map_err(|e| e.to_string())?;
    converge::run(
        ws,
        state,
        connections,
        &Options::installer(Mode::Apply, false),
        &Scope::default(),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn systemctl(
    connections: &Connections,
    host: &str,
    verb: &str,
    unit: &str,
) -> Result<(), String> {
    let session = connections.session(host).map_err(|e| e.to_string())?;
    let out = session
        .exec_root(
            &format!("systemctl {verb} {}", crate::ssh::shell_quote(unit)),
            None,
            std::time::Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())?;
    if out.status == 0 {
        Ok(())
    } else {
        Err(format!(
            "systemctl {verb} {unit}: exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn write_key(cluster: &Cluster, key: &str) -> Check {
    let m = &cluster.etcd[0];
    Check::on(
        &m.name,
        "a key written to etcd before the faults",
        format!(
            "{} put {key} kept >/dev/null && echo written",
            etcdctl(&cluster.etcd_endpoints)
        ),
        Expect::Output("written".into()),
    )
    .within(30)
}

/// Each member answers from its own copy (serializable read): a member that was replaced
/// holds the data the cluster had before.
fn read_key_everywhere(cluster: &Cluster, key: &str) -> Vec<Check> {
    let port = cluster.settings.etcd.client_port;
    cluster
        .etcd
        .iter()
        .map(|m| {
            Check::on(
                &m.name,
                format!(
                    "etcd member {} still holds the key written before the faults",
                    m.name
                ),
                format!(
                    "{} get --consistency=s --print-value-only {key}",
                    etcdctl(&m.client_url(port))
                ),
                Expect::Output("kept".into()),
            )
            .within(30)
        })
        .collect()
}

fn case(name: String, seconds: f64, outcome: CaseOutcome, output: String) -> SubCase {
    SubCase {
        group: "side-effect",
        name,
        seconds,
        outcome,
        output,
        properties: Vec::new(),
    }
}

fn check_case(prefix: &str, r: &CheckResult) -> SubCase {
    let outcome = match r.verdict {
        Verdict::Passed => CaseOutcome::Passed,
        Verdict::Skipped => CaseOutcome::Skipped {
            reason: r.detail.clone(),
        },
        Verdict::Failed => CaseOutcome::Failed {
            message: format!("{}: check '{}' failed", r.check.host, r.check.name),
            detail: r.detail.clone(),
        },
    };
    let mut c = case(
        format!("{prefix}{}", r.check.name),
        r.seconds,
        outcome,
        r.detail.clone(),
    );
    c.properties.push(("host".into(), r.check.host.clone()));
    c
}

impl From<&SideEffectOutput> for StepOutcome {
    fn from(output: &SideEffectOutput) -> StepOutcome {
        let mut subcases = Vec::new();
        for f in &output.faults {
            let name = &f.fault.name;
            let failed_checks = f
                .under
                .iter()
                .filter(|r| r.verdict == Verdict::Failed)
                .count();
            let mut problems = Vec::new();
            if let Some(e) = &f.not_made {
                problems.push(format!("making it failed: {e}"));
            }
            if failed_checks > 0 {
                problems.push(format!("{failed_checks} check(s) failed while it lasted"));
            }
            let api = f.api_back_after.map_or(
                "the API did not answer through a load balancer".into(),
                |s| format!("the API answered through a load balancer {s:.1}s after the fault"),
            );
            subcases.push(case(
                format!("fault: {name}"),
                f.under.iter().map(|r| r.seconds).fold(0.0, f64::max),
                if problems.is_empty() {
                    CaseOutcome::Passed
                } else {
                    CaseOutcome::Failed {
                        message: format!("fault '{name}': {}", problems.join("; ")),
                        detail: problems.join("\n"),
                    }
                },
                format!(
                    "{} {}; {api}",
                    f.fault.action.as_str(),
                    f.fault.hosts.join(", ")
                ),
            ));
            let prefix = format!("fault: {name}: ");
            subcases.extend(f.under.iter().map(|r| check_case(&prefix, r)));
            subcases.push(match &f.recovery {
                Ok(s) => case(
                    format!("fault: {name}: recovered"),
                    *s,
                    CaseOutcome::Passed,
                    format!("undone and converged in {s:.1}s"),
                ),
                Err(e) => case(
                    format!("fault: {name}: recovered"),
                    0.0,
                    CaseOutcome::Failed {
                        message: format!("fault '{name}': recovery failed"),
                        detail: e.clone(),
                    },
                    String::new(),
                ),
            });
        }
        subcases.extend(output.kept.iter().map(|r| check_case("side_effect: ", r)));
        let failed: Vec<String> = subcases
            .iter()
            .filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. }))
            .map(|c| c.name.clone())
            .collect();
        StepOutcome {
            summary: format!(
                "{} fault(s) made, served under and recovered from",
                output.faults.len()
            ),
            failure: (!failed.is_empty()).then(|| {
                format!(
                    "side_effect: {} failed: {}",
                    failed.len(),
                    failed.join("; ")
                )
            }),
            subcases,
            properties: Vec::new(),
        }
    }
}
