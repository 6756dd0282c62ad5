//! The scenario file: `scenarios/<name>/scenario.yml`, parsed into a typed [`Scenario`].
//!
//! Parsing is strict (unknown keys and wrong types are errors) and every error carries the
//! file, line and column, so a typo never turns into a half-created cluster.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::Ipv4Net;

/// A whole scenario: hosts, driver, cluster settings and the step sequence.
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
    pub sequence: Vec<Step>,
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
    #[serde(default = "default_sequence")]
    sequence: Vec<Step>,
}

/// Where the installer takes binaries and images from: the local bundle
/// (`cargo xtask artifacts`), or downloads checked against pinned sha256 values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSettings {
    /// Base URL; each artifact is fetched from `<download_url>/<path>`.
    #[serde(default)]
    pub download_url: Option<String>,
    /// A manifest (the bundle's format) pinning every artifact's sha256; relative to the
    /// scenario directory.
    #[serde(default)]
    pub pins: Option<PathBuf>,
}

/// Which driver creates and destroys the hosts, with its options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DriverConfig {
    /// Podman containers booting systemd, on a private internal network.
    Podman {
        /// A /24 for the scenario's network; allocated from 172.30.0.0/16 when absent.
        #[serde(default)]
        subnet: Option<String>,
    },
    /// Hosts that already exist (each platform gives its `address`). create and destroy
    /// never touch them; they only run the commands given here, if any, on this machine.
    Existing {
        /// Login user with passwordless sudo.
        #[serde(default = "default_user")]
        user: String,
        /// Private key for that user; default: the scenario's own generated key.
        #[serde(default)]
        key: Option<PathBuf>,
        #[serde(default = "default_ssh_port")]
        port: u16,
        /// A shell command run by `create` before connecting (e.g. to start the hosts).
        #[serde(default)]
        create_command: Option<String>,
        /// A shell command run by `destroy`.
        #[serde(default)]
        destroy_command: Option<String>,
    },
    /// Virtual machines from the project's Vagrantfile (the seeds' platform).
    Vagrant {
        #[serde(default)]
        provider: VagrantProvider,
        /// Box to boot; default: the newest `kubeforge/bookworm-*` box
        /// (`cargo xtask vagrant-box`) for libvirt, Flatcar for VirtualBox.
        #[serde(default, rename = "box")]
        box_name: Option<String>,
        /// The private /24 the cluster uses; hosts get the seeds' plan inside it.
        #[serde(default = "default_vagrant_network")]
        network: String,
        /// libvirt's management network (SSH from this machine, no route out).
        #[serde(default = "default_management_network")]
        management_network: String,
        /// libvirt: software CPU emulation, where KVM cannot boot a guest.
        #[serde(default)]
        emulate_cpu: bool,
        #[serde(default = "default_cpus")]
        cpus: u32,
    },
}

/// Where Vagrant runs the VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VagrantProvider {
    #[default]
    Libvirt,
    Virtualbox,
}

impl VagrantProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            VagrantProvider::Libvirt => "libvirt",
            VagrantProvider::Virtualbox => "virtualbox",
        }
    }
}

fn default_vagrant_network() -> String {
    "10.0.0.0/24".into()
}

fn default_management_network() -> String {
    "192.168.121.0/24".into()
}

fn default_cpus() -> u32 {
    1
}

fn default_user() -> String {
    "core".into()
}

fn default_ssh_port() -> u16 {
    22
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig::Podman { subnet: None }
    }
}

/// One host of the scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub name: String,
    pub groups: Vec<Group>,
    /// Last octet of the host's address on the scenario network. Defaults to the seeds'
    /// plan: 10x + 100 + n, with x = 0 for etcd, 1 for masters, 2 for workers.
    #[serde(default)]
    pub address_octet: Option<u8>,
    /// The host's address, for hosts that already exist (driver `existing`).
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// Memory limit in MiB (Podman `--memory`, Vagrant VM memory).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Run the host privileged (needed by anything that runs containers itself).
    /// Defaults to true for Kubernetes nodes.
    #[serde(default)]
    pub privileged: Option<bool>,
}

