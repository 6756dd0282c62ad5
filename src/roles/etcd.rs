//! etcd v3 on every `etcd` host: binary under /opt/bin, TLS for clients and peers, the seeds'
//! `40-listen-address.conf` drop-in. One member or several come from the same code.

use serde::Serialize;

use super::{InstallContext, RoleError, ca_file, cert_files, directory, phase};
use crate::engine::{Phase, ReadyCheck, Resource, Task};
use crate::pki;
use crate::scenario::{EtcdSettings, Group, PodNetwork};

pub const UNIT: &str = "etcd-member.service";
const UNIT_PATH: &str = "/etc/systemd/system/etcd-member.service";
const DROP_IN_PATH: &str = "/etc/systemd/system/etcd-member.service.d/40-listen-address.conf";
const SSL: &str = "/etc/etcd/ssl";
/// The seeds' flannel network configuration key (their etcd smoke test looks for it).
pub const NETWORK_KEY: &str = "/coreos.com/network/config";

#[derive(Serialize)]
struct Member {
    name: String,
    address: String,
}

#[derive(Serialize)]
struct EtcdTemplate<'a> {
    cluster_name: &'a str,
    member: &'a Member,
    members: &'a [Member],
    etcd: &'a EtcdSettings,
}

/// `etcdctl` on an etcd host, authenticated with that host's client certificate.
pub fn etcdctl(endpoints: &str) -> String {
    format!(
        "ETCDCTL_API=3 /opt/bin/etcdctl --endpoints={endpoints} --cacert={SSL}/ca.pem --cert={SSL}/etcdctl.pem --key={SSL}/etcdctl-key.pem --command-timeout=5s"
    )
}

/// Client URLs of every member, comma-separated.
pub fn endpoints(ctx: &InstallContext) -> String {
    ctx.inventory
        .group(Group::Etcd)
        .map(|h| {
            format!(
                "https://{}:{}",
                h.address, ctx.scenario.cluster.etcd.client_port
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let settings = &ctx.scenario.cluster.etcd;
    let members: Vec<Member> = ctx
        .inventory
        .group(Group::Etcd)
        .map(|h| Member {
            name: h.name.clone(),
            address: h.address.to_string(),
        })
        .collect();
    let client = ctx.pki.ensure(&pki::etcd_client_spec("etcdctl"))?;

    let mut hosts = Vec::new();
    for member in &members {
        let ip = ctx.address(&member.name)?;
        let server = ctx.pki.ensure(&pki::etcd_server_spec(&member.name, ip))?;
        let peer = ctx.pki.ensure(&pki::etcd_peer_spec(&member.name, ip))?;
        let mut certs = vec![directory("/etc/etcd", 0o755), directory(SSL, 0o700)];
        certs.push(ca_file(&format!("{SSL}/ca.pem"), ctx.pki));
        certs.extend(cert_files(SSL, "server", &server));
        certs.extend(cert_files(SSL, "peer", &peer));
        certs.extend(cert_files(SSL, "etcdctl", &client));
        let restart_on: Vec<String> = certs
            .iter()
            .filter_map(|r| r.path().map(String::from))
            .filter(|p| p.ends_with(".pem"))
            .chain([UNIT_PATH.to_string(), DROP_IN_PATH.to_string()])
            .collect();
        let ctx_t = EtcdTemplate {
            cluster_name: &ctx.scenario.cluster.name,
            member,
            members: &members,
            etcd: settings,
        };
        let local = format!("https://127.0.0.1:{}", settings.client_port);
        let tasks = vec![
            Task {
                name: "etcd binaries".into(),
                role: "etcd",
                resources: vec![
                    directory("/opt/bin", 0o755),
                    ctx.binary("etcd")?,
                    ctx.binary("etcdctl")?,
                ],
            },
            Task {
                name: "etcd certificates".into(),
                role: "etcd",
                resources: certs,
            },
            Task {
                name: "etcd unit and drop-in".into(),
                role: "etcd",
                resources: vec![
                    directory("/var/lib/etcd", 0o700),
                    ctx.template(UNIT_PATH, "etcd/etcd-member.service", &ctx_t, 0o644)?,
                    directory("/etc/systemd/system/etcd-member.service.d", 0o755),
                    ctx.template(DROP_IN_PATH, "etcd/40-listen-address.conf", &ctx_t, 0o644)?,
                ],
            },
            Task {
                name: "etcd service".into(),
                role: "etcd",
                resources: vec![Resource::Service {
                    unit: UNIT.into(),
                    restart_on,
                    ready: Some(ReadyCheck {
                        command: format!("{} endpoint health", etcdctl(&local)),
                        timeout: std::time::Duration::from_secs(90),
                    }),
                }],
            },
        ];
        hosts.push((member.name.clone(), tasks));
    }

    // Cluster-wide keys go through one member, once every member runs.
    let first = members
        .first()
        .map(|m| m.name.clone())
        .ok_or_else(|| RoleError::Inventory("no host in group 'etcd'".into()))?;
    let eps = endpoints(ctx);
    let network = serde_json::json!({
        "Network": ctx.scenario.cluster.pod_network,
        "Backend": { "Type": match ctx.scenario.cluster.network {
            PodNetwork::Bridge => "host-gw",
            PodNetwork::FlannelCalico => super::flannel_calico::BACKEND,
        } },
    });
    let keys = vec![Task {
        name: "etcd network configuration".into(),
        role: "etcd",
        resources: vec![Resource::KeyValue {
            name: NETWORK_KEY.into(),
            read: format!(
                "v=$({} get --print-value-only {NETWORK_KEY}) && [ -n \"$v\" ] && printf '%s' \"$v\"",
                etcdctl(&eps)
            ),
            write: format!("{} put {NETWORK_KEY} >/dev/null", etcdctl(&eps)),
            value: network.to_string().into_bytes(),
        }],
    }];

    Ok(vec![
        phase("etcd members", hosts),
        phase("etcd cluster keys", vec![(first, keys)]),
    ])
}
