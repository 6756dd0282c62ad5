//! The address plan: the pod network, the service range, the DNS Service's address and the
//! hosts' own network must fit together the way Kubernetes, the pod network and the kernel
//! need them to. Each rule names the component that would fail.

use std::net::{IpAddr, Ipv4Addr};

use super::Refusal;
use crate::net::Ipv4Net;
use crate::scenario::{DriverConfig, Group, PodNetwork, Scenario};

/// Each Kubernetes node gets one /24 of the pod network (`cluster::NODE_CIDR_PREFIX`).
const NODE_PREFIX: u8 = 24;
/// kube-apiserver refuses a service range with more than 20 host bits ("specified
/// --service-cluster-ip-range is too large", `validateClusterIPFlags` in v1.20's
/// cmd/kube-apiserver/app/options/validation.go; `validateMaxCIDRRange(.., 20, ..)` later).
const MAX_SERVICE_HOST_BITS: u8 = 20;
/// The smallest service range with room for the kubernetes Service (.1) and the DNS
/// Service besides the network and broadcast addresses, which the allocator never gives out.
const MIN_SERVICE_PREFIX: u8 = 30;
/// Where the Podman driver picks a host network from when `driver.subnet` is not given
/// (`driver::podman` allocates a free /24 of it).
const PODMAN_POOL: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 16).expect("a network");

/// Ranges no pod or Service address may come from, and why.
const NOT_FOR_PODS: [(Ipv4Net, &str); 4] = [
    (
        net(0, 0, 8),
        "'this network' (RFC 6890), never a destination",
    ),
    (net(127, 0, 8), "loopback: a pod reaching it reaches itself"),
    (
        net(169, 254, 16),
        "link-local: Kubernetes refuses such addresses as Service endpoints",
    ),
    (
        net(224, 0, 4),
        "multicast: the kernel refuses TCP connections to it",
    ),
];

const fn net(a: u8, b: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(a, b, 0, 0), prefix).expect("a network")
}

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    service_range(s)?;
    dns_service_ip(s)?;
    special_ranges(s)?;
    pods_and_services_apart(s)?;
    pod_network_capacity(s)?;
    host_networks_apart(s)
}

fn service_range(s: &Scenario) -> Result<(), Refusal> {
    let range = s.cluster.service_range;
    if 32 - range.prefix() > MAX_SERVICE_HOST_BITS {
        return Err(Refusal::new(
            "cluster.service_range",
            format!(
                "cluster.service_range {range} is too large: kube-apiserver refuses a service range larger than /{} (\"specified --service-cluster-ip-range is too large\")",
                32 - MAX_SERVICE_HOST_BITS
            ),
        ));
    }
    if range.prefix() > MIN_SERVICE_PREFIX {
        return Err(Refusal::new(
            "cluster.service_range",
            format!(
                "cluster.service_range {range} is too small: it needs the kubernetes Service's address (.1) and the DNS Service's besides its network and broadcast addresses (at most /{MIN_SERVICE_PREFIX})"
            ),
        ));
    }
    Ok(())
}

/// The DNS Service is created with this ClusterIP; the allocator refuses addresses it never
/// hands out and addresses already taken.
fn dns_service_ip(s: &Scenario) -> Result<(), Refusal> {
    let (range, ip) = (s.cluster.service_range, s.cluster.dns_service_ip);
    let refuse = |why: String| {
        Refusal::new(
            "cluster.dns_service_ip",
            format!("cluster.dns_service_ip {ip} {why}"),
        )
        .or_at("cluster.service_range")
    };
    if !range.contains(ip) {
        return Err(refuse(format!("is outside the service range {range}")));
    }
    if ip == range.network() || ip == range.broadcast() {
        let which = if ip == range.network() {
            "network"
        } else {
            "broadcast"
        };
        return Err(refuse(format!(
            "is the {which} address of cluster.service_range {range}: kube-apiserver never allocates it to a Service, so the DNS Service could not be created"
        )));
    }
    if range.nth(1) == Some(ip) {
        return Err(refuse(format!(
            "is the kubernetes Service's address (the first of cluster.service_range {range}): the DNS Service could not be created"
        )));
    }
    let nodes = s
        .platforms
        .iter()
        .filter(|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker))
        .count();
    if let Some(offset) = crate::cluster::verify_service_offsets(nodes)
        .into_iter()
        .find(|&o| range.nth(o) == Some(ip))
    {
        return Err(refuse(format!(
            "is the fixed ClusterIP verify gives one of its own Services (offset {offset} of cluster.service_range {range}): verify would fail with 'provided IP is already allocated'"
        )));
    }
    Ok(())
}

fn special_ranges(s: &Scenario) -> Result<(), Refusal> {
    let ranges = [
        (
            "cluster.pod_network",
            s.cluster.pod_network,
            &NOT_FOR_PODS[..],
        ),
        // Link-local ClusterIPs do work: kube-proxy rewrites them before routing.
        (
            "cluster.service_range",
            s.cluster.service_range,
            &[NOT_FOR_PODS[0], NOT_FOR_PODS[1], NOT_FOR_PODS[3]][..],
        ),
    ];
    for (setting, range, forbidden) in ranges {
        if let Some((special, why)) = forbidden.iter().find(|(n, _)| n.overlaps(&range)) {
            return Err(Refusal::new(
                setting,
                format!("{setting} {range} overlaps {special}, {why}"),
            ));
        }
    }
    Ok(())
}

