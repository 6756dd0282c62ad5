//! The scenario's own checks (`checks:` in scenario.yml), run after verify has waited for
//! the scenario's workloads: each Deployment, DaemonSet and StatefulSet rolled out, each
//! bare Pod Ready.
//!
//! A check on a group (or `nodes`, `all`) becomes one check per host, named
//! `<name> [<host>]`. Commands come from `render.rs`, their output is judged by
//! `judge.rs`; a check whose address is only known at run time (a pod's node, a
//! Service's clusterIP) looks it up with kubectl on the first master on every try.

mod judge;
mod render;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use judge::{Judge, Kube, Response, Unmet};

use super::{Check, CheckResult, Expect, Hosts, Lookup, Selection, run_stage};
use crate::cluster::commands::kubectl;
use crate::cluster::{Cluster, Node};
use crate::engine::ApiObject;
use crate::scenario::checks::{
    Assertion, CheckKind, Client, DeclaredCheck, HttpCheck, Server, Value,
};
use crate::scenario::{Scenario, Workload};
use crate::ssh::shell_quote as q;

/// How long kubectl waits for one workload object to be rolled out or Ready.
const WAIT_SECONDS: u64 = 60;
/// How long a workload wait may keep trying (objects appearing after converge).
const WAIT_WINDOW: u64 = 30;
/// What a pod check needs beyond its own timeout: creating, reading and deleting the pod.
const POD_SLACK: u64 = 20;

/// The workload waits, then every selected declared check (concurrently); nothing when the
/// selection wants none of them.
pub async fn run<H: Hosts>(
    cluster: &Cluster,
    scenario: &Scenario,
    hosts: &H,
    selection: &Selection,
    report: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let run = run_value();
    let checks: Vec<Check> = scenario
        .checks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let wanted = selection.wants(&c.name);
            checks_of(cluster, scenario, i, c, &run)
                .into_iter()
                .filter(move |one| wanted || selection.wants(&one.name))
        })
        .collect();
    let waits: Vec<Check> = workload_waits(cluster, &scenario.workloads)
        .into_iter()
        .filter(|w| !checks.is_empty() || selection.wants(&w.name))
        .collect();
    let mut results = run_stage(waits, hosts, report).await;
    results.extend(run_stage(checks, hosts, report).await);
    results
}

/// A value unique to this verify run (letters and digits): what `${RUN}` stands for.
fn run_value() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:x}{:x}", std::process::id(), secs % 0x100000)
}

/// The checks one declared check makes: one per host for host checks, else one.
pub fn checks_of(
    cluster: &Cluster,
    scenario: &Scenario,
    index: usize,
    c: &DeclaredCheck,
    run: &str,
) -> Vec<Check> {
    let on_hosts = |on: &str, command: String, judge: Judge| -> Vec<Check> {
        let hosts = scenario.check_hosts(on).unwrap_or_default();
        let one = hosts.len() == 1 && hosts[0] == on;
        hosts
            .into_iter()
            .map(|h| {
                let name = if one {
                    c.name.clone()
                } else {
                    format!("{} [{h}]", c.name)
                };
                declared(c, h, name, command.clone(), judge.clone())
            })
            .collect()
    };
    if let CheckKind::Command(_) | CheckKind::File(_) | CheckKind::Unit(_) = &c.kind {
        return host_check(c, run, &on_hosts);
    }
    let Some(master) = cluster.first_master() else {
        return vec![Check::skipped(
            &c.name,
            "the cluster has no kube-master to ask",
        )];
    };
    match &c.kind {
        CheckKind::Http(h) => vec![http_check(cluster, master, c, h, run)],
        CheckKind::Kubernetes(k) => {
            let judge = Judge::Kubernetes(match &k.assertion {
                Assertion::Exists(e) => Kube::Exists(*e),
                Assertion::Condition(c) => Kube::Condition(c.clone()),
                Assertion::JsonPath { expect, .. } => match render::expected_value(expect, run) {
                    Value::Equals(v) => Kube::Equals(v),
                    Value::Matches(p) => Kube::Matches(p.for_run(run)),
                },
                Assertion::Count(n) => Kube::Count {
                    count: *n,
                    pods: render::counts_pods(k),
                },
            });
            let command = render::kubernetes(k, run);
            vec![declared(
                c,
                master.name.clone(),
                c.name.clone(),
                command,
                judge,
            )]
        }
        CheckKind::Pod(p) => {
            let on_master = p.node.as_ref().is_some_and(|n| is_master(cluster, n));
            let name = format!("kubeforge-check-{index}-{run}");
            let waits = cluster.timeouts.secs(c.timeout);
            let command = render::pod(p, &name, on_master, run, waits);
            let judge = Judge::Pod {
                exit: p.exit,
                stdout: p.stdout.as_ref().map(|s| s.for_run(run)),
            };
            let mut check = declared(c, master.name.clone(), c.name.clone(), command, judge);
            check.timeout += Duration::from_secs(POD_SLACK);
            vec![check]
        }
        _ => unreachable!("host checks returned above"),
    }
}

