//! Every template rendered for every fixture in `fixtures/` is pinned by an insta snapshot
//! named `<fixture>@<host>@<template>`. Review changes with `cargo insta review`; in CI
//! (CI=true) a changed or missing snapshot fails.

use std::collections::BTreeSet;
use std::path::Path;

use kubeforge::artifacts::{Artifact, Bundle};
use kubeforge::inventory::Inventory;
use kubeforge::pki::Pki;
use kubeforge::report::redact;
use kubeforge::roles::{self, InstallContext};
use kubeforge::scenario::Scenario;
use kubeforge::templates::Templates;

/// Binaries and images the roles may ask the bundle for. Rendering only needs their names.
const BUNDLE: &[&str] = &[
    "etcd",
    "etcdctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "kubectl",
    "pause",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
];

fn bundle(version: &str) -> Bundle {
    Bundle {
        dir: "/nonexistent/bundle".into(),
        kubernetes_version: version.to_string(),
        artifacts: BUNDLE
            .iter()
            .map(|name| Artifact {
                name: name.to_string(),
                version: version.to_string(),
                sha256: "0".repeat(64),
                size: 0,
                source: "snapshot-test".into(),
                path: format!("bin/{name}"),
            })
            .collect(),
    }
}

#[test]
fn every_template_is_pinned_for_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = Templates::load(&root.join("templates")).unwrap();
    let mut rendered_templates = BTreeSet::new();
    let mut fixtures: Vec<_> = std::fs::read_dir(root.join("fixtures"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 2, "fixtures missing");
    for path in &fixtures {
        let fixture = path.file_stem().unwrap().to_string_lossy().to_string();
        let scenario = Scenario::load(&fixture, path).unwrap();
        let inventory = Inventory::planned(&scenario);
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(pki_dir.path(), &scenario.cluster.name).unwrap();
        let bundle = bundle(&scenario.cluster.kubernetes_version);
        let ctx = InstallContext {
            scenario: &scenario,
            inventory: &inventory,
            pki: &pki,
            bundle: &bundle,
            templates: &templates,
        };
        let phases = roles::plan(&ctx, &[]).unwrap();
        for (host, template, file, content) in roles::rendered_files(&phases) {
            rendered_templates.insert(template.to_string());
            let text = redact(&String::from_utf8_lossy(content));
            let name = format!("{fixture}@{host}@{}", template.replace('/', "__"));
            insta::with_settings!({ snapshot_path => root.join("tests/snapshots"), prepend_module_to_snapshot => false, description => file }, {
                insta::assert_snapshot!(name, text);
            });
        }
    }
    let unrendered: Vec<String> = templates
        .names()
        .into_iter()
        .filter(|t| !rendered_templates.contains(t))
        .collect();
    assert!(
        unrendered.is_empty(),
        "templates no fixture renders (so no snapshot pins them): {unrendered:?}"
    );
}
