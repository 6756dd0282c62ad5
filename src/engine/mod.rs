//! The converge engine: facts, then a diff, then only the difference is applied.
//!
//! A run is a list of [`Phase`]s (k0sctl-style ordered phases over hosts). In a phase each
//! host gets one facts round trip (every resource of every task probed by one script, see
//! [`facts`]), the diff is computed locally, and the changes go back in one apply script
//! (plus one streamed upload per changed binary). Check mode stops after the diff; since it
//! changes nothing, the facts of all its phases can be gathered up front, in one round trip
//! per host ([`gather`]), and handed to each phase's [`run_host`].

mod api_object;
mod change;
mod facts;
mod hash_index;
mod image;
mod object_record;
pub mod resource;
mod route;
mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use api_object::ManifestError;
pub use change::{Change, ChangeKind, RestartReason};
pub use facts::{Facts, Probe, Want, gather};
pub use hash_index::Hashing;
pub use image::Image;
pub use object_record::{ObjectRecord, ObjectRef};
pub use resource::{ApiObject, Guard, Observation, Perms, ReadyCheck, Resource, Until};
pub use route::Hop;
pub use transport::{ExecOutput, Transport, TransportError};

/// Something to do on a host: a named group of resources from one role.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    /// The role that produced it; `--tags` selects roles by this.
    pub role: &'static str,
    pub resources: Vec<Resource>,
}

/// Everything one phase does on one host.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: String,
    pub tasks: Vec<Task>,
}

/// A host plan whose services cannot derive their restart inputs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host}: service {unit} is notified by task '{task}', which does not come before it in the same phase"
)]
pub struct PlanError {
    pub host: String,
    pub unit: String,
    pub task: String,
}

impl HostPlan {
    /// A host's tasks, checked so that every service is notified only by tasks that come
    /// before it (or its own), where the engine sees their changes first.
    pub fn new(host: String, tasks: Vec<Task>) -> Result<HostPlan, PlanError> {
        for (t, task) in tasks.iter().enumerate() {
            for r in &task.resources {
                if let Resource::Service {
                    unit, notified_by, ..
                } = r
                    && let Some(missing) = notified_by
                        .iter()
                        .find(|n| !tasks[..=t].iter().any(|earlier| &earlier.name == *n))
                {
                    return Err(PlanError {
                        host,
                        unit: unit.clone(),
                        task: missing.clone(),
                    });
                }
            }
        }
        Ok(HostPlan { host, tasks })
    }
}

/// An ordered step of the installation over a set of hosts (hosts run concurrently).
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub hosts: Vec<HostPlan>,
}

/// Apply the changes, or only report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Check,
}

/// How a run goes: its mode and how it compares file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    pub hashing: Hashing,
}

impl Options {
    /// The installer's run: its hash index on every host, trusted unless `full_hash`.
    pub fn installer(mode: Mode, full_hash: bool) -> Options {
        Options {
            mode,
            hashing: Hashing::installer(full_hash),
        }
    }
}

/// The changes of one task on one host.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub host: String,
    pub task: String,
    pub changes: Vec<Change>,
}

/// What a host's part of a run cost, as the engine counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// SSH commands: facts and apply scripts, uploads.
    pub round_trips: u64,
    /// Payload sent to the host: scripts and uploaded files (not SSH's own framing).
    pub bytes_sent: u64,
    /// Payload received: the scripts' output.
    pub bytes_received: u64,
    /// CPU seconds (user and system) the facts scripts and everything they ran used on the
    /// host, as their shell's `times` reports them (10 ms ticks); the work they ask of
    /// other processes (systemd answering systemctl, the API server answering kubectl) is
    /// not in it.
    pub facts_cpu_seconds: f64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.round_trips += other.round_trips;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.facts_cpu_seconds += other.facts_cpu_seconds;
    }
}

/// What a phase did (or would do) on one host.
#[derive(Debug, Clone, Default)]
pub struct HostReport {
    pub host: String,
    pub tasks: Vec<TaskReport>,
    pub cost: Cost,
    /// Units this run (re)starts on the host, for handlers on later phases' hosts.
    pub restarted: Vec<String>,
}

