//! Cluster-wide names that end up in certificates, systemd units, kubeconfigs and DNS:
//! `cluster.name` and `cluster.cluster_domain`.

use super::Refusal;
use super::groups::is_dns_label;
use crate::scenario::Scenario;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let name = &s.cluster.name;
    if !is_dns_label(name) {
        return Err(Refusal::new(
            "cluster.name",
            format!(
                "cluster.name '{name}' must be a DNS label (lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'): it is written unquoted into kubeconfigs and systemd units, names the CA (kubeforge-ca-<name>) and makes etcd's cluster token"
            ),
        ));
    }
    let domain = &s.cluster.cluster_domain;
    if !is_dns_subdomain(domain) {
        return Err(Refusal::new(
            "cluster.cluster_domain",
            format!(
                "cluster.cluster_domain '{domain}' must be a DNS name of lowercase labels (letters, digits and '-', each 1-63 characters, 253 in all, no trailing dot), as kubeadm requires of a cluster's DNS domain: it is every kubelet's clusterDomain, CoreDNS's zone and part of the service account issuer URL"
            ),
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain in lowercase (Kubernetes' `IsDNS1123Subdomain`).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    #[test]
    fn cluster_name_is_a_dns_label() {
        accepted(&format!("{SEEDS}cluster:\n  name: lab-2\n"));
        refused(
            &format!("{SEEDS}cluster:\n  name: 'my cluster'\n"),
            11,
            "cluster.name 'my cluster' must be a DNS label",
        );
        refused(
            &format!("{SEEDS}cluster:\n  name: ''\n"),
            11,
            "cluster.name '' must be a DNS label",
        );
    }

    #[test]
    fn cluster_domain_is_a_lowercase_dns_name() {
        accepted(&format!(
            "{SEEDS}cluster:\n  cluster_domain: k8s.example.org\n"
        ));
        for bad in [
            "Cluster.Local",
            "cluster.local.",
            "cluster..local",
            "-x.local",
        ] {
            refused(
                &format!("{SEEDS}cluster:\n  cluster_domain: '{bad}'\n"),
                11,
                &format!("cluster.cluster_domain '{bad}' must be a DNS name"),
            );
        }
        let long = ["a"; 128].join(".");
        refused(
            &format!("{SEEDS}cluster:\n  cluster_domain: {long}\n"),
            11,
            "253 in all",
        );
    }
}
