//! The cluster PKI, kept on the control machine in the scenario state directory
//! (`<state>/pki/`). The CA key never leaves that directory; other modules copy only leaf
//! certificates and keys to hosts.
//!
//! `Pki::ensure` is idempotent: an existing certificate is reused when it still says what the
//! [`CertSpec`] asks for, is signed by the current CA and is not about to expire. The decision
//! is taken by parsing the certificate itself, so hand edits or a replaced CA are noticed.
//!
//! Files in the directory: `ca.pem`, `ca-key.pem`, `<name>.pem`, `<name>-key.pem`,
//! `sa.key` and `sa.pub` (service-account token signing key).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::files;

/// CA lifetime: long enough that a test cluster never outlives it.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf lifetime.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// A certificate expiring within this window is reissued rather than reused.
const RENEW_BEFORE: Duration = Duration::days(30);
/// `not_before` is back-dated so hosts whose clock lags the control machine accept new certs.
const CLOCK_SKEW: Duration = Duration::hours(1);

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SA_KEY: &str = "sa.key";
const SA_PUB: &str = "sa.pub";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// What a certificate must say. Comparing two specs decides reissue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertSpec {
    /// File stem: `<name>.pem` and `<name>-key.pem`.
    pub name: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: CertUsage,
}

/// Extended key usage of a leaf certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CertUsage {
    Server,
    Client,
    /// Both TLS server and client auth (etcd peers, kubelets).
    ServerAndClient,
}

impl CertUsage {
    fn from_flags(server: bool, client: bool) -> Option<CertUsage> {
        match (server, client) {
            (true, false) => Some(CertUsage::Server),
            (false, true) => Some(CertUsage::Client),
            (true, true) => Some(CertUsage::ServerAndClient),
            (false, false) => None,
        }
    }

    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            CertUsage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertUsage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            CertUsage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }
}

/// A PEM private key. Debug and Display never print it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The PEM text, for writing to a file or uploading to a host.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A leaf certificate and its key, as found or written by [`Pki::ensure`].
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: Secret,
    pub status: IssueStatus,
}

/// Whether [`Pki::ensure`] wrote new files, so callers know when to restart services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueStatus {
    Created,
    Reused,
    Reissued { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "CA is incomplete: {present} exists but {missing} is missing; restore it, or remove both to create a new CA (all leaf certificates will be reissued)"
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "{path}: CA certificate expires at {not_after}, within 30 days; remove the CA files to create a new CA"
    )]
    CaExpiring {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("invalid certificate name {name:?}: {problem}")]
    InvalidName { name: String, problem: &'static str },
    #[error("cannot generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
}

/// The CA and the directory holding every certificate it issued.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_der: Vec<u8>,
    ca_not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

/// Existing leaf files, judged against a spec.
enum Existing {
    Absent,
    Usable { cert_pem: String, key_pem: String },
    Stale(String),
}