impl HostReport {
    pub fn change_count(&self) -> usize {
        self.tasks.iter().map(|t| t.changes.len()).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The host could not be reached (it dropped, timed out) while doing `what` for the
    /// named tasks.
    #[error("{host}: {what} (task {tasks}): {source}")]
    Transport {
        host: String,
        what: &'static str,
        tasks: String,
        source: TransportError,
    },
    #[error("{host}: gathering facts failed (exit {status}): {stderr}")]
    Facts {
        host: String,
        status: u32,
        stderr: String,
    },
    #[error("{host}: task '{task}' failed ({resource}): {stderr}")]
    Apply {
        host: String,
        task: String,
        resource: String,
        stderr: String,
    },
}

/// Functions every apply script can call: atomic file write (the temporary file is created
/// under umask 077, so a key is never readable by others, not even before its chmod),
/// readiness wait (`kf_wait SECONDS COMMAND`: a deadline in seconds however long each try
/// takes; tries every quarter second for the first 5 s, since most waits end within them,
/// then every second, and every 5 s after 30 s so that a slow host's probes, such as a
/// kubectl on an emulated CPU, do not starve what they wait for) and the hash index's.
fn apply_prelude(hashing: &Hashing) -> String {
    format!(
        r#"set -e
umask 022
kf_write() {{ kf_t="$1.kf-tmp.$$"; (umask 077; base64 -d > "$kf_t"); chmod "$2" "$kf_t"; chown "$3" "$kf_t"; mv -f "$kf_t" "$1"; }}
kf_wait() {{ kf_t0=$(date +%s); while :; do if sh -c "$2" >/dev/null 2>&1; then return 0; fi; kf_e=$(( $(date +%s) - kf_t0 )); [ "$kf_e" -lt "$1" ] || return 1; if [ "$kf_e" -lt 5 ]; then sleep 0.25; elif [ "$kf_e" -lt 30 ]; then sleep 1; else sleep 5; fi; done; }}
mkdir -p /var/lib/kubeforge/restart-pending
{}"#,
        hashing.shell_functions()
    )
}

const APPLY_TIMEOUT: Duration = Duration::from_secs(900);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// Converges (or checks) one host's plan: one facts round trip (none when `facts` were
/// gathered already, with other plans of the host), then at most one apply script and one
/// upload per changed binary.
/// `restarted` holds the units (re)started earlier in this run on any host, for handlers.
pub async fn run_host<T: Transport>(
    transport: &T,
    plan: &HostPlan,
    options: &Options,
    restarted: &BTreeSet<String>,
    facts: Option<Facts>,
) -> Result<HostReport, EngineError> {
    let host = plan.host.clone();
    let resources: Vec<(usize, &Resource)> = plan
        .tasks
        .iter()
        .enumerate()
        .flat_map(|(t, task)| task.resources.iter().map(move |r| (t, r)))
        .collect();
    let mut report = HostReport {
        host: host.clone(),
        ..Default::default()
    };
    if resources.is_empty() {
        return Ok(report);
    }

    let facts = match facts {
        Some(f) => f,
        None => gather(transport, &host, &[plan], &options.hashing)
            .await?
            .remove(0),
    };
    report.cost += facts.cost;
    let facts = facts.observed;

    let per_resource = diff_all(plan, &resources, &facts, restarted);
    report.restarted = resources
        .iter()
        .zip(&per_resource)
        .filter_map(|((_, r), changes)| match r {
            Resource::Service { unit, .. } if changes.iter().any(|c| c.kind.starts()) => {
                Some(unit.clone())
            }
            _ => None,
        })
        .collect();
    for (t, task) in plan.tasks.iter().enumerate() {
        let changes: Vec<Change> = resources
            .iter()
            .zip(&per_resource)
            .filter(|((ti, _), _)| *ti == t)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        report.tasks.push(TaskReport {
            host: host.clone(),
            task: task.name.clone(),
            changes,
        });
    }
    if options.mode == Mode::Check || report.change_count() == 0 {
        return Ok(report);
    }

    report.cost += upload_changed(transport, plan, &resources, &per_resource).await?;
    let changing: Vec<&str> = report
        .tasks
        .iter()
        .filter(|t| !t.changes.is_empty())
        .map(|t| t.task.as_str())
        .collect();
    let steps = apply_steps(&resources, &per_resource, &options.hashing);
    report.cost += apply(transport, plan, &resources, steps, &quoted(&changing)).await?;
    Ok(report)
}

/// Runs the apply `steps` in order; the first failure names its task and resource.
async fn apply<T: Transport>(
    transport: &T,
    plan: &HostPlan,
    resources: &[(usize, &Resource)],
    steps: Vec<ApplyStep<'_>>,
    changing: &str,
) -> Result<Cost, EngineError> {
    let transport_err = |what| {
        move |source| EngineError::Transport {
            host: plan.host.clone(),
            what,
            tasks: changing.to_string(),
            source,
        }
    };
    let mut cost = Cost::default();
    for step in steps {
        match step {
            ApplyStep::Script(script) => {
                let out = transport
                    .exec_root("sh -s", Some(script.as_bytes()), APPLY_TIMEOUT)
                    .await
                    .map_err(transport_err("apply"))?;
                cost += Cost {
                    round_trips: 1,
                    bytes_sent: script.len() as u64,
                    bytes_received: (out.stdout.len() + out.stderr.len()) as u64,
                    ..Cost::default()
                };
                if out.status != 0 {
                    return Err(script_failure(plan, resources, &out.stderr));
                }
            }
            ApplyStep::Imports(imports) => {
                let done = futures::future::join_all(imports.iter().map(|i| async move {
                    let script = i.image.import_script(i.ctr);
                    let out = transport
                        .exec_root_with_file(&script, &i.image.local, UPLOAD_TIMEOUT)
                        .await;
                    (i, out)
                }))
                .await;
                for (i, out) in done {
                    let out = out.map_err(transport_err("image import"))?;
                    cost += Cost {
                        round_trips: 1,
                        bytes_sent: std::fs::metadata(&i.image.local).map_or(0, |m| m.len()),
                        bytes_received: (out.stdout.len() + out.stderr.len()) as u64,
                        ..Cost::default()
                    };
                    if out.status != 0 {
                        let (t, r) = resources[i.at];
                        return Err(EngineError::Apply {
                            host: plan.host.clone(),
                            task: plan.tasks[t].name.clone(),
                            resource: r.label(),
                            stderr: tail(&String::from_utf8_lossy(&out.stderr), 1500),
                        });
                    }
                }
            }
        }
    }
    Ok(cost)
}

/// The failure of an apply script: the task and resource its last `KF-AT` line names.
fn script_failure(plan: &HostPlan, resources: &[(usize, &Resource)], stderr: &[u8]) -> EngineError {
    let stderr = String::from_utf8_lossy(stderr);
    let at = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("KF-AT "))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .next_back()
        .unwrap_or(0);
    let (t, r) = resources[at.min(resources.len() - 1)];
    let message: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("KF-AT "))
        .collect();
    EngineError::Apply {
        host: plan.host.clone(),
        task: plan.tasks[t].name.clone(),
        resource: r.label(),
        stderr: tail(&message.join("\n"), 1500),
    }
}

