//! Where a [`Resource::Route`](super::Resource::Route) sends its traffic, how that reads in
//! `ip route` output, and the command that puts it in place.

use std::fmt;
use std::net::IpAddr;

use crate::ssh::shell_quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Through a gateway on a directly connected network (another node).
    Gateway(IpAddr),
    /// Out of the interface that holds this host address, from that address. For a range
    /// that exists only as NAT rules (the service range): a host without a default route
    /// (a VM on an isolated network) could not even open a connection to it otherwise.
    Local(IpAddr),
}

impl Hop {
    /// Whether a line of `ip -4 route show exact <destination>` already goes this way.
    pub fn matches(&self, route: &str) -> bool {
        let after = |key: &str| {
            let mut words = route.split_whitespace();
            words.find(|w| *w == key).and_then(|_| words.next())
        };
        match self {
            Hop::Gateway(gateway) => after("via") == Some(gateway.to_string().as_str()),
            Hop::Local(address) => {
                after("via").is_none() && after("src") == Some(address.to_string().as_str())
            }
        }
    }

    /// The command that makes `destination` go this way (replacing any other route to it).
    pub fn replace_script(&self, destination: &str) -> String {
        let destination = shell_quote(destination);
        match self {
            Hop::Gateway(gateway) => format!("ip route replace {destination} via {gateway}\n"),
            Hop::Local(address) => format!(
                "kf_dev=$(ip -o -4 addr show to {address} | head -n 1 | cut -d' ' -f2)\n[ -n \"$kf_dev\" ] || {{ echo \"no interface holds {address}\" >&2; exit 1; }}\nip route replace {destination} dev \"$kf_dev\" src {address}\n"
            ),
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Gateway(gateway) => write!(f, "via {gateway}"),
            Hop::Local(address) => write!(f, "src {address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_route_matches_only_that_gateway() {
        let hop = Hop::Gateway("172.30.1.121".parse().unwrap());
        assert!(hop.matches("10.2.1.0/24 via 172.30.1.121 dev eth0"));
        assert!(!hop.matches("10.2.1.0/24 via 172.30.1.99 dev eth0"));
        assert!(!hop.matches(""));
    }

    #[test]
    fn a_local_route_matches_only_a_direct_route_from_that_address() {
        let hop = Hop::Local("10.0.0.121".parse().unwrap());
        assert!(hop.matches("10.3.0.0/24 dev eth1 scope link src 10.0.0.121"));
        assert!(!hop.matches("10.3.0.0/24 dev eth1 scope link src 10.0.0.122"));
        assert!(!hop.matches("10.3.0.0/24 via 10.0.0.121 dev eth1 src 10.0.0.121"));
        assert!(!hop.matches("10.3.0.0/24 dev eth1 scope link"));
    }
}
