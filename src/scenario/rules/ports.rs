//! Ports: the ones the scenario sets (kube-apiserver's, etcd's client and peer ports) are
//! real ports, and no two programs on one host listen on the same one, counting the ports
//! the installer's components bind by their templates and Kubernetes' defaults and the
//! host's SSH server. The one that starts second would fail with "address already in use".

use super::Refusal;
use crate::scenario::{DriverConfig, Group, Platform, Scenario};

/// Where a listener binds: a TCP listener on the wildcard address clashes with any other on
/// its port; ones bound to different addresses do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    Any,
    HostAddress,
    Loopback,
}

/// One listening socket on a host.
#[derive(Debug, Clone, Copy)]
struct Listener {
    port: u16,
    bind: Bind,
    what: &'static str,
    /// The scenario setting that chose the port; `None` for fixed ports.
    setting: Option<&'static str>,
}

impl Listener {
    fn fixed(port: u16, bind: Bind, what: &'static str) -> Listener {
        Listener {
            port,
            bind,
            what,
            setting: None,
        }
    }

    fn clashes(&self, other: &Listener) -> bool {
        self.port == other.port
            && (self.bind == Bind::Any || other.bind == Bind::Any || self.bind == other.bind)
    }
}

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    not_zero(s)?;
    for (i, p) in s.platforms.iter().enumerate() {
        let listeners = listeners(s, p);
        for (n, a) in listeners.iter().enumerate() {
            if let Some(b) = listeners[..n].iter().find(|b| b.clashes(a)) {
                return Err(clash(i, p, b, a));
            }
        }
    }
    Ok(())
}

/// Port 0 asks the kernel for any free port: etcd would advertise `:0` to its peers and
/// clients, and kube-apiserver refuses `--secure-port=0`.
fn not_zero(s: &Scenario) -> Result<(), Refusal> {
    let has_master = s.platforms.iter().any(|p| p.in_group(Group::KubeMaster));
    let ports = [
        ("cluster.etcd.client_port", s.cluster.etcd.client_port, true),
        ("cluster.etcd.peer_port", s.cluster.etcd.peer_port, true),
        (
            "cluster.apiserver_port",
            s.cluster.apiserver_port,
            has_master,
        ),
    ];
    match ports.iter().find(|(_, port, used)| *used && *port == 0) {
        Some((setting, _, _)) => Err(Refusal::new(
            *setting,
            format!(
                "{setting} must be 1-65535: with 0 the component would listen on a random port nobody is told about"
            ),
        )),
        None => Ok(()),
    }
}

/// Everything that listens on `p` once converged, from the templates: etcd on the member's
/// address and 127.0.0.1 (client) and the member's address (peer); kubelet on the node's
/// address (10250, kubelet-config.yaml) and 127.0.0.1:10248 (healthz); kube-proxy on
/// 127.0.0.1:10249 (metrics) and :10256 (healthz, all addresses); on masters
/// kube-apiserver on all addresses, kube-controller-manager on 127.0.0.1:10257 and
/// kube-scheduler on 127.0.0.1:10259 (their secure ports; the insecure ones are off).
fn listeners(s: &Scenario, p: &Platform) -> Vec<Listener> {
    use Bind::*;
    let etcd = &s.cluster.etcd;
    let mut out = vec![ssh_server(s)];
    if p.in_group(Group::Etcd) {
        for bind in [HostAddress, Loopback] {
            out.push(Listener {
                port: etcd.client_port,
                bind,
                what: "etcd's client port",
                setting: Some("cluster.etcd.client_port"),
            });
        }
        out.push(Listener {
            port: etcd.peer_port,
            bind: HostAddress,
            what: "etcd's peer port",
            setting: Some("cluster.etcd.peer_port"),
        });
    }
    if p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker) {
        out.extend([
            Listener::fixed(10250, HostAddress, "kubelet"),
            Listener::fixed(10248, Loopback, "kubelet's health check"),
            Listener::fixed(10249, Loopback, "kube-proxy's metrics"),
            Listener::fixed(10256, Any, "kube-proxy's health check"),
        ]);
    }
    if p.in_group(Group::KubeMaster) {
        out.extend([
            Listener {
                port: s.cluster.apiserver_port,
                bind: Any,
                what: "kube-apiserver",
                setting: Some("cluster.apiserver_port"),
            },
            Listener::fixed(10257, Loopback, "kube-controller-manager"),
            Listener::fixed(10259, Loopback, "kube-scheduler"),
        ]);
    }
    out
}

