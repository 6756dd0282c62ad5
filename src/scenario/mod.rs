//! The scenario file: `scenarios/<name>/scenario.yml`, parsed into a typed [`Scenario`].
//!
//! Parsing is strict (unknown keys, wrong types and duplicated keys are errors), and the
//! rules a scenario must follow beyond its types (`rules/`) are checked at load too: every
//! error carries the file, line and column, so a mistake never turns into a half-created
//! cluster. The settings' types live in `settings.rs`; the check against the artifacts that
//! would install the scenario ([`Scenario::check_artifacts`]) in `bundle.rs`.

mod bundle;
pub mod checks;
mod located;
mod rules;
mod settings;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use checks::{CheckEntry, DeclaredCheck};
use located::{Locations, describe_yaml_error};
use rules::Refusal;

use crate::timeouts::TimeoutScale;
pub use settings::{
    ArtifactSettings, ClusterSettings, DriverConfig, EtcdSettings, Fault, FaultAction, Group,
    Platform, PodNetwork, Step, VagrantProvider,
};

/// A whole scenario: hosts, driver, cluster settings, its own workloads and checks, and
/// the step sequence.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    /// The scenario file this was read from (for error messages).
    pub file: PathBuf,
    /// The directory holding the scenario file.
    pub dir: PathBuf,
    pub driver: DriverConfig,
    pub platforms: Vec<Platform>,
    pub cluster: ClusterSettings,
    pub artifacts: ArtifactSettings,
    /// The scenario's own Kubernetes manifests, applied after the cluster is up.
    pub workloads: Vec<Workload>,
    /// Delete the API objects kubeforge applied before and no longer renders (a workload
    /// dropped from a manifest); without it they are named once and stay in the cluster.
    pub prune_objects: bool,
    /// What the `side_effect` step does to the running cluster.
    pub faults: Vec<Fault>,
    /// The scenario's own checks, run by verify after the built-in ones.
    pub checks: Vec<DeclaredCheck>,
    pub sequence: Vec<Step>,
    /// The factor every timeout is multiplied by: the file's `timeout_scale`, else the
    /// driver's (see [`DriverConfig::timeout_scale`]).
    pub timeout_scale: TimeoutScale,
    /// Where each setting is written, for errors found after parsing.
    #[serde(skip)]
    locations: Locations,
}

/// A manifest of the scenario's own objects (`workloads:` in the scenario file).
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// The path as the scenario file gives it, relative to the scenario directory.
    pub path: PathBuf,
    pub text: String,
}

/// The on-disk shape of `scenario.yml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    driver: DriverConfig,
    platforms: Vec<Platform>,
    #[serde(default)]
    cluster: ClusterSettings,
    #[serde(default)]
    artifacts: ArtifactSettings,
    #[serde(default)]
    workloads: Vec<PathBuf>,
    #[serde(default)]
    prune_objects: bool,
    #[serde(default)]
    faults: Vec<Fault>,
    #[serde(default)]
    checks: Vec<CheckEntry>,
    #[serde(default = "settings::default_sequence")]
    sequence: Vec<Step>,
    #[serde(default)]
    timeout_scale: Option<TimeoutScale>,
}

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read scenario file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("no scenario named '{name}': {dir} does not exist (scenarios: {known})")]
    Unknown {
        name: String,
        dir: PathBuf,
        known: String,
    },
}

impl Scenario {
    /// Loads `scenarios/<name>/scenario.yml` under `root`.
    pub fn load_named(root: &Path, name: &str) -> Result<Scenario, ScenarioError> {
        let dir = root.join("scenarios").join(name);
        if !dir.is_dir() {
            return Err(ScenarioError::Unknown {
                name: name.to_string(),
                dir,
                known: list_scenarios(root).join(", "),
            });
        }
        Scenario::load(name, &dir.join("scenario.yml"))
    }

    /// Parses and validates one scenario file.
    pub fn load(name: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(name, path, &text)
    }

    /// Parses scenario text and checks its rules; `path` is only used to name the file in
    /// errors.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| {
            let ((line, column), message) = describe_yaml_error(&e);
            ScenarioError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        let timeout_scale = file
            .timeout_scale
            .unwrap_or_else(|| file.driver.timeout_scale());
        let mut scenario = Scenario {
            name: name.to_string(),
            file: path.to_path_buf(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            driver: file.driver,
            platforms: file.platforms,
            cluster: file.cluster,
            artifacts: file.artifacts,
            workloads: Vec::new(),
            prune_objects: file.prune_objects,
            faults: file.faults,
            checks: Vec::new(),
            sequence: file.sequence,
            timeout_scale,
            locations: Locations::of(text),
        };
        scenario.checks = file
            .checks
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.into_check(i))
            .collect::<Result<_, _>>()
            .map_err(|r| scenario.refused(r))?;
        rules::check(&scenario)
            .and_then(|()| rules::workloads_have_a_cluster(&scenario, file.workloads.len()))
            .map_err(|r| scenario.refused(r))?;
        scenario.workloads = scenario.read_workloads(&file.workloads)?;
        rules::workloads(&scenario).map_err(|r| scenario.refused(r))?;
        Ok(scenario)
    }

    /// The error for a broken rule, at the first of its settings the file writes (else
    /// where the first one would go).
    fn refused(&self, refusal: Refusal) -> ScenarioError {
        let path = refusal
            .at
            .iter()
            .find(|p| self.locations.has(p))
            .or(refusal.at.first())
            .map_or("", String::as_str);
        let (line, column) = self.locations.at(path);
        ScenarioError::Invalid {
            path: self.file.clone(),
            line,
            column,
            message: refusal.message,
        }
    }

    /// Reads each workload manifest (relative to the scenario directory) and checks that
    /// it holds Kubernetes objects; a problem is located at the entry that names the file.
    fn read_workloads(&self, paths: &[PathBuf]) -> Result<Vec<Workload>, ScenarioError> {
        paths
            .iter()
            .enumerate()
            .map(|(i, rel)| {
                let entry = rel.display().to_string();
                let err =
                    |message: String| self.refused(Refusal::new(format!("workloads.{i}"), message));
                let full = self.dir.join(rel);
                let manifest = std::fs::read_to_string(&full).map_err(|e| {
                    err(format!(
                        "workload {entry}: cannot read {}: {e}",
                        full.display()
                    ))
                })?;
                crate::engine::ApiObject::from_manifest(&format!("workload {entry}"), &manifest)
                    .map_err(|e| err(e.to_string()))?;
                Ok(Workload {
                    path: rel.clone(),
                    text: manifest,
                })
            })
            .collect()
    }

    /// Each platform's last address octet, in platform order.
    pub fn address_octets(&self) -> Vec<u8> {
        let mut per_digit = [0u8; 3];
        self.platforms
            .iter()
            .map(|p| {
                let digit = p.groups.iter().map(|g| g.plan_digit()).min().unwrap_or(2);
                let n = &mut per_digit[digit as usize];
                *n = n.saturating_add(1);
                // Saturates rather than wraps: 255 is refused as an octet.
                p.address_octet
                    .unwrap_or(100u8.saturating_add(10 * digit).saturating_add(*n))
            })
            .collect()
    }

    pub fn hosts_in(&self, group: Group) -> impl Iterator<Item = &Platform> {
        self.platforms.iter().filter(move |p| p.in_group(group))
    }
}

/// Names of the scenarios under `root/scenarios`, sorted.
pub fn list_scenarios(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("scenarios"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("scenario.yml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
