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

/// The leader-election components, whose leases [`leaders`] reads.
pub const LEADER_ELECTED: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// Prints, for each leader-elected component, `<component>=led` when a master holds its
/// lease and renewed it within the lease's duration, else what is wrong; `masters` are the
/// master node names. Run by kubectl on a master.
pub fn leaders(masters: &[&str]) -> String {
    let k = kubectl();
    format!(
        "now=$(date +%s); for c in {components}; do \
           l=$({k} -n kube-system get lease \"$c\" -o jsonpath='{{.spec.holderIdentity}} {{.spec.renewTime}} {{.spec.leaseDurationSeconds}}' 2>&1) || {{ echo \"$c: $l\"; continue; }}; \
           set -- $l; holder=${{1%%_*}}; age=$((now - $(date -d \"$2\" +%s))); \
           case \" {masters} \" in *\" $holder \"*) ;; *) echo \"$c: led by '$holder', not a master\"; continue ;; esac; \
           if [ \"$age\" -gt \"$3\" ]; then echo \"$c: lease of $holder not renewed for ${{age}}s\"; else echo \"$c=led\"; fi; done",
        components = LEADER_ELECTED.join(" "),
        masters = masters.join(" "),
    )
}

/// What [`leaders`] prints when every component has a leader.
pub fn all_led() -> String {
    LEADER_ELECTED.map(|c| format!("{c}=led")).join("\n")
}