impl Pki {
    /// Open or create `dir`: loads the CA (`ca.pem` / `ca-key.pem`) or creates a new one
    /// (CN `kubeforge-ca-<cluster_name>`, ECDSA P-256, 10 years). `cluster_name` is only used
    /// when creating; an existing CA is authoritative.
    pub fn open(dir: &Path, cluster_name: &str) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create PKI directory"))?;
        // The directory holds the CA key: nobody else needs to list or read it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(dir, "restrict permissions of PKI directory"))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let (cert_pem, key_pem) = match (read_opt(&cert_path)?, read_opt(&key_path)?) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => create_ca(&cert_path, &key_path, cluster_name)?,
            (Some(_), None) => {
                return Err(PkiError::CaIncomplete {
                    present: cert_path,
                    missing: key_path,
                });
            }
            (None, Some(_)) => {
                return Err(PkiError::CaIncomplete {
                    present: key_path,
                    missing: cert_path,
                });
            }
        };

        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid {
            path: key_path.clone(),
            problem: format!("not a usable private key: {e}"),
        })?;
        let ca_der = pem_to_der(&cert_path, &cert_pem)?;
        let ca = parse_der(&cert_path, &ca_der)?;
        if !ca.is_ca() {
            return Err(invalid(&cert_path, "certificate is not a CA"));
        }
        if key.subject_public_key_info() != ca.public_key().raw {
            return Err(invalid(
                &key_path,
                format!("private key does not belong to {}", cert_path.display()),
            ));
        }
        let ca_not_after = ca.validity().not_after.to_datetime();
        if ca_not_after - OffsetDateTime::now_utc() < RENEW_BEFORE {
            return Err(PkiError::CaExpiring {
                path: cert_path,
                not_after: ca_not_after,
            });
        }
        let issuer = Issuer::from_ca_cert_der(&ca_der.as_slice().into(), key)
            .map_err(|e| invalid(&cert_path, format!("cannot use certificate as issuer: {e}")))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert_pem: cert_pem,
            ca_der,
            ca_not_after,
            issuer,
        })
    }

    /// The CA certificate, for distribution to every host as the trust root.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Reuse `<name>.pem`/`<name>-key.pem` when they match `spec`, are signed by this CA and do
    /// not expire within 30 days; otherwise issue a new ECDSA P-256 key and 1-year certificate.
    pub fn ensure(&self, spec: &CertSpec) -> Result<IssuedCert, PkiError> {
        self.ensure_with_validity(spec, LEAF_VALIDITY)
    }

    fn ensure_with_validity(
        &self,
        spec: &CertSpec,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        validate_name(&spec.name)?;
        let cert_path = self.dir.join(format!("{}.pem", spec.name));
        let key_path = self.dir.join(format!("{}-key.pem", spec.name));
        let status = match self.existing(spec, &cert_path, &key_path)? {
            Existing::Usable { cert_pem, key_pem } => {
                return Ok(IssuedCert {
                    name: spec.name.clone(),
                    cert_pem,
                    key_pem: Secret(key_pem),
                    status: IssueStatus::Reused,
                });
            }
            Existing::Absent => IssueStatus::Created,
            Existing::Stale(reason) => IssueStatus::Reissued { reason },
        };
        let (cert_pem, key_pem) = self.issue(spec, validity)?;
        // Key first: a crash in between leaves a cert/key mismatch, which the next run detects.
        write_atomic(&key_path, &key_pem, KEY_MODE)?;
        write_atomic(&cert_path, &cert_pem, CERT_MODE)?;
        Ok(IssuedCert {
            name: spec.name.clone(),
            cert_pem,
            key_pem: Secret(key_pem),
            status,
        })
    }

    /// The service-account token signing key pair (PEM PKCS#8 private key, PEM public key),
    /// created once and reused: rotating it would invalidate every issued token.
    pub fn service_account_keypair(&self) -> Result<(Secret, String), PkiError> {
        let key_path = self.dir.join(SA_KEY);
        let pub_path = self.dir.join(SA_PUB);
        let key_pem = match read_opt(&key_path)? {
            Some(pem) => pem,
            None => {
                let key = generate_key("service-account key")?;
                let pem = key.serialize_pem();
                write_atomic(&key_path, &pem, KEY_MODE)?;
                pem
            }
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(&key_path, format!("not a usable private key: {e}")))?;
        let public_pem = key.public_key_pem();
        if read_opt(&pub_path)?.as_deref() != Some(public_pem.as_str()) {
            write_atomic(&pub_path, &public_pem, CERT_MODE)?;
        }
        Ok((Secret(key_pem), public_pem))
    }

    fn existing(
        &self,
        spec: &CertSpec,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Existing, PkiError> {
        let (cert_pem, key_pem) = match (read_opt(cert_path)?, read_opt(key_path)?) {
            (None, None) => return Ok(Existing::Absent),
            (Some(_), None) => {
                return Ok(stale(format!("key file {} is missing", key_path.display())));
            }
            (None, Some(_)) => {
                return Ok(stale(format!(
                    "certificate file {} is missing",
                    cert_path.display()
                )));
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let der = match pem_to_der(cert_path, &cert_pem) {
            Ok(der) => der,
            Err(e) => return Ok(stale(e.to_string())),
        };
        let cert = match parse_der(cert_path, &der) {
            Ok(cert) => cert,
            Err(e) => return Ok(stale(e.to_string())),
        };
        match KeyPair::from_pem(&key_pem) {
            Ok(key) if key.subject_public_key_info() == cert.public_key().raw => {}
            Ok(_) => {
                return Ok(stale(format!(
                    "key {} does not belong to the certificate",
                    key_path.display()
                )));
            }
            Err(e) => {
                return Ok(stale(format!(
                    "key {} is unreadable: {e}",
                    key_path.display()
                )));
            }
        }
        if let Some(reason) = self.not_signed_by_ca(&cert) {
            return Ok(stale(reason));
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after - OffsetDateTime::now_utc() < RENEW_BEFORE {
            return Ok(stale(format!(
                "certificate expires at {not_after}, within 30 days"
            )));
        }
        let differences = differences(&cert, spec);
        if !differences.is_empty() {
            return Ok(stale(differences.join("; ")));
        }
        Ok(Existing::Usable { cert_pem, key_pem })
    }

    fn not_signed_by_ca(&self, cert: &X509Certificate<'_>) -> Option<String> {
        // The CA was parsed when the Pki was opened; failing now would be a bug, not bad input.
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&self.ca_der) else {
            return Some("the CA certificate cannot be parsed".into());
        };
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Some(format!(
                "issued by \"{}\", not by the current CA \"{}\"",
                cert.issuer(),
                ca.subject()
            ));
        }
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Some("signature does not verify against the current CA".into());
        }
        None
    }

    /// Sign a fresh key for `spec`; `validity` is a parameter so tests can make short-lived certs.
    fn issue(&self, spec: &CertSpec, validity: Duration) -> Result<(String, String), PkiError> {
        let what = |part: &str| format!("{part} for {}", spec.name);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        for org in &spec.organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org.as_str());
        }
        for dns in &spec.dns_names {
            let name = dns.clone().try_into().map_err(|e| PkiError::Generate {
                what: what(&format!("DNS SAN {dns:?}")),
                source: e,
            })?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .extend(spec.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.usage.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        // A leaf outliving its CA would fail verification at the CA's expiry anyway.
        params.not_after = (now + validity).min(self.ca_not_after);

        let key = generate_key(&what("private key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Generate {
                what: what("certificate"),
                source: e,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn create_ca(
    cert_path: &Path,
    key_path: &Path,
    cluster_name: &str,
) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("kubeforge-ca-{cluster_name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + CA_VALIDITY;
    let key = generate_key("CA private key")?;
    let cert = params.self_signed(&key).map_err(|e| PkiError::Generate {
        what: "CA certificate".into(),
        source: e,
    })?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    write_atomic(key_path, &key_pem, KEY_MODE)?;
    write_atomic(cert_path, &cert_pem, CERT_MODE)?;
    Ok((cert_pem, key_pem))
}

/// Ways in which `cert` does not say what `spec` asks for, one phrase each.
fn differences(cert: &X509Certificate<'_>, spec: &CertSpec) -> Vec<String> {
    let mut out = Vec::new();
    let subject = cert.subject();
    let cns: BTreeSet<String> = attr_strings(subject.iter_common_name());
    compare_sets(
        "common name",
        &cns,
        &BTreeSet::from([spec.common_name.clone()]),
        &mut out,
    );
    compare_sets(
        "organizations",
        &attr_strings(subject.iter_organization()),
        &spec.organizations.iter().cloned().collect(),
        &mut out,
    );

    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let mut other = 0;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => {
                        ips.insert(ip);
                    }
                    None => other += 1,
                },
                _ => other += 1,
            }
        }
    }
    compare_sets(
        "DNS SANs",
        &dns,
        &spec.dns_names.iter().cloned().collect(),
        &mut out,
    );
    compare_sets(
        "IP SANs",
        &ips,
        &spec.ip_addresses.iter().copied().collect(),
        &mut out,
    );
    if other > 0 {
        out.push(format!("{other} unexpected SAN entries of another type"));
    }

    let usage = match cert.extended_key_usage() {
        Ok(Some(eku)) => CertUsage::from_flags(eku.value.server_auth, eku.value.client_auth),
        _ => None,
    };
    if usage != Some(spec.usage) {
        let have = usage.map_or_else(|| "none".to_string(), |u| format!("{u:?}"));
        out.push(format!(
            "usage: certificate has {have}, spec wants {:?}",
            spec.usage
        ));
    }
    out
}

