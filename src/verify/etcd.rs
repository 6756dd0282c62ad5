//! etcd's checks: every member healthy over TLS, the cluster as large as the etcd group, a
//! write read back, the network configuration the etcd role wrote, and etcd trusting only
//! its own CA.

use super::{Check, Expect};
use crate::cluster::commands::etcdctl;
use crate::cluster::paths::{ETCD_SSL_DIR, K8S_SSL_DIR, k8s_cert};
use crate::cluster::{Cluster, NETWORK_KEY};

/// How long a member may take to answer after converge.
const SETTLE: u64 = 30;

pub(super) fn health(cluster: &Cluster) -> Vec<Check> {
    let members = &cluster.etcd;
    let port = cluster.settings.etcd.client_port;
    let all = etcdctl(&cluster.etcd_endpoints);
    let mut out: Vec<Check> = members
        .iter()
        .map(|m| {
            Check::on(
                &m.name,
                format!("etcd member {} healthy over TLS", m.name),
                format!("{} endpoint health", etcdctl(&m.client_url(port))),
                Expect::Success,
            )
            .within(SETTLE)
        })
        .collect();
    let first = &members[0].name;
    let probe = format!("/kubeforge/verify/{}", std::process::id());
    let n = members.len();
    out.extend([
        Check::on(
            first,
            "etcd member count equals the etcd group",
            format!("{all} member list | grep -c ', started, '"),
            Expect::Output(n.to_string()),
        )
        .within(SETTLE),
        Check::on(
            first,
            "etcd put/get round trip",
            format!(
                "{all} put {probe} ok-{n} >/dev/null && {all} get --print-value-only {probe} && {all} del {probe} >/dev/null"
            ),
            Expect::Output(format!("ok-{n}")),
        )
        .within(SETTLE),
        Check::on(
            first,
            "etcd holds the network configuration (coreos.com namespace)",
            format!("{all} get --print-value-only {NETWORK_KEY}"),
            Expect::Output(cluster.network_config.to_string()),
        )
        .within(SETTLE),
    ]);
    out
}

/// etcd trusts only its own CA: its own client certificate is served (a control, so the
/// probe itself is known to work), a node's kubelet credentials (signed by the Kubernetes
/// CA) are refused in the TLS handshake although the node reaches etcd's port.
pub(super) fn trust(cluster: &Cluster) -> Vec<Check> {
    let member = &cluster.etcd[0];
    let Some(node) = cluster.nodes.first() else {
        return vec![Check::skipped(
            "etcd refuses a node's kubelet credentials",
            "the scenario has no Kubernetes nodes",
        )];
    };
    let at = format!("{}:{}", member.address, cluster.settings.etcd.client_port);
    let probe = |cert: &str, key: &str, trust: &str| {
        format!(
            "socat -T3 /dev/null TCP:{at} 2>/dev/null || {{ echo 'cannot reach etcd at {at}'; exit 0; }}; \
             r=$(printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | socat -T5 - OPENSSL:{at},cert={cert},key={key},{trust} 2>&1); \
             case \"$r\" in *'HTTP/1.'*' 200 '*) echo answered ;; *SSL*|*alert*) echo refused ;; *) echo \"unexpected: $r\" ;; esac"
        )
    };
    vec![
        Check::on(
            &member.name,
            "etcd serves a client certificate from its own CA (control)",
            probe(
                &format!("{ETCD_SSL_DIR}/etcdctl.pem"),
                &format!("{ETCD_SSL_DIR}/etcdctl-key.pem"),
                &format!("cafile={ETCD_SSL_DIR}/ca.pem"),
            ),
            Expect::Output("answered".into()),
        )
        .within(SETTLE),
        Check::on(
            &node.name,
            format!("etcd refuses the kubelet credentials of {}", node.name),
            probe(
                &k8s_cert("kubelet"),
                &format!("{K8S_SSL_DIR}/kubelet-key.pem"),
                "verify=0",
            ),
            Expect::Output("refused".into()),
        )
        .within(10),
    ]
}
