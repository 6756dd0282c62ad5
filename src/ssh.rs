//! SSH transport: one pinned, key-authenticated russh connection per host, many
//! exec channels over it, and streaming file upload.
//!
//! Trust model: the client key is generated per scenario; host keys are trusted on
//! first use and pinned in the scenario state, so a rebuilt or impersonated host is
//! refused instead of silently accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore as _;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig, client};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::files;

/// Concurrent channels per connection: OpenSSH's MaxSessions defaults to 10, keep headroom.
const MAX_CHANNELS: usize = 8;
/// Upload/stdin chunk read from the local source per channel write.
const CHUNK: usize = 256 * 1024;
/// Comment written into generated client keys, so they are recognisable in authorized_keys.
const KEY_COMMENT: &str = "kubeforge";

/// Where and as whom to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Inventory name, used in errors and as the host-key pin name.
    pub host: String,
    pub address: IpAddr,
    pub port: u16,
    pub user: String,
}

/// Connection tuning. Keepalives detect dead peers; there is deliberately no short
/// inactivity timeout, because converge steps can leave a connection idle for minutes.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    pub inactivity_timeout: Option<Duration>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(10),
            keepalive_max: 3,
            inactivity_timeout: None,
        }
    }
}

/// Failures of the SSH transport; every message names the host or file involved.
#[derive(thiserror::Error, Debug)]
pub enum SshError {
    #[error("cannot connect to {host} at {address}: {cause}")]
    Connect {
        host: String,
        address: SocketAddr,
        /// Boxed: russh's error is large and would bloat every `Result` here.
        cause: Box<russh::Error>,
    },
    #[error(
        "the host key of {host} has changed: pinned {expected_fp}, the server now presents {got_fp}. \
         If {host} was rebuilt on purpose, destroy the scenario or delete the \"{host}\" entry from \
         the host-key pins file; otherwise something else is answering at its address"
    )]
    HostKeyChanged {
        host: String,
        expected_fp: String,
        got_fp: String,
    },
    #[error(
        "{host} refused the kubeforge client key for user {user}; \
         the key is probably missing from that user's authorized_keys"
    )]
    Auth { host: String, user: String },
    #[error("{host}: timed out after {} {what}", seconds(after))]
    Timeout {
        host: String,
        what: String,
        after: Duration,
    },
    #[error("{host}: {what} failed: {detail}")]
    Channel {
        host: String,
        what: String,
        detail: String,
    },
    #[error("{host}: {what} failed with exit status {status}: {stderr}")]
    Remote {
        host: String,
        what: String,
        status: u32,
        stderr: String,
    },
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("client key {}: {detail}", path.display())]
    Key { path: PathBuf, detail: String },
    #[error("host-key pins file {}: {detail}", path.display())]
    Pins { path: PathBuf, detail: String },
}

fn seconds(d: &Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SshError {
    let what = what.into();
    move |cause| SshError::Io { what, cause }
}

/// Per-scenario ed25519 client key, stored in OpenSSH format (0600) with a `.pub` (0644).
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<PrivateKey>,
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
fn fingerprint(key: &PublicKey) -> String {
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
    fn check_or_record(&mut self, host: &str, key: &PublicKey) -> Result<(), (String, String)> {
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

/// russh callback state: checks the server key against the shared pins.
struct PinCheck {
    host: String,
    pins: Arc<Mutex<HostKeyPins>>,
}

/// Handshake failure as seen by the russh session task; kept apart from russh's own
/// errors so a changed host key reaches the caller as such.
#[derive(Debug)]
enum HandshakeError {
    Russh(russh::Error),
    HostKeyChanged { expected_fp: String, got_fp: String },
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Russh(e)
    }
}

impl client::Handler for PinCheck {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Pin the certified key itself: the certificate's CA is not something we trust.
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.check_or_record(&self.host, &key)
            .map(|()| true)
            .map_err(|(expected_fp, got_fp)| HandshakeError::HostKeyChanged {
                expected_fp,
                got_fp,
            })
    }
}

/// Output of one remote command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; 128 + signal number if the command was killed by a signal.
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

struct Inner {
    host: String,
    user: String,
    handle: client::Handle<PinCheck>,
    slots: Semaphore,
    round_trips: AtomicU64,
}

/// One authenticated connection to a host, shared (cheap `Clone`) by all tasks working
/// on that host; each exec or upload is its own channel.
#[derive(Clone)]
pub struct SshSession {
    inner: Arc<Inner>,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("host", &self.inner.host)
            .field("user", &self.inner.user)
            .finish()
    }
}

