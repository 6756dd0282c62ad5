//! How the engine reaches a host: run a root shell script, stream a file to a path or into a
//! command. The SSH session
//! implements it; the engine's tests use a local shell to run the real scripts.

use std::path::Path;
use std::time::Duration;

pub use crate::ssh::ExecOutput;

/// A transport failure (connection, timeout, channel), with its own message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TransportError(Box<dyn std::error::Error + Send + Sync>);

impl From<crate::ssh::SshError> for TransportError {
    fn from(e: crate::ssh::SshError) -> TransportError {
        TransportError(Box::new(e))
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> TransportError {
        TransportError(Box::new(e))
    }
}

pub trait Transport: Sync {
    fn exec_root(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<ExecOutput, TransportError>> + Send;
    fn upload_file(
        &self,
        local: &Path,
        remote_path: &str,
        mode: u32,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send;
    /// Runs `command` as root with `local`'s content streamed to its stdin.
    fn exec_root_with_file(
        &self,
        command: &str,
        local: &Path,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<ExecOutput, TransportError>> + Send;
}

impl Transport for crate::ssh::SshSession {
    async fn exec_root(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        Ok(crate::ssh::SshSession::exec_root(self, command, stdin, timeout).await?)
    }
    async fn upload_file(
        &self,
        local: &Path,
        remote_path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        Ok(crate::ssh::SshSession::upload_file(self, local, remote_path, mode, timeout).await?)
    }
    async fn exec_root_with_file(
        &self,
        command: &str,
        local: &Path,
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        Ok(crate::ssh::SshSession::exec_root_with_file(self, command, local, timeout).await?)
    }
}
