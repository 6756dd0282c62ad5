//! The scenario's SSH identities: the client key kubeforge logs in with, and the host keys
//! pinned on first contact.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore as _;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

use super::{SshError, io_err};
use crate::files;

/// Comment written into generated client keys, so they are recognisable in authorized_keys.
const KEY_COMMENT: &str = "kubeforge";

/// Per-scenario ed25519 client key, stored in OpenSSH format (0600) with a `.pub` (0644).
#[derive(Clone)]
pub struct ClientKey {
    pub(super) key: Arc<PrivateKey>,
    public_line: String,
}

impl fmt::Debug for ClientKey {
    // Only the fingerprint: key material never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("fingerprint", &fingerprint(self.key.public_key()))
            .finish()
    }
}

impl ClientKey {
    /// Load the key at `path`, or generate and store one if the file does not exist.
    /// A missing `.pub` is rewritten and loose permissions on the private file are
    /// tightened to 0600, because the system `ssh` used by `kubeforge login` refuses
    /// group- or world-readable keys.
    pub fn load_or_generate(path: &Path) -> Result<ClientKey, SshError> {
        let key_err = |detail: String| SshError::Key {
            path: path.to_owned(),
            detail,
        };
        let key = match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = PrivateKey::from_openssh(text.as_bytes())
                    .map_err(|e| key_err(format!("not an OpenSSH private key ({e})")))?;
                if key.is_encrypted() {
                    return Err(key_err(
                        "the key is passphrase-protected, which kubeforge does not support".into(),
                    ));
                }
                let mode = std::fs::metadata(path)
                    .map_err(io_err(format!("reading {}", path.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io_err(format!(
                            "restricting {} to mode 0600",
                            path.display()
                        )))?;
                }
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("creating directory {}", parent.display())))?;
                }
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                let pair = Ed25519Keypair::from_seed(&seed);
                seed.fill(0);
                let key = PrivateKey::new(KeypairData::from(pair), KEY_COMMENT)
                    .map_err(|e| key_err(format!("cannot build the generated key ({e})")))?;
                let pem = key
                    .to_openssh(LineEnding::LF)
                    .map_err(|e| key_err(format!("cannot encode the generated key ({e})")))?;
                files::write_atomic(path, pem.as_bytes(), 0o600)
                    .map_err(io_err(format!("writing {}", path.display())))?;
                key
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let public_line = key
            .public_key()
            .to_openssh()
            .map_err(|e| key_err(format!("cannot encode the public key ({e})")))?;
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let pub_path = PathBuf::from(pub_path);
        if !pub_path.exists() {
            files::write_atomic(&pub_path, format!("{public_line}\n").as_bytes(), 0o644)
                .map_err(io_err(format!("writing {}", pub_path.display())))?;
        }
        Ok(ClientKey {
            key: Arc::new(key),
            public_line,
        })
    }

    /// The authorized_keys line: `ssh-ed25519 AAAA... kubeforge`.
    pub fn public_openssh(&self) -> String {
        self.public_line.clone()
    }
}

/// `ssh-ed25519 SHA256:...`, the form shown in errors.
pub(super) fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// Host-key pins kept in the scenario state, as a JSON map of inventory host name to
/// OpenSSH public key (`ssh-ed25519 AAAA...`): first contact records the key, later
/// contacts must present the same key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyPins {
    hosts: BTreeMap<String, String>,
}