/// A pod address inside the service range would be taken for a Service by kube-proxy (and
/// Kubernetes' networking model requires the two apart).
fn pods_and_services_apart(s: &Scenario) -> Result<(), Refusal> {
    let (pods, services) = (s.cluster.pod_network, s.cluster.service_range);
    if pods.overlaps(&services) {
        return Err(Refusal::new(
            "cluster.service_range",
            format!(
                "cluster.service_range {services} overlaps cluster.pod_network {pods}: kube-proxy would take pod addresses for Service addresses"
            ),
        )
        .or_at("cluster.pod_network"));
    }
    Ok(())
}

/// Every Kubernetes node gets the next /24 of the pod network in host order (the bridge
/// network routes them; kubelet's podCIDR); flannel leases its own /24s and never the
/// first, so it holds one less.
fn pod_network_capacity(s: &Scenario) -> Result<(), Refusal> {
    let pods = s.cluster.pod_network;
    let nodes: Vec<usize> = (0..s.platforms.len())
        .filter(|&i| {
            let p = &s.platforms[i];
            p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker)
        })
        .collect();
    let per_node = match pods.prefix() {
        p if p > NODE_PREFIX => 0,
        p => 1u64 << (NODE_PREFIX - p),
    };
    let (available, what) = match s.cluster.network {
        PodNetwork::Bridge => (
            per_node,
            format!("holds {per_node} /{NODE_PREFIX} node networks"),
        ),
        PodNetwork::FlannelCalico => {
            let leases = flannel_subnets(pods);
            (
                per_node.min(leases),
                format!(
                    "gives flannel {leases} subnets (it never leases the first) and holds {per_node} /{NODE_PREFIX} node networks"
                ),
            )
        }
    };
    match nodes.get(usize::try_from(available).unwrap_or(usize::MAX)) {
        None => Ok(()),
        Some(&first_left_out) => Err(Refusal::new(
            "cluster.pod_network",
            format!(
                "cluster.pod_network {pods} {what}, the scenario has {} Kubernetes nodes: each node needs one /{NODE_PREFIX} of it",
                nodes.len()
            ),
        )
        .or_at(format!("platforms.{first_left_out}.name"))),
    }
}

/// How many subnets flannel leases out of `network` with the default `SubnetLen`: /24s
/// from a /22 or larger, else a quarter of the network each (flannel's
/// `CheckNetworkConfig`), the first one never; none below a /28.
fn flannel_subnets(network: Ipv4Net) -> u64 {
    let prefix = network.prefix();
    let subnet_len = match prefix {
        p if p > 28 => return 0,
        p if p <= 22 => 24,
        p => p + 2,
    };
    (1u64 << (subnet_len - prefix)) - 1
}

/// The networks the hosts are on, with the setting that decides each.
fn host_networks(s: &Scenario) -> Vec<(String, Ipv4Net, String)> {
    match &s.driver {
        DriverConfig::Podman {
            subnet: Some(subnet),
            ..
        } => subnet
            .parse()
            .map(|n| {
                vec![(
                    "driver.subnet".into(),
                    n,
                    "the hosts' Podman network".into(),
                )]
            })
            .unwrap_or_default(),
        DriverConfig::Podman { subnet: None, .. } => vec![(
            "driver".into(),
            PODMAN_POOL,
            "the pool the Podman driver picks the hosts' /24 from (driver.subnet chooses one)"
                .into(),
        )],
        DriverConfig::Vagrant {
            network,
            management_network,
            ..
        } => [
            ("driver.network", network, "the VMs' private network"),
            (
                "driver.management_network",
                management_network,
                "the VMs' management network",
            ),
        ]
        .into_iter()
        .filter_map(|(at, text, what)| Some((at.into(), text.parse().ok()?, what.into())))
        .collect(),
        DriverConfig::Existing { .. } => s
            .platforms
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.address? {
                IpAddr::V4(a) => Some((
                    format!("platforms.{i}.address"),
                    Ipv4Net::new(a, 32)?,
                    format!("the address of '{}'", p.name),
                )),
                IpAddr::V6(_) => None,
            })
            .collect(),
    }
}

/// Hosts inside the pod network or the service range: routes to other nodes' pods go via
/// host addresses, and kube-proxy rewrites traffic to the service range.
fn host_networks_apart(s: &Scenario) -> Result<(), Refusal> {
    let cluster = [
        ("cluster.pod_network", s.cluster.pod_network),
        ("cluster.service_range", s.cluster.service_range),
    ];
    for (at, host_net, what) in host_networks(s) {
        for (setting, range) in cluster {
            if range.overlaps(&host_net) {
                return Err(Refusal::new(
                    setting,
                    format!(
                        "{setting} {range} overlaps {host_net}, {what}: traffic between the hosts would be routed into the cluster's own ranges"
                    ),
                )
                .or_at(at));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
