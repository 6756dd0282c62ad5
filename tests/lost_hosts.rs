//! A lost host is healed, not ignored: on a converged one-host etcd scenario, a stopped host
//! is started by `create` and a removed one is run again (a new disk, new host keys), and
//! after each the next converge and verify pass.

mod common;
use common::{assert_nothing_left, instance_in, kubeforge, podman_names, project_with};

const SCENARIO: &str = "
platforms:
  - name: etcd-01
    groups: [etcd]
";

/// Runs `kubeforge ARGS` and returns its stderr; the command must succeed.
fn step(project: &std::path::Path, args: &[&str]) -> String {
    let out = kubeforge(project, args).output().expect("run kubeforge");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubeforge {args:?} failed:\n{stderr}");
    stderr
}

fn podman(args: &[&str]) {
    let status = std::process::Command::new("podman")
        .args(args)
        .status()
        .expect("podman runs");
    assert!(status.success(), "podman {args:?}");
}

/// Destroys the scenario when the test ends, passed or not.
struct Destroy<'a>(&'a std::path::Path);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = kubeforge(self.0, &["destroy", "lost"]).output();
    }
}

#[test]
fn a_stopped_or_removed_host_is_brought_back_by_create() {
    let project = project_with("lost", SCENARIO);
    let p = project.path();
    let _destroy = Destroy(p);
    let created = step(p, &["create", "lost"]);
    let instance = instance_in(&created, "lost");
    let container = format!("{instance}-etcd-01");
    step(p, &["converge", "lost"]);

    podman(&["stop", "-t0", &container]);
    let healed = step(p, &["create", "lost"]);
    assert!(
        healed.contains("host etcd-01: was stopped: started again"),
        "{healed}"
    );
    step(p, &["converge", "lost"]);
    step(p, &["verify", "lost"]);

    podman(&["rm", "-f", "-t0", &container]);
    let healed = step(p, &["create", "lost"]);
    assert!(healed.contains("created again: etcd-01"), "{healed}");
    step(p, &["converge", "lost"]);
    step(p, &["idempotence", "lost"]);
    step(p, &["verify", "lost"]);
    assert_eq!(podman_names(&["ps"], &instance), container);

    step(p, &["destroy", "lost"]);
    assert_nothing_left(p, "lost", &instance);
}