impl SshSession {
    /// Connect, check the host key against `pins` (recording it on first contact; the
    /// caller saves the pins) and authenticate with `key`.
    pub async fn connect(
        target: &SshTarget,
        key: &ClientKey,
        pins: Arc<Mutex<HostKeyPins>>,
        opts: &SshOptions,
    ) -> Result<SshSession, SshError> {
        let address = SocketAddr::new(target.address, target.port);
        let config = Arc::new(client::Config {
            keepalive_interval: Some(opts.keepalive_interval),
            keepalive_max: opts.keepalive_max,
            inactivity_timeout: opts.inactivity_timeout,
            // Many small request/response exchanges: Nagle would add latency to each.
            nodelay: true,
            ..Default::default()
        });
        let handler = PinCheck {
            host: target.host.clone(),
            pins,
        };
        let connect_err = |cause: russh::Error| SshError::Connect {
            host: target.host.clone(),
            address,
            cause: Box::new(cause),
        };
        let handshake = async {
            let mut handle =
                client::connect(config, address, handler)
                    .await
                    .map_err(|e| match e {
                        HandshakeError::Russh(cause) => connect_err(cause),
                        HandshakeError::HostKeyChanged {
                            expected_fp,
                            got_fp,
                        } => SshError::HostKeyChanged {
                            host: target.host.clone(),
                            expected_fp,
                            got_fp,
                        },
                    })?;
            let auth = handle
                .authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(key.key.clone(), None),
                )
                .await
                .map_err(connect_err)?;
            if !auth.success() {
                return Err(SshError::Auth {
                    host: target.host.clone(),
                    user: target.user.clone(),
                });
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(opts.connect_timeout, handshake)
            .await
            .map_err(|_| SshError::Timeout {
                host: target.host.clone(),
                what: format!("connecting to {address}"),
                after: opts.connect_timeout,
            })??;
        Ok(SshSession {
            inner: Arc::new(Inner {
                host: target.host.clone(),
                user: target.user.clone(),
                handle,
                slots: Semaphore::new(MAX_CHANNELS),
                round_trips: AtomicU64::new(0),
            }),
        })
    }

    /// Run `command` through the remote user's shell, feeding `stdin` (then EOF; with
    /// `None` the command sees EOF at once). `timeout` bounds the whole call, including
    /// waiting for a free channel slot. On timeout the channel is closed and SIGTERM is
    /// requested, but OpenSSH honours signal requests only for non-root logins: as root
    /// the command may run on (and hold one of the server's MaxSessions) until it ends.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let what = format!("running `{}`", command_summary(command));
        self.run(command, &what, stdin, timeout).await
    }

    /// Like [`exec`](Self::exec), as root: wrapped in `sudo -n sh -c '...'` unless the
    /// login user is root already (`-n`: fail instead of prompting for a password).
    pub async fn exec_root(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let what = format!("running `{}` as root", command_summary(command));
        self.run(&as_root(&self.inner.user, command), &what, stdin, timeout)
            .await
    }

