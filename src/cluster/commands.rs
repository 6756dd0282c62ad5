//! Command lines that reach the cluster's services from one of its hosts: etcd (etcdctl with
//! a client certificate), the API (kubectl as cluster admin on a master) and containerd
//! (`ctr` in the namespace kubelet uses). Roles and verify build their commands from these.

use super::paths::{ADMIN_KUBECONFIG, BIN_DIR, CONTAINERD_SOCKET, ETCD_SSL_DIR};

/// `etcdctl` on an etcd host, authenticated with that host's client certificate.
pub fn etcdctl(endpoints: &str) -> String {
    format!(
        "ETCDCTL_API=3 {BIN_DIR}/etcdctl --endpoints={endpoints} --cacert={ETCD_SSL_DIR}/ca.pem --cert={ETCD_SSL_DIR}/etcdctl.pem --key={ETCD_SSL_DIR}/etcdctl-key.pem --command-timeout=5s"
    )
}

/// `kubectl` on a master, as cluster admin.
pub fn kubectl() -> String {
    format!("{BIN_DIR}/kubectl --kubeconfig={ADMIN_KUBECONFIG}")
}

/// `ctr` in the namespace the CRI plugin (and so kubelet) uses.
pub fn ctr() -> String {
    format!("{BIN_DIR}/ctr --address {CONTAINERD_SOCKET} --namespace k8s.io")
}

/// The kubelet's local healthz endpoint answers `ok` (plain HTTP on 127.0.0.1; bash's
/// /dev/tcp, since the nodes have no curl).
pub const KUBELET_HEALTHY: &str = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/10248 && printf \"GET /healthz HTTP/1.0\\r\\n\\r\\n\" >&3 && grep -qx ok <&3'";

/// The leader-election components, whose leases [`leaders`] reads.
pub const LEADER_ELECTED: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// Prints, for each leader-elected component, `<component>=led` when a master holds its
/// lease and renewed it within the lease's duration, else what is wrong; `masters` are the
/// master node names. Run on a master: one kubectl reads every lease.
pub fn leaders(masters: &[&str]) -> String {
    let k = kubectl();
    let components = LEADER_ELECTED.join(" ");
    format!(
        "now=$(date +%s); \
         kf_l=$({k} -n kube-system get lease {components} -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.spec.holderIdentity}} {{.spec.renewTime}} {{.spec.leaseDurationSeconds}}{{\"\\n\"}}{{end}}' 2>&1); \
         for c in {components}; do \
           l=$(printf '%s\\n' \"$kf_l\" | grep \"^$c \") || {{ echo \"$c: no lease: $(printf '%s\\n' \"$kf_l\" | grep -v '^kube-' | tail -n 1)\"; continue; }}; \
           set -- $l; holder=${{2%%_*}}; age=$((now - $(date -d \"$3\" +%s))); \
           case \" {masters} \" in *\" $holder \"*) ;; *) echo \"$c: led by '$holder', not a master\"; continue ;; esac; \
           if [ \"$age\" -gt \"$4\" ]; then echo \"$c: lease of $holder not renewed for ${{age}}s\"; else echo \"$c=led\"; fi; done",
        masters = masters.join(" "),
    )
}

/// What [`leaders`] prints when every component has a leader.
pub fn all_led() -> String {
    LEADER_ELECTED.map(|c| format!("{c}=led")).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`leaders`] for master `m1` against a kubectl that prints `leases` (lines of
    /// name, holder, seconds ago, duration) and then `error` on stderr, failing if any.
    fn leaders_seen(leases: &[(&str, &str, i64, u32)], error: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now().timestamp();
        let mut printed = String::new();
        for (name, holder, ago, duration) in leases {
            let renewed = chrono::DateTime::from_timestamp(now - ago, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S.000000Z");
            printed.push_str(&format!("{name} {holder} {renewed} {duration}\n"));
        }
        let fake = dir.path().join("kubectl");
        let script = format!(
            "#!/bin/sh\nprintf '%s' '{printed}'\n[ -z '{error}' ] || {{ echo '{error}' >&2; exit 1; }}\n"
        );
        std::fs::write(&fake, script).unwrap();
        let command = leaders(&["m1"]).replace(&kubectl(), &format!("sh {}", fake.display()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn leaders_are_led_only_by_a_master_renewing_its_lease() {
        let fresh = [
            ("kube-controller-manager", "m1_abc", 2, 15),
            ("kube-scheduler", "m1_def", 3, 15),
        ];
        assert_eq!(leaders_seen(&fresh, ""), all_led());
        let stale = [
            ("kube-controller-manager", "m1_abc", 2, 15),
            ("kube-scheduler", "m1_def", 40, 15),
        ];
        assert!(
            leaders_seen(&stale, "").ends_with("kube-scheduler: lease of m1 not renewed for 40s"),
            "{}",
            leaders_seen(&stale, "")
        );
        let elsewhere = [
            ("kube-controller-manager", "w1_abc", 2, 15),
            ("kube-scheduler", "m1_def", 3, 15),
        ];
        assert_eq!(
            leaders_seen(&elsewhere, "").lines().next().unwrap(),
            "kube-controller-manager: led by 'w1', not a master"
        );
        let missing = leaders_seen(
            &fresh[..1],
            "Error from server (NotFound): leases.coordination.k8s.io \"kube-scheduler\" not found",
        );
        assert_eq!(
            missing,
            "kube-controller-manager=led\nkube-scheduler: no lease: Error from server (NotFound): leases.coordination.k8s.io \"kube-scheduler\" not found"
        );
    }
}
