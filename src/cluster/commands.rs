//! Command lines that reach the cluster's services from one of its hosts: etcd (etcdctl with
//! a client certificate), the API (kubectl as cluster admin on a master) and containerd
//! (`ctr` in the namespace kubelet uses). Roles and verify build their commands from these.

use super::paths::{ADMIN_KUBECONFIG, BIN_DIR, CONTAINERD_SOCKET, ETCD_SSL_DIR};

/// `etcdctl` on an etcd host, authenticated with that host's client certificate.
pub fn etcdctl(endpoints: &str) -> String {
    format!(
        "ETCDCTL_API=3 {BIN_DIR}/etcdctl --endpoints={endpoints} --cacert={ETCD_SSL_DIR}/ca.pem --cert={ETCD_SSL_DIR}/etcdctl.pem --key={ETCD_SSL_DIR}/etcdctl-key.pem --command-timeout=5s"
    )
}

/// `kubectl` on a master, as cluster admin.
pub fn kubectl() -> String {
    format!("{BIN_DIR}/kubectl --kubeconfig={ADMIN_KUBECONFIG}")
}

/// `ctr` in the namespace the CRI plugin (and so kubelet) uses.
pub fn ctr() -> String {
    format!("{BIN_DIR}/ctr --address {CONTAINERD_SOCKET} --namespace k8s.io")
}

/// The kubelet's local healthz endpoint answers `ok` (plain HTTP on 127.0.0.1; bash's
/// /dev/tcp, since the nodes have no curl).
pub const KUBELET_HEALTHY: &str = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/10248 && printf \"GET /healthz HTTP/1.0\\r\\n\\r\\n\" >&3 && grep -qx ok <&3'";
