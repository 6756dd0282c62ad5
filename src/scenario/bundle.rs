//! The scenario against the artifacts that would install it: the local bundle
//! (`cargo xtask artifacts`) or the pins of `artifacts.download_url`. Neither is part of the
//! scenario file, so this is a separate check, which the CLI runs before `create` and
//! `converge` make or change any host: a version the bundle does not hold is refused there,
//! not in the syntax step after the hosts exist.

use std::path::Path;

use super::rules::Refusal;
use super::{Group, PodNetwork, Scenario, ScenarioError};
use crate::artifacts::Bundle;
use crate::cluster::{images, minor_version};

/// What the `flannel-calico` network installs besides the bundle's own artifacts (the
/// network role asks for the same names; a test keeps them equal).
const FLANNEL_CALICO: [&str; 4] = ["flanneld", "flannel", "calico", "loopback"];

impl Scenario {
    /// Refuses a bundle that cannot install this scenario: one built for another Kubernetes
    /// release, or, for the `flannel-calico` network, one without its binaries and images.
    /// The error points at the setting that asks for what is missing.
    pub fn check_bundle(&self, bundle: &Bundle) -> Result<(), ScenarioError> {
        let source = match &self.artifacts.pins {
            Some(pins) if self.artifacts.download_url.is_some() => {
                format!("the pins file {}", self.dir.join(pins).display())
            }
            _ => format!("the artifacts bundle at {}", bundle.dir.display()),
        };
        self.bundle_version(bundle, &source)
            .and_then(|()| self.network_artifacts(bundle, &source))
            .map_err(|refusal| self.refused(refusal))
    }

    /// Checks what `create` and `converge` would install from, before they touch a host:
    /// the pins file when the scenario downloads its artifacts, else the local bundle
    /// (`$KUBEFORGE_CACHE_DIR/bundle`, built by `cargo xtask artifacts`).
    pub fn check_artifacts(&self) -> Result<(), ScenarioError> {
        self.check_artifacts_in(&Bundle::default_dir())
    }

    fn check_artifacts_in(&self, bundle_dir: &Path) -> Result<(), ScenarioError> {
        let bundle = match (&self.artifacts.download_url, &self.artifacts.pins) {
            (Some(_), Some(pins)) => self.read_pins(pins).map_err(|r| self.refused(r))?,
            _ => Bundle::load(bundle_dir).map_err(|e| {
                self.refused(
                    Refusal::new(
                        "cluster.kubernetes_version",
                        format!(
                            "cluster.kubernetes_version {}: {e}",
                            self.cluster.kubernetes_version
                        ),
                    )
                    .or_at("cluster"),
                )
            })?,
        };
        self.check_bundle(&bundle)
    }

    /// The pins file as the downloader will read it: a manifest in the bundle's format.
    fn read_pins(&self, pins: &Path) -> Result<Bundle, Refusal> {
        let path = self.dir.join(pins);
        let refuse = |why: String| Refusal::new("artifacts.pins", format!("artifacts.pins: {why}"));
        let bytes = std::fs::read(&path)
            .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
        let mut bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(format!(
                "{} is not a manifest in the bundle's format: {e}",
                path.display()
            ))
        })?;
        bundle.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(bundle)
    }

    fn bundle_version(&self, bundle: &Bundle, source: &str) -> Result<(), Refusal> {
        let (want, have) = (&self.cluster.kubernetes_version, &bundle.kubernetes_version);
        if want == have {
            return Ok(());
        }
        Err(Refusal::new(
            "cluster.kubernetes_version",
            format!(
                "cluster.kubernetes_version {want} is not what {source} holds (Kubernetes {have}): ask for {have}, or give `artifacts` a download_url and pins for {want}"
            ),
        )
        .or_at("artifacts.pins")
        .or_at("cluster"))
    }

    /// flanneld, the flannel and calico CNI plugins and Calico's images cannot be built
    /// offline: a bundle that lacks them fails the network role on every node.
    fn network_artifacts(&self, bundle: &Bundle, source: &str) -> Result<(), Refusal> {
        let has_nodes = self
            .platforms
            .iter()
            .any(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker));
        if self.cluster.network != PodNetwork::FlannelCalico || !has_nodes {
            return Ok(());
        }
        let missing = flannel_calico_artifacts(&self.cluster.kubernetes_version)
            .into_iter()
            .filter(|name| bundle.get(name).is_err())
            .collect::<Vec<_>>();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Refusal::new(
            "cluster.network",
            format!(
                "cluster.network flannel-calico needs {} in {source}; they cannot be built offline: give the scenario an `artifacts` download_url and pins that carry them, or use network: bridge",
                missing.join(", ")
            ),
        ))
    }
}

/// The names the flannel-calico network asks the bundle for at `version`.
fn flannel_calico_artifacts(version: &str) -> Vec<String> {
    let calico = images::calico(minor_version(version).unwrap_or_default());
    FLANNEL_CALICO
        .iter()
        .map(|name| name.to_string())
        .chain([calico.node, calico.kube_controllers].map(|i| format!("image:{i}")))
        .collect()
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