/// Streams the binaries whose content changes (each to a temporary name, renamed
/// atomically), before the apply script that fixes their modes.
async fn upload_changed<T: Transport>(
    transport: &T,
    plan: &HostPlan,
    resources: &[(usize, &Resource)],
    per_resource: &[Vec<Change>],
) -> Result<Cost, EngineError> {
    let mut cost = Cost::default();
    for ((t, r), changes) in resources.iter().zip(per_resource) {
        if let Resource::Upload {
            path, local, perms, ..
        } = r
            && changes
                .iter()
                .any(|c| matches!(c.kind, ChangeKind::Upload { .. }))
        {
            transport
                .upload_file(local, path, perms.mode, UPLOAD_TIMEOUT)
                .await
                .map_err(|source| EngineError::Transport {
                    host: plan.host.clone(),
                    what: "upload",
                    tasks: quoted(&[plan.tasks[*t].name.as_str()]),
                    source,
                })
                .map_err(|e| with_task(e, &plan.tasks[*t].name))?;
            cost.round_trips += 1;
            cost.bytes_sent += std::fs::metadata(local).map_or(0, |m| m.len());
        }
    }
    Ok(cost)
}

/// Diffs every resource in order. A service sees the changes of the tasks that notify it,
/// which come before it (HostPlan::new checks), as its restart inputs: what changes what a
/// process reads (content, binaries, images), not a file's mode or owner.
fn diff_all(
    plan: &HostPlan,
    resources: &[(usize, &Resource)],
    facts: &BTreeMap<usize, Observation>,
    restarted: &BTreeSet<String>,
) -> Vec<Vec<Change>> {
    let mut changed_inputs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut per_resource = Vec::with_capacity(resources.len());
    let empty = Observation::new();
    for (i, (t, r)) in resources.iter().enumerate() {
        let inputs: Vec<String> = match r {
            Resource::Service { notified_by, .. } => notified_by
                .iter()
                .flat_map(|task| changed_inputs.get(task.as_str()).into_iter().flatten())
                .cloned()
                .collect(),
            Resource::Handler { after_units, .. } => after_units
                .iter()
                .filter(|u| restarted.contains(*u))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let changes = r.diff(facts.get(&i).unwrap_or(&empty), &inputs);
        if r.is_restart_input() && changes.iter().any(|c| c.kind.alters_content()) {
            changed_inputs
                .entry(plan.tasks[*t].name.as_str())
                .or_default()
                .push(r.label());
        }
        per_resource.push(changes);
    }
    per_resource
}

/// `'a', 'b'`: task names in an error.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_task(e: EngineError, task: &str) -> EngineError {
    match e {
        EngineError::Transport { host, source, .. } => EngineError::Apply {
            host,
            task: task.to_string(),
            resource: "upload".into(),
            stderr: source.to_string(),
        },
        other => other,
    }
}

