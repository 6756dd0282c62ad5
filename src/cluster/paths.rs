//! Where things live on the hosts. Binaries go to /opt/bin, as on CoreOS (read-only /usr).

/// Binaries from the bundle.
pub const BIN_DIR: &str = "/opt/bin";
/// CNI plugins, where containerd's CRI plugin looks for them.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// CNI network configurations.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// kubeforge's own files on a host (image tarballs, restart markers).
pub const KUBEFORGE_DIR: &str = "/var/lib/kubeforge";
/// Image tarballs from the bundle, imported into containerd.
pub const IMAGE_DIR: &str = "/var/lib/kubeforge/images";
/// Units whose inputs changed but which were not restarted yet (an interrupted run).
pub const RESTART_PENDING_DIR: &str = "/var/lib/kubeforge/restart-pending";
/// The record of the API objects applied from a host (`engine::ObjectRecord`).
pub const OBJECT_RECORD: &str = "/var/lib/kubeforge/api-objects";
/// systemd units kubeforge writes.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// etcd's TLS files.
pub const ETCD_SSL_DIR: &str = "/etc/etcd/ssl";
/// etcd's data.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

/// containerd's socket (kubelet's CRI endpoint, `ctr`).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

pub const K8S_DIR: &str = "/etc/kubernetes";
/// Kubernetes certificates and keys.
pub const K8S_SSL_DIR: &str = "/etc/kubernetes/ssl";
/// Static pod manifests the kubelet runs.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Manifests of the objects kubeforge keeps in the API (RBAC bindings, add-ons), as last
/// rendered: what a user can read or apply by hand.
pub const API_MANIFESTS_DIR: &str = "/etc/kubernetes/addons";
/// Cluster-admin kubeconfig on each master (certificates embedded), for verify and humans.
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.kubeconfig";
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
/// The API load balancer's configuration (mounted into its static pod).
pub const LB_DIR: &str = "/etc/kubernetes/kube-lb";
/// Where the bundle's images keep their binaries (kube-proxy's also carries iptables-nft
/// and conntrack, the same backend the node's kubelet uses).
pub const IMAGE_BIN_DIR: &str = "/usr/local/bin";

/// A certificate under [`K8S_SSL_DIR`]: `<stem>.pem`.
pub fn k8s_cert(stem: &str) -> String {
    format!("{K8S_SSL_DIR}/{stem}.pem")
}

/// A unit file under [`SYSTEMD_DIR`].
pub fn unit_file(unit: &str) -> String {
    format!("{SYSTEMD_DIR}/{unit}")
}
