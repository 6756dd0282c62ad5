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
//!   another node's pod;
//! - [`guestbook`]: the guestbook application stores a message and reads it back.

mod control_plane;
mod etcd;
mod guestbook;
mod traffic;
pub mod under_fault;

use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::connections::Connections;
use crate::engine::Transport;

/// The longest a single command may run (on a platform of timeout scale 1).
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
    /// Why this check cannot run in this scenario; it is then reported as skipped.
    pub skip: Option<String>,
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

/// Every check for the cluster, run stage by stage; results in check order.
pub async fn run(
    cluster: &Cluster,
    connections: &Connections,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let first: Vec<Check> = etcd::health(cluster)
        .into_iter()
        .chain(control_plane::api_and_nodes(cluster))
        .collect();
    results.extend(run_stage(first, connections, report).await);
    let second: Vec<Check> = etcd::trust(cluster)
        .into_iter()
        .chain(control_plane::node_checks(cluster))
        .collect();
    results.extend(run_stage(second, connections, report).await);
    // The probes and the guestbook use objects of their own: they run side by side.
    let guestbook = async {
        let mut out = Vec::new();
        for stage in guestbook::stages(cluster) {
            out.extend(run_stage(stage, connections, report).await);
        }
        out
    };
    let (traffic, guestbook) =
        futures::join!(traffic::run(cluster, connections, report), guestbook);
    results.extend(traffic);
    results.extend(guestbook);
    results
}

/// Runs `checks` concurrently, their windows scaled to the platform; results in their
/// order.
pub async fn run_stage(
    checks: Vec<Check>,
    connections: &Connections,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let scale = connections.timeout_scale();
    let runs = checks.into_iter().map(|mut check| async move {
        check.within = scale.of(check.within);
        let result = match (&check.skip, connections.session(&check.host)) {
            (Some(reason), _) => CheckResult {
                detail: reason.clone(),
                check,
                verdict: Verdict::Skipped,
                seconds: 0.0,
            },
            (None, Ok(session)) => run_check(&session, check).await,
            (None, Err(e)) => CheckResult {
                detail: e.to_string(),
                check,
                verdict: Verdict::Failed,
                seconds: 0.0,
            },
        };
        report(&result);
        result
    });
    futures::future::join_all(runs).await
}

/// Runs one check on its host, trying again until it passes or its window closes.
pub async fn run_check<T: Transport>(transport: &T, check: Check) -> CheckResult {
    let start = Instant::now();
    let deadline = start + check.within;
    loop {
        let (passed, detail) = attempt(transport, &check).await;
        if passed || Instant::now() + RETRY_PAUSE > deadline {
            return CheckResult {
                verdict: if passed {
                    Verdict::Passed
                } else {
                    Verdict::Failed
                },
                seconds: start.elapsed().as_secs_f64(),
                detail,
                check,
            };
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One try: whether it passed, and what was seen.
async fn attempt<T: Transport>(transport: &T, check: &Check) -> (bool, String) {
    let out = match transport
        .exec_root(&check.command, None, COMMAND_TIMEOUT)
        .await
    {
        Ok(out) => out,
        Err(e) => return (false, e.to_string()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status != 0 {
        return (false, format!("exit {}: {stdout}\n{stderr}", out.status));
    }
    match &check.expect {
        Expect::Success => (true, stdout),
        Expect::Output(want) if !want.is_empty() && stdout == *want => (true, stdout),
        Expect::Output(want) => (false, format!("expected output '{want}', got '{stdout}'")),
    }
}

#[cfg(test)]
mod tests;
