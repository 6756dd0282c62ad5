//! The installer's roles: plain functions from the derived cluster to desired resources.
//!
//! Each role returns tasks per host; [`plan`] orders them into phases. Nothing here touches
//! a host: the engine observes, diffs and applies what the roles describe.

pub mod addons;
pub mod builders;
pub mod etcd;
pub mod kubernetes;
pub mod network;
pub mod runtime;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::artifacts::{ArtifactError, Bundle};
use crate::cluster::Cluster;
use crate::cluster::paths::OBJECT_RECORD;
use crate::engine::{
    HostPlan, ManifestError, ObjectRecord, ObjectRef, Phase, PlanError, Resource, Task,
};
use crate::pki::{ClusterPki, PkiError};
use crate::scenario::Workload;
use crate::templates::{TemplateError, Templates};
use builders::task;

/// Everything a role may read: the derived cluster, the PKI, the bundle, the templates,
/// the scenario's workloads.
pub struct InstallContext<'a> {
    pub cluster: &'a Cluster,
    pub workloads: &'a [Workload],
    /// Delete API objects kubeforge applied before and no longer renders (the scenario's
    /// `prune_objects`); else they are named once and kept.
    pub prune_objects: bool,
    pub pki: &'a ClusterPki,
    pub bundle: &'a Bundle,
    pub templates: &'a Templates,
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A rendered manifest that does not hold Kubernetes objects.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A static pod's inputs name a task its host does not have (a bug in a role).
    #[error("no task named '{0}' to derive inputs from")]
    UnknownTask(String),
    #[error(
        "cluster.network {network} needs {} in the artifacts bundle ({bundle}); they cannot be built offline: give the scenario an `artifacts` download_url and pins that carry them, or use network: bridge",
        missing.join(", ")
    )]
    MissingArtifacts {
        network: &'static str,
        missing: Vec<String>,
        bundle: String,
    },
}

/// The roles kubeforge knows, as selected by `--tags`.
pub const ROLES: &[&str] = &[
    "etcd",
    "runtime",
    "network",
    "kubernetes",
    "addons",
    "workloads",
];

/// Something the installer renders (and snapshots pin) but this run does not exercise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotExercised {
    /// `add-on dns`, `network flannel-calico`.
    pub what: String,
    pub reason: String,
}

/// What a converge does: ordered phases, and what it leaves out and why.
#[derive(Debug, Clone)]
pub struct Plan {
    pub phases: Vec<Phase>,
    pub not_exercised: Vec<NotExercised>,
    /// The control machine's admin kubeconfig (written by apply, mode 0600: it holds the
    /// admin key), for clusters with Kubernetes nodes.
    pub control_kubeconfig: Option<String>,
}

/// The part of the installer's plan a run covers: the whole plan by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only these roles (`--tags`); all when empty.
    pub tags: Vec<String>,
    /// Only what is written as a file (`--only-files`): directories, files, templates,
    /// units, certificates, uploaded binaries, links. No service is
    /// started, no command run, no image imported, no API object applied: the file-level
    /// work `cargo xtask bench` compares with Ansible and scales to many hosts.
    pub only_files: bool,
}

impl Scope {
    fn whole(&self) -> bool {
        *self == Scope::default()
    }
}

/// The ordered phases of a converge, limited to `scope`.
pub fn plan(ctx: &InstallContext, scope: &Scope) -> Result<Plan, RoleError> {
    let tags = &scope.tags;
    let wanted = |role: &str| tags.is_empty() || tags.iter().any(|t| t == role);
    let mut phases = Vec::new();
    let mut not_exercised = Vec::new();
    if wanted("etcd") {
        phases.extend(etcd::phases(ctx)?);
    }
    // Scenarios without Kubernetes nodes (etcd only) get no Kubernetes phases.
    let has_nodes = !ctx.cluster.nodes.is_empty();
    if has_nodes && wanted("runtime") {
        phases.extend(runtime::phases(ctx)?);
    }
    if has_nodes && wanted("network") {
        let network = network::plan(ctx)?;
        phases.extend(network.phases);
        not_exercised.extend(network.not_exercised);
    }
    let mut control_kubeconfig = None;
    if has_nodes && wanted("kubernetes") {
        phases.extend(kubernetes::phases(ctx)?);
        control_kubeconfig = Some(kubernetes::control_kubeconfig(ctx)?);
    }
    if has_nodes && wanted("addons") {
        let addons = addons::plan(ctx)?;
        phases.extend(addons.phases);
        not_exercised.extend(addons.not_exercised);
    }
    if has_nodes && wanted("workloads") {
        phases.extend(workloads::phases(ctx)?);
    }
    // Only a whole plan knows which objects are no longer rendered.
    if scope.whole() {
        let records = object_records(ctx, &phases)?;
        if !records.hosts.is_empty() {
            phases.push(records);
        }
    }
    if scope.only_files {
        phases = only_files(phases);
    }
    Ok(Plan {
        phases,
        not_exercised,
        control_kubeconfig,
    })
}

