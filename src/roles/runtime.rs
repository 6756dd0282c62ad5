//! The container runtime of every Kubernetes node: containerd and runc from the bundle
//! under /opt/bin, its CRI configuration (runc v2 with cgroupfs, `restrict_oom_score_adj`
//! because the machine grants no CAP_SYS_RESOURCE), the node's network sysctls, and the
//! images kubelet runs, imported from tarballs since no registry is reachable.

use std::time::Duration;

use serde::Serialize;

use super::network::{CNI_BIN_DIR, NodeNet, nodes};
use super::{InstallContext, RoleError, directory, phase};
use crate::engine::{Guard, Perms, Phase, ReadyCheck, Resource, Task};
use crate::ssh::shell_quote;

pub const BIN_DIR: &str = "/opt/bin";
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// The sandbox (pause) image; kubelet's `--pod-infra-container-image` names the same one.
pub const PAUSE_IMAGE: &str = "kubeforge.local/pause:3.4";
/// Images of the guestbook verify check, imported on the workers (where its pods run).
pub const REDIS_IMAGE: &str = "kubeforge.local/redis:7";
pub const GUESTBOOK_FRONTEND_IMAGE: &str = "kubeforge.local/guestbook-frontend:v1";
const CONFIG_PATH: &str = "/etc/containerd/config.toml";
const UNIT: &str = "containerd.service";
const UNIT_PATH: &str = "/etc/systemd/system/containerd.service";
const SYSCTL_UNIT: &str = "kubeforge-node-sysctl.service";
const SYSCTL_UNIT_PATH: &str = "/etc/systemd/system/kubeforge-node-sysctl.service";
const IMAGE_DIR: &str = "/var/lib/kubeforge/images";
const BINARIES: &[&str] = &["containerd", "containerd-shim-runc-v2", "ctr", "runc"];

/// `ctr` in the namespace the CRI plugin (and so kubelet) uses.
pub fn ctr() -> String {
    format!("{BIN_DIR}/ctr --address {SOCKET} --namespace k8s.io")
}

#[derive(Serialize)]
struct RuntimeTemplate<'a> {
    node: &'a NodeNet,
    bin_dir: &'static str,
    cni_bin_dir: &'static str,
    socket: &'static str,
    pause_image: &'static str,
}

/// An image from the bundle (`image:<reference>`, a docker-archive tarball) in containerd.
///
/// The tarball is uploaded like any binary; the import runs while the image is missing
/// from containerd or was imported from another tarball (a marker holds the tarball's
/// sha256), so a rebuilt image with the same tag is imported again.
pub fn image(ctx: &InstallContext, reference: &str) -> Result<Vec<Resource>, RoleError> {
    let (local, artifact) = ctx.bundle.get(&format!("image:{reference}"))?;
    let stem: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tarball = format!("{IMAGE_DIR}/{stem}.tar");
    let marker = format!("{IMAGE_DIR}/{stem}.imported");
    let (t, m, r) = (
        shell_quote(&tarball),
        shell_quote(&marker),
        shell_quote(reference),
    );
    let present = format!("{} images ls -q | grep -qxF {r}", ctr());
    Ok(vec![
        Resource::Upload {
            path: tarball.clone(),
            local,
            sha256: artifact.sha256.clone(),
            perms: Perms::root(0o644),
        },
        Resource::Command {
            name: format!("import image {reference}"),
            command: format!(
                "{ctr} images import {t} >/dev/null && {{ {present} || {{ echo \"{tarball} does not hold image {reference}\" >&2; exit 1; }}; }} && printf '%s\\n' {sha} > {m}",
                ctr = ctr(),
                sha = artifact.sha256,
            ),
            guard: Guard::Unless(format!(
                "[ \"$(cat {m} 2>/dev/null)\" = {sha} ] && {present}",
                sha = artifact.sha256
            )),
        },
    ])
}

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    let mut dirs = Vec::new();
    let mut hosts = Vec::new();
    for node in &nodes(ctx)? {
        // Uploads are streamed before a phase's apply script runs, so the directories they
        // land in are made one phase earlier.
        dirs.push((
            node.name.clone(),
            vec![Task {
                name: "directories for uploads".into(),
                role: "runtime",
                resources: vec![
                    directory(BIN_DIR, 0o755),
                    directory("/opt/cni", 0o755),
                    directory(CNI_BIN_DIR, 0o755),
                    directory("/var/lib/kubeforge", 0o755),
                    directory(IMAGE_DIR, 0o700),
                ],
            }],
        ));
        let t = RuntimeTemplate {
            node,
            bin_dir: BIN_DIR,
            cni_bin_dir: CNI_BIN_DIR,
            socket: SOCKET,
            pause_image: PAUSE_IMAGE,
        };
        let mut binaries = vec![directory(BIN_DIR, 0o755)];
        for name in BINARIES {
            binaries.push(ctx.binary(name)?);
        }
        let restart_on: Vec<String> = BINARIES
            .iter()
            .map(|b| format!("{BIN_DIR}/{b}"))
            .chain([CONFIG_PATH.to_string(), UNIT_PATH.to_string()])
            .collect();
        let mut images = vec![
            directory("/var/lib/kubeforge", 0o755),
            directory(IMAGE_DIR, 0o700),
        ];
        images.extend(image(ctx, PAUSE_IMAGE)?);
        let tasks = vec![
            Task {
                name: "node network settings".into(),
                role: "runtime",
                resources: vec![
                    ctx.template(
                        SYSCTL_UNIT_PATH,
                        "containerd/kubeforge-node-sysctl.service",
                        &t,
                        0o644,
                    )?,
                    Resource::Service {
                        unit: SYSCTL_UNIT.into(),
                        restart_on: vec![SYSCTL_UNIT_PATH.into()],
                        ready: None,
                    },
                ],
            },
            Task {
                name: "containerd binaries".into(),
                role: "runtime",
                resources: binaries,
            },
            Task {
                name: "containerd configuration".into(),
                role: "runtime",
                resources: vec![
                    directory("/etc/containerd", 0o755),
                    ctx.template(CONFIG_PATH, "containerd/config.toml", &t, 0o644)?,
                    ctx.template(UNIT_PATH, "containerd/containerd.service", &t, 0o644)?,
                ],
            },
            Task {
                name: "containerd service".into(),
                role: "runtime",
                resources: vec![Resource::Service {
                    unit: UNIT.into(),
                    restart_on,
                    ready: Some(ReadyCheck {
                        command: format!("{} version", ctr()),
                        timeout: Duration::from_secs(60),
                    }),
                }],
            },
            Task {
                name: "sandbox image".into(),
                role: "runtime",
                resources: images,
            },
        ];
        hosts.push((node.name.clone(), tasks));
    }
    Ok(vec![
        phase("node directories", dirs),
        phase("container runtime", hosts),
    ])
}
