//! Tests of parsing: defaults, YAML and type errors with their positions, workloads, and
//! every scenario and fixture of the project loading as it is.

use std::net::Ipv4Addr;
use std::path::Path;

use super::rules::testing::{SEEDS, accepted, parse, refused};
use super::{DriverConfig, Scenario};

#[test]
fn seeds_address_plan_and_defaults() {
    let s = accepted(SEEDS);
    assert_eq!(s.address_octets(), vec![101, 111, 121, 122]);
    assert_eq!(s.sequence.len(), 6);
    assert_eq!(s.cluster.dns_service_ip, Ipv4Addr::new(10, 3, 0, 10));
    assert!(s.platforms[1].is_privileged());
    assert!(!s.platforms[0].is_privileged());
}

#[test]
fn unknown_key_names_file_line_and_column() {
    let e = refused(&format!("{SEEDS}clustr:\n  name: x\n"), 10, "clustr");
    assert!(e.starts_with("scenarios/t/scenario.yml:10:1:"), "{e}");
}

#[test]
fn wrong_type_is_located() {
    refused(&SEEDS.replace("groups: [etcd]", "groups: etcd"), 3, "");
    let e = refused(
        &format!("{SEEDS}cluster:\n  pod_network: 10.2.0.1/16\n"),
        11,
        "host bits",
    );
    assert!(!e.contains("error: line"), "the position is said once: {e}");
}

#[test]
fn unknown_group_is_rejected() {
    refused(
        &SEEDS.replace("groups: [etcd]", "groups: [etcd, kube-mastr]"),
        3,
        "kube-mastr",
    );
}

#[test]
fn a_duplicated_key_is_reported_as_such() {
    let e = refused(
        &SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    name: etcd-02"),
        4,
        "duplicated key 'name'",
    );
    assert!(e.contains(":4:5:"), "{e}");
    refused(
        &format!("{SEEDS}cluster:\n  name: a\ncluster:\n  name: b\n"),
        12,
        "duplicated key 'cluster'",
    );
    refused(
        &format!("{SEEDS}cluster:\n  etcd: {{client_port: 1, client_port: 2}}\n"),
        11,
        "duplicated key 'client_port'",
    );
}

#[test]
fn existing_driver_takes_addresses_and_defaults() {
    let text = "driver:\n  name: existing\nplatforms:\n  - name: etcd-01\n    groups: [etcd]\n    address: 172.30.9.5\n";
    let s = accepted(text);
    assert!(matches!(&s.driver, DriverConfig::Existing { user, port: 22, .. } if user == "core"));
    assert_eq!(s.platforms[0].address, Some("172.30.9.5".parse().unwrap()));
}

#[test]
fn workloads_are_read_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yml");
    let text = format!("{SEEDS}workloads:\n  - app.yaml\n");
    std::fs::write(&file, &text).unwrap();
    let e = Scenario::load("t", &file).unwrap_err().to_string();
    assert!(
        e.contains("scenario.yml:11:5: workload app.yaml: cannot read"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    )
    .unwrap();
    let s = Scenario::load("t", &file).unwrap();
    assert_eq!(s.workloads.len(), 1);
}

/// Every scenario and fixture of the project follows the rules.
#[test]
fn every_scenario_and_fixture_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = super::list_scenarios(root)
        .into_iter()
        .map(|name| root.join("scenarios").join(name).join("scenario.yml"))
        .collect();
    files.extend(
        std::fs::read_dir(root.join("fixtures"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml")),
    );
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        if let Err(e) = Scenario::load("t", &file) {
            panic!("{e}");
        }
    }
}

#[test]
fn parse_names_the_file_it_was_given() {
    let e = parse("platforms: []\n").unwrap_err().to_string();
    assert!(e.starts_with("scenarios/t/scenario.yml:1:"), "{e}");
}

#[test]
fn timeout_scale_comes_from_the_file_else_the_driver() {
    use crate::timeouts::TimeoutScale;
    assert_eq!(accepted(SEEDS).timeout_scale, TimeoutScale::NORMAL);
    let emulated = format!("{SEEDS}driver:\n  name: vagrant\n  emulate_cpu: true\n");
    assert_eq!(
        accepted(&emulated).timeout_scale,
        TimeoutScale::EMULATED_CPU
    );
    let set = accepted(&format!("{emulated}timeout_scale: 2.5\n"));
    assert_eq!(set.timeout_scale.factor(), 2.5);
    refused(
        &format!("{SEEDS}timeout_scale: 0.5\n"),
        10,
        "outside 1..=20",
    );
}