/// The inventory groups the installer knows, as in the seeds' Ansible inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    Etcd,
    KubeMaster,
    KubeWorker,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Etcd => "etcd",
            Group::KubeMaster => "kube-master",
            Group::KubeWorker => "kube-worker",
        }
    }

    /// The digit x of the seeds' address plan 10.0.0.1x1.
    fn plan_digit(self) -> u8 {
        match self {
            Group::Etcd => 0,
            Group::KubeMaster => 1,
            Group::KubeWorker => 2,
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Platform {
    pub fn in_group(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    /// Kubernetes nodes run containerd, which needs a privileged host.
    pub fn is_privileged(&self) -> bool {
        self.privileged
            .unwrap_or_else(|| self.in_group(Group::KubeMaster) || self.in_group(Group::KubeWorker))
    }
}

/// Cluster-wide settings; the defaults are the seeds' values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    pub name: String,
    pub kubernetes_version: String,
    pub pod_network: Ipv4Net,
    pub service_range: Ipv4Net,
    pub dns_service_ip: Ipv4Addr,
    pub etcd: EtcdSettings,
    /// Port of kube-apiserver on the masters (kubelets, kube-proxy and kubectl use it).
    pub apiserver_port: u16,
    /// DNS domain of the cluster (kubelet's clusterDomain, the apiserver certificate).
    pub cluster_domain: String,
    /// How pods on different nodes reach each other.
    pub network: PodNetwork,
}

/// The pod network a cluster runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodNetwork {
    /// CNI bridge + host-local per node, routes to the other nodes' pod CIDRs (what runs
    /// offline here: no overlay, like flannel's host-gw backend).
    #[default]
    Bridge,
    /// The seeds' network: flanneld (vxlan, configured through etcd) with Calico enforcing
    /// network policy; needs flanneld, the flannel and calico CNI plugins and Calico's
    /// images in the bundle.
    FlannelCalico,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            name: "kubeforge".into(),
            kubernetes_version: "v1.20.2".into(),
            pod_network: Ipv4Net::new(Ipv4Addr::new(10, 2, 0, 0), 16).expect("a network"),
            service_range: Ipv4Net::new(Ipv4Addr::new(10, 3, 0, 0), 24).expect("a network"),
            dns_service_ip: Ipv4Addr::new(10, 3, 0, 10),
            etcd: EtcdSettings::default(),
            apiserver_port: 6443,
            cluster_domain: "cluster.local".into(),
            network: PodNetwork::default(),
        }
    }
}

/// etcd tuning that ends up in the member's drop-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdSettings {
    pub client_port: u16,
    pub peer_port: u16,
    pub heartbeat_interval_ms: u32,
    pub election_timeout_ms: u32,
    pub snapshot_count: u32,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        EtcdSettings {
            client_port: 2379,
            peer_port: 2380,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 10000,
        }
    }
}