/// An http check: on the client host, or (from a pod) on the pod's node found by the
/// lookup on the first master, which also finds a Service's or pod's address.
fn http_check(
    cluster: &Cluster,
    master: &Node,
    c: &DeclaredCheck,
    h: &HttpCheck,
    run: &str,
) -> Check {
    let to_node = match &h.to {
        Server::Node(n) => cluster
            .nodes
            .iter()
            .find(|x| &x.name == n)
            .map(|x| x.address),
        _ => None,
    };
    let host = match &h.from {
        Client::Host(host) => host.clone(),
        Client::Pod(_) => master.name.clone(),
    };
    let judge = Judge::Http(
        h.requests
            .iter()
            .map(|r| Response {
                path: render::with_run(&r.path, run),
                status: r.status,
                body: r.body.as_ref().map(|p| p.for_run(run)),
            })
            .collect(),
    );
    let command = render::http(h, to_node, run, c.timeout);
    let mut check = declared(c, host, c.name.clone(), command, judge);
    check.lookup = render::http_lookup(h).map(|command| Lookup {
        host: master.name.clone(),
        command,
    });
    check
}

/// A command, file or unit check on every host of its `on`.
fn host_check(
    c: &DeclaredCheck,
    run: &str,
    on_hosts: &dyn Fn(&str, String, Judge) -> Vec<Check>,
) -> Vec<Check> {
    match &c.kind {
        CheckKind::Command(cmd) => on_hosts(
            &cmd.on,
            render::command(cmd, run),
            Judge::Command {
                exit: cmd.exit,
                stdout: cmd.stdout.as_ref().map(|p| p.for_run(run)),
                stderr: cmd.stderr.as_ref().map(|p| p.for_run(run)),
            },
        ),
        CheckKind::File(f) => on_hosts(
            &f.on,
            render::file(f),
            Judge::File {
                exists: f.exists,
                mode: f.mode.map(|m| m.0),
                contains: f.contains.as_ref().map(|p| p.for_run(run)),
            },
        ),
        CheckKind::Unit(u) => on_hosts(
            &u.on,
            render::unit(u),
            Judge::Unit {
                active: u.active,
                enabled: u.enabled,
            },
        ),
        _ => unreachable!("host checks only"),
    }
}

fn is_master(cluster: &Cluster, name: &str) -> bool {
    cluster.masters().any(|m: &Node| m.name == name)
}

/// A check on `host` with the declared check's timeout and window.
fn declared(c: &DeclaredCheck, host: String, name: String, command: String, judge: Judge) -> Check {
    let mut check = Check::on(&host, name, command, Expect::Declared(judge)).within(c.within);
    check.timeout = Duration::from_secs(c.timeout);
    check
}

/// For each workload that has something to wait for, a check on the first master that its
/// Deployments, DaemonSets and StatefulSets are rolled out and its Pods Ready.
pub fn workload_waits(cluster: &Cluster, workloads: &[Workload]) -> Vec<Check> {
    let Some(master) = cluster.first_master() else {
        return Vec::new();
    };
    let k = kubectl();
    let wait = cluster.timeouts.secs(WAIT_SECONDS);
    workloads
        .iter()
        .filter_map(|w| {
            let file = w.path.display().to_string();
            let objects = ApiObject::from_manifest(&file, &w.text).ok()?;
            let waits: Vec<String> = objects
                .iter()
                .filter_map(|o| {
                    let ns = q(o.namespace().unwrap_or("default"));
                    let name = q(o.name());
                    match o.kind() {
                        "Deployment" | "DaemonSet" | "StatefulSet" => Some(format!(
                            "{k} -n {ns} rollout status {}/{name} --timeout={wait}s >/dev/null",
                            o.kind().to_ascii_lowercase()
                        )),
                        "Pod" => Some(format!(
                            "{k} -n {ns} wait --for=condition=Ready pod/{name} --timeout={wait}s >/dev/null"
                        )),
                        _ => None,
                    }
                })
                .collect();
            if waits.is_empty() {
                return None;
            }
            let mut check = Check::on(
                &master.name,
                format!("workload {file}: rollouts complete, pods Ready"),
                format!("{} && echo ready", waits.join(" && ")),
                Expect::Output("ready".into()),
            )
            .within(WAIT_WINDOW);
            check.timeout = Duration::from_secs(2 * WAIT_SECONDS + 30);
            Some(check)
        })
        .collect()
}
