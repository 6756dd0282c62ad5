//! What each driver needs of the hosts it makes or reaches, checked with the drivers' own
//! rules (`driver::podman::host_ip`, `driver::vagrant::private_ip`) so that `create` never
//! stops half way: addresses on the host network, memory and CPUs the runtime accepts,
//! privileges a Kubernetes node needs, reachable `existing` hosts.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Refusal;
use crate::driver::{host_image, podman, vagrant};
use crate::net::Ipv4Net;
use crate::scenario::{DriverConfig, Group, Platform, Scenario};

/// Podman refuses a memory limit below 6 MiB ("minimum memory limit allowed is 6MB").
const PODMAN_MIN_MEMORY_MB: u64 = 6;
/// The Vagrant driver refuses smaller VMs.
const VAGRANT_MIN_MEMORY_MB: u64 = 256;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    match &s.driver {
        DriverConfig::Existing { .. } => existing(s),
        DriverConfig::Podman { subnet, packages } => {
            address_plan(s)?;
            podman(s, subnet.as_deref())?;
            image_packages(packages)
        }
        DriverConfig::Vagrant {
            network,
            management_network,
            cpus,
            ..
        } => {
            address_plan(s)?;
            vagrant(s, network, management_network, *cpus)
        }
    }
}

/// Hosts that already exist are reached at their `address`, which etcd's and the API
/// server's URLs (`https://<address>:<port>`) and the pod routes use as it is: IPv4, one
/// host each.
fn existing(s: &Scenario) -> Result<(), Refusal> {
    let mut seen: HashMap<IpAddr, &str> = HashMap::new();
    for (i, p) in s.platforms.iter().enumerate() {
        let at = format!("platforms.{i}.address");
        if let Some(octet) = p.address_octet {
            return Err(Refusal::new(
                format!("platforms.{i}.address_octet"),
                format!(
                    "platform '{}': address_octet {octet} means nothing to driver 'existing', which reaches the host at its address",
                    p.name
                ),
            ));
        }
        let Some(address) = p.address else {
            return Err(Refusal::new(
                format!("platforms.{i}.name"),
                format!(
                    "platform '{}' needs an address: driver 'existing' connects to hosts that already exist",
                    p.name
                ),
            ));
        };
        if address.is_ipv6() {
            return Err(Refusal::new(
                at,
                format!(
                    "platform '{}': address {address} is IPv6; the cluster's URLs, certificates and pod routes are IPv4",
                    p.name
                ),
            ));
        }
        if let Some(other) = seen.insert(address, &p.name) {
            return Err(Refusal::new(
                at,
                format!(
                    "platforms '{other}' and '{}' have the same address {address}: two etcd members or nodes cannot share a host's ports and name (give one platform both groups instead)",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

/// Hosts the driver makes get `<network>.<octet>`: 2-254 (the network, gateway and
/// broadcast addresses are taken), each octet once; an `address` would be ignored.
fn address_plan(s: &Scenario) -> Result<(), Refusal> {
    let mut octets = HashMap::new();
    for (i, (p, octet)) in s.platforms.iter().zip(s.address_octets()).enumerate() {
        let refuse = |message: String| {
            Refusal::new(format!("platforms.{i}.address_octet"), message)
                .or_at(format!("platforms.{i}.name"))
        };
        if let Some(address) = p.address {
            return Err(Refusal::new(
                format!("platforms.{i}.address"),
                format!(
                    "platform '{}': address {address} is for driver 'existing' only; this driver gives the host octet {octet} of its network (address_octet chooses it)",
                    p.name
                ),
            ));
        }
        if !(2..=254).contains(&octet) {
            return Err(refuse(format!(
                "platform '{}': address octet {octet} is outside 2-254",
                p.name
            )));
        }
        if let Some(other) = octets.insert(octet, &p.name) {
            return Err(refuse(format!(
                "platforms '{other}' and '{}' would both get address octet {octet}",
                p.name
            )));
        }
    }
    Ok(())
}

fn podman(s: &Scenario, subnet: Option<&str>) -> Result<(), Refusal> {
    if let Some(subnet) = subnet {
        let net: Ipv4Net = subnet
            .parse()
            .map_err(|e| Refusal::new("driver.subnet", format!("driver.subnet: {e}")))?;
        if net.prefix() != 24 {
            return Err(Refusal::new(
                "driver.subnet",
                format!("driver.subnet: '{subnet}' must be a /24"),
            ));
        }
        for octet in s.address_octets() {
            podman::host_ip(subnet, octet)
                .map_err(|e| Refusal::new("driver.subnet", format!("driver.subnet: {e}")))?;
        }
    }
    for (i, p) in s.platforms.iter().enumerate() {
        if p.memory_mb.is_some_and(|mb| mb < PODMAN_MIN_MEMORY_MB) {
            return Err(Refusal::new(
                format!("platforms.{i}.memory_mb"),
                format!(
                    "platform '{}': memory_mb must be at least {PODMAN_MIN_MEMORY_MB}: podman refuses a smaller memory limit",
                    p.name
                ),
            ));
        }
        if is_node(p) && p.privileged == Some(false) {
            return Err(Refusal::new(
                format!("platforms.{i}.privileged"),
                format!(
                    "platform '{}' is a Kubernetes node and cannot run unprivileged: containerd, the CNI bridge and kube-proxy's iptables rules need a privileged container",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

/// Extra packages go to debootstrap's `--include` as they are: Debian package names
/// (policy 5.6.7), each once, none the host image already holds (a second image for
/// nothing).
fn image_packages(packages: &[String]) -> Result<(), Refusal> {
    for (i, package) in packages.iter().enumerate() {
        let at = format!("driver.packages.{i}");
        let valid = package.len() >= 2
            && package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && package
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !valid {
            return Err(Refusal::new(
                at,
                format!(
                    "driver.packages: '{package}' is not a Debian package name (lower-case letters, digits, '+', '-' and '.', starting with a letter or digit, at least 2 characters)"
                ),
            ));
        }
        if packages[..i].contains(package) {
            return Err(Refusal::new(
                at,
                format!("driver.packages: '{package}' is listed twice"),
            ));
        }
        if host_image::base_packages().contains(&package.as_str()) {
            return Err(Refusal::new(
                at,
                format!(
                    "driver.packages: '{package}' is in the host image already; list only packages it lacks"
                ),
            ));
        }
    }
    Ok(())
}

fn vagrant(s: &Scenario, network: &str, management: &str, cpus: u32) -> Result<(), Refusal> {
    for octet in s.address_octets() {
        vagrant::private_ip(network, octet)
            .map_err(|e| Refusal::new("driver.network", format!("driver.network: {e}")))?;
    }
    let private: Ipv4Net = network.parse().expect("checked by private_ip");
    let management_net: Ipv4Net = management.parse().map_err(|e| {
        Refusal::new(
            "driver.management_network",
            format!("driver.management_network: {e}"),
        )
    })?;
    if private.overlaps(&management_net) {
        return Err(Refusal::new(
            "driver.management_network",
            format!(
                "driver.management_network {management_net} overlaps driver.network {private}: libvirt cannot create two networks over the same addresses"
            ),
        )
        .or_at("driver.network"));
    }
    if cpus == 0 {
        return Err(Refusal::new(
            "driver.cpus",
            "driver.cpus must be at least 1",
        ));
    }
    for (i, p) in s.platforms.iter().enumerate() {
        if p.memory_mb.is_some_and(|mb| mb < VAGRANT_MIN_MEMORY_MB) {
            return Err(Refusal::new(
                format!("platforms.{i}.memory_mb"),
                format!(
                    "platform '{}': memory_mb must be at least {VAGRANT_MIN_MEMORY_MB} for a VM",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

fn is_node(p: &Platform) -> bool {
    p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    #[test]
    fn address_octets_fit_the_host_network_once() {
        let text = SEEDS.replace(
            "groups: [kube-master]",
            "groups: [kube-master]\n    address_octet: 101",
        );
        let e = refused(
            &text,
            6,
            "platforms 'etcd-01' and 'kube-master-01' would both get address octet 101",
        );
        assert!(e.contains(":6:20:"), "{e}");
        let text = SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    address_octet: 255");
        refused(&text, 4, "address octet 255 is outside 2-254");
        let text = SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    address: 10.0.0.5");
        refused(&text, 4, "address 10.0.0.5 is for driver 'existing' only");
    }

    #[test]
    fn existing_hosts_have_distinct_ipv4_addresses() {
        let host = |name: &str, group: &str, address: &str| {
            format!("  - {{name: {name}, groups: [{group}], address: {address}}}\n")
        };
        let text = |a: &str, b: &str| {
            format!(
                "driver:\n  name: existing\nplatforms:\n{}{}",
                host("etcd-01", "etcd", a),
                host("kube-master-01", "kube-master", b)
            )
        };
        accepted(&text("192.168.5.10", "192.168.5.11"));
        refused(
            &text("192.168.5.10, address_octet: 7", "192.168.5.11"),
            4,
            "address_octet 7 means nothing to driver 'existing'",
        );
        refused(
            &text("192.168.5.10", "192.168.5.10"),
            5,
            "platforms 'etcd-01' and 'kube-master-01' have the same address 192.168.5.10",
        );
        refused(
            &text("192.168.5.10", "fd00::11"),
            5,
            "address fd00::11 is IPv6",
        );
        refused(
            &format!("driver:\n  name: existing\n  user: admin\n{SEEDS}"),
            5,
            "platform 'etcd-01' needs an address",
        );
        // Octets mean nothing to existing hosts: eleven etcd members are fine.
        let many: String = (1..=11)
            .map(|n| host(&format!("etcd-{n:02}"), "etcd", &format!("192.168.5.{n}")))
            .collect();
        accepted(&format!("driver:\n  name: existing\nplatforms:\n{many}"));
    }

    #[test]
    fn podman_subnet_memory_and_privileges() {
        let podman = |driver: &str, text: &str| format!("driver:\n  name: podman\n{driver}{text}");
        accepted(&podman("  subnet: 172.30.9.0/24\n", SEEDS));
        refused(
            &podman("  subnet: 172.30.8.0/23\n", SEEDS),
            3,
            "must be a /24",
        );
        refused(&podman("  subnet: 172.30.9.1/24\n", SEEDS), 3, "host bits");
        refused(
            &podman("  subnet: 10.88.3.0/24\n", SEEDS),
            3,
            "overlaps Podman's default network 10.88.0.0/16",
        );
        let small = SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    memory_mb: 5");
        refused(
            &podman("", &small),
            6,
            "memory_mb must be at least 6: podman refuses",
        );
        let unprivileged = SEEDS.replace(
            "groups: [kube-worker]",
            "groups: [kube-worker]\n    privileged: false",
        );
        refused(
            &podman("", &unprivileged),
            10,
            "platform 'kube-worker-01' is a Kubernetes node and cannot run unprivileged",
        );
        let etcd_unprivileged =
            SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    privileged: false");
        accepted(&podman("", &etcd_unprivileged));
    }

    #[test]
    fn podman_image_packages_are_debian_names_the_image_lacks() {
        let podman = |driver: &str| format!("driver:\n  name: podman\n{driver}{SEEDS}");
        accepted(&podman("  packages: [python3, python3-apt, libc++1]\n"));
        accepted(&podman("  packages: []\n"));
        refused(
            &podman("  packages:\n    - python3\n    - Python3\n"),
            5,
            "driver.packages: 'Python3' is not a Debian package name",
        );
        refused(
            &podman("  packages: [python3, \"a b\"]\n"),
            3,
            "'a b' is not a Debian package name",
        );
        refused(
            &podman("  packages:\n    - python3\n    - python3\n"),
            5,
            "driver.packages: 'python3' is listed twice",
        );
        refused(
            &podman("  packages: [sudo]\n"),
            3,
            "driver.packages: 'sudo' is in the host image already",
        );
    }

    #[test]
    fn vagrant_network_cpus_and_memory() {
        let vagrant =
            |driver: &str, text: &str| format!("driver:\n  name: vagrant\n{driver}{text}");
        accepted(&vagrant("  network: 10.0.0.0/24\n", SEEDS));
        refused(
            &vagrant("  network: 10.0.0.0/16\n", SEEDS),
            3,
            "driver.network: network '10.0.0.0/16' must be a /24",
        );
        refused(
            &vagrant("  network: 10.0.0/24\n", SEEDS),
            3,
            "driver.network: '10.0.0' is not an IPv4 address",
        );
        refused(
            &vagrant("  management_network: 10.0.0.0/16\n", SEEDS),
            3,
            "driver.management_network 10.0.0.0/16 overlaps driver.network 10.0.0.0/24",
        );
        refused(
            &vagrant("  management_network: nope\n", SEEDS),
            3,
            "driver.management_network: 'nope' is not a CIDR",
        );
        refused(
            &vagrant("  cpus: 0\n", SEEDS),
            3,
            "driver.cpus must be at least 1",
        );
        let small = SEEDS.replace("groups: [etcd]", "groups: [etcd]\n    memory_mb: 128");
        refused(
            &vagrant("", &small),
            6,
            "memory_mb must be at least 256 for a VM",
        );
    }
}