/// One step of the sequence, in Molecule's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Create,
    Syntax,
    Converge,
    Idempotence,
    /// Hand changes on a converged cluster that converge must find and repair.
    Drift,
    Verify,
    Destroy,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Syntax => "syntax",
            Step::Converge => "converge",
            Step::Idempotence => "idempotence",
            Step::Drift => "drift",
            Step::Verify => "verify",
            Step::Destroy => "destroy",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_sequence() -> Vec<Step> {
    use Step::*;
    vec![Create, Syntax, Converge, Idempotence, Verify, Destroy]
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

    /// Parses scenario text; `path` is only used to name the file in errors.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ScenarioError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: first_line(&e.to_string()),
            }
        })?;
        let scenario = Scenario {
            name: name.to_string(),
            file: path.to_path_buf(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            driver: file.driver,
            platforms: file.platforms,
            cluster: file.cluster,
            artifacts: file.artifacts,
            workloads: Vec::new(),
            sequence: file.sequence,
        };
        scenario.validate(text)?;
        let workloads = scenario.read_workloads(text, &file.workloads)?;
        let scenario = Scenario {
            workloads,
            ..scenario
        };
        Ok(scenario)
    }

    /// Checks what types alone cannot: unique names, required groups, sane networks.
    fn validate(&self, text: &str) -> Result<(), ScenarioError> {
        let err = |needle: &str, message: String| {
            let (line, column) = locate(text, needle);
            ScenarioError::Invalid {
                path: self.file.clone(),
                line,
                column,
                message,
            }
        };
        if self.platforms.is_empty() {
            return Err(err(
                "platforms",
                "platforms: at least one host is needed".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.platforms {
            if !valid_hostname(&p.name) {
                return Err(err(
                    &p.name,
                    format!(
                        "platform name '{}' is not a valid host name (lowercase letters, digits and '-', 1-63 characters)",
                        p.name
                    ),
                ));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(err(
                    &format!("name: {}", p.name),
                    format!("platform '{}' is declared twice", p.name),
                ));
            }
            if p.groups.is_empty() {
                return Err(err(
                    &p.name,
                    format!("platform '{}' belongs to no group", p.name),
                ));
            }
        }
        if !self.platforms.iter().any(|p| p.in_group(Group::Etcd)) {
            return Err(err(
                "platforms",
                "no host in group 'etcd': the cluster needs at least one etcd member".into(),
            ));
        }
        let mut octets = std::collections::HashMap::new();
        for (p, octet) in self.platforms.iter().zip(self.address_octets()) {
            if !(2..=254).contains(&octet) {
                return Err(err(
                    &p.name,
                    format!(
                        "platform '{}': address octet {octet} is outside 2-254",
                        p.name
                    ),
                ));
            }
            if let Some(other) = octets.insert(octet, &p.name) {
                return Err(err(
                    &p.name,
                    format!(
                        "platforms '{other}' and '{}' would both get address octet {octet}",
                        p.name
                    ),
                ));
            }
        }
        if matches!(self.driver, DriverConfig::Existing { .. })
            && let Some(p) = self.platforms.iter().find(|p| p.address.is_none())
        {
            return Err(err(
                &p.name,
                format!(
                    "platform '{}' needs an address: driver 'existing' connects to hosts that already exist",
                    p.name
                ),
            ));
        }
        if let DriverConfig::Podman {
            subnet: Some(subnet),
        } = &self.driver
        {
            let net: Ipv4Net = subnet
                .parse()
                .map_err(|e| err("subnet", format!("driver.subnet: {e}")))?;
            if net.prefix() != 24 {
                return Err(err(
                    "subnet",
                    format!("driver.subnet: '{subnet}' must be a /24"),
                ));
            }
        }
        if !self
            .cluster
            .service_range
            .contains(self.cluster.dns_service_ip)
        {
            return Err(err(
                "dns_service_ip",
                format!(
                    "cluster.dns_service_ip {} is outside the service range {}",
                    self.cluster.dns_service_ip, self.cluster.service_range
                ),
            ));
        }
        if self.artifacts.download_url.is_some() && self.artifacts.pins.is_none() {
            return Err(err(
                "download_url",
                "artifacts.download_url needs artifacts.pins: a manifest with the sha256 of every file".into(),
            ));
        }
        if self.sequence.is_empty() {
            return Err(err("sequence", "sequence: no steps".into()));
        }
        Ok(())
    }

    /// Reads each workload manifest (relative to the scenario directory) and checks that
    /// it holds Kubernetes objects; a problem is located at the entry that names the file.
    fn read_workloads(
        &self,
        text: &str,
        paths: &[PathBuf],
    ) -> Result<Vec<Workload>, ScenarioError> {
        paths
            .iter()
            .map(|rel| {
                let entry = rel.display().to_string();
                let err = |message: String| {
                    let (line, column) = locate(text, &entry);
                    ScenarioError::Invalid {
                        path: self.file.clone(),
                        line,
                        column,
                        message,
                    }
                };
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
                per_digit[digit as usize] += 1;
                p.address_octet
                    .unwrap_or(100 + 10 * digit + per_digit[digit as usize])
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

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// 1-based line and column of the first occurrence of `needle`, or 1:1.
fn locate(text: &str, needle: &str) -> (u64, u64) {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i as u64 + 1, col as u64 + 1);
        }
    }
    (1, 1)
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "
platforms:
  - name: etcd-01
    groups: [etcd]
  - name: kube-master-01
    groups: [kube-master]
  - name: kube-worker-01
    groups: [kube-worker]
  - name: kube-worker-02
    groups: [kube-worker]
";

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse("t", Path::new("scenarios/t/scenario.yml"), text)
    }

    #[test]
    fn seeds_address_plan_and_defaults() {
        let s = parse(DEFAULT).unwrap();
        assert_eq!(s.address_octets(), vec![101, 111, 121, 122]);
        assert_eq!(s.sequence.len(), 6);
        assert_eq!(s.cluster.dns_service_ip, Ipv4Addr::new(10, 3, 0, 10));
        assert!(s.platforms[1].is_privileged());
        assert!(!s.platforms[0].is_privileged());
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let text = format!("{DEFAULT}clustr:\n  name: x\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/t/scenario.yml:11:1:"), "{e}");
        assert!(e.contains("clustr"), "{e}");
    }

    #[test]
    fn wrong_type_is_located() {
        let text = DEFAULT.replace("groups: [etcd]", "groups: etcd");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/t/scenario.yml:4:"), "{e}");
    }

    #[test]
    fn unknown_group_is_rejected() {
        let text = DEFAULT.replace("groups: [etcd]", "groups: [etcd, kube-mastr]");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(":4:"), "{e}");
        assert!(e.contains("kube-mastr"), "{e}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let text = DEFAULT.replace("kube-worker-02", "kube-worker-01");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("declared twice"), "{e}");
        assert!(e.contains(":7:"), "{e}");
        let text = format!("{DEFAULT}cluster:\n  dns_service_ip: 10.9.0.10\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains(":12:") && e.contains("outside the service range"),
            "{e}"
        );
        let text = format!("{DEFAULT}cluster:\n  pod_network: 10.2.0.1/16\n");
        assert!(parse(&text).unwrap_err().to_string().contains("host bits"));
    }

    #[test]
    fn existing_driver_needs_addresses() {
        let text = format!("driver:\n  name: existing\n  user: admin\n{DEFAULT}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("needs an address") && e.contains(":6:"), "{e}");
        let text = "driver:\n  name: existing\nplatforms:\n  - name: etcd-01\n    groups: [etcd]\n    address: 172.30.9.5\n";
        let s = parse(text).unwrap();
        assert!(
            matches!(&s.driver, DriverConfig::Existing { user, port: 22, .. } if user == "core")
        );
        assert_eq!(s.platforms[0].address, Some("172.30.9.5".parse().unwrap()));
    }
}
