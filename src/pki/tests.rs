//! Tests of the PKI store: CA creation and reload, reuse and reissue decisions, file modes,
//! and (when openssl is installed) that openssl accepts what it writes.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use time::Duration;

use super::*;

const OPENSSL: &str = "/usr/bin/openssl";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP literal")
}

fn open(dir: &Path) -> Pki {
    Pki::open(dir, "test").expect("open PKI")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn openssl_available() -> bool {
    Path::new(OPENSSL).exists()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new(OPENSSL)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ca_is_created_then_reloaded_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    let first = open(&dir);
    let ca_pem = first.ca_cert_pem().to_string();
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!dir.exists(), "opening wrote something");
    first.commit().expect("commit");
    assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
    assert_eq!(mode(&dir.join(CA_CERT)), 0o644);
    assert_eq!(mode(&dir), 0o700);
    drop(first);

    let second = Pki::open(&dir, "other-name-ignored").expect("reopen");
    assert_eq!(second.ca_cert_pem(), ca_pem);
    // A leaf issued after reload chains to the CA created first.
    let leaf = second.ensure(&admin_spec()).expect("ensure");
    let leaf_der = pem_to_der(&dir, &leaf.cert_pem).expect("leaf der");
    let cert = parse_der(&dir, &leaf_der).expect("leaf parse");
    let ca_der = pem_to_der(&dir, &ca_pem).expect("ca der");
    let ca = parse_der(&dir, &ca_der).expect("ca parse");
    cert.verify_signature(Some(ca.public_key()))
        .expect("leaf signed by the original CA");
    assert_eq!(
        ca.subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok()),
        Some("kubeforge-ca-test")
    );
}

/// Planning is pure: opening and ensuring hold everything in memory; commit writes it.
#[test]
fn nothing_is_written_until_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    let pki = open(&dir);
    let issued = pki.ensure(&admin_spec()).expect("ensure");
    pki.service_account_keypair().expect("sa");
    assert!(!dir.exists(), "planning wrote to {}", dir.display());
    let names: Vec<String> = pki
        .pending()
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ca-key.pem",
            "ca.pem",
            "admin-key.pem",
            "admin.pem",
            SA_KEY,
            SA_PUB
        ]
    );
    assert_eq!(pki.commit().expect("commit").len(), 6);
    assert!(pki.pending().is_empty());
    let reopened = open(&dir);
    assert!(reopened.pending().is_empty());
    let again = reopened.ensure(&admin_spec()).expect("again");
    assert_eq!(again.status, IssueStatus::Reused);
    assert_eq!(again.cert_pem, issued.cert_pem);
}

#[test]
fn pki_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pki>();
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    open(tmp.path()).commit().expect("commit");
    fs::remove_file(tmp.path().join(CA_KEY)).expect("rm key");
    let err = Pki::open(tmp.path(), "test").expect_err("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("ca-key.pem") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn ensure_twice_reuses_identical_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    let spec = etcd_server_spec("etcd-01", ip("10.89.0.11"));
    let first = pki.ensure(&spec).expect("first");
    assert_eq!(first.status, IssueStatus::Created);
    let second = pki.ensure(&spec).expect("second");
    assert_eq!(second.status, IssueStatus::Reused);
    assert_eq!(second.cert_pem, first.cert_pem);
    assert_eq!(second.key_pem.expose(), first.key_pem.expose());
    pki.commit().expect("commit");
    let on_disk = fs::read_to_string(tmp.path().join("etcd-server-etcd-01.pem")).expect("read");
    assert_eq!(on_disk, first.cert_pem);
    // Reuse survives reopening the PKI (CA reloaded from disk).
    let reopened = open(tmp.path());
    assert_eq!(
        reopened.ensure(&spec).expect("third").status,
        IssueStatus::Reused
    );
}

