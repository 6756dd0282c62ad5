//! Tests of the address plan rules: one valid and one refused scenario per rule.

use super::super::testing::{SEEDS, accepted, refused};

fn cluster(settings: &str) -> String {
    format!("{SEEDS}cluster:\n{settings}")
}

#[test]
fn service_range_fits_kube_apiserver() {
    accepted(&cluster(
        "  service_range: 10.96.0.0/12\n  dns_service_ip: 10.96.0.10\n",
    ));
    let e = refused(
        &cluster("  service_range: 10.96.0.0/11\n  dns_service_ip: 10.96.0.10\n"),
        11,
        "cluster.service_range 10.96.0.0/11 is too large: kube-apiserver refuses a service range larger than /12",
    );
    assert!(e.contains(":11:18:"), "{e}");
    accepted(&cluster(
        "  service_range: 10.3.0.0/30\n  dns_service_ip: 10.3.0.2\n",
    ));
    refused(
        &cluster("  service_range: 10.3.0.0/31\n  dns_service_ip: 10.3.0.1\n"),
        11,
        "cluster.service_range 10.3.0.0/31 is too small",
    );
}

#[test]
fn dns_service_ip_is_an_address_the_allocator_gives_out() {
    let dns = |ip: &str| cluster(&format!("  dns_service_ip: {ip}\n"));
    accepted(&dns("10.3.0.254"));
    refused(
        &dns("10.9.0.10"),
        11,
        "is outside the service range 10.3.0.0/24",
    );
    refused(
        &dns("10.3.0.0"),
        11,
        "is the network address of cluster.service_range",
    );
    refused(
        &dns("10.3.0.255"),
        11,
        "is the broadcast address of cluster.service_range",
    );
    refused(&dns("10.3.0.1"), 11, "is the kubernetes Service's address");
    // The seeds' four hosts hold three Kubernetes nodes: probes at 210-212.
    for offset in [210, 211, 212] {
        refused(
            &dns(&format!("10.3.0.{offset}")),
            11,
            "is the fixed ClusterIP verify gives one of its own Services",
        );
    }
    // The guestbook's addresses are its workload manifests' now (rules/workloads.rs).
    accepted(&dns("10.3.0.201"));
    // A range too small for verify's addresses has no such conflict (verify skips them).
    accepted(&cluster(
        "  service_range: 10.3.0.0/25\n  dns_service_ip: 10.3.0.100\n",
    ));
}

#[test]
fn cluster_ranges_stay_out_of_special_ranges() {
    refused(
        &cluster("  pod_network: 127.0.0.0/16\n"),
        11,
        "cluster.pod_network 127.0.0.0/16 overlaps 127.0.0.0/8, loopback",
    );
    refused(
        &cluster("  pod_network: 169.254.0.0/16\n"),
        11,
        "overlaps 169.254.0.0/16, link-local",
    );
    refused(
        &cluster("  pod_network: 0.0.0.0/16\n"),
        11,
        "overlaps 0.0.0.0/8",
    );
    refused(
        &cluster("  service_range: 224.1.0.0/24\n  dns_service_ip: 224.1.0.10\n"),
        11,
        "cluster.service_range 224.1.0.0/24 overlaps 224.0.0.0/4, multicast",
    );
    accepted(&cluster(
        "  service_range: 169.254.100.0/24\n  dns_service_ip: 169.254.100.10\n",
    ));
}

#[test]
fn pods_and_services_do_not_overlap() {
    let e = refused(
        &cluster("  pod_network: 10.0.0.0/8\n"),
        11,
        "cluster.service_range 10.3.0.0/24 overlaps cluster.pod_network 10.0.0.0/8",
    );
    assert!(
        e.contains(":11:16:"),
        "the pod network is the setting written: {e}"
    );
}

#[test]
fn pod_network_holds_a_slash_24_per_node() {
    accepted(&cluster("  pod_network: 10.2.0.0/22\n"));
    let e = refused(
        &cluster("  pod_network: 10.2.0.0/23\n"),
        11,
        "cluster.pod_network 10.2.0.0/23 holds 2 /24 node networks, the scenario has 3 Kubernetes nodes",
    );
    assert!(e.contains(":11:16:"), "{e}");
    refused(
        &cluster("  pod_network: 10.2.0.0/25\n"),
        11,
        "holds 0 /24 node networks",
    );
    // Without Kubernetes nodes the pod network only configures flannel's key in etcd.
    accepted(
        "platforms:\n  - {name: etcd-01, groups: [etcd]}\ncluster:\n  pod_network: 10.2.0.0/25\n",
    );
}

#[test]
fn flannel_never_leases_the_first_subnet() {
    assert_eq!(super::flannel_subnets("10.2.0.0/16".parse().unwrap()), 255);
    assert_eq!(super::flannel_subnets("10.2.0.0/23".parse().unwrap()), 3);
    assert_eq!(super::flannel_subnets("10.2.0.0/29".parse().unwrap()), 0);
    let four_nodes = SEEDS.replace(
        "[etcd]",
        "[etcd]\n  - {name: kube-worker-03, groups: [kube-worker]}",
    );
    accepted(&format!(
        "{four_nodes}cluster:\n  pod_network: 10.2.0.0/22\n"
    ));
    refused(
        &format!("{four_nodes}cluster:\n  network: flannel-calico\n  pod_network: 10.2.0.0/22\n"),
        13,
        "cluster.pod_network 10.2.0.0/22 gives flannel 3 subnets (it never leases the first)",
    );
    accepted(&cluster(
        "  network: flannel-calico\n  pod_network: 10.2.0.0/22\n",
    ));
}

#[test]
fn hosts_are_outside_the_cluster_ranges() {
    let e = refused(
        &format!("driver:\n  name: podman\n  subnet: 10.2.5.0/24\n{SEEDS}"),
        3,
        "cluster.pod_network 10.2.0.0/16 overlaps 10.2.5.0/24, the hosts' Podman network",
    );
    assert!(
        e.contains(":3:11:"),
        "the subnet is the setting written: {e}"
    );
    refused(
        &cluster("  pod_network: 172.16.0.0/12\n"),
        11,
        "overlaps 172.30.0.0/16, the pool the Podman driver picks the hosts' /24 from",
    );
    accepted(&format!(
        "driver:\n  name: podman\n  subnet: 172.31.4.0/24\n{SEEDS}cluster:\n  pod_network: 172.30.0.0/16\n"
    ));
    refused(
        &format!("driver:\n  name: vagrant\n  network: 10.3.0.0/24\n{SEEDS}"),
        3,
        "cluster.service_range 10.3.0.0/24 overlaps 10.3.0.0/24, the VMs' private network",
    );
    refused(
        &format!("driver:\n  name: vagrant\n{SEEDS}cluster:\n  pod_network: 192.168.0.0/16\n"),
        13,
        "overlaps 192.168.121.0/24, the VMs' management network",
    );
    let existing = "driver:\n  name: existing\nplatforms:\n  - {name: etcd-01, groups: [etcd], address: 10.3.0.7}\n";
    refused(
        existing,
        4,
        "overlaps 10.3.0.7/32, the address of 'etcd-01'",
    );
}
