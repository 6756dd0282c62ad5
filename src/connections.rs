//! The open SSH sessions of a run, one per host, opened once and shared by every step.
//! Host keys are pinned on first contact; the pins and a `known_hosts` for `login` are
//! written only when they change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::inventory::{Host, Inventory};
use crate::ssh::{ClientKey, HostKeyPins, SshError, SshOptions, SshSession, SshTarget};
use crate::state::{StateDir, StateError};
use crate::timeouts::TimeoutScale;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}: SSH key for the existing hosts not found")]
    MissingKey(PathBuf),
    #[error("unknown host '{host}' (hosts: {known})")]
    UnknownHost { host: String, known: String },
}

/// How many hosts a run works on at once unless told otherwise (`--hosts-at-once`).
pub const DEFAULT_HOSTS_AT_ONCE: usize = 32;

/// Sessions by host name.
pub struct Connections {
    sessions: BTreeMap<String, SshSession>,
    /// The platform's: every session's timeouts and verify's windows are multiplied by it.
    timeout_scale: TimeoutScale,
    /// How many hosts are connected to, gathered from or converged at once: a large
    /// inventory must not open every session and run every host's scripts together.
    hosts_at_once: usize,
}

impl Connections {
    /// No sessions yet; those opened later scale their timeouts by `timeout_scale`.
    pub fn new(timeout_scale: TimeoutScale) -> Connections {
        Connections {
            sessions: BTreeMap::new(),
            timeout_scale,
            hosts_at_once: DEFAULT_HOSTS_AT_ONCE,
        }
    }

    /// Works on at most `n` hosts at once (at least one).
    pub fn set_hosts_at_once(&mut self, n: usize) {
        self.hosts_at_once = n.max(1);
    }

    /// Runs `work` (one future per host), at most [`hosts_at_once`](Self::set_hosts_at_once)
    /// at a time; results in input order.
    pub async fn per_host<F: Future>(&self, work: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        use futures::StreamExt;
        futures::stream::iter(work)
            .buffered(self.hosts_at_once)
            .collect()
            .await
    }

    pub fn timeout_scale(&self) -> TimeoutScale {
        self.timeout_scale
    }

    /// Opens a session to every host of `inventory` that has none yet.
    pub async fn connect_all(
        &mut self,
        inventory: &Inventory,
        state_dir: &StateDir,
    ) -> Result<(), ConnectionError> {
        let todo: Vec<&Host> = inventory
            .hosts
            .iter()
            .filter(|h| !self.sessions.contains_key(&h.name))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let key = match &inventory.ssh_key {
            // The user's key must exist: never generate one in their place.
            Some(path) if !path.exists() => return Err(ConnectionError::MissingKey(path.clone())),
            Some(path) => ClientKey::load_or_generate(path)?,
            None => ClientKey::load_or_generate(&state_dir.ssh_key())?,
        };
        let pins_file = state_dir.host_key_pins(inventory);
        let loaded = HostKeyPins::load(&pins_file)?;
        let pins = Arc::new(Mutex::new(loaded.clone()));
        let opts = SshOptions {
            timeout_scale: self.timeout_scale,
            ..SshOptions::default()
        };
        let results = self
            .per_host(todo.iter().map(|h| {
                let target = SshTarget {
                    host: h.name.clone(),
                    address: h.ssh_address,
                    port: h.ssh_port,
                    user: h.user.clone(),
                };
                let (key, pins, opts) = (&key, pins.clone(), &opts);
                async move { SshSession::connect(&target, key, pins, opts).await }
            }))
            .await;
        let pins = pins.lock().expect("pins lock").clone();
        if pins != loaded {
            pins.save(&pins_file)?;
        }
        let addresses: Vec<_> = inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.ssh_address, h.ssh_port))
            .collect();
        let known_hosts = pins.known_hosts_lines(&addresses);
        if std::fs::read_to_string(state_dir.known_hosts()).ok() != Some(known_hosts.clone()) {
            crate::state::write_atomic(&state_dir.known_hosts(), known_hosts.as_bytes(), 0o644)?;
        }
        for (h, r) in todo.iter().zip(results) {
            self.sessions.insert(h.name.clone(), r?);
        }
        Ok(())
    }

    /// The open session to `host`.
    pub fn session(&self, host: &str) -> Result<SshSession, ConnectionError> {
        self.sessions
            .get(host)
            .cloned()
            .ok_or_else(|| ConnectionError::UnknownHost {
                host: host.to_string(),
                known: self.sessions.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Drops the sessions to `hosts` (gone, or back with another connection to open).
    pub async fn forget(&mut self, hosts: &[String]) {
        for host in hosts {
            if let Some(s) = self.sessions.remove(host) {
                s.close().await;
            }
        }
    }

    /// Closes every session (before the hosts go away).
    pub async fn close_all(&mut self) {
        for (_, s) in std::mem::take(&mut self.sessions) {
            s.close().await;
        }
    }
}
