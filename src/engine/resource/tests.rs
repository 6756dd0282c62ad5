//! Diffs and scripts of single resources against made-up facts.

use super::*;

fn file(content: &str) -> Resource {
    Resource::File {
        path: "/etc/x.conf".into(),
        content: content.as_bytes().to_vec(),
        perms: Perms::root(0o644),
        secret: false,
        origin: None,
    }
}

fn seen(pairs: &[(&str, &str)]) -> Observation {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn identical_file_plans_nothing() {
    let r = file("a\n");
    let o = seen(&[
        ("type", "file"),
        ("perms", "644 root root"),
        ("sha", &sha256_hex(b"a\n")),
    ]);
    assert!(r.diff(&o, &[]).is_empty());
    assert_eq!(r.apply_script(&[]), "");
}

#[test]
fn changed_file_shows_a_diff_and_mode() {
    let r = file("a\nb\n");
    let o = seen(&[
        ("type", "file"),
        ("perms", "600 root root"),
        ("sha", &sha256_hex(b"a\n")),
        (
            "content",
            &base64::engine::general_purpose::STANDARD.encode("a\n"),
        ),
    ]);
    let c = r.diff(&o, &[]);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].kind, ChangeKind::Content { secret: false });
    assert!(c[0].diff.as_ref().unwrap().contains("+b"));
    assert_eq!(c[1].summary(), "mode 0600 -> 0644");
}

#[test]
fn secret_file_is_never_diffed() {
    let r = Resource::File {
        path: "/etc/k.pem".into(),
        content: b"-----BEGIN PRIVATE KEY-----".to_vec(),
        perms: Perms::root(0o600),
        secret: true,
        origin: None,
    };
    let c = r.diff(&seen(&[("type", "none")]), &[]);
    assert_eq!(c.len(), 1);
    assert!(c[0].diff.is_none());
    assert_eq!(
        r.probe(0),
        Probe::Path {
            path: "/etc/k.pem".into(),
            want: Want::Sha256 {
                sha256: sha256_hex(b"-----BEGIN PRIVATE KEY-----"),
                show: false
            }
        },
        "a secret's content is never read back"
    );
}

#[test]
fn service_restarts_only_on_a_changed_input() {
    let r = Resource::Service {
        unit: "etcd-member.service".into(),
        notified_by: vec!["etcd".into()],
        ready: None,
    };
    let running = seen(&[
        ("enabled", "enabled"),
        ("active", "active"),
        ("reload", "no"),
    ]);
    assert!(r.diff(&running, &[]).is_empty());
    let c = r.diff(&running, &["file /etc/a".into()]);
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].kind,
        ChangeKind::Restart(RestartReason::InputsChanged(vec!["file /etc/a".into()]))
    );
    let stopped = seen(&[("enabled", "disabled"), ("active", "inactive")]);
    let c = r.diff(&stopped, &["file /etc/a".into()]);
    assert_eq!(
        c.iter().map(Change::summary).collect::<Vec<_>>(),
        vec!["enable", "start (now inactive)"]
    );
    let mut pending = running.clone();
    pending.insert("pending".into(), "yes".into());
    assert_eq!(
        r.diff(&pending, &[])[0].kind,
        ChangeKind::Restart(RestartReason::Pending)
    );
}

#[test]
fn a_missing_or_misrouted_route_is_a_change() {
    let r = Resource::Route {
        destination: "10.2.1.0/24".into(),
        via: Hop::Gateway("172.30.1.121".parse().unwrap()),
    };
    let ok = seen(&[("route", "10.2.1.0/24 via 172.30.1.121 dev eth0")]);
    assert!(r.diff(&ok, &[]).is_empty());
    let c = r.diff(&seen(&[("route", "")]), &[]);
    assert_eq!(c[0].summary(), "add route via 172.30.1.121");
    let c = r.diff(
        &seen(&[("route", "10.2.1.0/24 via 172.30.1.99 dev eth0")]),
        &[],
    );
    assert_eq!(
        c[0].summary(),
        "route '10.2.1.0/24 via 172.30.1.99 dev eth0' -> via 172.30.1.121"
    );
    assert_eq!(
        r.apply_script(&c),
        "ip route replace 10.2.1.0/24 via 172.30.1.121\n"
    );
}