    /// Stream `local` to `remote_path` as root with permissions `mode`, atomically: the
    /// data goes to `<remote_path>.kf-tmp.<random>`, whose size is checked before chmod
    /// and `mv -f`, so an interrupted transfer never replaces the destination. A missing
    /// parent directory is created (0755). The file is streamed in chunks, never held in memory.
    pub async fn upload_file(
        &self,
        local: &Path,
        remote_path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let what = format!("uploading {} to {remote_path}", local.display());
        let file = tokio::fs::File::open(local)
            .await
            .map_err(io_err(format!("opening {}", local.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(io_err(format!("reading {}", local.display())))?
            .len();
        let script = upload_script(remote_path, mode, len, rand::random::<u64>());
        // take(): a file growing during the upload must not make the size check fail.
        let out = self
            .run(
                &as_root(&self.inner.user, &script),
                &what,
                Some(file.take(len)),
                timeout,
            )
            .await?;
        if out.status != 0 {
            return Err(SshError::Remote {
                host: self.inner.host.clone(),
                what,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Exec and upload calls started on this connection so far (for cost accounting).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Say goodbye to the server. Other clones of this session stop working too.
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            // Let the session task flush the disconnect message, but never hang on it.
            let _ = tokio::time::timeout(Duration::from_secs(5), inner.handle).await;
        }
    }

    fn channel_err(&self, what: &str, detail: impl fmt::Display) -> SshError {
        SshError::Channel {
            host: self.inner.host.clone(),
            what: what.to_owned(),
            detail: detail.to_string(),
        }
    }

    async fn run<R: AsyncRead + Unpin>(
        &self,
        command: &str,
        what: &str,
        stdin: Option<R>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || SshError::Timeout {
            host: self.inner.host.clone(),
            what: what.to_owned(),
            after: timeout,
        };
        let open = async {
            let permit = self
                .inner
                .slots
                .acquire()
                .await
                .map_err(|e| self.channel_err(what, e))?;
            self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            let channel = self
                .inner
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_err(what, format!("cannot open a channel ({e})")))?;
            channel
                .exec(true, command)
                .await
                .map_err(|e| self.channel_err(what, e))?;
            Ok::<_, SshError>((permit, channel))
        };
        let (_permit, channel) = tokio::time::timeout_at(deadline, open)
            .await
            .map_err(|_| timed_out())??;
        let (mut read, write) = channel.split();
        let result = tokio::time::timeout_at(deadline, converse(&mut read, &write, stdin)).await;
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(detail)) => {
                abandon(&write).await;
                Err(self.channel_err(what, detail))
            }
            Err(_) => {
                abandon(&write).await;
                Err(timed_out())
            }
        }
    }
}

/// Best effort to stop an abandoned remote command and free its channel slot on the server.
async fn abandon<S>(write: &ChannelWriteHalf<S>)
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let _ = write.signal(Sig::TERM).await;
    let _ = write.close().await;
}

/// Feed stdin while collecting output until the server closes the channel.
async fn converse<S, R>(
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<S>,
    stdin: Option<R>,
) -> Result<ExecOutput, String>
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
    R: AsyncRead + Unpin,
{
    // Local read errors abort the call; channel send errors only stop feeding, since a
    // command may legitimately exit without reading its input.
    let writer = async {
        if let Some(mut input) = stdin {
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = input
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading the local input ({e})"))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if write.data_bytes(buf).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = write.eof().await;
        Ok::<(), String>(())
    };
    let reader = async {
        let mut out = ExecOutput::default();
        let mut status = None;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    status = Some(128 + signal_number(&signal_name))
                }
                ChannelMsg::Failure => return Err("the server refused to run the command".into()),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        out.status = status.ok_or("the channel closed without an exit status")?;
        Ok(out)
    };
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            fed = &mut writer, if writing => {
                fed?;
                writing = false;
            }
            out = &mut reader => return out,
        }
    }
}

/// Linux signal numbers, for the shell's 128+N exit-status convention.
fn signal_number(sig: &Sig) -> u32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 127,
    }
}