fn attr_strings<'a>(
    attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> BTreeSet<String> {
    attrs
        .map(|a| {
            a.as_str()
                .map_or_else(|_| "<non-string>".into(), str::to_string)
        })
        .collect()
}

fn compare_sets<T: Ord + fmt::Display>(
    what: &str,
    have: &BTreeSet<T>,
    want: &BTreeSet<T>,
    out: &mut Vec<String>,
) {
    let list = |items: Vec<&T>| {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<&T> = want.difference(have).collect();
    let unexpected: Vec<&T> = have.difference(want).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing [{}]", list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected [{}]", list(unexpected)));
    }
    if !parts.is_empty() {
        out.push(format!("{what}: {}", parts.join(", ")));
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

fn stale(reason: String) -> Existing {
    Existing::Stale(reason)
}

fn invalid(path: &Path, problem: impl Into<String>) -> PkiError {
    PkiError::Invalid {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> PkiError {
    let path = path.to_path_buf();
    move |source| PkiError::Io {
        path,
        action,
        source,
    }
}

fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| PkiError::Generate {
        what: what.to_string(),
        source: e,
    })
}

/// Random positive 128-bit serial: unique per certificate even if a key were reused.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Names become file stems next to the CA files, so they must not escape the directory or
/// collide with `ca.pem`/`ca-key.pem` or another certificate's `-key.pem`.
fn validate_name(name: &str) -> Result<(), PkiError> {
    let problem = if name.is_empty() {
        Some("empty")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else if name == "ca" {
        Some("reserved for the CA")
    } else if name.ends_with("-key") {
        Some("ends with \"-key\", which would collide with another certificate's key file")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PkiError::InvalidName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "read")(e)),
    }
}

fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    match x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
        Ok((_, p)) if p.label == "CERTIFICATE" => Ok(p.contents),
        Ok((_, p)) => Err(invalid(
            path,
            format!("expected a CERTIFICATE PEM block, found {}", p.label),
        )),
        Err(e) => Err(invalid(path, format!("not a PEM certificate: {e}"))),
    }
}

fn parse_der<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| invalid(path, format!("cannot parse certificate: {e}")))
}

/// [`files::write_atomic`] with the PKI's error: keys and certificates are never seen
/// half-written, and a key is never readable by others.
fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    files::write_atomic(path, contents.as_bytes(), mode).map_err(io_err(path, "write"))
}

fn dedup<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn client_spec(name: &str, common_name: &str, organizations: &[&str]) -> CertSpec {
    CertSpec {
        name: name.to_string(),
        common_name: common_name.to_string(),
        organizations: organizations.iter().map(|o| o.to_string()).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: CertUsage::Client,
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// etcd client-facing serving certificate (`etcd-server-<host>`). Server and client auth, as
/// kubeadm does: etcd's gRPC gateway dials its own listener with this certificate.
pub fn etcd_server_spec(host: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("etcd-server-{host}"),
        common_name: host.to_string(),
        organizations: Vec::new(),
        dns_names: dedup([host.to_string(), "localhost".to_string()]),
        ip_addresses: dedup([ip, LOOPBACK]),
        usage: CertUsage::ServerAndClient,
    }
}

/// etcd peer certificate (`etcd-peer-<host>`), separate from the serving one so the peer
/// port can be trusted independently; peers both dial and accept, hence server and client.
pub fn etcd_peer_spec(host: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("etcd-peer-{host}"),
        ..etcd_server_spec(host, ip)
    }
}

/// Client certificate for talking to etcd (kube-apiserver, etcdctl); `name` is file stem and CN.
pub fn etcd_client_spec(name: &str) -> CertSpec {
    client_spec(name, name, &[])
}

/// kube-apiserver serving certificate. `service_ip` is the first IP of the service CIDR
/// (the `kubernetes` Service's ClusterIP).
pub fn apiserver_spec(
    service_ip: IpAddr,
    master_ips: &[IpAddr],
    master_names: &[String],
) -> CertSpec {
    let dns = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(master_names.iter().cloned());
    let ips = std::iter::once(service_ip)
        .chain(master_ips.iter().copied())
        .chain(std::iter::once(LOOPBACK));
    CertSpec {
        name: "apiserver".to_string(),
        common_name: "kube-apiserver".to_string(),
        organizations: Vec::new(),
        dns_names: dedup(dns),
        ip_addresses: dedup(ips),
        usage: CertUsage::Server,
    }
}

/// Kubelet certificate (`kubelet-<node>`): serves the kubelet API and authenticates the node
/// to the apiserver (Node authorizer wants CN `system:node:<node>`, O `system:nodes`).
pub fn kubelet_spec(node: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("kubelet-{node}"),
        common_name: format!("system:node:{node}"),
        organizations: vec!["system:nodes".to_string()],
        dns_names: vec![node.to_string()],
        ip_addresses: vec![ip],
        usage: CertUsage::ServerAndClient,
    }
}

/// Cluster-admin client certificate for the harness's own kubeconfig.
pub fn admin_spec() -> CertSpec {
    client_spec("admin", "admin", &["system:masters"])
}

pub fn controller_manager_spec() -> CertSpec {
    client_spec("controller-manager", "system:kube-controller-manager", &[])
}

pub fn scheduler_spec() -> CertSpec {
    client_spec("scheduler", "system:kube-scheduler", &[])
}