#[test]
fn a_sysctl_with_another_value_or_absent_is_a_change() {
    let sysctl = Resource::Sysctl {
        key: "net.ipv4.ip_forward".into(),
        value: "1".into(),
    };
    assert!(sysctl.diff(&seen(&[("value", "1")]), &[]).is_empty());
    let c = sysctl.diff(&seen(&[("value", "0")]), &[]);
    assert_eq!(c[0].summary(), "value 0 -> 1");
    assert!(
        matches!(sysctl.probe(3), Probe::Lines(l) if l.contains("/proc/sys/net/ipv4/ip_forward"))
    );
    assert_eq!(
        sysctl.apply_script(&c),
        "printf '%s\\n' 1 > /proc/sys/net/ipv4/ip_forward\n"
    );
    let c = sysctl.diff(&seen(&[("absent", "yes")]), &[]);
    assert_eq!(c[0].summary(), "value absent -> 1");
}

#[test]
fn a_service_running_a_replaced_binary_is_restarted() {
    let r = Resource::Service {
        unit: "etcd-member.service".into(),
        notified_by: vec![],
        ready: None,
    };
    let mut facts = seen(&[
        ("enabled", "enabled"),
        ("active", "active"),
        ("exe", "/opt/bin/etcd"),
    ]);
    assert!(r.diff(&facts, &[]).is_empty());
    facts.insert("exe".into(), "/opt/bin/etcd (deleted)".into());
    let c = r.diff(&facts, &[]);
    assert_eq!(
        c[0].summary(),
        "restart (the running process uses a replaced /opt/bin/etcd)"
    );
}

#[test]
fn a_wait_is_a_change_until_it_is_ready() {
    let r = Resource::Wait {
        name: "api".into(),
        until: Until::Command("true".into()),
        timeout: Duration::from_secs(5),
        failure: "api not healthy".into(),
    };
    assert!(r.diff(&seen(&[("ready", "yes")]), &[]).is_empty());
    let c = r.diff(&seen(&[]), &[]);
    assert_eq!(c[0].summary(), "wait (not ready yet)");
    assert!(r.apply_script(&c).starts_with("kf_wait 5 true || "));
}

#[test]
fn key_value_ignores_trailing_newline() {
    let r = Resource::KeyValue {
        name: "/k".into(),
        read: "true".into(),
        write: "cat".into(),
        value: b"v".to_vec(),
    };
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert!(r.diff(&seen(&[("value", &b("v\n"))]), &[]).is_empty());
    assert_eq!(r.diff(&seen(&[("value", &b("w"))]), &[]).len(), 1);
    assert_eq!(r.diff(&seen(&[]), &[])[0].kind, ChangeKind::ValueCreate);
}

/// A certificate's diff says what changed in it (subject, issuer, validity, names), never
/// shows base64.
#[test]
fn a_certificate_diff_shows_what_the_certificate_says() {
    let dir = tempfile::tempdir().unwrap();
    let ours = crate::pki::Pki::open(&dir.path().join("a"), "ours").unwrap();
    let theirs = crate::pki::Pki::open(&dir.path().join("b"), "theirs").unwrap();
    let spec = crate::pki::admin_spec();
    let new = ours.ensure(&spec).unwrap().cert_pem;
    let old = theirs.ensure(&spec).unwrap().cert_pem;
    let r = Resource::File {
        path: "/etc/kubernetes/ssl/admin.pem".into(),
        content: new.into_bytes(),
        perms: Perms::root(0o644),
        secret: false,
        origin: None,
    };
    let o = seen(&[
        ("type", "file"),
        ("perms", "644 root root"),
        ("sha", "0"),
        (
            "content",
            &base64::engine::general_purpose::STANDARD.encode(&old),
        ),
    ]);
    let diff = r.diff(&o, &[])[0].diff.clone().unwrap();
    assert!(diff.contains("-issuer: CN=kubeforge-ca-theirs"), "{diff}");
    assert!(diff.contains("+issuer: CN=kubeforge-ca-ours"), "{diff}");
    assert!(diff.contains("subject: CN=admin"), "{diff}");
    assert!(!diff.contains("BEGIN CERTIFICATE"), "{diff}");
}
