//! SSH transport: one pinned, key-authenticated russh connection per host, many
//! exec channels over it, and streaming file upload.
//!
//! Trust model: the client key is generated per scenario; host keys are trusted on
//! first use and pinned in the scenario state, so a rebuilt or impersonated host is
//! refused instead of silently accepted.
//!
//! [`ClientKey`] and [`HostKeyPins`] (`keys`) are the scenario's identities, [`SshSession`]
//! (`session`) is the connection with its exec channels and uploads, and [`shell_quote`]
//! (`quote`) builds the remote command lines.

mod keys;
mod quote;
mod session;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::timeouts::TimeoutScale;

pub use keys::{ClientKey, HostKeyPins};
pub use quote::shell_quote;
pub use session::{ExecOutput, SshSession};

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
    /// Multiplies the connect timeout and every command's timeout (slow platforms).
    pub timeout_scale: TimeoutScale,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(10),
            keepalive_max: 3,
            inactivity_timeout: None,
            timeout_scale: TimeoutScale::NORMAL,
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
