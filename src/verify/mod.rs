//! Smoke tests against the live cluster (the seeds' `make smoketest`): each check runs a
//! command on a host over SSH and judges its output; each becomes a JUnit testcase.
//!
//! Checks run in stages; the checks of a stage run concurrently, each retrying until it
//! passes or its window closes, so a broken cluster fails verify within about a minute
//! with the last error seen. A check that cannot run in this scenario is reported as
//! skipped with the reason, never left out.
//!
//! - [`etcd`]: members healthy, the cluster's size, a write read back, the network key,
//!   and etcd trusting only its own CA;
//! - [`control_plane`]: the API, nodes Ready, taints, control-plane pods Ready and not
//!   restarting, anonymous requests refused, `kubectl logs`;
//! - [`traffic`]: a probe pod on every node, pod-to-pod traffic between every pair of
//!   nodes by pod IP and through a ClusterIP Service (no NAT), every node's host network to
//!   another node's pod by address and through its Service;
//! - [`declared`]: the scenario's own checks (`checks:` in scenario.yml), after waiting
//!   for its workloads (rollouts complete, pods Ready); the default scenario's guestbook
//!   is one.
//!
//! `--check PATTERN` ([`Selection`]) runs only the checks whose names match, with what they
//! need (the probe pods, the wait for workloads).

mod control_plane;
pub mod declared;
mod etcd;
mod traffic;
pub mod under_fault;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::connections::{ConnectionError, Connections};
use crate::engine::Transport;
use crate::scenario::Scenario;
use crate::ssh::SshSession;
use crate::timeouts::TimeoutScale;

/// The longest a single command may run (on a platform of timeout scale 1), unless the
/// check says otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two tries of a check.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// One smoke test.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub host: String,
    pub command: String,
    pub expect: Expect,
    /// How long the check may keep trying (things that settle after converge) on a
    /// platform of timeout scale 1; one try when zero.
    pub within: Duration,
    /// The longest one try (lookup and command) may take.
    pub timeout: Duration,
    /// Where the check runs and what it talks to, found on each try before the command
    /// (a pod's node, a Service's address): these are not known when the check is built.
    pub lookup: Option<Lookup>,
    /// Why this check cannot run in this scenario; it is then reported as skipped.
    pub skip: Option<String>,
}

/// A command whose output says where a check runs and fills its variables: each line
/// `key=value` becomes the shell variable `$key` in front of the check's command, and
/// `host=NAME` moves the check to that host.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub host: String,
    pub command: String,
}

impl Check {
    /// A check run on `host`, tried once unless given a window with [`Check::within`].
    pub fn on(host: &str, name: impl Into<String>, command: String, expect: Expect) -> Check {
        Check {
            name: name.into(),
            host: host.to_string(),
            command,
            expect,
            within: Duration::ZERO,
            timeout: COMMAND_TIMEOUT,
            lookup: None,
            skip: None,
        }
    }

    /// Keeps trying for up to `seconds`.
    pub fn within(mut self, seconds: u64) -> Check {
        self.within = Duration::from_secs(seconds);
        self
    }