/// A part of an apply, in the plan's order: a script for a run of resources (one round
/// trip), or the images between two scripts, each streamed from the control machine into
/// its import (one round trip each, concurrently: containerd unpacks one while the next
/// streams).
enum ApplyStep<'a> {
    Script(String),
    Imports(Vec<Import<'a>>),
}

struct Import<'a> {
    /// Index into the host's resources, to name it on failure.
    at: usize,
    ctr: &'a str,
    image: &'a Image,
}

/// The apply of the changed resources: scripts split at each image import, so an image is
/// imported exactly where the plan has it (after the runtime that holds it has started,
/// before the services that run it).
fn apply_steps<'a>(
    resources: &[(usize, &'a Resource)],
    per_resource: &[Vec<Change>],
    hashing: &Hashing,
) -> Vec<ApplyStep<'a>> {
    let mut steps = Vec::new();
    let mut script = apply_prelude(hashing);
    let mut pending = false;
    // Services whose inputs change are marked first, so an interrupted run restarts them later.
    for ((_, r), changes) in resources.iter().zip(per_resource) {
        if let Resource::Service { unit, .. } = r
            && changes
                .iter()
                .any(|c| matches!(c.kind, ChangeKind::Restart(_)))
        {
            script.push_str(&format!(
                ": > {}\n",
                crate::ssh::shell_quote(&resource::pending_marker(unit))
            ));
            pending = true;
        }
    }
    let mut reload_needed = resources
        .iter()
        .zip(per_resource)
        .any(|((_, r), c)| !c.is_empty() && r.path().is_some_and(resource::is_unit_file));
    for (i, ((_, r), changes)) in resources.iter().zip(per_resource).enumerate() {
        if changes.is_empty() {
            continue;
        }
        if let Resource::Image { ctr, image } = r {
            if pending {
                steps.push(ApplyStep::Script(std::mem::replace(
                    &mut script,
                    apply_prelude(hashing),
                )));
                pending = false;
            }
            let import = Import { at: i, ctr, image };
            match steps.last_mut() {
                Some(ApplyStep::Imports(imports)) => imports.push(import),
                _ => steps.push(ApplyStep::Imports(vec![import])),
            }
            continue;
        }
        script.push_str(&format!("echo 'KF-AT {i}' >&2\n"));
        if matches!(r, Resource::Service { .. }) && reload_needed {
            script.push_str("systemctl daemon-reload\n");
            reload_needed = false;
        }
        script.push_str(&r.apply_script(changes));
        pending = true;
    }
    if reload_needed {
        script.push_str("systemctl daemon-reload\n");
        pending = true;
    }
    if pending {
        steps.push(ApplyStep::Script(script));
    }
    steps
}

fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

#[cfg(test)]
mod tests;