#[test]
fn changed_san_reissues_with_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    let spec = kubelet_spec("kube-worker-01", ip("10.89.0.21"));
    let first = pki.ensure(&spec).expect("first");
    let mut changed = spec.clone();
    changed.ip_addresses = vec![ip("10.89.0.22")];
    let second = pki.ensure(&changed).expect("second");
    let IssueStatus::Reissued { reason } = &second.status else {
        panic!("expected Reissued, got {:?}", second.status);
    };
    assert!(reason.contains("IP SANs"), "{reason}");
    assert!(reason.contains("missing [10.89.0.22]"), "{reason}");
    assert!(reason.contains("unexpected [10.89.0.21]"), "{reason}");
    assert_ne!(second.cert_pem, first.cert_pem);
    assert_ne!(second.key_pem.expose(), first.key_pem.expose());
    assert_eq!(
        pki.ensure(&changed).expect("third").status,
        IssueStatus::Reused
    );

    let mut usage = changed.clone();
    usage.usage = CertUsage::Client;
    let IssueStatus::Reissued { reason } = pki.ensure(&usage).expect("usage").status else {
        panic!("usage change must reissue");
    };
    assert!(reason.contains("usage"), "{reason}");

    let mut org = usage.clone();
    org.organizations = vec!["system:masters".into()];
    let IssueStatus::Reissued { reason } = pki.ensure(&org).expect("org").status else {
        panic!("organization change must reissue");
    };
    assert!(
        reason.contains("organizations: missing [system:masters], unexpected [system:nodes]"),
        "{reason}"
    );
}

#[test]
fn cert_expiring_soon_is_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    let spec = admin_spec();
    let short = pki
        .ensure_with_validity(&spec, Duration::days(10))
        .expect("short-lived");
    assert_eq!(short.status, IssueStatus::Created);
    let renewed = pki.ensure(&spec).expect("renew");
    let IssueStatus::Reissued { reason } = &renewed.status else {
        panic!("expected Reissued, got {:?}", renewed.status);
    };
    assert!(reason.contains("expires"), "{reason}");
    assert_eq!(
        pki.ensure(&spec).expect("again").status,
        IssueStatus::Reused
    );
}

#[test]
fn cert_from_another_ca_is_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = open(&tmp.path().join("ours"));
    // Same cluster name, so the issuer name matches: only the signature tells them apart.
    let theirs = open(&tmp.path().join("theirs"));
    let spec = scheduler_spec();
    let foreign = theirs.ensure(&spec).expect("foreign");
    theirs.commit().expect("commit theirs");
    ours.commit().expect("commit ours");
    for suffix in [".pem", "-key.pem"] {
        fs::copy(
            tmp.path().join("theirs").join(format!("scheduler{suffix}")),
            tmp.path().join("ours").join(format!("scheduler{suffix}")),
        )
        .expect("copy");
    }
    let got = ours.ensure(&spec).expect("ensure");
    let IssueStatus::Reissued { reason } = &got.status else {
        panic!("expected Reissued, got {:?}", got.status);
    };
    assert!(reason.contains("signature"), "{reason}");
    assert_ne!(got.cert_pem, foreign.cert_pem);
}

#[test]
fn mismatched_or_missing_key_is_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    pki.ensure(&admin_spec()).expect("admin");
    pki.ensure(&scheduler_spec()).expect("scheduler");
    pki.commit().expect("commit");
    fs::copy(
        tmp.path().join("scheduler-key.pem"),
        tmp.path().join("admin-key.pem"),
    )
    .expect("copy");
    let IssueStatus::Reissued { reason } = pki.ensure(&admin_spec()).expect("ensure").status else {
        panic!("mismatched key must reissue");
    };
    assert!(reason.contains("does not belong"), "{reason}");
    pki.commit().expect("commit");

    fs::remove_file(tmp.path().join("admin-key.pem")).expect("rm");
    let IssueStatus::Reissued { reason } = pki.ensure(&admin_spec()).expect("ensure").status else {
        panic!("missing key must reissue");
    };
    assert!(
        reason.contains("admin-key.pem") && reason.contains("missing"),
        "{reason}"
    );
}

