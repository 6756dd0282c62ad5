//! Every template rendered for every fixture in `fixtures/` is pinned by an insta snapshot
//! named `<fixture>@<host>@<file>`. Review changes with `cargo insta review`; in CI
//! (CI=true) a changed or missing snapshot fails. Every rendered file must also pass the
//! syntax step's check for its kind.

use std::collections::BTreeSet;
use std::path::Path;

use kubeforge::artifacts::{Artifact, Bundle};
use kubeforge::cluster::Cluster;
use kubeforge::inventory::Inventory;
use kubeforge::pki::ClusterPki;
use kubeforge::report::redact;
use kubeforge::roles::{self, InstallContext, Scope};
use kubeforge::scenario::Scenario;
use kubeforge::syntax;
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
    "image:kubeforge.local/kube-apiserver:v1.20.2",
    "image:kubeforge.local/kube-controller-manager:v1.20.2",
    "image:kubeforge.local/kube-scheduler:v1.20.2",
    "image:kubeforge.local/kube-proxy:v1.20.2",
    "image:kubeforge.local/pause:3.4",
    "image:kubeforge.local/redis:7",
    "image:kubeforge.local/guestbook-frontend:v1",
    "image:kubeforge.local/haproxy:2.6",
    // The flannel + Calico network (fixtures/flannel-calico.yml).
    "flanneld",
    "flannel",
    "calico",
    "image:docker.io/calico/node:v3.17.1",
    "image:docker.io/calico/kube-controllers:v3.17.1",
];

fn bundle(version: &str) -> Bundle {
    Bundle {
        dir: "/nonexistent/bundle".into(),
        kubernetes_version: version.to_string(),
        artifacts: BUNDLE
            .iter()
            .map(|name| Artifact {
                // Image tags follow the fixture's Kubernetes version.
                name: name.replace("v1.20.2", version),
                version: version.to_string(),
                sha256: "0".repeat(64),
                size: 0,
                source: "snapshot-test".into(),
                path: format!("bin/{}", name.replace([':', '/'], "_")),
                ..Default::default()
            })
            .collect(),
    }
}

/// Certificates (and digests over them) are made anew for every PKI: replace them with a
/// placeholder so a snapshot changes only when a template or the settings change.
fn pin_stable(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            match trimmed.split_once(": ") {
                Some((key, _))
                    if key.ends_with("certificate-authority-data")
                        || key.ends_with("client-certificate-data")
                        || key.ends_with("inputs-sha256") =>
                {
                    format!("{indent}{key}: <certificate-dependent>")
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// Paths of credentials (`.pem`, `.pub`, `.kubeconfig` under /etc) a rendered file names.
fn credential_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "\"',=:".contains(c))
        .filter(|w| w.starts_with("/etc/"))
        .filter(|w| {
            [".pem", ".pub", ".kubeconfig"]
                .iter()
                .any(|e| w.ends_with(e))
        })
        .map(str::to_string)
        .collect()
}

/// Every certificate, key and kubeconfig a rendered file refers to is a file the plan
/// writes on that host: a unit or manifest can never point at a credential that is not there.
#[test]
fn every_credential_a_rendered_file_names_is_installed_on_its_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = Templates::load(&root.join("templates")).unwrap();
    for fixture in ["default", "flannel-calico", "etcd3-workers3"] {
        let plan = plan_of(fixture, &templates, &Scope::default());
        let installed: BTreeSet<(String, String)> = plan
            .phases
            .iter()
            .flat_map(|p| &p.hosts)
            .flat_map(|h| {
                h.tasks
                    .iter()
                    .flat_map(|t| &t.resources)
                    .filter_map(|r| r.path())
                    .map(|p| (h.host.clone(), p.to_string()))
            })
            .collect();
        let mut missing = Vec::new();
        for (host, template, file, content) in roles::rendered_files(&plan.phases) {
            for named in credential_paths(&String::from_utf8_lossy(content)) {
                if !installed.contains(&(host.clone(), named.clone())) {
                    missing.push(format!(
                        "{fixture}: {host}: {file} ({template}) names {named}"
                    ));
                }
            }
        }
        assert!(missing.is_empty(), "not installed:\n{}", missing.join("\n"));
    }
}