/// Remote script for [`SshSession::upload_file`]; `nonce` makes the temporary name unique.
fn upload_script(remote_path: &str, mode: u32, len: u64, nonce: u64) -> String {
    let dest = shell_quote(remote_path);
    let tmp = shell_quote(&format!("{remote_path}.kf-tmp.{nonce:016x}"));
    format!(
        "set -e\n\
         tmp={tmp}\n\
         trap 'rm -f -- \"$tmp\"' EXIT\n\
         (umask 022; mkdir -p -- \"$(dirname -- {dest})\")\n\
         umask 077\n\
         cat > \"$tmp\"\n\
         got=$(wc -c < \"$tmp\")\n\
         if [ \"$got\" -ne {len} ]; then echo \"received $got of {len} bytes\" >&2; exit 1; fi\n\
         chmod {mode:04o} \"$tmp\"\n\
         mv -f -- \"$tmp\" {dest}\n"
    )
}

/// `command` as root: unchanged for root, else through `sudo -n sh -c`.
fn as_root(user: &str, command: &str) -> String {
    if user == "root" {
        command.to_owned()
    } else {
        format!("sudo -n sh -c {}", shell_quote(command))
    }
}

/// First line of `command`, cut to 80 characters, for error messages.
fn command_summary(command: &str) -> String {
    const MAX: usize = 80;
    let first = command.trim_start().lines().next().unwrap_or("");
    let mut summary: String = first.chars().take(MAX).collect();
    if first.chars().count() > MAX || command.trim().lines().nth(1).is_some() {
        summary.push_str(" ...");
    }
    summary
}

