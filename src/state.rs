//! A scenario's state directory: what exists for it right now, so steps can run one at a time
//! (`kubeforge create default`, later `kubeforge verify default`) like Molecule.
//!
//! Layout of `<project>/.kubeforge/<scenario>/`:
//! `state.json` (instance, hosts, step results), `ssh/` (client key, pinned host keys),
//! `pki/` (the cluster CA and certificates), `kubeconfig` (admin access).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files;
use crate::inventory::Inventory;

/// The persisted part of a scenario's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioState {
    /// Unique prefix of everything the driver created (container, network and volume names).
    pub instance: String,
    /// The hosts as the driver created them; `None` until `create` succeeded.
    pub inventory: Option<Inventory>,
    /// Network created by the driver (name and subnet), for `list` and cleanup.
    pub network: Option<String>,
    /// Outcome of each step last time it ran.
    pub steps: BTreeMap<String, StepRecord>,
}

/// How a step went the last time it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub passed: bool,
    pub seconds: f64,
    pub at: String,
}

/// Failures reading or writing a state directory; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{path}: state file is corrupt ({source}); run `kubeforge destroy` for this scenario or delete the file"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Where a scenario keeps its state.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// The state directory of `scenario` in the project at `project_root`
    /// (overridable with KUBEFORGE_STATE_DIR for CI caches and tests).
    pub fn for_scenario(project_root: &Path, scenario: &str) -> StateDir {
        let base = std::env::var_os("KUBEFORGE_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| project_root.join(".kubeforge"));
        StateDir {
            root: base.join(scenario),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn ssh_key(&self) -> PathBuf {
        self.root.join("ssh").join("id_ed25519")
    }
    /// The pinned host keys of `inventory`'s hosts: with the run's state for hosts the run
    /// creates; beside it, surviving `destroy`, for hosts it keeps (driver `existing`).
    pub fn host_key_pins(&self, inventory: &Inventory) -> PathBuf {
        if inventory.kept_hosts {
            let scenario = self.root.file_name().unwrap_or_default();
            let base = self.root.parent().unwrap_or(&self.root);
            base.join("kept-hosts")
                .join(scenario)
                .join("host_keys.json")
        } else {
            self.root.join("ssh").join("host_keys.json")
        }
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("ssh").join("known_hosts")
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    /// A name unique to this scenario in this checkout, so two scenarios (or two clones)
    /// running at once never share container, network or volume names.
    pub fn instance_name(&self, scenario: &str) -> String {
        let canonical = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let digest = files::sha256_hex(canonical.to_string_lossy().as_bytes());
        let short = &digest[..6];
        let mut name: String = scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(20)
            .collect();
        name.make_ascii_lowercase();
        format!("kf-{name}-{short}")
    }

    /// Creates the state directory if it does not exist yet.
    pub fn ensure(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(|source| StateError::Io {
            path: self.root.clone(),
            action: "create state directory",
            source,
        })
    }

    /// Loads the state, or a fresh one with its instance name when none exists yet.
    pub fn load(&self, scenario: &str) -> Result<ScenarioState, StateError> {
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.ensure()?;
                Ok(ScenarioState {
                    instance: self.instance_name(scenario),
                    ..Default::default()
                })
            }
            Err(source) => Err(StateError::Io {
                path,
                action: "read state",
                source,
            }),
        }
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn save(&self, state: &ScenarioState) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.state_file();
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&path, &json, 0o600)
    }
}

/// [`files::write_atomic`] that first creates the parent directory, with errors naming the
/// file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let io = |action, source| StateError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
    }
    files::write_atomic(path, bytes, mode).map_err(|e| io("write", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_differ_per_scenario_and_checkout() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = StateDir {
            root: a.path().join("default"),
        };
        let sb = StateDir {
            root: b.path().join("default"),
        };
        assert_ne!(sa.instance_name("default"), sb.instance_name("default"));
        assert_eq!(sa.instance_name("default"), sa.instance_name("default"));
        assert!(
            sa.instance_name("My_Scenario")
                .starts_with("kf-my-scenario-")
        );
    }

    #[test]
    fn state_round_trips_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sd = StateDir {
            root: d.path().join("s"),
        };
        let mut st = sd.load("s").unwrap();
        assert!(st.inventory.is_none());
        st.network = Some("net".into());
        sd.save(&st).unwrap();
        let again = sd.load("s").unwrap();
        assert_eq!(again.network.as_deref(), Some("net"));
        assert_eq!(again.instance, st.instance);
        let mode = std::fs::metadata(sd.state_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
