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
//!
//! The store is here; `spec` says what each certificate must say, `compare` how a
//! certificate on disk differs from that.
//!
//! Planning is pure: opening the store and ensuring certificates never writes. What a run
//! would create or reissue is held in memory (and read back by later lookups of the same
//! run) until [`Pki::commit`] writes it; check mode and idempotence never commit.

mod compare;
mod spec;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

pub use spec::{
    CertSpec, CertUsage, admin_spec, apiserver_kubelet_client_spec, apiserver_spec, calico_spec,
    controller_manager_spec, etcd_client_spec, etcd_peer_spec, etcd_server_spec, kube_proxy_spec,
    kubelet_spec, scheduler_spec,
};

use crate::files;
pub use compare::describe_certificate;
use compare::differences;

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
    /// Files this run made but did not write yet, in the order they were made (a key before
    /// its certificate); lookups read them before the disk.
    pending: Mutex<Vec<PendingFile>>,
}

/// The cluster's two CAs: Kubernetes' own, and etcd's, so that nothing the Kubernetes CA
/// signs (a kubelet's or kube-proxy's certificate on any node) can talk to etcd, which holds
/// the whole cluster. etcd's store lives in `<dir>/etcd/`.
pub struct ClusterPki {
    pub kubernetes: Pki,
    pub etcd: Pki,
}

impl ClusterPki {
    /// Opens (or, in memory, creates) both CAs; nothing is written until [`ClusterPki::commit`].
    pub fn open(dir: &Path, cluster_name: &str) -> Result<ClusterPki, PkiError> {
        Ok(ClusterPki {
            kubernetes: Pki::open(dir, cluster_name)?,
            etcd: Pki::open(&dir.join("etcd"), &format!("{cluster_name}-etcd"))?,
        })
    }

    /// What a commit would write, from both stores.
    pub fn pending(&self) -> Vec<(PathBuf, u32)> {
        let mut all = self.kubernetes.pending();
        all.extend(self.etcd.pending());
        all
    }

    /// Writes both stores (see [`Pki::commit`]).
    pub fn commit(&self) -> Result<Vec<PathBuf>, PkiError> {
        let mut written = self.kubernetes.commit()?;
        written.extend(self.etcd.commit()?);
        Ok(written)
    }
}

/// A file [`Pki::commit`] will write.
struct PendingFile {
    path: PathBuf,
    contents: String,
    mode: u32,
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
    /// Opens `dir` (which need not exist): loads the CA (`ca.pem` / `ca-key.pem`) or makes
    /// a new one in memory (CN `kubeforge-ca-<cluster_name>`, ECDSA P-256, 10 years), to be
    /// written by [`Pki::commit`]. `cluster_name` is only used when creating; an existing CA
    /// is authoritative.
    pub fn open(dir: &Path, cluster_name: &str) -> Result<Pki, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let mut pending = Vec::new();
        let (cert_pem, key_pem) = match (read_opt(&cert_path)?, read_opt(&key_path)?) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                let (cert_pem, key_pem) = create_ca(cluster_name)?;
                pending.push(PendingFile {
                    path: key_path.clone(),
                    contents: key_pem.clone(),
                    mode: KEY_MODE,
                });
                pending.push(PendingFile {
                    path: cert_path.clone(),
                    contents: cert_pem.clone(),
                    mode: CERT_MODE,
                });
                (cert_pem, key_pem)
            }
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
            pending: Mutex::new(pending),
        })
    }

    /// The files a [`Pki::commit`] would write (paths and modes), in order.
    pub fn pending(&self) -> Vec<(PathBuf, u32)> {
        self.lock_pending()
            .iter()
            .map(|f| (f.path.clone(), f.mode))
            .collect()
    }

    /// Writes what this run made: the directory (0700: it holds the CA key), then each
    /// file atomically, keys before their certificates. Returns the paths written.
    pub fn commit(&self) -> Result<Vec<PathBuf>, PkiError> {
        let mut pending = self.lock_pending();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir, "create PKI directory"))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(&self.dir, "restrict permissions of PKI directory"))?;
        let mut written = Vec::new();
        for f in pending.drain(..) {
            write_atomic(&f.path, &f.contents, f.mode)?;
            written.push(f.path);
        }
        Ok(written)
    }

    fn lock_pending(&self) -> MutexGuard<'_, Vec<PendingFile>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A file as this run sees it: made and not yet written, else on disk.
    fn read(&self, path: &Path) -> Result<Option<String>, PkiError> {
        if let Some(f) = self.lock_pending().iter().rev().find(|f| f.path == path) {
            return Ok(Some(f.contents.clone()));
        }
        read_opt(path)
    }

    /// Holds `contents` for `path` until [`Pki::commit`].
    fn stage(&self, path: &Path, contents: &str, mode: u32) {
        let mut pending = self.lock_pending();
        pending.retain(|f| f.path != path);
        pending.push(PendingFile {
            path: path.to_path_buf(),
            contents: contents.to_string(),
            mode,
        });
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
        self.stage(&key_path, &key_pem, KEY_MODE);
        self.stage(&cert_path, &cert_pem, CERT_MODE);
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
        let key_pem = match self.read(&key_path)? {
            Some(pem) => pem,
            None => {
                let key = generate_key("service-account key")?;
                let pem = key.serialize_pem();
                self.stage(&key_path, &pem, KEY_MODE);
                pem
            }
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(&key_path, format!("not a usable private key: {e}")))?;
        let public_pem = key.public_key_pem();
        if self.read(&pub_path)?.as_deref() != Some(public_pem.as_str()) {
            self.stage(&pub_path, &public_pem, CERT_MODE);
        }
        Ok((Secret(key_pem), public_pem))
    }

    fn existing(
        &self,
        spec: &CertSpec,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Existing, PkiError> {
        let (cert_pem, key_pem) = match (self.read(cert_path)?, self.read(key_path)?) {
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

/// A new self-signed CA: (certificate PEM, key PEM).
fn create_ca(cluster_name: &str) -> Result<(String, String), PkiError> {
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
    Ok((cert.pem(), key.serialize_pem()))
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