    /// A check this scenario cannot run, and why.
    pub fn skipped(name: impl Into<String>, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            host: String::new(),
            command: String::new(),
            expect: Expect::Success,
            within: Duration::ZERO,
            timeout: COMMAND_TIMEOUT,
            lookup: None,
            skip: Some(reason.into()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expect {
    /// Exit status 0.
    Success,
    /// Exit status 0 and stdout, trimmed, equal to this (never empty).
    Output(String),
    /// A declared check's expectations, judged on exit status, stdout and stderr.
    Declared(declared::Judge),
}

/// Which checks run: those whose names match one of the patterns (`--check`); all when
/// there are none.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    patterns: Vec<regex::Regex>,
}

impl Selection {
    /// Compiles `--check` patterns (regular expressions matched anywhere in a name).
    pub fn new(patterns: &[String]) -> Result<Selection, regex::Error> {
        Ok(Selection {
            patterns: patterns
                .iter()
                .map(|p| regex::Regex::new(p))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn wants(&self, name: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| p.is_match(name))
    }

    /// The checks it wants.
    fn keep(&self, checks: Vec<Check>) -> Vec<Check> {
        checks.into_iter().filter(|c| self.wants(&c.name)).collect()
    }
}

/// The open sessions checks run over, by host name (a trait so the runner can be tested
/// without hosts).
pub trait Hosts: Sync {
    type Session: Transport + Send;
    fn session(&self, host: &str) -> Result<Self::Session, ConnectionError>;
    /// The platform's; check windows are multiplied by it.
    fn timeout_scale(&self) -> TimeoutScale;
}

impl Hosts for Connections {
    type Session = SshSession;
    fn session(&self, host: &str) -> Result<SshSession, ConnectionError> {
        Connections::session(self, host)
    }
    fn timeout_scale(&self) -> TimeoutScale {
        Connections::timeout_scale(self)
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: Check,
    pub verdict: Verdict,
    pub seconds: f64,
    /// What was seen: stdout when it passed; else what was expected and what was seen
    /// (output, exit status, stderr) on the last try; the reason when skipped.
    pub detail: String,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }
}

/// Every selected check for the cluster, run stage by stage; results in check order.
pub async fn run(
    cluster: &Cluster,
    scenario: &Scenario,
    connections: &Connections,
    selection: &Selection,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let first: Vec<Check> = etcd::health(cluster)
        .into_iter()
        .chain(control_plane::api_and_nodes(cluster))
        .collect();
    results.extend(run_stage(selection.keep(first), connections, report).await);
    let second: Vec<Check> = etcd::trust(cluster)
        .into_iter()
        .chain(control_plane::node_checks(cluster))
        .collect();
    results.extend(run_stage(selection.keep(second), connections, report).await);
    // The probes use objects of their own, the scenario's checks its workloads: they run
    // side by side.
    let (traffic, declared) = futures::join!(
        traffic::run(cluster, connections, selection, report),
        declared::run(cluster, scenario, connections, selection, report)
    );
    results.extend(traffic);
    results.extend(declared);
    results
}

/// Runs `checks` concurrently, their windows scaled to the platform; results in their
/// order.
pub async fn run_stage<H: Hosts>(
    checks: Vec<Check>,
    hosts: &H,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let scale = hosts.timeout_scale();
    let runs = checks.into_iter().map(|mut check| async move {
        check.within = scale.of(check.within);
        let result = match &check.skip {
            Some(reason) => CheckResult {
                detail: reason.clone(),
                check,
                verdict: Verdict::Skipped,
                seconds: 0.0,
            },
            None => run_check(hosts, check).await,
        };
        report(&result);
        result
    });
    futures::future::join_all(runs).await
}

/// Runs one check, trying again until it passes or its window closes; the result names
/// the host it ran on last.
pub async fn run_check<H: Hosts>(hosts: &H, mut check: Check) -> CheckResult {
    let start = Instant::now();
    let deadline = start + check.within;
    loop {
        let tried = attempt(hosts, &check).await;
        check.host = tried.host;
        if tried.passed || Instant::now() + RETRY_PAUSE > deadline {
            return CheckResult {
                verdict: if tried.passed {
                    Verdict::Passed
                } else {
                    Verdict::Failed
                },
                seconds: start.elapsed().as_secs_f64(),
                detail: tried.detail,
                check,
            };
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// How one try went, and where it ran.
struct Tried {
    passed: bool,
    detail: String,
    host: String,
}

/// One try: the lookup if the check has one, then its command, judged.
async fn attempt<H: Hosts>(hosts: &H, check: &Check) -> Tried {
    let failed = |host: &str, detail: String| Tried {
        passed: false,
        detail,
        host: host.to_string(),
    };
    let (host, command) = match &check.lookup {
        None => (check.host.clone(), check.command.clone()),
        Some(lookup) => match look_up(hosts, lookup, check.timeout).await {
            Ok(found) => found.apply(&check.host, &check.command),
            Err(detail) => return failed(&lookup.host, detail),
        },
    };
    let out = match hosts.session(&host) {
        Ok(session) => session.exec_root(&command, None, check.timeout).await,
        Err(e) => return failed(&host, e.to_string()),
    };
    let out = match out {
        Ok(out) => out,
        Err(e) => return failed(&host, e.to_string()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let (passed, detail) = match &check.expect {
        Expect::Declared(judge) => match judge.judge(out.status, &stdout, &stderr) {
            Ok(seen) => (true, seen),
            Err(unmet) => (false, unmet.to_string()),
        },
        _ if out.status != 0 => (false, format!("exit {}: {stdout}\n{stderr}", out.status)),
        Expect::Success => (true, stdout),
        Expect::Output(want) if !want.is_empty() && stdout == *want => (true, stdout),
        Expect::Output(want) => (false, format!("expected output '{want}', got '{stdout}'")),
    };
    Tried {
        passed,
        detail,
        host,
    }
}

/// What a lookup found: `key=value` pairs, `host` among them maybe.
struct Found(BTreeMap<String, String>);

impl Found {
    /// The host the check runs on, and its command with the found values as variables.
    fn apply(self, host: &str, command: &str) -> (String, String) {
        let host = self
            .0
            .get("host")
            .cloned()
            .unwrap_or_else(|| host.to_string());
        let vars: String = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={}; ", crate::ssh::shell_quote(v)))
            .collect();
        (host, format!("{vars}{command}"))
    }
}

/// Runs a lookup; its output must be `key=value` lines (keys: lowercase letters and '_').
async fn look_up<H: Hosts>(hosts: &H, lookup: &Lookup, timeout: Duration) -> Result<Found, String> {
    let failed = |why: String| format!("lookup on {} failed: {why}", lookup.host);
    let session = hosts
        .session(&lookup.host)
        .map_err(|e| failed(e.to_string()))?;
    let out = session
        .exec_root(&lookup.command, None, timeout)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status != 0 {
        return Err(failed(
            format!("exit {}: {stdout} {stderr}", out.status)
                .trim()
                .to_string(),
        ));
    }
    let mut found = BTreeMap::new();
    for line in stdout.lines() {
        let pair = line.split_once('=').filter(|(k, v)| {
            !k.is_empty() && !v.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        let Some((k, v)) = pair else {
            return Err(failed(format!("unexpected output '{line}'")));
        };
        found.insert(k.to_string(), v.to_string());
    }
    if found.is_empty() {
        return Err(failed("it found nothing".into()));
    }
    Ok(Found(found))
}

#[cfg(test)]
mod tests;
