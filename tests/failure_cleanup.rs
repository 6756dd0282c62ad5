//! A step that fails for real still leaves nothing behind: a one-host etcd scenario whose
//! settings etcd refuses (election timeout below 5x the heartbeat) fails in converge, the
//! failure names the host and the task, and `test` destroys every container, volume and
//! network it created.

use std::process::Command;

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

fn podman_names(what: &[&str], instance: &str) -> String {
    let out = Command::new("podman")
        .args(what)
        .args([
            "--filter",
            &format!("label=kubeforge.instance={instance}"),
            "--format",
            "{{.Name}}",
        ])
        .output()
        .expect("podman runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn failing_converge_is_reported_and_cleaned_up() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("scenarios/etcd-broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scenario.yml"), SCENARIO).unwrap();
    std::os::unix::fs::symlink(root.join("templates"), project.path().join("templates")).unwrap();
    let junit = project.path().join("junit.xml");

    let out = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .arg("--project")
        .arg(project.path())
        .arg("--junit")
        .arg(&junit)
        .args(["test", "etcd-broken"])
        .env("KUBEFORGE_STATE_DIR", project.path().join("state"))
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

    // The instance name is printed by the driver as the prefix of every container.
    let instance = stderr
        .split_whitespace()
        .find(|w| w.starts_with("kf-etcd-broken-"))
        .map(|w| w.trim_end_matches(':').trim_end_matches("-net").to_string())
        .unwrap_or_else(|| panic!("no instance name in output:\n{stderr}"));
    assert_eq!(podman_names(&["ps", "-a"], &instance), "");
    assert_eq!(podman_names(&["volume", "ls"], &instance), "");
    assert_eq!(podman_names(&["network", "ls"], &instance), "");
    assert!(!project.path().join("state/etcd-broken").exists());
}
