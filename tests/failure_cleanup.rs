//! A run that fails or is interrupted still leaves nothing behind. A one-host etcd scenario
//! whose settings etcd refuses (election timeout below 5x the heartbeat) fails in converge,
//! the failure names the host and the task, and `test` destroys every container, volume and
//! network it created; a run interrupted (SIGINT, as Ctrl-C) during converge does the same.

use std::process::Command;

mod common;
use common::{assert_nothing_left, instance_in, kubeforge, project_with};

const SCENARIO: &str = "
platforms:
  - name: etcd-01
    groups: [etcd]
cluster:
  etcd:
    heartbeat_interval_ms: 500
    election_timeout_ms: 1000
sequence: [create, converge, verify, destroy]
";

#[test]
fn failing_converge_is_reported_and_cleaned_up() {
    let project = project_with("etcd-broken", SCENARIO);
    let junit = project.path().join("junit.xml");
    let out = kubeforge(
        project.path(),
        &["--junit", junit.to_str().unwrap(), "test", "etcd-broken"],
    )
    .output()
    .expect("run kubeforge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("etcd-01: task 'etcd service' failed"),
        "failure does not name host and task:\n{stderr}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("name=\"converge\"") && xml.contains("<failure"),
        "{xml}"
    );
    assert!(xml.contains("name=\"destroy\""), "{xml}");
    assert_nothing_left(
        project.path(),
        "etcd-broken",
        &instance_in(&stderr, "etcd-broken"),
    );
}

#[test]
fn interrupted_converge_is_cleaned_up() {
    use std::io::BufRead;
    let scenario = SCENARIO.replace("heartbeat_interval_ms: 500", "heartbeat_interval_ms: 100");
    let project = project_with("etcd-interrupted", &scenario);
    let mut child = kubeforge(project.path(), &["test", "etcd-interrupted"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubeforge");
    let mut seen = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("etcd-interrupted converge ...") {
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "not stopped by the interrupt:\n{seen}"
    );
    assert!(seen.contains("interrupted"), "{seen}");
    assert!(seen.contains("etcd-interrupted destroy: passed"), "{seen}");
    assert_nothing_left(
        project.path(),
        "etcd-interrupted",
        &instance_in(&seen, "etcd-interrupted"),
    );
}
