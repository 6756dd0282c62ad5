//! The installer's roles: plain functions from inventory + settings to desired resources.
//!
//! Each role returns tasks per host; [`plan`] orders them into phases. Nothing here touches
//! a host: the engine observes, diffs and applies what the roles describe.

pub mod addons;
pub mod etcd;
pub mod flannel_calico;
pub mod kubernetes;
pub mod network;
pub mod runtime;

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::artifacts::{ArtifactError, Bundle};
use crate::engine::{ApiObject, HostPlan, Perms, Phase, Resource, Task};
use crate::inventory::Inventory;
use crate::pki::{IssuedCert, Pki, PkiError};
use crate::scenario::{PodNetwork, Scenario};
use crate::templates::{TemplateError, Templates};

/// Everything a role may read.
pub struct InstallContext<'a> {
    pub scenario: &'a Scenario,
    pub inventory: &'a Inventory,
    pub pki: &'a Pki,
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
    #[error("{0}")]
    Inventory(String),
    #[error("{0}")]
    Settings(String),
    /// A rendered manifest that does not hold Kubernetes objects.
    #[error("{0}")]
    Manifest(String),
}

/// The roles kubeforge knows, as selected by `--tags`.
pub const ROLES: &[&str] = &["etcd", "runtime", "network", "kubernetes", "addons"];

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
}

/// The ordered phases of a converge, limited to `tags` (all roles when empty).
pub fn plan(ctx: &InstallContext, tags: &[String]) -> Result<Plan, RoleError> {
    let wanted = |role: &str| tags.is_empty() || tags.iter().any(|t| t == role);
    let mut phases = Vec::new();
    let mut not_exercised = Vec::new();
    if wanted("etcd") {
        phases.extend(etcd::phases(ctx)?);
    }
    // Scenarios without Kubernetes nodes (etcd only) get no Kubernetes phases.
    let has_nodes = !network::nodes(ctx)?.is_empty();
    if has_nodes && wanted("runtime") {
        phases.extend(runtime::phases(ctx)?);
    }
    if has_nodes && wanted("network") {
        phases.extend(network::phases(ctx)?);
        if ctx.scenario.cluster.network == PodNetwork::Bridge {
            not_exercised.push(flannel_calico::not_exercised());
        }
    }
    if has_nodes && wanted("kubernetes") {
        phases.extend(kubernetes::phases(ctx)?);
    }
    if has_nodes && wanted("addons") {
        let addons = addons::plan(ctx)?;
        phases.extend(addons.phases);
        not_exercised.extend(addons.not_exercised);
    }
    Ok(Plan {
        phases,
        not_exercised,
    })
}

impl InstallContext<'_> {
    /// A file rendered from `template` with `context`.
    pub fn template(
        &self,
        path: &str,
        template: &str,
        context: &impl Serialize,
        mode: u32,
    ) -> Result<Resource, RoleError> {
        let text = self.templates.render(template, context)?;
        Ok(rendered_file(path, template, text, mode))
    }

    /// A binary from the bundle, installed under /opt/bin (CoreOS keeps /usr read-only).
    pub fn binary(&self, name: &str) -> Result<Resource, RoleError> {
        let (local, artifact) = self.bundle.get(name)?;
        Ok(Resource::Upload {
            path: format!("/opt/bin/{name}"),
            local,
            sha256: artifact.sha256.clone(),
            perms: Perms::root(0o755),
        })
    }

    pub fn address(&self, host: &str) -> Result<IpAddr, RoleError> {
        self.inventory
            .get(host)
            .map(|h| h.address)
            .ok_or_else(|| RoleError::Inventory(format!("host '{host}' is not in the inventory")))
    }
}

/// A manifest rendered to `path` (on a master: for the user, and pinned by snapshots) and
/// its objects, which kubectl creates or updates only where they differ from the live ones.
pub fn manifest_objects(
    ctx: &InstallContext,
    path: &str,
    template: &str,
    context: &impl Serialize,
) -> Result<(Resource, Vec<ApiObject>), RoleError> {
    let text = ctx.templates.render(template, context)?;
    let objects = ApiObject::from_manifest(&format!("{template} (for {path})"), &text)
        .map_err(RoleError::Manifest)?;
    Ok((rendered_file(path, template, text, 0o644), objects))
}

fn rendered_file(path: &str, template: &str, text: String, mode: u32) -> Resource {
    Resource::File {
        path: path.to_string(),
        content: text.into_bytes(),
        perms: Perms::root(mode),
        secret: false,
        origin: Some(template.to_string()),
    }
}

/// A certificate and its key as two files (`<stem>.pem`, `<stem>-key.pem`) in `dir`.
pub fn cert_files(dir: &str, stem: &str, cert: &IssuedCert) -> Vec<Resource> {
    vec![
        Resource::File {
            path: format!("{dir}/{stem}.pem"),
            content: cert.cert_pem.clone().into_bytes(),
            perms: Perms::root(0o644),
            secret: false,
            origin: None,
        },
        Resource::File {
            path: format!("{dir}/{stem}-key.pem"),
            content: cert.key_pem.expose().as_bytes().to_vec(),
            perms: Perms::root(0o600),
            secret: true,
            origin: None,
        },
    ]
}

/// The CA certificate (never its key) as a file.
pub fn ca_file(path: &str, pki: &Pki) -> Resource {
    Resource::File {
        path: path.to_string(),
        content: pki.ca_cert_pem().as_bytes().to_vec(),
        perms: Perms::root(0o644),
        secret: false,
        origin: None,
    }
}

pub fn directory(path: &str, mode: u32) -> Resource {
    Resource::Directory {
        path: path.to_string(),
        perms: Perms::root(mode),
    }
}

/// Builds a phase from per-host task lists, dropping hosts with nothing to do.
pub fn phase(name: &str, hosts: Vec<(String, Vec<Task>)>) -> Phase {
    Phase {
        name: name.to_string(),
        hosts: hosts
            .into_iter()
            .filter(|(_, tasks)| !tasks.is_empty())
            .map(|(host, tasks)| HostPlan { host, tasks })
            .collect(),
    }
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
    use crate::inventory::Inventory;
    use crate::pki::Pki;
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
        let inventory = Inventory::planned(&scenario);
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(pki_dir.path(), &scenario.cluster.name).unwrap();
        let templates = Templates::load(&super::templates_dir(root)).unwrap();
        f(&InstallContext {
            scenario: &scenario,
            inventory: &inventory,
            pki: &pki,
            bundle,
            templates: &templates,
        })
    }
}
