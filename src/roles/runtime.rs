//! The container runtime of every Kubernetes node: containerd and runc from the bundle
//! under /opt/bin, its CRI configuration (runc v2 with cgroupfs, `restrict_oom_score_adj`
//! because the machine grants no CAP_SYS_RESOURCE), the node's network settings (forwarding,
//! bridged traffic through iptables, a route for the service range), and the
//! sandbox image kubelet runs, streamed from its tarball into containerd since no registry is reachable.

use std::time::Duration;

use serde::Serialize;

use super::builders::{directory, service, task};
use super::{InstallContext, RoleError, phase};
use crate::cluster::Node;
use crate::cluster::commands::ctr;
use crate::cluster::images::PAUSE;
use crate::cluster::paths::{
    BIN_DIR, CNI_BIN_DIR, CONTAINERD_SOCKET, IMAGE_DIR, KUBEFORGE_DIR, unit_file,
};
use crate::engine::{Guard, Hop, Phase, ReadyCheck, Resource};

const ROLE: &str = "runtime";
const CONFIG_PATH: &str = "/etc/containerd/config.toml";
const UNIT: &str = "containerd.service";
const SYSCTL_UNIT: &str = "kubeforge-node-sysctl.service";
const BINARIES: &[&str] = &["containerd", "containerd-shim-runc-v2", "ctr", "runc"];

const NODE_SETTINGS: &str = "node network settings";
const CONTAINERD_BINARIES: &str = "containerd binaries";
const CONTAINERD_CONFIG: &str = "containerd configuration";

#[derive(Serialize)]
struct RuntimeTemplate<'a> {
    node: &'a Node,
    service_range: String,
    bin_dir: &'static str,
    cni_bin_dir: &'static str,
    socket: &'static str,
    pause_image: &'static str,
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let mut dirs = Vec::new();
    let mut hosts = Vec::new();
    for node in &ctx.cluster.nodes {
        // Uploads are streamed before a phase's apply script runs, so the directories they
        // land in are made one phase earlier.
        dirs.push((
            node.name.clone(),
            vec![
                task(
                    ROLE,
                    "directories for uploads",
                    vec![
                        directory(BIN_DIR, 0o755),
                        directory("/opt/cni", 0o755),
                        directory(CNI_BIN_DIR, 0o755),
                        directory(KUBEFORGE_DIR, 0o755),
                        directory(IMAGE_DIR, 0o700),
                    ],
                ),
                // Images are streamed into containerd; before that, converge left each
                // image's tarball here too, which nothing reads.
                task(
                    ROLE,
                    "image tarballs of earlier versions",
                    vec![Resource::Command {
                        name: "remove image tarballs".into(),
                        command: format!("rm -f {IMAGE_DIR}/*.tar"),
                        guard: Guard::Unless(format!("set -- {IMAGE_DIR}/*.tar; [ ! -e \"$1\" ]")),
                    }],
                ),
            ],
        ));
        let t = RuntimeTemplate {
            node,
            service_range: ctx.cluster.settings.service_range.to_string(),
            bin_dir: BIN_DIR,
            cni_bin_dir: CNI_BIN_DIR,
            socket: CONTAINERD_SOCKET,
            pause_image: PAUSE,
        };
        let mut binaries = vec![directory(BIN_DIR, 0o755)];
        for name in BINARIES {
            binaries.push(ctx.binary(name)?);
        }
        let mut images = vec![directory(KUBEFORGE_DIR, 0o755), directory(IMAGE_DIR, 0o700)];
        images.push(ctx.image(PAUSE)?);
        let tasks = vec![
            task(
                ROLE,
                NODE_SETTINGS,
                vec![
                    ctx.template(
                        &unit_file(SYSCTL_UNIT),
                        "containerd/kubeforge-node-sysctl.service",
                        &t,
                        0o644,
                    )?,
                    service(SYSCTL_UNIT, &[NODE_SETTINGS], None),
                    // What the unit sets, compared itself: a reset value is found.
                    Resource::Sysctl {
                        key: "net.ipv4.ip_forward".into(),
                        value: "1".into(),
                    },
                    Resource::Sysctl {
                        key: "net.bridge.bridge-nf-call-iptables".into(),
                        value: "1".into(),
                    },
                    Resource::Route {
                        destination: ctx.cluster.settings.service_range.to_string(),
                        via: Hop::Local(node.address),
                    },
                ],
            ),
            task(ROLE, CONTAINERD_BINARIES, binaries),
            task(
                ROLE,
                CONTAINERD_CONFIG,
                vec![
                    directory("/etc/containerd", 0o755),
                    ctx.template(CONFIG_PATH, "containerd/config.toml", &t, 0o644)?,
                    ctx.template(&unit_file(UNIT), "containerd/containerd.service", &t, 0o644)?,
                ],
            ),
            task(
                ROLE,
                "containerd service",
                vec![service(
                    UNIT,
                    &[CONTAINERD_BINARIES, CONTAINERD_CONFIG],
                    Some(ReadyCheck {
                        command: format!("{} version", ctr()),
                        timeout: ctx.cluster.timeouts.of(Duration::from_secs(60)),
                    }),
                )],
            ),
            task(ROLE, "sandbox image", images),
        ];
        hosts.push((node.name.clone(), tasks));
    }
    Ok(vec![
        phase("node directories", dirs)?,
        phase("container runtime", hosts)?,
    ])
}