/// The record of every API object the plan applies, on each host that applies them: derived
/// from the plan, so an object dropped from a template or a workload manifest is found (and
/// deleted when the scenario prunes).
fn object_records(ctx: &InstallContext, phases: &[Phase]) -> Result<Phase, RoleError> {
    let mut by_host: BTreeMap<&str, (&str, BTreeSet<ObjectRef>)> = BTreeMap::new();
    for phase in phases {
        for hp in &phase.hosts {
            for r in hp.tasks.iter().flat_map(|t| &t.resources) {
                if let Resource::ApiObject { kubectl, object } = r {
                    let (_, objects) = by_host
                        .entry(&hp.host)
                        .or_insert((kubectl, BTreeSet::new()));
                    objects.insert(ObjectRef::of(object));
                }
            }
        }
    }
    let hosts = by_host
        .into_iter()
        .map(|(host, (kubectl, objects))| {
            let record = ObjectRecord {
                kubectl: kubectl.to_string(),
                path: OBJECT_RECORD.to_string(),
                objects,
                prune: ctx.prune_objects,
            };
            let record = task(
                "kubernetes",
                "API object record",
                vec![Resource::ObjectRecord(record)],
            );
            (host.to_string(), vec![record])
        })
        .collect();
    phase("API object record", hosts)
}

/// `phases` with only their file-level resources, dropping tasks, hosts and phases left
/// with nothing (no service remains to be notified).
fn only_files(phases: Vec<Phase>) -> Vec<Phase> {
    phases
        .into_iter()
        .map(|phase| Phase {
            hosts: phase
                .hosts
                .into_iter()
                .map(|hp| HostPlan {
                    tasks: hp
                        .tasks
                        .into_iter()
                        .map(|task| Task {
                            resources: task
                                .resources
                                .into_iter()
                                .filter(Resource::is_file_level)
                                .collect(),
                            ..task
                        })
                        .filter(|task| !task.resources.is_empty())
                        .collect(),
                    ..hp
                })
                .filter(|hp| !hp.tasks.is_empty())
                .collect(),
            ..phase
        })
        .filter(|phase| !phase.hosts.is_empty())
        .collect()
}

/// Builds a phase from per-host task lists, dropping hosts with nothing to do; each host's
/// services must be notified by tasks that exist (see [`HostPlan::new`]).
pub fn phase(name: &str, hosts: Vec<(String, Vec<Task>)>) -> Result<Phase, RoleError> {
    Ok(Phase {
        name: name.to_string(),
        hosts: hosts
            .into_iter()
            .filter(|(_, tasks)| !tasks.is_empty())
            .map(|(host, tasks)| HostPlan::new(host, tasks))
            .collect::<Result<_, _>>()?,
    })
}

/// Every rendered (templated) file of a plan, with the host it is for.
pub fn rendered_files(phases: &[Phase]) -> Vec<(String, &str, &str, &[u8])> {
    let mut out = Vec::new();
    for phase in phases {
        for hp in &phase.hosts {
            for task in &hp.tasks {
                for r in &task.resources {
                    if let Resource::File {
                        path,
                        content,
                        origin: Some(origin),
                        ..
                    } = r
                    {
                        out.push((
                            hp.host.clone(),
                            origin.as_str(),
                            path.as_str(),
                            content.as_slice(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Path of the templates directory of a project.
pub fn templates_dir(project_root: &Path) -> std::path::PathBuf {
    project_root.join("templates")
}

/// A rendering context over a scenario file and a bundle of named (never read) artifacts.
#[cfg(test)]
pub(crate) mod test_support {
    use super::InstallContext;
    use crate::artifacts::{Artifact, Bundle};
    use crate::cluster::Cluster;
    use crate::inventory::Inventory;
    use crate::pki::ClusterPki;
    use crate::scenario::Scenario;
    use crate::templates::Templates;

    /// The sandbox image (every node's runtime needs it) and `names`.
    pub fn bundle(names: &[String]) -> Bundle {
        Bundle {
            dir: "/nonexistent".into(),
            kubernetes_version: "v1.20.2".into(),
            artifacts: ["pause", "image:kubeforge.local/pause:3.4"]
                .iter()
                .map(|n| n.to_string())
                .chain(names.iter().cloned())
                .map(|name| Artifact {
                    path: name.replace([':', '/'], "_"),
                    name,
                    sha256: "0".repeat(64),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Runs `f` with the scenario at `path` (relative to the project), its planned
    /// inventory, a fresh PKI and the project's templates.
    pub fn with_context<R>(path: &str, bundle: &Bundle, f: impl FnOnce(&InstallContext) -> R) -> R {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let scenario = Scenario::load("test", &root.join(path)).unwrap();
        let cluster = Cluster::derive(&scenario, &Inventory::planned(&scenario)).unwrap();
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::open(pki_dir.path(), &scenario.cluster.name).unwrap();
        let templates = Templates::load(&super::templates_dir(root)).unwrap();
        f(&InstallContext {
            cluster: &cluster,
            workloads: &scenario.workloads,
            prune_objects: scenario.prune_objects,
            pki: &pki,
            bundle,
            templates: &templates,
        })
    }
}