impl HostKeyPins {
    /// Read the pins file; a missing file means no host is pinned yet.
    pub fn load(path: &Path) -> Result<Self, SshError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let pins: HostKeyPins = serde_json::from_str(&text).map_err(|e| SshError::Pins {
            path: path.to_owned(),
            detail: format!("not valid JSON ({e})"),
        })?;
        for (host, key) in &pins.hosts {
            PublicKey::from_openssh(key).map_err(|e| SshError::Pins {
                path: path.to_owned(),
                detail: format!("the entry for {host} is not an OpenSSH public key ({e})"),
            })?;
        }
        Ok(pins)
    }

    /// Write the pins atomically (the file holds only public keys, so mode 0644).
    pub fn save(&self, path: &Path) -> Result<(), SshError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| SshError::Pins {
            path: path.to_owned(),
            detail: format!("cannot serialise ({e})"),
        })?;
        text.push('\n');
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        files::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(io_err(format!("writing {}", path.display())))
    }

    /// The pinned key of `host`, as `ssh-ed25519 AAAA...`.
    pub fn get(&self, host: &str) -> Option<&str> {
        self.hosts.get(host).map(String::as_str)
    }

    /// Forget the pin of `host` (for a host that was rebuilt on purpose); true if one existed.
    pub fn remove(&mut self, host: &str) -> bool {
        self.hosts.remove(host).is_some()
    }

    /// OpenSSH known_hosts text for the pinned hosts among `addresses` (name, IP, port),
    /// so the system `ssh` can run with `StrictHostKeyChecking=yes`. Unpinned hosts are
    /// left out, which makes strict checking refuse them.
    pub fn known_hosts_lines(&self, addresses: &[(String, IpAddr, u16)]) -> String {
        let mut out = String::new();
        for (host, ip, port) in addresses {
            if let Some(key) = self.hosts.get(host) {
                let pattern = if *port == 22 {
                    ip.to_string()
                } else {
                    format!("[{ip}]:{port}")
                };
                out.push_str(&format!("{pattern} {key}\n"));
            }
        }
        out
    }

    /// Accept `key` for `host` if it matches the pin, or pin it if none exists.
    /// On mismatch returns (pinned fingerprint, presented fingerprint).
    pub(super) fn check_or_record(
        &mut self,
        host: &str,
        key: &PublicKey,
    ) -> Result<(), (String, String)> {
        match self.hosts.get(host) {
            Some(pinned) => match PublicKey::from_openssh(pinned) {
                Ok(pinned) if pinned.key_data() == key.key_data() => Ok(()),
                Ok(pinned) => Err((fingerprint(&pinned), fingerprint(key))),
                Err(_) => Err(("an unreadable pin".into(), fingerprint(key))),
            },
            None => {
                let bare = PublicKey::new(key.key_data().clone(), "");
                let line = bare
                    .to_openssh()
                    .map_err(|_| ("nothing".to_string(), fingerprint(key)))?;
                self.hosts.insert(host.to_owned(), line);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_is_generated_once_with_safe_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/keys/id_ed25519");
        let key = ClientKey::load_or_generate(&path).unwrap();
        let line = key.public_openssh();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(" kubeforge"), "{line}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let pub_path = dir.path().join("state/keys/id_ed25519.pub");
        assert_eq!(mode(&pub_path), 0o644);
        assert_eq!(
            std::fs::read_to_string(&pub_path).unwrap(),
            format!("{line}\n")
        );
        assert!(!format!("{key:?}").contains("PRIVATE"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::remove_file(&pub_path).unwrap();
        let again = ClientKey::load_or_generate(&path).unwrap();
        assert_eq!(again.public_openssh(), line);
        assert_eq!(mode(&path), 0o600);
        assert!(pub_path.exists());

        std::fs::write(&path, "garbage").unwrap();
        let err = ClientKey::load_or_generate(&path).unwrap_err();
        assert!(matches!(err, SshError::Key { .. }), "{err}");
    }

    #[test]
    fn pins_file_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins.json");
        let mut pins = HostKeyPins::load(&path).unwrap();
        assert_eq!(pins, HostKeyPins::default());
        let key = ClientKey::load_or_generate(&dir.path().join("k")).unwrap();
        let public = key.key.public_key();
        pins.check_or_record("n1", public).unwrap();
        pins.check_or_record("n1", public).unwrap();
        let other = ClientKey::load_or_generate(&dir.path().join("k2")).unwrap();
        let (expected, got) = pins
            .check_or_record("n1", other.key.public_key())
            .unwrap_err();
        assert_eq!(expected, fingerprint(public));
        assert_eq!(got, fingerprint(other.key.public_key()));
        pins.save(&path).unwrap();
        assert_eq!(HostKeyPins::load(&path).unwrap(), pins);
        let pinned = pins.get("n1").unwrap();
        assert!(pinned.starts_with("ssh-ed25519 AAAA") && !pinned.contains("kubeforge"));

        let lines = pins.known_hosts_lines(&[
            ("n1".into(), IpAddr::from([10, 0, 0, 1]), 22),
            ("n1".into(), "fd00::1".parse().unwrap(), 2222),
            ("unpinned".into(), IpAddr::from([10, 0, 0, 2]), 22),
        ]);
        assert_eq!(
            lines,
            format!("10.0.0.1 {pinned}\n[fd00::1]:2222 {pinned}\n")
        );

        std::fs::write(&path, r#"{"hosts":{"n1":"not a key"}}"#).unwrap();
        let err = HostKeyPins::load(&path).unwrap_err();
        assert!(err.to_string().contains("n1"), "{err}");
    }
}
