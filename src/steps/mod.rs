//! The steps of a scenario (Molecule's vocabulary): each lives in its own module with one
//! entry point and one output type. The runner orders them, records their outcome in the
//! state and builds the report from what they return.

pub mod converge;
pub mod create;
pub mod destroy;
pub mod drift;
pub mod idempotence;
pub mod side_effect;
pub mod syntax;
pub mod verify;

use std::path::PathBuf;

use crate::artifacts::{ArtifactError, Bundle};
use crate::cluster::{Cluster, ClusterError};
use crate::connections::ConnectionError;
use crate::driver::{DriverContext, DriverError};
use crate::engine::EngineError;
use crate::inventory::Inventory;
use crate::pki::{ClusterPki, PkiError};
use crate::report::{CaseOutcome, Logger};
use crate::roles::{self, InstallContext, Plan, RoleError, Scope};
use crate::scenario::Scenario;
use crate::ssh::SshError;
use crate::state::{StateDir, StateError};
use crate::templates::{TemplateError, Templates};

/// What every step reads: the project, the scenario, its state directory, the logger.
pub struct Workspace {
    pub root: PathBuf,
    pub scenario: Scenario,
    pub state_dir: StateDir,
    pub log: Logger,
}

/// Why a step could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("scenario '{0}' has no hosts: run `kubeforge create {0}` first")]
    NotCreated(String),
    #[error("{0}")]
    Drift(String),
}

/// A testcase a step reports beside its own: a verify check, something not exercised.
#[derive(Debug, Clone)]
pub struct SubCase {
    /// The JUnit class suffix: `verify`, `not-exercised`.
    pub group: &'static str,
    pub name: String,
    pub seconds: f64,
    pub outcome: CaseOutcome,
    pub output: String,
    pub properties: Vec<(String, String)>,
}

/// What a step that ran tells the report: a one-line summary, JUnit properties, the
/// testcases it adds, and, for a step that ran to the end but did not pass, why.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    pub summary: String,
    pub properties: Vec<(String, String)>,
    pub subcases: Vec<SubCase>,
    pub failure: Option<String>,
}

impl Workspace {
    /// The artifacts: the local bundle, or verified downloads kept in the state directory.
    pub fn bundle(&self) -> Result<Bundle, StepError> {
        let settings = &self.scenario.artifacts;
        match (&settings.download_url, &settings.pins) {
            (Some(url), Some(pins)) => {
                let pins = self.scenario.dir.join(pins);
                let cache = self.state_dir.root.join("downloads");
                self.log
                    .info(format!("{}: artifacts from {url}", self.scenario.name));
                Ok(tokio::task::block_in_place(|| {
                    Bundle::download(url, &pins, &cache)
                })?)
            }
            _ => Ok(Bundle::load(&Bundle::default_dir())?),
        }
    }

    /// The installer's plan for `inventory`, limited to `scope`, with the cluster it derived.
    pub fn plan(
        &self,
        inventory: &Inventory,
        pki: &ClusterPki,
        scope: &Scope,
    ) -> Result<(Plan, Cluster), StepError> {
        let templates = Templates::load(&roles::templates_dir(&self.root))?;
        let bundle = self.bundle()?;
        bundle.require_kubernetes(&self.scenario.cluster.kubernetes_version)?;
        let cluster = Cluster::derive(&self.scenario, inventory)?;
        let ctx = InstallContext {
            cluster: &cluster,
            workloads: &self.scenario.workloads,
            prune_objects: self.scenario.prune_objects,
            pki,
            bundle: &bundle,
            templates: &templates,
        };
        let plan = roles::plan(&ctx, scope)?;
        Ok((plan, cluster))
    }

    /// The cluster's CAs and certificates in the state directory.
    pub fn pki(&self) -> Result<ClusterPki, StepError> {
        Ok(ClusterPki::open(
            &self.state_dir.pki_dir(),
            &self.scenario.cluster.name,
        )?)
    }

    /// What a driver needs to create or destroy `instance`'s hosts.
    pub fn driver_context<'a>(&'a self, instance: &'a str) -> DriverContext<'a> {
        DriverContext {
            project_root: &self.root,
            state_dir: &self.state_dir,
            instance,
            log: &self.log,
        }
    }

    /// `scenario: message`, as every step logs.
    pub fn say(&self, message: impl AsRef<str>) {
        self.log
            .info(format!("{}: {}", self.scenario.name, message.as_ref()));
    }
}