/// The plan for `fixtures/<fixture>.yml` limited to `scope`, with a fresh PKI.
fn plan_of(fixture: &str, templates: &Templates, scope: &Scope) -> roles::Plan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("fixtures").join(format!("{fixture}.yml"));
    let scenario = Scenario::load(fixture, &path).unwrap();
    let cluster = Cluster::derive(&scenario, &Inventory::planned(&scenario)).unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::open(pki_dir.path(), &scenario.cluster.name).unwrap();
    let bundle = bundle(&scenario.cluster.kubernetes_version);
    let ctx = InstallContext {
        cluster: &cluster,
        workloads: &scenario.workloads,
        prune_objects: scenario.prune_objects,
        pki: &pki,
        bundle: &bundle,
        templates,
    };
    roles::plan(&ctx, scope).unwrap()
}

/// `--only-files` keeps every file-level resource of every host, in the same order, and
/// nothing else.
#[test]
fn only_files_keeps_each_file_of_the_plan_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = Templates::load(&root.join("templates")).unwrap();
    let labels = |plan: &roles::Plan, files: bool| -> Vec<(String, String)> {
        plan.phases
            .iter()
            .flat_map(|p| &p.hosts)
            .flat_map(|h| {
                h.tasks
                    .iter()
                    .flat_map(|t| &t.resources)
                    .filter(move |r| !files || r.is_file_level())
                    .map(|r| (h.host.clone(), r.label()))
            })
            .collect()
    };
    let whole = plan_of("default", &templates, &Scope::default());
    let only_files = Scope {
        only_files: true,
        ..Scope::default()
    };
    let files = plan_of("default", &templates, &only_files);
    let kept = labels(&files, false);
    assert_eq!(kept, labels(&whole, true));
    assert!(labels(&whole, false).len() > kept.len());
    for kind in ["directory ", "file ", "binary "] {
        assert!(
            kept.iter().any(|(_, label)| label.starts_with(kind)),
            "no {kind}in {kept:?}"
        );
    }
}

#[test]
fn every_template_is_pinned_for_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = Templates::load(&root.join("templates")).unwrap();
    let mut rendered_templates = BTreeSet::new();
    let mut malformed = Vec::new();
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
        let plan = plan_of(&fixture, &templates, &Scope::default());
        for (host, template, file, content) in roles::rendered_files(&plan.phases) {
            rendered_templates.insert(template.to_string());
            let rendered = String::from_utf8_lossy(content);
            let source = format!("{template} (fixture {fixture}, {host}, {file})");
            if let Err(e) = syntax::check(syntax::FileKind::for_path(file), &source, &rendered) {
                malformed.push(e.to_string());
            }
            let text = pin_stable(&redact(&rendered));
            // One template can be rendered to several files on a host (the kubeconfigs): the
            // snapshot is named after the file, and its description names the template.
            let name = format!(
                "{fixture}@{host}@{}",
                file.trim_start_matches('/').replace('/', "__")
            );
            let description = format!("{file} from template {template}");
            insta::with_settings!({ snapshot_path => root.join("tests/snapshots"), prepend_module_to_snapshot => false, description => description }, {
                insta::assert_snapshot!(name, text);
            });
        }
    }
    assert!(
        malformed.is_empty(),
        "malformed rendered files:\n{}",
        malformed.join("\n")
    );
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

/// Snapshots are committed: no private key, token or key data may be in one.
#[test]
fn no_snapshot_holds_a_secret() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut leaks = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let leaked = text.contains("PRIVATE KEY-----")
            || text.lines().any(|l| {
                l.split_once("key-data:")
                    .is_some_and(|(_, v)| !v.trim().is_empty() && !v.contains("<redacted>"))
            });
        if leaked {
            leaks.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    assert!(leaks.is_empty(), "snapshots holding secrets: {leaks:?}");
}

/// What the default scenario's declared checks run, host by host (with `${RUN}` as `run0`):
/// a change to how a kind is rendered shows here as a diff to review.
#[test]
fn the_default_scenario_s_check_commands_are_pinned() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::load_named(root, "default").unwrap();
    let cluster = Cluster::derive(&scenario, &Inventory::planned(&scenario)).unwrap();
    let mut text = String::new();
    for (i, declared) in scenario.checks.iter().enumerate() {
        for check in
            kubeforge::verify::declared::checks_of(&cluster, &scenario, i, declared, "run0")
        {
            text += &format!(
                "## {} (on {}, within {}s, timeout {}s)\n",
                check.name,
                check.host,
                check.within.as_secs(),
                check.timeout.as_secs()
            );
            if let Some(lookup) = &check.lookup {
                text += &format!("lookup on {}: {}\n", lookup.host, lookup.command);
            }
            text += &format!("{}\n\n", check.command);
        }
    }
    insta::with_settings!({ snapshot_path => root.join("tests/snapshots"), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("default@checks", text);
    });
}