#[test]
fn key_files_are_private_and_certs_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    pki.ensure(&kube_proxy_spec()).expect("ensure");
    pki.commit().expect("commit");
    assert_eq!(mode(&tmp.path().join("kube-proxy-key.pem")), 0o600);
    assert_eq!(mode(&tmp.path().join("kube-proxy.pem")), 0o644);
    // A reissue replaces the files and keeps the modes.
    let mut spec = kube_proxy_spec();
    spec.common_name = "changed".into();
    pki.ensure(&spec).expect("reissue");
    pki.commit().expect("commit");
    assert_eq!(mode(&tmp.path().join("kube-proxy-key.pem")), 0o600);
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .expect("readdir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn service_account_keypair_is_created_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    let (key, public) = pki.service_account_keypair().expect("create");
    assert!(public.contains("BEGIN PUBLIC KEY"));
    assert!(key.expose().contains("BEGIN PRIVATE KEY"));
    pki.commit().expect("commit");
    assert_eq!(mode(&tmp.path().join(SA_KEY)), 0o600);
    let (key2, public2) = open(tmp.path()).service_account_keypair().expect("reuse");
    assert_eq!(key2.expose(), key.expose());
    assert_eq!(public2, public);
    // A lost public half is re-derived from the private key, not a new pair.
    fs::remove_file(tmp.path().join(SA_PUB)).expect("rm pub");
    let (key3, public3) = pki.service_account_keypair().expect("rederive");
    assert_eq!(key3.expose(), key.expose());
    pki.commit().expect("commit");
    assert_eq!(
        fs::read_to_string(tmp.path().join(SA_PUB)).expect("read"),
        public3
    );
    assert_eq!(public3, public);
}

#[test]
fn bad_names_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    pki.commit().expect("commit");
    for name in ["ca", "../escape", "", ".hidden", "admin-key", "a/b"] {
        let mut spec = admin_spec();
        spec.name = name.to_string();
        let err = pki.ensure(&spec).expect_err(name);
        assert!(matches!(err, PkiError::InvalidName { .. }), "{name}: {err}");
    }
    // The CA survived the attempt to issue "ca".
    assert_eq!(open(tmp.path()).ca_cert_pem(), pki.ca_cert_pem());
}

#[test]
fn secret_debug_and_display_hide_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = open(tmp.path());
    let issued = pki.ensure(&admin_spec()).expect("ensure");
    assert!(issued.key_pem.expose().contains("PRIVATE KEY"));
    for shown in [
        format!("{:?}", issued.key_pem),
        format!("{}", issued.key_pem),
        format!("{issued:?}"),
        format!("{pki:?}"),
    ] {
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
    assert!(format!("{issued:?}").contains("<redacted>"));
}

#[test]
fn openssl_verifies_chain_and_shows_sans() {
    assert!(
        openssl_available(),
        "openssl is needed to check the chain: apt-get install openssl"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Issue after a reload so the chain check covers Issuer::from_ca_cert_der.
    open(dir).commit().expect("commit");
    let pki = open(dir);
    let masters = [ip("10.89.0.10")];
    let names = ["kube-master-01".to_string()];
    pki.ensure(&apiserver_spec(ip("10.96.0.1"), &masters, &names))
        .expect("apiserver");
    pki.ensure(&admin_spec()).expect("admin");
    pki.ensure(&etcd_peer_spec("etcd-01", ip("10.89.0.11")))
        .expect("peer");
    pki.commit().expect("commit");
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    for name in ["apiserver", "admin", "etcd-peer-etcd-01"] {
        let leaf = dir.join(format!("{name}.pem"));
        let out = openssl(&["verify", "-CAfile", ca, leaf.to_str().expect("utf-8")]);
        assert!(out.contains(": OK"), "{name}: {out}");
    }
    let purpose = openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslserver",
        dir.join("apiserver.pem").to_str().expect("utf-8"),
    ]);
    assert!(purpose.contains(": OK"), "{purpose}");

    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        dir.join("apiserver.pem").to_str().expect("utf-8"),
    ]);
    for san in [
        "DNS:kubernetes",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:kube-master-01",
        "IP Address:10.96.0.1",
        "IP Address:10.89.0.10",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(san), "apiserver lacks {san}:\n{text}");
    }
    let admin = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        dir.join("admin.pem").to_str().expect("utf-8"),
    ]);
    assert!(admin.contains("O = system:masters"), "{admin}");
    assert!(admin.contains("CN = admin"), "{admin}");
    assert!(admin.contains("TLS Web Client Authentication"), "{admin}");
    assert!(!admin.contains("TLS Web Server Authentication"), "{admin}");
    // The key file is a key openssl can use, and it matches the certificate.
    let key_pub = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        dir.join("admin-key.pem").to_str().expect("utf-8"),
    ]);
    let cert_pub = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        dir.join("admin.pem").to_str().expect("utf-8"),
    ]);
    assert_eq!(key_pub, cert_pub);
}
