//! Smoke tests against the live cluster (the seeds' `make smoketest`): each check runs a
//! command on a host over SSH and judges its output; each becomes a JUnit testcase.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::cluster::NETWORK_KEY;
use crate::cluster::commands::etcdctl;
use crate::cluster::paths::{ETCD_SSL_DIR, K8S_SSL_DIR, k8s_cert};
use crate::engine::Transport;

mod kubernetes;

/// One smoke test.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub host: String,
    pub command: String,
    pub expect: Expect,
    /// Tries before giving up, one second apart (things that settle after converge).
    pub attempts: u32,
}

impl Check {
    pub fn new(host: &str, name: String, command: String, expect: Expect, attempts: u32) -> Check {
        Check {
            name,
            host: host.to_string(),
            command,
            expect,
            attempts,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expect {
    /// Exit status 0.
    Success,
    /// Exit status 0 and stdout, trimmed, equal to this.
    Output(String),
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: Check,
    pub passed: bool,
    pub seconds: f64,
    /// What was seen: stdout/stderr excerpt, or why it failed.
    pub detail: String,
}

/// The checks for a cluster, in the order they run.
pub fn checks(cluster: &Cluster) -> Vec<Check> {
    let mut out = Vec::new();
    let members = &cluster.etcd;
    let port = cluster.settings.etcd.client_port;
    let all = &cluster.etcd_endpoints;
    for m in members {
        out.push(Check {
            name: format!("etcd member {} healthy over TLS", m.name),
            host: m.name.clone(),
            command: format!("{} endpoint health", etcdctl(&m.client_url(port))),
            expect: Expect::Success,
            attempts: 10,
        });
    }
    if let Some(first) = members.first() {
        out.push(Check {
            name: "etcd member count equals the etcd group".into(),
            host: first.name.clone(),
            command: format!("{} member list | grep -c ', started, '", etcdctl(all)),
            expect: Expect::Output(members.len().to_string()),
            attempts: 10,
        });
        let probe = format!("/kubeforge/verify/{}", std::process::id());
        out.push(Check {
            name: "etcd put/get round trip".into(),
            host: first.name.clone(),
            command: format!(
                "{e} put {probe} ok-{n} >/dev/null && {e} get --print-value-only {probe} && {e} del {probe} >/dev/null",
                e = etcdctl(all),
                n = members.len()
            ),
            expect: Expect::Output(format!("ok-{}", members.len())),
            attempts: 3,
        });
        out.push(Check {
            name: "etcd holds the network configuration (coreos.com namespace)".into(),
            host: first.name.clone(),
            command: format!("{} get --print-value-only {NETWORK_KEY}", etcdctl(all)),
            expect: Expect::Output(cluster.network_config.to_string()),
            attempts: 3,
        });
    }
    out.extend(etcd_trust_checks(cluster));
    out.extend(kubernetes::checks(cluster));
    out
}

/// etcd trusts only its own CA: its own client certificate is served (a control, so the
/// probe itself is known to work), a node's kubelet credentials (signed by the Kubernetes
/// CA) are refused in the TLS handshake even though the node reaches etcd's port.
fn etcd_trust_checks(cluster: &Cluster) -> Vec<Check> {
    let (Some(member), Some(node)) = (cluster.etcd.first(), cluster.nodes.first()) else {
        return Vec::new();
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
        Check {
            name: "etcd serves a client certificate from its own CA (control)".into(),
            host: member.name.clone(),
            command: probe(
                &format!("{ETCD_SSL_DIR}/etcdctl.pem"),
                &format!("{ETCD_SSL_DIR}/etcdctl-key.pem"),
                &format!("cafile={ETCD_SSL_DIR}/ca.pem"),
            ),
            expect: Expect::Output("answered".into()),
            attempts: 3,
        },
        Check {
            name: format!("etcd refuses the kubelet credentials of {}", node.name),
            host: node.name.clone(),
            command: probe(
                &k8s_cert("kubelet"),
                &format!("{K8S_SSL_DIR}/kubelet-key.pem"),
                "verify=0",
            ),
            expect: Expect::Output("refused".into()),
            attempts: 3,
        },
    ]
}

/// Runs one check on its host.
pub async fn run<T: Transport>(transport: &T, check: &Check) -> CheckResult {
    let start = Instant::now();
    let mut detail = String::new();
    let mut passed = false;
    for attempt in 1..=check.attempts.max(1) {
        match transport
            .exec_root(&check.command, None, Duration::from_secs(60))
            .await
        {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                passed = out.status == 0
                    && match &check.expect {
                        Expect::Success => true,
                        Expect::Output(want) => &stdout == want,
                    };
                detail = match (&check.expect, passed) {
                    (_, true) => stdout,
                    (Expect::Output(want), false) if out.status == 0 => {
                        format!("expected output '{want}', got '{stdout}'")
                    }
                    _ => format!("exit {}: {stdout}\n{stderr}", out.status),
                };
            }
            Err(e) => detail = e.to_string(),
        }
        if passed || attempt == check.attempts {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    CheckResult {
        check: check.clone(),
        passed,
        seconds: start.elapsed().as_secs_f64(),
        detail,
    }
}
