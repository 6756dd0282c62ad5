//! The command line's contract for bad input: a clear located error, exit 2, nothing created.

use std::process::Command;

fn kubeforge(project: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .arg("--project")
        .arg(project)
        .args(args)
        .env("KUBEFORGE_STATE_DIR", project.join("state"))
        // A bundle of the test's own, so no machine's bundle decides an outcome.
        .env("KUBEFORGE_CACHE_DIR", project.join("cache"))
        .output()
        .expect("run kubeforge")
}

/// A bundle manifest for `version` in the project's cache, holding nothing else.
fn bundle_for(project: &std::path::Path, version: &str) {
    let dir = project.join("cache/bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!("{{\"kubernetes_version\": \"{version}\", \"artifacts\": []}}");
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
}

fn project_with(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("scenarios/bad");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("scenario.yml"), scenario).unwrap();
    dir
}

#[test]
fn malformed_scenario_exits_2_with_file_line_column() {
    let dir = project_with("platforms:\n  - name: etcd-01\n    groups: [etcd]\n    memory: 512\n");
    let out = kubeforge(dir.path(), &["test", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scenarios/bad/scenario.yml:4:5:"), "{err}");
    assert!(err.contains("memory"), "{err}");
    // Parsing failed before anything ran: no state was even written.
    assert!(!dir.path().join("state").exists());
}

#[test]
fn wrong_type_and_unknown_scenario_are_clear() {
    let dir = project_with(
        "platforms:\n  - name: etcd-01\n    groups: [etcd]\ncluster:\n  dns_service_ip: ten\n",
    );
    let out = kubeforge(dir.path(), &["create", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scenario.yml:5:"), "{err}");

    let out = kubeforge(dir.path(), &["create", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no scenario named 'nope'") && err.contains("bad"),
        "{err}"
    );
}

#[test]
fn unknown_tag_is_refused_before_anything_runs() {
    let dir = project_with("platforms:\n  - name: etcd-01\n    groups: [etcd]\n");
    bundle_for(dir.path(), "v1.20.2");
    let out = kubeforge(dir.path(), &["converge", "bad", "--tags", "etcdd"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown tag 'etcdd'") && err.contains("etcd"),
        "{err}"
    );
}

#[test]
fn a_broken_rule_exits_2_and_creates_nothing() {
    // Workers without a master: their kubelets would find no API server after converge.
    let dir = project_with(
        "platforms:\n  - name: etcd-01\n    groups: [etcd]\n  - name: kube-worker-01\n    groups: [kube-worker]\n",
    );
    bundle_for(dir.path(), "v1.20.2");
    for command in ["create", "test", "syntax", "destroy"] {
        let out = kubeforge(dir.path(), &[command, "bad"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("scenarios/bad/scenario.yml:5:13: platform 'kube-worker-01' is a kube-worker but no host is in group 'kube-master'"),
            "{err}"
        );
    }
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_version_the_bundle_does_not_hold_exits_2_before_create() {
    let dir = project_with(
        "platforms:\n  - name: etcd-01\n    groups: [etcd]\ncluster:\n  kubernetes_version: v1.31.4\n",
    );
    let out = kubeforge(dir.path(), &["create", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario.yml:5:23: cluster.kubernetes_version v1.31.4:")
            && err.contains("no artifacts bundle"),
        "{err}"
    );
    bundle_for(dir.path(), "v1.20.2");
    let out = kubeforge(dir.path(), &["test", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario.yml:5:23: cluster.kubernetes_version v1.31.4 is not what the artifacts bundle at")
            && err.contains("holds (Kubernetes v1.20.2)"),
        "{err}"
    );
    assert!(!dir.path().join("state").exists());
}

/// A scenario of the seeds' hosts with one declared check.
const WITH_CHECK: &str = "platforms:
  - {name: etcd-01, groups: [etcd]}
  - {name: kube-master-01, groups: [kube-master]}
checks:
  - name: kubelet runs
    unit: {on: nodes, name: kubelet.service, active: true}
";

#[test]
fn a_malformed_check_exits_2_and_creates_nothing() {
    let dir = project_with(&WITH_CHECK.replace("on: nodes", "on: kube-worker-01"));
    bundle_for(dir.path(), "v1.20.2");
    for command in ["test", "create", "verify"] {
        let out = kubeforge(dir.path(), &[command, "bad"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("scenarios/bad/scenario.yml:6:16: check 'kubelet runs': no host or group 'kube-worker-01'"),
            "{err}"
        );
    }
    let dir = project_with(&WITH_CHECK.replace("active: true", "active: true, enabled: maybe"));
    let out = kubeforge(dir.path(), &["test", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scenario.yml:6:"), "{err}");
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_bad_check_pattern_exits_2_and_list_shows_checks() {
    let dir = project_with(WITH_CHECK);
    let out = kubeforge(dir.path(), &["verify", "bad", "--check", "kubelet ("]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--check: regex parse error"), "{err}");
    let out = kubeforge(dir.path(), &["list"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("bad") && listed.contains("  check  kubelet runs (unit)"),
        "{listed}"
    );
}