/// The host's SSH server: on port 22 of the hosts the drivers make, on the driver's `port`
/// of existing hosts.
fn ssh_server(s: &Scenario) -> Listener {
    let what = "the host's SSH server";
    match s.driver {
        DriverConfig::Existing { port, .. } => Listener {
            port,
            bind: Bind::Any,
            what,
            setting: Some("driver.port"),
        },
        _ => Listener::fixed(22, Bind::Any, what),
    }
}

/// Names the settings that chose the port (one, or both), pointing at the one written.
fn clash(i: usize, p: &Platform, first: &Listener, second: &Listener) -> Refusal {
    let port = second.port;
    let fails = "the one that starts second fails with 'address already in use'";
    let refusal = match (second.setting, first.setting) {
        (Some(b), Some(a)) => Refusal::new(
            b,
            format!(
                "{b} and {a} are both {port} on '{}': {} and {} cannot both listen on it, {fails}",
                p.name, second.what, first.what
            ),
        )
        .or_at(a),
        (Some(setting), None) | (None, Some(setting)) => {
            let other = if second.setting.is_some() {
                first
            } else {
                second
            };
            Refusal::new(
                setting,
                format!(
                    "{setting} {port} is also the port of {} on '{}': {fails}",
                    other.what, p.name
                ),
            )
        }
        (None, None) => unreachable!("the fixed ports are all different"),
    };
    refusal.or_at(format!("platforms.{i}.groups"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    fn cluster(settings: &str) -> String {
        format!("{SEEDS}cluster:\n{settings}")
    }

    #[test]
    fn ports_are_not_zero() {
        refused(
            &cluster("  apiserver_port: 0\n"),
            11,
            "cluster.apiserver_port must be 1-65535",
        );
        refused(
            &cluster("  etcd:\n    peer_port: 0\n"),
            12,
            "cluster.etcd.peer_port must be 1-65535",
        );
        // No master, no kube-apiserver.
        accepted(
            "platforms:\n  - {name: etcd-01, groups: [etcd]}\ncluster:\n  apiserver_port: 0\n",
        );
    }

    #[test]
    fn etcd_client_and_peer_ports_differ() {
        let e = refused(
            &cluster("  etcd:\n    client_port: 2380\n"),
            12,
            "cluster.etcd.peer_port and cluster.etcd.client_port are both 2380 on 'etcd-01'",
        );
        assert!(
            e.contains(":12:18:"),
            "the written setting is pointed at: {e}"
        );
    }

    #[test]
    fn components_sharing_a_host_use_different_ports() {
        let stacked = SEEDS.replace("[kube-master]", "[etcd, kube-master]");
        accepted(&stacked);
        refused(
            &format!("{stacked}cluster:\n  apiserver_port: 2379\n"),
            11,
            "cluster.apiserver_port and cluster.etcd.client_port are both 2379 on 'kube-master-01'",
        );
        refused(
            &format!("{stacked}cluster:\n  etcd:\n    client_port: 10250\n"),
            12,
            "cluster.etcd.client_port 10250 is also the port of kubelet on 'kube-master-01'",
        );
        // etcd's peer port binds the host's address only: kubelet's health check on
        // 127.0.0.1 does not clash with it.
        accepted(&format!(
            "{stacked}cluster:\n  etcd:\n    peer_port: 10248\n"
        ));
        refused(
            &cluster("  apiserver_port: 10257\n"),
            11,
            "cluster.apiserver_port 10257 is also the port of kube-controller-manager on 'kube-master-01'",
        );
        // etcd alone on its host: kubelet's port is free there.
        accepted(&cluster("  etcd:\n    client_port: 10250\n"));
    }

    #[test]
    fn nothing_listens_on_the_ssh_port() {
        refused(
            &cluster("  apiserver_port: 22\n"),
            11,
            "cluster.apiserver_port 22 is also the port of the host's SSH server",
        );
        let existing = "driver:\n  name: existing\n  port: 2379\nplatforms:\n  - {name: etcd-01, groups: [etcd], address: 192.168.5.10}\n";
        let e = refused(
            existing,
            3,
            "cluster.etcd.client_port and driver.port are both 2379 on 'etcd-01'",
        );
        assert!(e.contains(":3:9:"), "{e}");
    }
}