/// POSIX shell quoting: the result is one word that the shell reads back as `s` exactly.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;
    use sha2::{Digest as _, Sha256};
    use std::process::{Child, Command, Stdio};
    use std::time::Instant as StdInstant;

    const SSHD: &str = "/usr/sbin/sshd";
    const T: Duration = Duration::from_secs(30);

    /// A throwaway sshd on 127.0.0.1, killed on drop.
    struct Sshd {
        child: Child,
        port: u16,
    }

    impl Drop for Sshd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Sshd {
        fn start(dir: &Path, host_key: &Path, port: u16) -> Sshd {
            let log = std::fs::File::create(dir.join(format!("sshd-{port}.log"))).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
                .args(["-o", "ListenAddress=127.0.0.1", "-h"])
                .arg(host_key)
                .arg("-o")
                .arg(format!(
                    "AuthorizedKeysFile={}",
                    dir.join("authorized_keys").display()
                ))
                .arg("-o")
                .arg(format!("PidFile={}", dir.join("sshd.pid").display()))
                .args([
                    "-o",
                    "StrictModes=no",
                    "-o",
                    "PermitRootLogin=prohibit-password",
                ])
                .args(["-o", "PasswordAuthentication=no"])
                .args(["-o", "KbdInteractiveAuthentication=no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            for _ in 0..200 {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(dir.join(format!("sshd-{port}.log")));
                    panic!("sshd exited with {status}: {log:?}");
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { child, port };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            panic!("sshd did not listen on port {port}");
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// sshd as root can log us in as root; elsewhere these tests cannot run.
    fn sshd_available() -> bool {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        if !Path::new(SSHD).exists() || !root {
            eprintln!("skipped: needs {SSHD} and root to run a throwaway sshd");
            return false;
        }
        std::fs::create_dir_all("/run/sshd").unwrap();
        true
    }

    struct Fixture {
        dir: tempfile::TempDir,
        key: ClientKey,
        pins: Arc<Mutex<HostKeyPins>>,
        sshd: Sshd,
    }

    impl Fixture {
        fn new() -> Option<Fixture> {
            if !sshd_available() {
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let key = ClientKey::load_or_generate(&dir.path().join("client/id_ed25519")).unwrap();
            std::fs::write(
                dir.path().join("authorized_keys"),
                format!("{}\n", key.public_openssh()),
            )
            .unwrap();
            // Our own generated key doubles as host key: proves sshd reads our format.
            let host_key = dir.path().join("host_a");
            ClientKey::load_or_generate(&host_key).unwrap();
            let sshd = Sshd::start(dir.path(), &host_key, free_port());
            Some(Fixture {
                dir,
                key,
                pins: Arc::default(),
                sshd,
            })
        }

        fn target(&self) -> SshTarget {
            SshTarget {
                host: "node-a".into(),
                address: IpAddr::from([127, 0, 0, 1]),
                port: self.sshd.port,
                user: "root".into(),
            }
        }

        async fn connect(&self) -> Result<SshSession, SshError> {
            SshSession::connect(
                &self.target(),
                &self.key,
                self.pins.clone(),
                &SshOptions::default(),
            )
            .await
        }
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    const TRICKY: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "''",
        "'\\''",
        "\"double\" $HOME `id` $(id) \\n \\",
        "*.rs ? [a-z] ~ # ; & | < > ( ) { }",
        "line1\nline2\n",
        "tab\there",
        "ünïcødé ✓",
        "-n",
        "a'b'c'",
    ];

    #[test]
    fn shell_quote_round_trips_through_sh() {
        assert_eq!(shell_quote("abc/d-e_f.g:1=2"), "abc/d-e_f.g:1=2");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        for s in TRICKY {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert!(out.status.success(), "{s:?}");
            assert_eq!(text(&out.stdout), *s);
        }
    }

    #[test]
    fn command_summary_keeps_first_line_short() {
        assert_eq!(command_summary("  echo hi"), "echo hi");
        assert_eq!(command_summary("set -e\nrm -rf x"), "set -e ...");
        let long = "x".repeat(200);
        assert_eq!(command_summary(&long), format!("{} ...", "x".repeat(80)));
    }

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

    #[tokio::test]
    async fn connect_timeout_when_server_never_speaks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(conn);
        });
        let dir = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_generate(&dir.path().join("k")).unwrap();
        let target = SshTarget {
            host: "silent".into(),
            address: IpAddr::from([127, 0, 0, 1]),
            port,
            user: "root".into(),
        };
        let opts = SshOptions {
            connect_timeout: Duration::from_millis(300),
            ..SshOptions::default()
        };
        let err = SshSession::connect(&target, &key, Arc::default(), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("silent"), "{err}");
        hold.abort();
    }

    #[tokio::test]
    async fn refused_connection_names_host_and_address() {
        let dir = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_generate(&dir.path().join("k")).unwrap();
        let port = free_port();
        let target = SshTarget {
            host: "gone".into(),
            address: IpAddr::from([127, 0, 0, 1]),
            port,
            user: "root".into(),
        };
        let err = SshSession::connect(&target, &key, Arc::default(), &SshOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Connect { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("gone") && msg.contains(&format!("127.0.0.1:{port}")),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_collects_output_status_and_stdin() {
        let Some(fx) = Fixture::new() else { return };
        let s = fx.connect().await.unwrap();

        let out = s
            .exec("echo out; echo err >&2; exit 3", None, T)
            .await
            .unwrap();
        assert_eq!(
            (text(&out.stdout), text(&out.stderr), out.status),
            ("out\n", "err\n", 3)
        );

        let out = s.exec("tr a-z A-Z", Some(b"hello"), T).await.unwrap();
        assert_eq!(text(&out.stdout), "HELLO");

        // More than the 2 MiB channel window each way: feeding and reading must overlap.
        let big: Vec<u8> = (0..3 * 1024 * 1024)
            .map(|_| rand::thread_rng().r#gen())
            .collect();
        let out = s.exec("cat", Some(&big), T).await.unwrap();
        assert!(out.stdout == big, "echoed {} bytes", out.stdout.len());

        // A command that never reads its input must not hang the call.
        let out = s.exec("exit 0", Some(&big), T).await.unwrap();
        assert_eq!(out.status, 0);

        let out = s.exec("kill -KILL $$", None, T).await.unwrap();
        assert_eq!(out.status, 128 + 9);

        let out = s.exec_root("id -u", None, T).await.unwrap();
        assert_eq!(text(&out.stdout), "0\n");

        // The sudo wrapping, checked with a stand-in `sudo` that insists on -n.
        for tricky in TRICKY {
            let command = format!(
                "sudo() {{ [ \"$1\" = -n ] || exit 99; shift; \"$@\"; }}\n{}",
                as_root("kube", &format!("printf %s {}", shell_quote(tricky)))
            );
            let out = s.exec(&command, None, T).await.unwrap();
            assert_eq!((out.status, text(&out.stdout)), (0, *tricky));
        }

        let before = s.round_trips();
        assert_eq!(before, 6 + TRICKY.len() as u64);
        let n = 50;
        let start = StdInstant::now();
        for _ in 0..n {
            s.exec("true", None, T).await.unwrap();
        }
        let per = start.elapsed() / n;
        println!(
            "FIGURE exec round trip on loopback: {:.2} ms",
            per.as_secs_f64() * 1e3
        );
        assert_eq!(s.round_trips(), before + u64::from(n));
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_execs_share_one_connection() {
        let Some(fx) = Fixture::new() else { return };
        let s = fx.connect().await.unwrap();
        let start = StdInstant::now();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.exec(&format!("sleep 0.3; echo {i}"), None, T).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let out = task.await.unwrap().unwrap();
            assert_eq!(text(&out.stdout), format!("{i}\n"));
        }
        let elapsed = start.elapsed();
        println!("FIGURE 20 concurrent 0.3 s execs: {elapsed:?}");
        // 20 commands through 8 slots take three waves; more than 10 at once would
        // have been refused by sshd's MaxSessions.
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert_eq!(s.round_trips(), 20);
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_streams_large_file_atomically() {
        let Some(fx) = Fixture::new() else { return };
        let s = fx.connect().await.unwrap();
        let local = fx.dir.path().join("payload.bin");
        let mut data = vec![0u8; 50 * 1024 * 1024];
        rand::thread_rng().fill(&mut data[..]);
        std::fs::write(&local, &data).unwrap();
        let remote_dir = fx.dir.path().join("remote dir");
        std::fs::create_dir(&remote_dir).unwrap();
        let remote = remote_dir.join("it's.bin");
        let remote_str = remote.to_str().unwrap();
        std::fs::write(&remote, "old").unwrap();

        let start = StdInstant::now();
        s.upload_file(&local, remote_str, 0o640, Duration::from_secs(120))
            .await
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "FIGURE upload 50 MiB: {secs:.2} s = {:.0} MiB/s",
            50.0 / secs
        );
        let out = s
            .exec(&format!("sha256sum < {}", shell_quote(remote_str)), None, T)
            .await
            .unwrap();
        let local_sum = format!("{:x}", Sha256::digest(&data));
        assert_eq!(
            text(&out.stdout).split_whitespace().next(),
            Some(local_sum.as_str())
        );
        let meta = std::fs::metadata(&remote).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        let names: Vec<_> = std::fs::read_dir(&remote_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("it's.bin")]);

        // A short transfer is caught by the size check and leaves nothing behind.
        let short = remote_dir.join("short.bin");
        let script = upload_script(short.to_str().unwrap(), 0o644, 10, 7);
        let out = s.exec(&script, Some(b"12345"), T).await.unwrap();
        assert_eq!(out.status, 1);
        assert!(text(&out.stderr).contains("received 5 of 10 bytes"));
        assert_eq!(std::fs::read_dir(&remote_dir).unwrap().count(), 1);

        // A missing parent directory is created; one that cannot be is a Remote error.
        let nested = remote_dir.join("new/dir/nested.bin");
        s.upload_file(&local, nested.to_str().unwrap(), 0o644, T)
            .await
            .unwrap();
        assert!(nested.exists());
        let blocker = remote_dir.join("blocker");
        std::fs::write(&blocker, b"a file, not a directory").unwrap();
        let err = s
            .upload_file(&local, blocker.join("x").to_str().unwrap(), 0o644, T)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Remote { .. }), "{err}");
        assert!(err.to_string().contains("node-a"), "{err}");
        assert_eq!(s.round_trips(), 5);
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timeout_names_host_and_command_and_frees_the_channel() {
        let Some(fx) = Fixture::new() else { return };
        let s = fx.connect().await.unwrap();
        let start = StdInstant::now();
        let err = s
            .exec("sleep 31.5", None, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, SshError::Timeout { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("node-a") && msg.contains("sleep 31.5"),
            "{msg}"
        );
        // The channel slot came back: a full batch of channels still opens.
        let batch: Vec<_> = (0..MAX_CHANNELS)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.exec("echo ok", None, T).await })
            })
            .collect();
        for task in batch {
            assert_eq!(text(&task.await.unwrap().unwrap().stdout), "ok\n");
        }
        // OpenSSH ignores signal requests for root logins, so clean up by hand.
        s.exec("pkill -f 'sleep 3[1].5'", None, T).await.unwrap();
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_client_key_is_an_auth_error() {
        let Some(fx) = Fixture::new() else { return };
        let stranger = ClientKey::load_or_generate(&fx.dir.path().join("stranger")).unwrap();
        let err = SshSession::connect(
            &fx.target(),
            &stranger,
            fx.pins.clone(),
            &SshOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SshError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("node-a"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changed_host_key_is_refused_until_the_pin_is_removed() {
        let Some(mut fx) = Fixture::new() else { return };
        fx.connect().await.unwrap().close().await;
        let pinned_a = fx.pins.lock().unwrap().get("node-a").unwrap().to_owned();
        let host_a = PublicKey::from_openssh(&pinned_a).unwrap();

        // The system ssh accepts the host with our known_hosts text and strict checking.
        let known_hosts = fx.dir.path().join("known_hosts");
        let addresses = [(
            "node-a".to_string(),
            IpAddr::from([127, 0, 0, 1]),
            fx.sshd.port,
        )];
        let (port, client_key) = (fx.sshd.port, fx.dir.path().join("client/id_ed25519"));
        let system_ssh = |known_hosts: &Path| {
            Command::new("ssh")
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .arg("-i")
                .arg(&client_key)
                .args(["-p", &port.to_string(), "root@127.0.0.1", "echo", "via-ssh"])
                .output()
        };
        std::fs::write(
            &known_hosts,
            fx.pins.lock().unwrap().known_hosts_lines(&addresses),
        )
        .unwrap();
        if let Ok(out) = system_ssh(&known_hosts) {
            assert_eq!(
                text(&out.stdout),
                "via-ssh\n",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // Same address, new host key.
        fx.sshd.child.kill().unwrap();
        fx.sshd.child.wait().unwrap();
        let host_b = fx.dir.path().join("host_b");
        ClientKey::load_or_generate(&host_b).unwrap();
        fx.sshd = Sshd::start(fx.dir.path(), &host_b, port);
        let err = fx.connect().await.unwrap_err();
        match &err {
            SshError::HostKeyChanged {
                host, expected_fp, ..
            } => {
                assert_eq!(host, "node-a");
                assert_eq!(expected_fp, &fingerprint(&host_a));
            }
            other => panic!("expected HostKeyChanged, got {other}"),
        }
        assert!(err.to_string().contains("destroy the scenario"), "{err}");
        assert_eq!(
            fx.pins.lock().unwrap().get("node-a"),
            Some(pinned_a.as_str())
        );
        if let Ok(out) = system_ssh(&known_hosts) {
            assert!(
                !out.status.success(),
                "system ssh accepted a changed host key"
            );
        }

        assert!(fx.pins.lock().unwrap().remove("node-a"));
        fx.connect().await.unwrap().close().await;
        let pinned_b = fx.pins.lock().unwrap().get("node-a").unwrap().to_owned();
        assert_ne!(pinned_b, pinned_a);
    }
}
