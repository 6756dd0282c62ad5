//! Declared checks as the scenario file gives them: each kind read into its type, and every
//! mistake refused at load with its line and column.

use super::*;
use crate::scenario::rules::testing::{SEEDS, accepted, refused};

/// The seeds' hosts and `checks` (list items under `checks:`, the first on line 11).
fn with_checks(checks: &str) -> String {
    format!("{SEEDS}checks:\n{checks}")
}

#[test]
fn every_kind_is_read_into_its_type() {
    let s = accepted(&with_checks(
        "  - name: ping
    within: 5
    command: {on: kube-master-01, run: kubectl get nodes, stdout: Ready}
  - name: key
    file: {on: etcd, path: /etc/etcd/ssl/ca.pem, mode: '0644'}
  - name: kubelet
    unit: {on: nodes, name: kubelet.service, active: true}
  - name: web
    http:
      from: {pod: web}
      to: {service: web, namespace: apps}
      port: 443
      scheme: https
      ca: /etc/kubernetes/ssl/ca.pem
      requests: [{path: /a}, {path: /b, status: 404, body: gone}]
  - name: rollout
    kubernetes: {object: deployment/web, condition: Available}
  - name: once
    timeout: 60
    pod: {image: kubeforge.local/redis:7, command: [redis-cli, ping], stdout: PONG}
",
    ));
    let kinds: Vec<&str> = s.checks.iter().map(|c| c.kind.key()).collect();
    assert_eq!(
        kinds,
        ["command", "file", "unit", "http", "kubernetes", "pod"]
    );
    assert_eq!((s.checks[0].within, s.checks[0].timeout), (5, 30));
    assert_eq!(s.checks[5].timeout, 60);
    let CheckKind::File(f) = &s.checks[1].kind else {
        panic!()
    };
    assert_eq!(f.mode, Some(Mode(0o644)));
    assert!(f.exists);
    let CheckKind::Http(h) = &s.checks[3].kind else {
        panic!()
    };
    assert!(matches!(&h.from, Client::Pod(PodRef { name: Some(n), .. }) if n == "web"));
    assert!(matches!(&h.to, Server::Service { namespace: Some(ns), .. } if ns == "apps"));
    assert_eq!(h.requests.len(), 2);
    assert_eq!((h.requests[0].status, h.requests[1].status), (200, 404));
    assert_eq!(s.check_hosts("nodes").unwrap().len(), 3);
    assert_eq!(s.check_hosts("kube-worker-02").unwrap(), ["kube-worker-02"]);
    assert_eq!(s.check_hosts("nope"), None);
}

#[test]
fn unknown_keys_and_wrong_types_are_located() {
    let e = refused(
        &with_checks("  - name: x\n    command: {on: all, run: 'true', stdot: x}\n"),
        12,
        "stdot",
    );
    assert!(e.contains(":12:"), "{e}");
    refused(
        &with_checks("  - name: x\n    timeout: ten\n    unit: {on: all, name: a, active: true}\n"),
        12,
        "",
    );
    refused(
        &with_checks("  - name: x\n    retries: 3\n    unit: {on: all, name: a, active: true}\n"),
        12,
        "retries",
    );
}

#[test]
fn a_check_has_exactly_one_kind() {
    let e = refused(
        &with_checks(
            "  - name: both\n    unit: {on: all, name: a, active: true}\n    file: {on: all, path: /a}\n",
        ),
        12,
        "check 'both' has two kinds (file, unit)",
    );
    assert!(e.contains(":12:11:"), "{e}");
    let e = refused(
        &with_checks("  - name: none\n    within: 3\n"),
        11,
        "says nothing to check",
    );
    assert!(e.contains(":11:11:"), "{e}");
}

#[test]
fn hosts_and_groups_must_exist() {
    let e = refused(
        &with_checks("  - name: x\n    command:\n      on: kube-worker-09\n      run: 'true'\n"),
        13,
        "check 'x': no host or group 'kube-worker-09' (hosts: etcd-01, kube-master-01, kube-worker-01, kube-worker-02",
    );
    assert!(e.contains(":13:11:"), "{e}");
    refused(
        "platforms:\n  - {name: etcd-01, groups: [etcd]}\nchecks:\n  - name: x\n    unit: {on: nodes, name: a, active: true}\n",
        5,
        "no host is in 'nodes'",
    );
    refused(
        &with_checks("  - name: x\n    pod: {image: i, command: [a], node: etcd-01}\n"),
        12,
        "'etcd-01' is not a Kubernetes node",
    );
    refused(
        &with_checks(
            "  - name: x\n    http: {from: {host: web-01}, to: {address: 10.0.0.1}, port: 80}\n",
        ),
        12,
        "no host or group 'web-01'",
    );
}

