//! etcd v3 on every `etcd` host: binary under /opt/bin, TLS for clients and peers, the seeds'
//! `40-listen-address.conf` drop-in. One member or several come from the same code.

use serde::Serialize;

use super::builders::{cert_files, directory, service, task};
use super::{InstallContext, RoleError, phase};
use crate::cluster::Cluster;
use crate::cluster::commands::etcdctl;
use crate::cluster::paths::{BIN_DIR, ETCD_DATA_DIR, ETCD_SSL_DIR, unit_file};
use crate::cluster::{ETCD_UNIT as UNIT, Member, NETWORK_KEY};
use crate::engine::{Guard, Phase, ReadyCheck, Resource};
use crate::pki;
use crate::scenario::EtcdSettings;

const ROLE: &str = "etcd";
const DROP_IN_DIR: &str = "/etc/systemd/system/etcd-member.service.d";

const BINARIES: &str = "etcd binaries";
const CERTIFICATES: &str = "etcd certificates";
const UNIT_FILES: &str = "etcd unit and drop-in";

#[derive(Serialize)]
struct EtcdTemplate<'a> {
    cluster_name: &'a str,
    member: &'a Member,
    members: &'a [Member],
    etcd: &'a EtcdSettings,
}

/// A member with no data on a cluster that runs without it (its host was replaced: a new
/// disk) joins as a new member: etcd's remove/add flow through the other members, then a
/// first start as part of the existing cluster (a drop-in under /run, gone at reboot; etcd
/// ignores it once it has data). On a cluster being bootstrapped (no network key written
/// yet) and on a member with data it does nothing.
fn rejoin(cluster: &Cluster, member: &Member) -> Resource {
    let peers: Vec<String> = cluster
        .etcd
        .iter()
        .filter(|m| m.name != member.name)
        .map(|m| m.client_url(cluster.settings.etcd.client_port))
        .collect();
    let peer_url = format!(
        "https://{}:{}",
        member.address, cluster.settings.etcd.peer_port
    );
    let e = etcdctl(&peers.join(","));
    let name = &member.name;
    Resource::Command {
        name: format!("{name} joins the running cluster as a new member"),
        command: format!(
            "[ -n \"$({e} get --print-value-only {NETWORK_KEY} 2>/dev/null)\" ] || exit 0; \
             id=$({e} member list | awk -F', ' -v n={name} -v p={peer_url} '$3 == n || $4 == p {{ print $1 }}'); \
             if [ -n \"$id\" ]; then {e} member remove \"$id\" >/dev/null; fi; \
             {e} member add {name} --peer-urls={peer_url} >/dev/null; \
             mkdir -p {JOIN_DIR} && printf '[Service]\\nEnvironment=ETCD_INITIAL_CLUSTER_STATE=existing\\n' > {JOIN_DIR}/50-join.conf && systemctl daemon-reload"
        ),
        guard: Guard::Creates(format!("{ETCD_DATA_DIR}/member")),
    }
}

/// Where a rejoining member's one-time start setting goes (runtime, not managed).
const JOIN_DIR: &str = "/run/systemd/system/etcd-member.service.d";

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let cluster = ctx.cluster;
    let settings = &cluster.settings.etcd;
    let client = ctx.pki.etcd.ensure(&pki::etcd_client_spec("etcdctl"))?;

    let mut hosts = Vec::new();
    for member in &cluster.etcd {
        let server = ctx
            .pki
            .etcd
            .ensure(&pki::etcd_server_spec(&member.name, member.address))?;
        let peer = ctx
            .pki
            .etcd
            .ensure(&pki::etcd_peer_spec(&member.name, member.address))?;
        let mut certs = vec![
            directory("/etc/etcd", 0o755),
            directory(ETCD_SSL_DIR, 0o700),
            ctx.etcd_ca_file(&format!("{ETCD_SSL_DIR}/ca.pem")),
        ];
        certs.extend(cert_files(ETCD_SSL_DIR, "server", &server));
        certs.extend(cert_files(ETCD_SSL_DIR, "peer", &peer));
        certs.extend(cert_files(ETCD_SSL_DIR, "etcdctl", &client));
        let t = EtcdTemplate {
            cluster_name: &cluster.settings.name,
            member,
            members: &cluster.etcd,
            etcd: settings,
        };
        let local = format!("https://127.0.0.1:{}", settings.client_port);
        let tasks = vec![
            task(
                ROLE,
                BINARIES,
                vec![
                    directory(BIN_DIR, 0o755),
                    ctx.binary("etcd")?,
                    ctx.binary("etcdctl")?,
                ],
            ),
            task(ROLE, CERTIFICATES, certs),
            task(
                ROLE,
                UNIT_FILES,
                vec![
                    directory(ETCD_DATA_DIR, 0o700),
                    ctx.template(&unit_file(UNIT), "etcd/etcd-member.service", &t, 0o644)?,
                    directory(DROP_IN_DIR, 0o755),
                    ctx.template(
                        &format!("{DROP_IN_DIR}/40-listen-address.conf"),
                        "etcd/40-listen-address.conf",
                        &t,
                        0o644,
                    )?,
                ],
            ),
            task(
                ROLE,
                "etcd service",
                vec![
                    rejoin(cluster, member),
                    service(
                        UNIT,
                        &[BINARIES, CERTIFICATES, UNIT_FILES],
                        Some(ReadyCheck {
                            command: format!("{} endpoint health", etcdctl(&local)),
                            timeout: cluster.timeouts.of(std::time::Duration::from_secs(90)),
                        }),
                    ),
                ],
            ),
        ];
        hosts.push((member.name.clone(), tasks));
    }

    // Cluster-wide keys go through one member, once every member runs.
    let first = cluster.etcd[0].name.clone();
    let eps = &cluster.etcd_endpoints;
    let keys = vec![task(
        ROLE,
        "etcd network configuration",
        vec![Resource::KeyValue {
            name: NETWORK_KEY.into(),
            read: format!(
                "v=$({} get --print-value-only {NETWORK_KEY}) && [ -n \"$v\" ] && printf '%s' \"$v\"",
                etcdctl(eps)
            ),
            write: format!("{} put {NETWORK_KEY} >/dev/null", etcdctl(eps)),
            value: cluster.network_config.to_string().into_bytes(),
        }],
    )];

    Ok(vec![
        phase("etcd members", hosts)?,
        phase("etcd cluster keys", vec![(first, keys)])?,
    ])
}
