//! What each certificate of the cluster must say: [`CertSpec`] and the builders that
//! follow Kubernetes' and etcd's naming conventions (CNs, organizations, SANs, usages).

use std::net::{IpAddr, Ipv4Addr};

use rcgen::ExtendedKeyUsagePurpose;

/// What a certificate must say. Comparing two specs decides reissue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertSpec {
    /// File stem: `<name>.pem` and `<name>-key.pem`.
    pub name: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: CertUsage,
}

/// Extended key usage of a leaf certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CertUsage {
    Server,
    Client,
    /// Both TLS server and client auth (etcd peers, kubelets).
    ServerAndClient,
}

impl CertUsage {
    pub(super) fn from_flags(server: bool, client: bool) -> Option<CertUsage> {
        match (server, client) {
            (true, false) => Some(CertUsage::Server),
            (false, true) => Some(CertUsage::Client),
            (true, true) => Some(CertUsage::ServerAndClient),
            (false, false) => None,
        }
    }

    pub(super) fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            CertUsage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertUsage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            CertUsage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }
}

fn dedup<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn client_spec(name: &str, common_name: &str, organizations: &[&str]) -> CertSpec {
    CertSpec {
        name: name.to_string(),
        common_name: common_name.to_string(),
        organizations: organizations.iter().map(|o| o.to_string()).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: CertUsage::Client,
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// etcd client-facing serving certificate (`etcd-server-<host>`). Server and client auth, as
/// kubeadm does: etcd's gRPC gateway dials its own listener with this certificate.
pub fn etcd_server_spec(host: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("etcd-server-{host}"),
        common_name: host.to_string(),
        organizations: Vec::new(),
        dns_names: dedup([host.to_string(), "localhost".to_string()]),
        ip_addresses: dedup([ip, LOOPBACK]),
        usage: CertUsage::ServerAndClient,
    }
}

/// etcd peer certificate (`etcd-peer-<host>`), separate from the serving one so the peer
/// port can be trusted independently; peers both dial and accept, hence server and client.
pub fn etcd_peer_spec(host: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("etcd-peer-{host}"),
        ..etcd_server_spec(host, ip)
    }
}

/// Client certificate for talking to etcd (kube-apiserver, etcdctl); `name` is file stem and CN.
pub fn etcd_client_spec(name: &str) -> CertSpec {
    client_spec(name, name, &[])
}

/// kube-apiserver serving certificate. `service_ip` is the first IP of the service CIDR
/// (the `kubernetes` Service's ClusterIP).
pub fn apiserver_spec(
    service_ip: IpAddr,
    master_ips: &[IpAddr],
    master_names: &[String],
) -> CertSpec {
    let dns = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(master_names.iter().cloned());
    let ips = std::iter::once(service_ip)
        .chain(master_ips.iter().copied())
        .chain(std::iter::once(LOOPBACK));
    CertSpec {
        name: "apiserver".to_string(),
        common_name: "kube-apiserver".to_string(),
        organizations: Vec::new(),
        dns_names: dedup(dns),
        ip_addresses: dedup(ips),
        usage: CertUsage::Server,
    }
}

/// Kubelet certificate (`kubelet-<node>`): serves the kubelet API and authenticates the node
/// to the apiserver (Node authorizer wants CN `system:node:<node>`, O `system:nodes`).
pub fn kubelet_spec(node: &str, ip: IpAddr) -> CertSpec {
    CertSpec {
        name: format!("kubelet-{node}"),
        common_name: format!("system:node:{node}"),
        organizations: vec!["system:nodes".to_string()],
        dns_names: vec![node.to_string()],
        ip_addresses: vec![ip],
        usage: CertUsage::ServerAndClient,
    }
}

/// Cluster-admin client certificate for the harness's own kubeconfig.
pub fn admin_spec() -> CertSpec {
    client_spec("admin", "admin", &["system:masters"])
}

/// kube-controller-manager's client certificate; the CN is the user Kubernetes' default RBAC
/// grants its permissions to.
pub fn controller_manager_spec() -> CertSpec {
    client_spec("controller-manager", "system:kube-controller-manager", &[])
}

/// kube-scheduler's client certificate; the CN is the user default RBAC knows.
pub fn scheduler_spec() -> CertSpec {
    client_spec("scheduler", "system:kube-scheduler", &[])
}

/// Calico's CNI plugin and policy controller reading the API (RBAC in
/// kubernetes/cluster-objects.yaml).
pub fn calico_spec() -> CertSpec {
    client_spec("calico", "calico", &[])
}

/// kube-proxy's client certificate; default RBAC binds `system:kube-proxy` to
/// `system:node-proxier`.
pub fn kube_proxy_spec() -> CertSpec {
    client_spec("kube-proxy", "system:kube-proxy", &[])
}

/// Client certificate the apiserver presents to kubelets (logs, exec, port-forward). Not a
/// cluster admin: RBAC grants it `system:kubelet-api-admin` (kubernetes/cluster-objects.yaml).
pub fn apiserver_kubelet_client_spec() -> CertSpec {
    client_spec(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP literal")
    }

    #[test]
    fn spec_builders_follow_kubernetes_conventions() {
        let spec = etcd_server_spec("etcd-01", ip("127.0.0.1"));
        assert_eq!(spec.ip_addresses, vec![ip("127.0.0.1")], "deduplicated");
        assert_eq!(spec.dns_names, vec!["etcd-01", "localhost"]);
        assert_eq!(spec.usage, CertUsage::ServerAndClient);
        assert_eq!(
            etcd_peer_spec("etcd-01", ip("10.0.0.1")).name,
            "etcd-peer-etcd-01"
        );
        let kubelet = kubelet_spec("w1", ip("10.0.0.5"));
        assert_eq!(kubelet.common_name, "system:node:w1");
        assert_eq!(kubelet.organizations, vec!["system:nodes"]);
        let api = apiserver_spec(ip("10.96.0.1"), &[ip("10.0.0.2")], &["m1".into()]);
        assert_eq!(
            api.ip_addresses,
            vec![ip("10.96.0.1"), ip("10.0.0.2"), ip("127.0.0.1")]
        );
        assert!(
            api.dns_names
                .contains(&"kubernetes.default.svc".to_string())
        );
        assert_eq!(
            apiserver_kubelet_client_spec().organizations,
            Vec::<String>::new()
        );
        assert_eq!(
            controller_manager_spec().common_name,
            "system:kube-controller-manager"
        );
        assert_eq!(etcd_client_spec("etcd-client").usage, CertUsage::Client);
    }
}
