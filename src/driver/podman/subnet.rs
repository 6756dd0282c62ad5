//! The Podman network of an instance: a free /24 of 172.30.0.0/16 (clear of Podman's own
//! networks and of the machine's routes) or the scenario's own subnet, and host addresses
//! inside it.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::PodmanError;
use crate::net::{Ipv4Net, NetError};

/// Where auto-allocated /24 networks come from; clear of Podman's default 10.88.0.0/16.
pub(super) const POOL: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 16).expect("a network");
const PODMAN_DEFAULT: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(10, 88, 0, 0), 16).expect("a network");

/// Address `last_octet` inside `subnet` (prefix /16../24); refuses the network address,
/// the gateway (`.1`) and the broadcast address.
pub fn host_ip(subnet: &str, last_octet: u8) -> Result<Ipv4Addr, PodmanError> {
    let net = parse_subnet(subnet)?;
    let reserved = [net.nth(0), net.nth(1), Some(net.broadcast())];
    match net.nth(u32::from(last_octet)) {
        Some(addr) if !reserved.contains(&Some(addr)) => Ok(addr),
        _ => Err(PodmanError::InvalidSubnet {
            subnet: subnet.to_string(),
            reason: format!("host octet {last_octet} is the network, gateway or broadcast address"),
        }),
    }
}

/// A scenario's own subnet: a /16../24 network address clear of Podman's default network.
pub(super) fn parse_subnet(subnet: &str) -> Result<Ipv4Net, PodmanError> {
    let invalid = |reason: &str| PodmanError::InvalidSubnet {
        subnet: subnet.to_string(),
        reason: reason.to_string(),
    };
    let net = match subnet.trim().parse::<Ipv4Net>() {
        Ok(net) => net,
        Err(NetError::HostBits(_)) => {
            return Err(invalid("host bits are set; give the network address"));
        }
        Err(_) => return Err(invalid("not an IPv4 CIDR like 172.30.17.0/24")),
    };
    if !(16..=24).contains(&net.prefix()) {
        return Err(invalid("prefix must be between /16 and /24"));
    }
    if net.overlaps(&PODMAN_DEFAULT) {
        return Err(invalid("overlaps Podman's default network 10.88.0.0/16"));
    }
    Ok(net)
}

/// A free /24 of the pool, scanning from `start` (spreads concurrent instances apart).
pub(super) fn allocate_subnet(used: &[Ipv4Net], start: u8) -> Option<Ipv4Net> {
    (0..=255u8)
        .filter_map(|i| POOL.subnet(24, u32::from(start.wrapping_add(i))))
        .find(|candidate| used.iter().all(|u| !u.overlaps(candidate)))
}

/// Subnets of existing Podman networks, from `podman network ls --format json`.
pub(super) fn podman_subnets(json: &str) -> Vec<Ipv4Net> {
    let Ok(networks) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return Vec::new();
    };
    networks
        .iter()
        .filter_map(|n| n.get("subnets")?.as_array())
        .flatten()
        .filter_map(|s| s.get("subnet")?.as_str()?.parse().ok())
        .collect()
}

/// Non-default IPv4 routes of the machine (/proc/net/route), so a test network never
/// shadows a network the machine is really on.
pub(super) fn route_subnets(proc_net_route: &str) -> Vec<Ipv4Net> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The file holds addresses in the kernel's (little-endian) byte order.
            let dest = u32::from_be(dest.to_le());
            let mask = u32::from_be(mask.to_le());
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            (prefix > 0).then(|| Ipv4Net::containing(Ipv4Addr::from(dest), prefix))?
        })
        .collect()
}

/// Where an instance starts looking for a free /24, so instances created at once try
/// different subnets.
pub(super) fn instance_seed(instance: &str) -> u8 {
    Sha256::digest(instance.as_bytes())[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Net {
        text.parse().expect("valid cidr")
    }

    #[test]
    fn allocation_skips_used_and_overlapping_subnets() {
        let used = [
            cidr("10.88.0.0/16"),
            cidr("172.30.5.0/24"),
            cidr("172.30.6.0/23"), // covers .6 and .7
        ];
        assert_eq!(allocate_subnet(&used, 5), Some(cidr("172.30.8.0/24")));
        assert_eq!(allocate_subnet(&used, 4), Some(cidr("172.30.4.0/24")));
        // Wraps around the end of the pool.
        let used = [cidr("172.30.255.0/24")];
        assert_eq!(allocate_subnet(&used, 255), Some(cidr("172.30.0.0/24")));
    }

    #[test]
    fn allocation_fails_when_pool_is_covered() {
        assert_eq!(allocate_subnet(&[cidr("172.16.0.0/12")], 9), None);
        let all: Vec<Ipv4Net> = (0..=255u32)
            .map(|i| POOL.subnet(24, i).expect("inside the pool"))
            .collect();
        assert_eq!(allocate_subnet(&all, 0), None);
    }

    #[test]
    fn podman_network_json_yields_subnets() {
        let json = r#"[{"name":"podman","subnets":[{"subnet":"10.88.0.0/16","gateway":"10.88.0.1"}]},
                       {"name":"other","subnets":[{"subnet":"172.30.3.0/24"},{"subnet":"fd00::/64"}]},
                       {"name":"nosubnets"}]"#;
        assert_eq!(
            podman_subnets(json),
            vec![cidr("10.88.0.0/16"), cidr("172.30.3.0/24")]
        );
        assert!(podman_subnets("not json").is_empty());
    }

    #[test]
    fn proc_net_route_skips_default_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    br0\t00001EAC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            route_subnets(text),
            vec![cidr("192.0.2.0/24"), cidr("172.30.0.0/16")]
        );
    }

    #[test]
    fn host_ip_rejects_reserved_addresses_and_bad_subnets() {
        assert_eq!(
            host_ip("172.30.17.0/24", 11).ok(),
            Some(Ipv4Addr::new(172, 30, 17, 11))
        );
        for octet in [0, 1, 255] {
            assert!(host_ip("172.30.17.0/24", octet).is_err(), "octet {octet}");
        }
        assert!(host_ip("172.30.17.5/24", 11).is_err(), "host bits set");
        assert!(host_ip("172.30.0.0/28", 11).is_err(), "prefix too long");
        assert!(host_ip("10.88.3.0/24", 11).is_err(), "podman default");
        assert!(host_ip("nonsense", 11).is_err());
        // In a /16 the last octet 255 of the first /24 is an ordinary address.
        assert_eq!(
            host_ip("172.31.0.0/16", 255).ok(),
            Some(Ipv4Addr::new(172, 31, 0, 255))
        );
    }

    #[test]
    fn instance_seed_is_deterministic() {
        assert_eq!(instance_seed("kf-a"), instance_seed("kf-a"));
        let seeds: std::collections::HashSet<u8> =
            (0..20).map(|i| instance_seed(&format!("kf-{i}"))).collect();
        assert!(seeds.len() > 10, "seeds should spread instances apart");
    }
}
