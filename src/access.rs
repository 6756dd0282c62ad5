//! How a user reaches a scenario by hand: an SSH login on a host (the scenario's key and
//! pinned host keys) and the bundle's kubectl with the admin kubeconfig converge wrote.

use std::path::PathBuf;

use crate::artifacts::{ArtifactError, Bundle};
use crate::state::{ScenarioState, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("scenario '{0}' has no hosts: run `kubeforge create {0}` first")]
    NotCreated(String),
    #[error("unknown host '{host}' (hosts: {known})")]
    UnknownHost { host: String, known: String },
    #[error("{0}: no admin kubeconfig; converge the scenario first")]
    NoKubeconfig(PathBuf),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// `ssh` arguments that log in to `host` with the scenario's key and pinned host keys.
pub fn login_command(
    scenario: &str,
    state: &ScenarioState,
    state_dir: &StateDir,
    host: &str,
) -> Result<Vec<String>, AccessError> {
    let inv = state
        .inventory
        .as_ref()
        .ok_or_else(|| AccessError::NotCreated(scenario.to_string()))?;
    let h = inv.get(host).ok_or_else(|| AccessError::UnknownHost {
        host: host.to_string(),
        known: inv.names().join(", "),
    })?;
    let key = inv.ssh_key.clone().unwrap_or_else(|| state_dir.ssh_key());
    Ok(vec![
        "ssh".into(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", state_dir.known_hosts().display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-p".into(),
        h.ssh_port.to_string(),
        format!("{}@{}", h.user, h.ssh_address),
    ])
}

/// The bundle's kubectl and the admin kubeconfig to run it with.
pub fn kubectl_command(state_dir: &StateDir) -> Result<(PathBuf, PathBuf), AccessError> {
    let kubeconfig = state_dir.kubeconfig();
    if !kubeconfig.exists() {
        return Err(AccessError::NoKubeconfig(kubeconfig));
    }
    let (kubectl, _) = Bundle::load(&Bundle::default_dir())?.get("kubectl")?;
    Ok((kubectl, kubeconfig))
}
