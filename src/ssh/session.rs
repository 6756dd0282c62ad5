//! One authenticated connection per host: the handshake against the pinned host key, then
//! exec channels (several at once, each with streamed stdin) and streaming file uploads.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::PublicKey;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig, client};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::keys::{ClientKey, HostKeyPins};
use super::quote::{as_root, command_summary, shell_quote};
use super::{SshError, SshOptions, SshTarget, io_err};
use crate::timeouts::TimeoutScale;

/// Concurrent channels per connection: OpenSSH's MaxSessions defaults to 10, keep headroom.
pub(super) const MAX_CHANNELS: usize = 8;
/// Upload/stdin chunk read from the local source per channel write.
const CHUNK: usize = 256 * 1024;

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
    timeout_scale: TimeoutScale,
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
        let connect_timeout = opts.timeout_scale.of(opts.connect_timeout);
        let handle = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| SshError::Timeout {
                host: target.host.clone(),
                what: format!("connecting to {address}"),
                after: connect_timeout,
            })??;
        Ok(SshSession {
            inner: Arc::new(Inner {
                host: target.host.clone(),
                user: target.user.clone(),
                handle,
                slots: Semaphore::new(MAX_CHANNELS),
                round_trips: AtomicU64::new(0),
                timeout_scale: opts.timeout_scale,
            }),
        })
    }

    /// Run `command` through the remote user's shell, feeding `stdin` (then EOF; with
    /// `None` the command sees EOF at once). `timeout` (times the session's timeout
    /// scale) bounds the whole call, including waiting for a free channel slot. On timeout
    /// the channel is closed and SIGTERM is requested, but OpenSSH honours signal requests
    /// only for non-root logins: as root the command may run on (and hold one of the
    /// server's MaxSessions) until it ends.
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
        let len = std::fs::metadata(local)
            .map_err(io_err(format!("reading {}", local.display())))?
            .len();
        let script = upload_script(remote_path, mode, len, rand::random::<u64>());
        let out = self.feed_file(&script, local, len, &what, timeout).await?;
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

    /// Runs `command` as root with the content of `local` as its stdin, streamed in chunks
    /// (an image straight into `ctr images import -`); its exit status is the caller's.
    pub async fn exec_root_with_file(
        &self,
        command: &str,
        local: &Path,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let what = format!(
            "running `{}` as root on {}",
            command_summary(command),
            local.display()
        );
        let len = std::fs::metadata(local)
            .map_err(io_err(format!("reading {}", local.display())))?
            .len();
        self.feed_file(command, local, len, &what, timeout).await
    }

    /// Runs `command` as root, its stdin the first `len` bytes of `local` (a file growing
    /// meanwhile must not make a size check fail).
    async fn feed_file(
        &self,
        command: &str,
        local: &Path,
        len: u64,
        what: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(io_err(format!("opening {}", local.display())))?;
        self.run(
            &as_root(&self.inner.user, command),
            what,
            Some(file.take(len)),
            timeout,
        )
        .await
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
        let timeout = self.inner.timeout_scale.of(timeout);
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
pub(super) fn upload_script(remote_path: &str, mode: u32, len: u64, nonce: u64) -> String {
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
