//! The scenario's own checks: each has a unique name, bounded times, and names hosts,
//! groups and nodes the scenario has; checks that talk to the API need a master. A check
//! that could only fail (or pass vacuously) is refused here rather than in verify.

use std::collections::HashSet;

use super::Refusal;
use crate::scenario::checks::{Assertion, CheckKind, Client, PodRef, Server};
use crate::scenario::{Group, Scenario};

/// The longest timeout or retry window a check may ask for: verify stays bounded.
const MAX_SECONDS: u64 = 600;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    for (i, c) in s.checks.iter().enumerate() {
        let at = |field: &str| format!("checks.{i}.{field}");
        if c.name.trim().is_empty() || c.name.chars().any(char::is_control) {
            return Err(Refusal::new(
                at("name"),
                "a check's name is its testcase's name: one line, not empty",
            ));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(Refusal::new(
                at("name"),
                format!(
                    "check '{}' is declared twice: testcases and --check select checks by name",
                    c.name
                ),
            ));
        }
        for (field, value, least) in [("timeout", c.timeout, 1), ("within", c.within, 0)] {
            if !(least..=MAX_SECONDS).contains(&value) {
                return Err(Refusal::new(
                    at(field),
                    format!(
                        "check '{}': {field} {value} is not between {least} and {MAX_SECONDS} seconds",
                        c.name
                    ),
                ));
            }
        }
        kind(s, &at(c.kind.key()), &c.kind).map_err(|r| Refusal {
            message: format!("check '{}': {}", c.name, r.message),
            ..r
        })?;
    }
    Ok(())
}

fn kind(s: &Scenario, at: &str, kind: &CheckKind) -> Result<(), Refusal> {
    let field = |f: &str| format!("{at}.{f}");
    match kind {
        CheckKind::Command(c) => {
            hosts(s, &field("on"), &c.on)?;
            nonempty(&field("run"), &c.run)?;
            exit_status(&field("exit"), c.exit)
        }
        CheckKind::File(f) => {
            hosts(s, &field("on"), &f.on)?;
            if !f.path.starts_with('/') {
                return Err(Refusal::new(
                    field("path"),
                    format!("path '{}' is not absolute", f.path),
                ));
            }
            if !f.exists && (f.mode.is_some() || f.contains.is_some()) {
                let what = if f.mode.is_some() { "mode" } else { "contains" };
                return Err(Refusal::new(
                    field(what),
                    format!("a file that must not exist has no {what}"),
                ));
            }
            Ok(())
        }
        CheckKind::Unit(u) => {
            hosts(s, &field("on"), &u.on)?;
            if u.name.is_empty() || u.name.contains(['/', ' ']) {
                return Err(Refusal::new(
                    field("name"),
                    format!("'{}' is not a unit name", u.name),
                ));
            }
            if u.active.is_none() && u.enabled.is_none() {
                return Err(Refusal::new(
                    field("name"),
                    "say what the unit must be: active, enabled or both",
                ));
            }
            Ok(())
        }
        CheckKind::Http(h) => http(s, at, h),
        CheckKind::Kubernetes(k) => {
            needs_master(s, at)?;
            kubernetes(at, k)
        }
        CheckKind::Pod(p) => {
            needs_master(s, at)?;
            nonempty(&field("image"), &p.image)?;
            if p.command.is_empty() {
                return Err(Refusal::new(field("command"), "the pod needs a command"));
            }
            if let Some(node) = &p.node {
                kubernetes_node(s, &field("node"), node)?;
            }
            exit_status(&field("exit"), p.exit)
        }
    }
}

fn http(s: &Scenario, at: &str, h: &crate::scenario::checks::HttpCheck) -> Result<(), Refusal> {
    match &h.from {
        Client::Host(host) => {
            if !s.platforms.iter().any(|p| &p.name == host) {
                return Err(unknown_host(s, &format!("{at}.from.host"), host));
            }
        }
        Client::Pod(pod) => pod_ref(s, &format!("{at}.from"), pod)?,
    }
    match &h.to {
        Server::Service { .. } => needs_master(s, &format!("{at}.to.service"))?,
        Server::Pod(pod) => pod_ref(s, &format!("{at}.to"), pod)?,
        Server::Node(node) => kubernetes_node(s, &format!("{at}.to.node"), node)?,
        Server::Address(_) => {}
    }
    if h.ca.as_ref().is_some_and(|ca| !ca.starts_with('/')) {
        return Err(Refusal::new(
            format!("{at}.ca"),
            "ca is a file on the client's host: an absolute path",
        ));
    }
    for (i, r) in h.requests.iter().enumerate() {
        let field = if h.requests.len() > 1 {
            format!("{at}.requests.{i}")
        } else {
            at.to_string()
        };
        if !r.path.starts_with('/') || r.path.contains(char::is_whitespace) {
            return Err(Refusal::new(
                format!("{field}.path"),
                format!(
                    "path '{}' must start with '/' and hold no spaces (encode them as %20)",
                    r.path
                ),
            ));
        }
        if !(100..=599).contains(&r.status) {
            return Err(Refusal::new(
                format!("{field}.status"),
                format!("{} is not an HTTP status", r.status),
            ));
        }
    }
    Ok(())
}