#[test]
fn bad_patterns_and_modes_are_refused_where_written() {
    let e = refused(
        &with_checks(
            "  - name: x\n    command:\n      on: all\n      run: 'true'\n      stdout: '(unclosed'\n",
        ),
        15,
        "not a valid pattern '(unclosed'",
    );
    assert!(e.contains(":15:15:"), "{e}");
    refused(
        &with_checks("  - name: x\n    file: {on: all, path: /a, mode: 0644}\n"),
        12,
        "mode 644 is a number: write it as a quoted octal string such as '0644'",
    );
    refused(
        &with_checks("  - name: x\n    file: {on: all, path: /a, mode: '0999'}\n"),
        12,
        "octal",
    );
    refused(
        &with_checks("  - name: x\n    file: {on: all, path: a}\n"),
        12,
        "path 'a' is not absolute",
    );
    refused(
        &with_checks("  - name: x\n    file: {on: all, path: /a, exists: false, mode: '0600'}\n"),
        12,
        "a file that must not exist has no mode",
    );
    // ${RUN} is a value of the run, not a regular expression's syntax.
    accepted(&with_checks(
        "  - name: x\n    command: {on: all, run: 'echo ${RUN}', stdout: '^${RUN}$'}\n",
    ));
}

#[test]
fn http_endpoints_and_requests_are_checked() {
    let http = |body: &str| with_checks(&format!("  - name: x\n    http:\n{body}"));
    refused(
        &http(
            "      from: {host: etcd-01, pod: p}\n      to: {address: 10.0.0.1}\n      port: 80\n",
        ),
        13,
        "give only one of: host, pod, selector (found host, pod)",
    );
    refused(
        &http("      from: {host: etcd-01}\n      to: {host: etcd-01}\n      port: 80\n"),
        14,
        "'host' cannot be used here",
    );
    refused(
        &http("      from: {host: etcd-01}\n      to: {}\n      port: 80\n"),
        14,
        "give one of: service",
    );
    refused(
        &http(
            "      from: {host: etcd-01}\n      to: {node: etcd-01, namespace: a}\n      port: 80\n",
        ),
        14,
        "a namespace goes with a pod, selector or service",
    );
    refused(
        &http(
            "      from: {host: etcd-01}\n      to: {address: 10.0.0.1}\n      port: 80\n      path: /a\n      requests: [{path: /b}]\n",
        ),
        17,
        "give one request (path, status, body) or requests, not both",
    );
    refused(
        &http(
            "      from: {host: etcd-01}\n      to: {address: 10.0.0.1}\n      port: 80\n      path: a b\n",
        ),
        16,
        "must start with '/'",
    );
    refused(
        &http(
            "      from: {host: etcd-01}\n      to: {address: 10.0.0.1}\n      port: 80\n      ca: /ca.pem\n",
        ),
        16,
        "a CA is for scheme https",
    );
}

#[test]
fn kubernetes_assertions_are_one_and_fit_their_object() {
    let k = |body: &str| with_checks(&format!("  - name: x\n    kubernetes: {{{body}}}\n"));
    refused(
        &k("object: pods, count: 2, exists: true"),
        12,
        "give only one of exists",
    );
    refused(&k("object: pods"), 12, "give exactly one of exists");
    refused(&k("object: pod/a, count: 2"), 12, "count takes a KIND");
    refused(
        &k("object: pods, exists: true"),
        12,
        "exists and condition are about one object",
    );
    refused(
        &k("object: pods, jsonpath: '{.items}'"),
        12,
        "a jsonpath needs one of equals or matches",
    );
    refused(
        &k("object: pods, jsonpath: '{.items}', equals: ''"),
        12,
        "would pass on empty output",
    );
    refused(
        &k("object: pod/a, condition: 'Ready\"'"),
        12,
        "is not a condition type",
    );
    refused(
        &k("object: 'pod/a b', exists: true"),
        12,
        "is not KIND/NAME or KIND",
    );
    refused(
        &k("object: pod/a, equals: x, exists: true"),
        12,
        "equals and matches judge a jsonpath",
    );
    accepted(&k("object: pods, selector: app=web, count: 2"));
}

#[test]
fn names_are_unique_and_times_bounded() {
    refused(
        &with_checks(
            "  - name: a\n    unit: {on: all, name: u, active: true}\n  - name: a\n    unit: {on: all, name: u, active: true}\n",
        ),
        13,
        "check 'a' is declared twice",
    );
    refused(
        &with_checks("  - name: a\n    within: 601\n    unit: {on: all, name: u, active: true}\n"),
        12,
        "within 601 is not between 0 and 600 seconds",
    );
    refused(
        &with_checks("  - name: a\n    timeout: 0\n    unit: {on: all, name: u, active: true}\n"),
        12,
        "timeout 0 is not between 1 and 600",
    );
    refused(
        &with_checks("  - name: a\n    unit: {on: all, name: u}\n"),
        12,
        "say what the unit must be",
    );
    refused(
        &with_checks("  - name: a\n    command: {on: all, run: 'true', exit: 256}\n"),
        12,
        "exit 256",
    );
}

#[test]
fn api_checks_need_a_master() {
    let text = "platforms:\n  - {name: etcd-01, groups: [etcd]}\nchecks:\n  - name: x\n    kubernetes: {object: pod/a, exists: true}\n";
    refused(
        text,
        5,
        "this asks the Kubernetes API: the scenario has no kube-master",
    );
}