/// Calico's CNI plugin and policy controller reading the API (RBAC in
/// kubernetes/cluster-objects.yaml).
pub fn calico_spec() -> CertSpec {
    client_spec("calico", "calico", &[])
}

pub fn kube_proxy_spec() -> CertSpec {
    client_spec("kube-proxy", "system:kube-proxy", &[])
}

/// Client certificate the apiserver presents to kubelets (logs, exec, port-forward). Not a
/// cluster admin: RBAC grants it `system:kubelet-api-admin` (kubernetes/cluster-objects.yaml).
pub fn apiserver_kubelet_client_spec() -> CertSpec {
    client_spec(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
        if Path::new(OPENSSL).exists() {
            true
        } else {
            eprintln!("skipping openssl checks: {OPENSSL} not found");
            false
        }
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

    #[test]
    fn pki_can_be_shared_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pki>();
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        open(tmp.path());
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
        fs::copy(
            tmp.path().join("scheduler-key.pem"),
            tmp.path().join("admin-key.pem"),
        )
        .expect("copy");
        let IssueStatus::Reissued { reason } = pki.ensure(&admin_spec()).expect("ensure").status
        else {
            panic!("mismatched key must reissue");
        };
        assert!(reason.contains("does not belong"), "{reason}");

        fs::remove_file(tmp.path().join("admin-key.pem")).expect("rm");
        let IssueStatus::Reissued { reason } = pki.ensure(&admin_spec()).expect("ensure").status
        else {
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
        assert_eq!(mode(&tmp.path().join("kube-proxy-key.pem")), 0o600);
        assert_eq!(mode(&tmp.path().join("kube-proxy.pem")), 0o644);
        // A reissue replaces the files and keeps the modes.
        let mut spec = kube_proxy_spec();
        spec.common_name = "changed".into();
        pki.ensure(&spec).expect("reissue");
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
        assert_eq!(mode(&tmp.path().join(SA_KEY)), 0o600);
        let (key2, public2) = open(tmp.path()).service_account_keypair().expect("reuse");
        assert_eq!(key2.expose(), key.expose());
        assert_eq!(public2, public);
        // A lost public half is re-derived from the private key, not a new pair.
        fs::remove_file(tmp.path().join(SA_PUB)).expect("rm pub");
        let (key3, public3) = pki.service_account_keypair().expect("rederive");
        assert_eq!(key3.expose(), key.expose());
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
        if !openssl_available() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // Issue after a reload so the chain check covers Issuer::from_ca_cert_der.
        open(dir);
        let pki = open(dir);
        let masters = [ip("10.89.0.10")];
        let names = ["kube-master-01".to_string()];
        pki.ensure(&apiserver_spec(ip("10.96.0.1"), &masters, &names))
            .expect("apiserver");
        pki.ensure(&admin_spec()).expect("admin");
        pki.ensure(&etcd_peer_spec("etcd-01", ip("10.89.0.11")))
            .expect("peer");
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

    #[test]
    fn spec_builders_follow_kubernetes_conventions() {
        let spec = etcd_server_spec("etcd-01", ip("127.0.0.1"));
        assert_eq!(spec.ip_addresses, vec![ip("127.0.0.1")], "deduplicated");
        assert_eq!(spec.dns_names, vec!["etcd-01", "localhost"]);
        assert_eq!(spec.usage, CertUsage::ServerAndClient);
        assert_eq!(
            etcd_peer_spec("etcd-01", ip("10.0.0.1")).name,
            "etcd-peer-etcd-01"
        );
        let kubelet = kubelet_spec("w1", ip("10.0.0.5"));
        assert_eq!(kubelet.common_name, "system:node:w1");
        assert_eq!(kubelet.organizations, vec!["system:nodes"]);
        let api = apiserver_spec(ip("10.96.0.1"), &[ip("10.0.0.2")], &["m1".into()]);
        assert_eq!(
            api.ip_addresses,
            vec![ip("10.96.0.1"), ip("10.0.0.2"), ip("127.0.0.1")]
        );
        assert!(
            api.dns_names
                .contains(&"kubernetes.default.svc".to_string())
        );
        assert_eq!(
            apiserver_kubelet_client_spec().organizations,
            Vec::<String>::new()
        );
        assert_eq!(
            controller_manager_spec().common_name,
            "system:kube-controller-manager"
        );
        assert_eq!(etcd_client_spec("etcd-client").usage, CertUsage::Client);
    }
}
