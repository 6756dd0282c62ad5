//! Tests of the scenario-against-artifacts check, with bundles built in memory or in a
//! temporary directory (no bundle needs to exist on the machine).

use std::path::Path;

use super::flannel_calico_artifacts;
use crate::artifacts::{Artifact, Bundle};
use crate::scenario::Scenario;
use crate::scenario::rules::testing::{SEEDS, accepted};

fn bundle(version: &str, names: &[String]) -> Bundle {
    Bundle {
        dir: "/nonexistent/bundle".into(),
        kubernetes_version: version.to_string(),
        artifacts: names
            .iter()
            .map(|name| Artifact {
                name: name.clone(),
                version: version.to_string(),
                sha256: "0".repeat(64),
                path: format!("bin/{}", name.replace([':', '/'], "_")),
                ..Default::default()
            })
            .collect(),
    }
}

#[test]
fn the_bundle_must_hold_the_scenario_s_kubernetes_version() {
    let s = accepted(&format!("{SEEDS}cluster:\n  kubernetes_version: v1.31.4\n"));
    assert!(s.check_bundle(&bundle("v1.31.4", &[])).is_ok());
    let e = s
        .check_bundle(&bundle("v1.20.2", &[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("scenarios/t/scenario.yml:11:23: cluster.kubernetes_version v1.31.4 is not what the artifacts bundle at /nonexistent/bundle holds (Kubernetes v1.20.2)"),
        "{e}"
    );
    // The default version is blamed on the file's start when nothing else is written.
    let e = accepted(SEEDS)
        .check_bundle(&bundle("v1.31.4", &[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "scenarios/t/scenario.yml:1:1: cluster.kubernetes_version v1.20.2 is not what"
        ),
        "{e}"
    );
}

#[test]
fn flannel_calico_needs_its_artifacts_in_the_bundle() {
    let s = accepted(&format!("{SEEDS}cluster:\n  network: flannel-calico\n"));
    let e = s
        .check_bundle(&bundle("v1.20.2", &[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("scenarios/t/scenario.yml:11:12: cluster.network flannel-calico needs flanneld, flannel, calico, loopback, image:docker.io/calico/node:v3.17.1"),
        "{e}"
    );
    let all = flannel_calico_artifacts("v1.20.2");
    assert!(s.check_bundle(&bundle("v1.20.2", &all)).is_ok());
    // etcd alone runs no pod network.
    let etcd = accepted(
        "platforms:\n  - {name: etcd-01, groups: [etcd]}\ncluster:\n  network: flannel-calico\n",
    );
    assert!(etcd.check_bundle(&bundle("v1.20.2", &[])).is_ok());
}

/// The names checked at load are the ones the network role asks for.
#[test]
fn flannel_calico_names_match_the_network_role() {
    use crate::roles::RoleError;
    use crate::roles::test_support::{bundle, with_context};
    let empty = bundle(&[]);
    let missing =
        with_context(
            "fixtures/flannel-calico.yml",
            &empty,
            |ctx| match crate::roles::network::plan(ctx) {
                Err(RoleError::MissingArtifacts { missing, .. }) => missing,
                Err(e) => panic!("unexpected error: {e}"),
                Ok(_) => panic!("planned without flannel's artifacts"),
            },
        );
    let mut want = flannel_calico_artifacts("v1.20.2");
    let mut got = missing;
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

fn project(scenario: &str) -> (tempfile::TempDir, Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yml");
    std::fs::write(&file, scenario).unwrap();
    let s = Scenario::load("t", &file).unwrap();
    (dir, s)
}

#[test]
fn the_local_bundle_is_read_from_its_directory() {
    let (dir, s) = project(SEEDS);
    let bundle_dir = dir.path().join("bundle");
    let e = s.check_artifacts_in(&bundle_dir).unwrap_err().to_string();
    assert!(
        e.contains("scenario.yml:1:1: cluster.kubernetes_version v1.20.2:")
            && e.contains("no artifacts bundle"),
        "{e}"
    );
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let manifest = serde_json::json!({"kubernetes_version": "v1.20.2", "artifacts": []});
    std::fs::write(bundle_dir.join("manifest.json"), manifest.to_string()).unwrap();
    s.check_artifacts_in(&bundle_dir).unwrap();
}

#[test]
fn downloads_are_checked_against_their_pins_not_the_local_bundle() {
    let text = format!(
        "{SEEDS}artifacts:\n  download_url: https://mirror.example/k8s\n  pins: pins.json\n"
    );
    let (dir, s) = project(&text);
    let nowhere = Path::new("/nonexistent/bundle");
    let e = s.check_artifacts_in(nowhere).unwrap_err().to_string();
    assert!(
        e.contains("scenario.yml:12:9: artifacts.pins: cannot read"),
        "{e}"
    );
    std::fs::write(dir.path().join("pins.json"), "{\"artifacts\": []}").unwrap();
    let e = s.check_artifacts_in(nowhere).unwrap_err().to_string();
    assert!(
        e.contains("is not a manifest in the bundle's format"),
        "{e}"
    );
    let pins = |version: &str| {
        serde_json::json!({"kubernetes_version": version, "artifacts": []}).to_string()
    };
    std::fs::write(dir.path().join("pins.json"), pins("v1.31.4")).unwrap();
    let e = s.check_artifacts_in(nowhere).unwrap_err().to_string();
    assert!(
        e.contains(
            "scenario.yml:12:9: cluster.kubernetes_version v1.20.2 is not what the pins file"
        ),
        "{e}"
    );
    std::fs::write(dir.path().join("pins.json"), pins("v1.20.2")).unwrap();
    s.check_artifacts_in(nowhere).unwrap();
}
