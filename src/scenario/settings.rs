//! The settings a scenario file holds, as typed values with the seeds' defaults: the
//! driver, the platforms and their groups, the cluster, the artifacts and the steps.
//! Their rules beyond types live in [`super::rules`].

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::net::Ipv4Net;
use crate::timeouts::TimeoutScale;

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
        /// Debian packages the host image holds beyond its own list (e.g. `python3` for
        /// Ansible), built as a separately tagged image; none by default.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        packages: Vec<String>,
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

impl DriverConfig {
    /// The timeout scale of the driver's platform when the scenario sets none: emulated
    /// CPUs run the control plane several times slower than real ones.
    pub fn timeout_scale(&self) -> TimeoutScale {
        match self {
            DriverConfig::Vagrant {
                emulate_cpu: true, ..
            } => TimeoutScale::EMULATED_CPU,
            _ => TimeoutScale::NORMAL,
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig::Podman {
            subnet: None,
            packages: Vec::new(),
        }
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
    pub(super) fn plan_digit(self) -> u8 {
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

/// A fault the `side_effect` step makes on running hosts: the cluster must keep serving
/// while it lasts, and come back whole after it is undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub name: String,
    pub action: FaultAction,
    /// The hosts it hits, all at once.
    pub hosts: Vec<String>,
    /// The unit `stop-service` stops.
    #[serde(default)]
    pub unit: Option<String>,
}

/// What a fault does to its hosts, and how it is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL to the whole host (its init): gone at once; started again.
    Kill,
    /// A clean shutdown; started again.
    Stop,
    /// Frozen: it keeps its connections but answers nothing; thawed.
    Pause,
    /// Cut off the scenario network; connected again at the same address.
    Disconnect,
    /// Destroyed with its disks; created again empty (same name and address) and converged:
    /// an etcd member rejoins as a new member, a node is installed again.
    Replace,
    /// One unit stopped on each host; started again.
    StopService,
}

impl FaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Stop => "stop",
            FaultAction::Pause => "pause",
            FaultAction::Disconnect => "disconnect",
            FaultAction::Replace => "replace",
            FaultAction::StopService => "stop-service",
        }
    }

    /// Whether the hosts stop serving altogether (rather than losing one unit).
    pub fn takes_hosts_away(self) -> bool {
        self != FaultAction::StopService
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
    /// The scenario's faults, each checked under and recovered from (Molecule's name).
    #[serde(rename = "side_effect")]
    SideEffect,
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
            Step::SideEffect => "side_effect",
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

pub(super) fn default_sequence() -> Vec<Step> {
    use Step::*;
    vec![Create, Syntax, Converge, Idempotence, Verify, Destroy]
}
