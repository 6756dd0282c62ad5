//! etcd's data is kept: a key written to a converged one-member cluster is still there after
//! a converge that changes nothing, and after one that reissues etcd's server certificate
//! (its file removed from the PKI on the control machine) and so restarts etcd.

mod common;
use common::{assert_nothing_left, instance_in, kubeforge, project_with};

const SCENARIO: &str = "
platforms:
  - name: etcd-01
    groups: [etcd]
";

fn step(project: &std::path::Path, args: &[&str]) -> String {
    let out = kubeforge(project, args).output().expect("run kubeforge");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubeforge {args:?} failed:\n{stderr}");
    stderr
}

/// Runs etcdctl on the member (inside its container) and returns its stdout.
fn etcdctl(container: &str, args: &str) -> String {
    let command = format!(
        "{} {args}",
        kubeforge::cluster::commands::etcdctl("https://127.0.0.1:2379")
    );
    let out = std::process::Command::new("podman")
        .args(["exec", container, "sh", "-c", &command])
        .output()
        .expect("podman exec");
    assert!(
        out.status.success(),
        "etcdctl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Destroys the scenario when the test ends, passed or not.
struct Destroy<'a>(&'a std::path::Path);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = kubeforge(self.0, &["destroy", "kept"]).output();
    }
}

#[test]
fn converging_again_never_resets_etcd() {
    let project = project_with("kept", SCENARIO);
    let p = project.path();
    let _destroy = Destroy(p);
    let instance = instance_in(&step(p, &["create", "kept"]), "kept");
    let container = format!("{instance}-etcd-01");
    step(p, &["converge", "kept"]);
    etcdctl(&container, "put /kubeforge/kept before-converge");

    step(p, &["converge", "kept"]);
    assert_eq!(
        etcdctl(&container, "get --print-value-only /kubeforge/kept"),
        "before-converge"
    );

    let cert = p.join("state/kept/pki/etcd/etcd-server-etcd-01.pem");
    std::fs::remove_file(&cert).expect("the server certificate is in the PKI");
    let restarted = step(p, &["-v", "converge", "kept"]);
    assert!(
        restarted.contains("service etcd-member.service: restart"),
        "the reissued certificate did not restart etcd:\n{restarted}"
    );
    assert_eq!(
        etcdctl(&container, "get --print-value-only /kubeforge/kept"),
        "before-converge"
    );

    step(p, &["destroy", "kept"]);
    assert_nothing_left(p, "kept", &instance);
}