fn kubernetes(at: &str, k: &crate::scenario::checks::KubernetesCheck) -> Result<(), Refusal> {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    };
    let (kind, name) = match k.object.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (k.object.as_str(), None),
    };
    if !word(kind) || name.is_some_and(|n| !word(n)) {
        return Err(Refusal::new(
            format!("{at}.object"),
            format!(
                "object '{}' is not KIND/NAME or KIND (e.g. deployment/web, pods)",
                k.object
            ),
        ));
    }
    match (&k.assertion, name) {
        (Assertion::Count(_), Some(_)) => Err(Refusal::new(
            format!("{at}.count"),
            "count takes a KIND (with a selector), not one object",
        )),
        (Assertion::Exists(_) | Assertion::Condition(_), None) => Err(Refusal::new(
            format!("{at}.object"),
            format!(
                "exists and condition are about one object: give KIND/NAME, not '{}'",
                k.object
            ),
        )),
        (Assertion::Condition(c), _)
            if !c.bytes().all(|b| b.is_ascii_alphanumeric()) || c.is_empty() =>
        {
            Err(Refusal::new(
                format!("{at}.condition"),
                format!("'{c}' is not a condition type (e.g. Ready, Available)"),
            ))
        }
        (Assertion::JsonPath { path, .. }, _) if !path.starts_with('{') || !path.ends_with('}') => {
            Err(Refusal::new(
                format!("{at}.jsonpath"),
                format!("jsonpath '{path}' is not a kubectl template such as '{{.status.phase}}'"),
            ))
        }
        (
            Assertion::JsonPath {
                expect: crate::scenario::checks::Value::Equals(e),
                ..
            },
            _,
        ) if e.is_empty() => Err(Refusal::new(
            format!("{at}.equals"),
            "equals '' would pass on empty output: never a check",
        )),
        _ if name.is_some() && k.selector.is_some() => Err(Refusal::new(
            format!("{at}.selector"),
            "a selector goes with a KIND, not one object",
        )),
        _ => Ok(()),
    }
}

fn pod_ref(s: &Scenario, at: &str, pod: &PodRef) -> Result<(), Refusal> {
    let field = if pod.name.is_some() {
        "pod"
    } else {
        "selector"
    };
    needs_master(s, &format!("{at}.{field}"))
}

/// The hosts `on` names: one host, a group, `nodes` (every Kubernetes node) or `all`.
fn hosts(s: &Scenario, at: &str, on: &str) -> Result<(), Refusal> {
    let is_host = s.platforms.iter().any(|p| p.name == on);
    let is_word = ["etcd", "kube-master", "kube-worker", "nodes", "all"].contains(&on);
    if is_host && is_word {
        return Err(Refusal::new(
            at,
            format!("'{on}' is both a host and a group: name the host differently"),
        ));
    }
    match s.check_hosts(on) {
        Some(hosts) if !hosts.is_empty() => Ok(()),
        Some(_) => Err(Refusal::new(at, format!("no host is in '{on}'"))),
        None => Err(unknown_host(s, at, on)),
    }
}

fn unknown_host(s: &Scenario, at: &str, name: &str) -> Refusal {
    let hosts: Vec<&str> = s.platforms.iter().map(|p| p.name.as_str()).collect();
    Refusal::new(
        at,
        format!(
            "no host or group '{name}' (hosts: {}; groups: etcd, kube-master, kube-worker, nodes, all)",
            hosts.join(", ")
        ),
    )
}

fn kubernetes_node(s: &Scenario, at: &str, node: &str) -> Result<(), Refusal> {
    let nodes: Vec<&str> = s
        .platforms
        .iter()
        .filter(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker))
        .map(|p| p.name.as_str())
        .collect();
    if nodes.contains(&node) {
        return Ok(());
    }
    Err(Refusal::new(
        at,
        format!(
            "'{node}' is not a Kubernetes node (nodes: {})",
            nodes.join(", ")
        ),
    ))
}

fn needs_master(s: &Scenario, at: &str) -> Result<(), Refusal> {
    if s.hosts_in(Group::KubeMaster).next().is_none() {
        return Err(Refusal::new(
            at,
            "this asks the Kubernetes API: the scenario has no kube-master",
        ));
    }
    Ok(())
}

fn nonempty(at: &str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::new(
            at,
            format!("{} is empty", at.rsplit('.').next().unwrap_or(at)),
        ));
    }
    Ok(())
}

fn exit_status(at: &str, exit: u32) -> Result<(), Refusal> {
    if exit > 255 {
        return Err(Refusal::new(
            at,
            format!("exit {exit}: an exit status is 0-255"),
        ));
    }
    Ok(())
}
