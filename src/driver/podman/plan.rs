//! What a [`PodmanPlan`] turns into before anything runs: validated instance and host names,
//! the names of everything created, the authorized keys to install and the `podman run`
//! arguments of each host.

use std::path::Path;

use super::subnet::host_ip;
use super::{INSTANCE_LABEL, KEYS_MOUNT, PodmanError, PodmanHostSpec, PodmanPlan};

/// Instance and host names end up in container, network and host names: DNS labels only.
pub(super) fn is_dns_label(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Every name starts with the instance, so [`super::destroy`] finds it by prefix and label
/// and two instances never collide.
pub(super) fn network_name(instance: &str) -> String {
    format!("{instance}-net")
}

pub(super) fn container_name(instance: &str, host: &str) -> String {
    format!("{instance}-{host}")
}

pub(super) fn keys_volume_name(instance: &str) -> String {
    format!("{instance}-ssh-keys")
}

/// Named volumes of a privileged host: (volume name, mount point).
pub(super) fn host_volumes(instance: &str, host: &PodmanHostSpec) -> Vec<(String, &'static str)> {
    if !host.privileged {
        return Vec::new();
    }
    vec![
        (
            format!("{instance}-{}-containerd", host.name),
            "/var/lib/containerd",
        ),
        (
            format!("{instance}-{}-kubelet", host.name),
            "/var/lib/kubelet",
        ),
    ]
}

/// Refuses what podman would only half create: bad names, a host name or address used
/// twice, an address outside 2..=254, no memory.
pub(super) fn validate_plan(plan: &PodmanPlan) -> Result<(), PodmanError> {
    let invalid = |reason: String| PodmanError::InvalidPlan {
        instance: plan.instance.clone(),
        reason,
    };
    if !is_dns_label(&plan.instance, 40) {
        return Err(invalid(
            "instance must be 1-40 of [a-z0-9-], not starting or ending with '-'".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut octets = std::collections::HashSet::new();
    for host in &plan.hosts {
        if !is_dns_label(&host.name, 63) {
            return Err(invalid(format!(
                "host name {:?} must be a DNS label of [a-z0-9-]",
                host.name
            )));
        }
        if !names.insert(host.name.as_str()) {
            return Err(invalid(format!("host name {} is used twice", host.name)));
        }
        if !(2..=254).contains(&host.last_octet) {
            return Err(invalid(format!(
                "host {}: last octet {} is outside 2..=254",
                host.name, host.last_octet
            )));
        }
        if !octets.insert(host.last_octet) {
            return Err(invalid(format!(
                "host {}: last octet {} is used twice",
                host.name, host.last_octet
            )));
        }
        if host.memory_mb == Some(0) {
            return Err(invalid(format!("host {}: memory_mb is 0", host.name)));
        }
    }
    Ok(())
}

/// Checks the key file holds only OpenSSH public keys (never a private key) and returns
/// its content.
pub(super) fn authorized_keys_content(path: &Path, text: &str) -> Result<String, PodmanError> {
    let reject = |reason: &str| PodmanError::AuthorizedKeys {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if text.contains("PRIVATE KEY") {
        return Err(reject("holds a private key; pass the .pub file"));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() {
        return Err(reject("holds no public key"));
    }
    let known = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    if let Some(bad) = keys.iter().find(|l| {
        !l.split_whitespace()
            .any(|w| known.iter().any(|k| w.starts_with(k)))
    }) {
        let shown: String = bad.chars().take(20).collect();
        return Err(reject(&format!(
            "line starting {shown:?} is not an OpenSSH public key"
        )));
    }
    Ok(keys.iter().map(|k| format!("{k}\n")).collect())
}

/// `podman run` arguments for one host (everything after `podman`).
pub(super) fn run_args(
    plan: &PodmanPlan,
    host: &PodmanHostSpec,
    network: &str,
    subnet: &str,
    image: &str,
) -> Result<Vec<String>, PodmanError> {
    let instance = &plan.instance;
    let label = format!("{INSTANCE_LABEL}={instance}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        container_name(instance, &host.name),
        "--hostname".into(),
        host.name.clone(),
        "--label".into(),
        label,
        "--label".into(),
        format!("kubeforge.host={}", host.name),
        "--network".into(),
        network.into(),
        "--ip".into(),
        host_ip(subnet, host.last_octet)?.to_string(),
        "--systemd=always".into(),
        "--runtime".into(),
        "runc".into(),
        // Podman's default limits exceed the VM's hard limits; these fit.
        "--ulimit".into(),
        "nofile=20000:20000".into(),
        "--ulimit".into(),
        "nproc=32768:32768".into(),
        // systemd would otherwise cap each service at a few hundred tasks.
        "--pids-limit=0".into(),
        "-v".into(),
        format!("{}:{KEYS_MOUNT}:ro", keys_volume_name(instance)),
    ];
    for other in plan.hosts.iter().filter(|o| o.name != host.name) {
        args.push("--add-host".into());
        args.push(format!(
            "{}:{}",
            other.name,
            host_ip(subnet, other.last_octet)?
        ));
    }
    if let Some(mb) = host.memory_mb {
        args.push("--memory".into());
        args.push(format!("{mb}m"));
    }
    if host.privileged {
        // Without a private cgroup namespace the nested runtime fails and the host's
        // systemd writes into the machine's own cgroup tree.
        args.push("--privileged".into());
        args.push("--cgroupns=private".into());
        for (volume, mount) in host_volumes(instance, host) {
            args.push("-v".into());
            args.push(format!("{volume}:{mount}"));
        }
    }
    args.push(image.into());
    args.push("/sbin/init".into());
    Ok(args)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(in crate::driver::podman) fn spec(
        name: &str,
        last_octet: u8,
        privileged: bool,
    ) -> PodmanHostSpec {
        PodmanHostSpec {
            name: name.into(),
            last_octet,
            privileged,
            memory_mb: None,
        }
    }

    fn plan(hosts: Vec<PodmanHostSpec>) -> PodmanPlan {
        PodmanPlan {
            instance: "kf-default-3fa9c1".into(),
            subnet: None,
            hosts,
            authorized_keys: PathBuf::from("/tmp/key.pub"),
        }
    }

    #[test]
    fn plan_validation_catches_duplicates_and_bad_names() {
        assert!(
            validate_plan(&plan(vec![
                spec("node-1", 11, true),
                spec("node-2", 12, false)
            ]))
            .is_ok()
        );
        let dup_name = plan(vec![spec("node", 11, false), spec("node", 12, false)]);
        assert!(validate_plan(&dup_name).is_err());
        let dup_octet = plan(vec![spec("a", 11, false), spec("b", 11, false)]);
        assert!(validate_plan(&dup_octet).is_err());
        assert!(validate_plan(&plan(vec![spec("Node_1", 11, false)])).is_err());
        assert!(validate_plan(&plan(vec![spec("gw", 1, false)])).is_err());
        let mut bad_instance = plan(vec![]);
        bad_instance.instance = "kf;rm".into();
        assert!(validate_plan(&bad_instance).is_err());
    }

    #[test]
    fn names_carry_the_instance_prefix() {
        assert_eq!(network_name("kf-a"), "kf-a-net");
        assert_eq!(container_name("kf-a", "node1"), "kf-a-node1");
        assert_eq!(keys_volume_name("kf-a"), "kf-a-ssh-keys");
        let volumes: Vec<String> = host_volumes("kf-a", &spec("node1", 11, true))
            .into_iter()
            .map(|(name, mount)| format!("{name}:{mount}"))
            .collect();
        assert_eq!(
            volumes,
            [
                "kf-a-node1-containerd:/var/lib/containerd",
                "kf-a-node1-kubelet:/var/lib/kubelet"
            ]
        );
        assert!(host_volumes("kf-a", &spec("node1", 11, false)).is_empty());
    }

    #[test]
    fn run_args_for_unprivileged_host() {
        let p = plan(vec![spec("cp", 11, false), spec("worker", 12, true)]);
        let args = run_args(
            &p,
            &p.hosts[0],
            "kf-default-3fa9c1-net",
            "172.30.17.0/24",
            "img:tag",
        )
        .expect("args");
        let joined = args.join(" ");
        assert!(joined.starts_with("run -d --name kf-default-3fa9c1-cp --hostname cp "));
        assert!(joined.contains("--label kubeforge.instance=kf-default-3fa9c1"));
        assert!(joined.contains("--network kf-default-3fa9c1-net --ip 172.30.17.11"));
        assert!(joined.contains("--add-host worker:172.30.17.12"));
        assert!(!joined.contains("--add-host cp:"));
        assert!(joined.contains("-v kf-default-3fa9c1-ssh-keys:/etc/ssh/authorized_keys:ro"));
        assert!(joined.contains("--systemd=always --runtime runc"));
        assert!(!joined.contains("--privileged"));
        assert!(!joined.contains("--memory"));
        assert!(joined.ends_with("img:tag /sbin/init"));
    }

    #[test]
    fn run_args_for_privileged_host_with_memory() {
        let mut worker = spec("worker", 12, true);
        worker.memory_mb = Some(2048);
        let p = plan(vec![spec("cp", 11, false), worker]);
        let args = run_args(&p, &p.hosts[1], "n", "172.30.17.0/24", "img").expect("args");
        let joined = args.join(" ");
        assert!(joined.contains("--privileged --cgroupns=private"));
        assert!(joined.contains("-v kf-default-3fa9c1-worker-containerd:/var/lib/containerd"));
        assert!(joined.contains("-v kf-default-3fa9c1-worker-kubelet:/var/lib/kubelet"));
        assert!(joined.contains("--memory 2048m"));
        assert!(joined.contains("--add-host cp:172.30.17.11"));
    }

    #[test]
    fn authorized_keys_accepts_public_and_refuses_private_keys() {
        let path = Path::new("/k");
        let public = "# comment\nssh-ed25519 AAAAC3Nza test@x\n\nfrom=\"10.0.0.1\" ecdsa-sha2-nistp256 AAAA y\n";
        assert_eq!(
            authorized_keys_content(path, public).ok().as_deref(),
            Some("ssh-ed25519 AAAAC3Nza test@x\nfrom=\"10.0.0.1\" ecdsa-sha2-nistp256 AAAA y\n")
        );
        let private =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(authorized_keys_content(path, private).is_err());
        assert!(authorized_keys_content(path, "# nothing\n").is_err());
        assert!(authorized_keys_content(path, "hello world\n").is_err());
    }
}
