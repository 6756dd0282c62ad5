//! The scaling rows (issue 15 part 3): one etcd member, one master and a growing number of
//! workers on Podman hosts, converged with `--only-files` (every file the installer writes,
//! binaries included; no service started and no image imported, since fifty kubelets would not
//! fit this machine) and then checked `runs` times with `idempotence --only-files`.

use std::cell::Cell;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Bench, Spread, project, spread};

/// One inventory size as measured.
#[derive(Debug, Serialize)]
pub struct ScaleRow {
    pub hosts: usize,
    pub create_seconds: f64,
    /// `converge --only-files` on fresh hosts.
    pub apply_seconds: f64,
    pub apply_peak_rss_kb: u64,
    /// Payload sent to one worker by that converge, in bytes.
    pub apply_bytes_per_worker: u64,
    /// `idempotence --only-files`, wall seconds over the runs.
    pub check_seconds: Spread,
    /// kubeforge's own CPU seconds per check (median): what grows on the control machine.
    pub check_kubeforge_cpu_seconds: f64,
    /// The facts scripts' CPU seconds per check, all hosts together (median).
    pub check_hosts_cpu_seconds: f64,
    /// Everything the hosts' containers used per check (median), read from their cgroups:
    /// sshd, sudo and the facts scripts. On this machine every host shares its CPUs, so a
    /// check cannot take less than this divided by the CPUs.
    pub check_containers_cpu_seconds: f64,
    pub check_peak_rss_kb: u64,
    /// The most SSH round trips one host cost in a check.
    pub check_most_round_trips: u64,
}

impl ScaleRow {
    /// kubeforge's peak memory in a check, per host.
    pub fn check_rss_kb_per_host(&self) -> f64 {
        self.check_peak_rss_kb as f64 / self.hosts as f64
    }
}

/// The rows for each of `sizes` (hosts, at least 3), one after the other; each inventory
/// is destroyed after its row, also when the row failed.
pub fn rows(
    root: &Path,
    binary: &Path,
    out: &Path,
    sizes: &[usize],
    runs: usize,
    machine_peak_kb: &Cell<u64>,
) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for &hosts in sizes {
        let name = format!("scale-{hosts}");
        let project = project::generate(root, out, &name, &scenario(hosts))?;
        let bench = Bench {
            binary: binary.to_path_buf(),
            root: project,
            out: out.to_path_buf(),
            scenario: name,
            machine_peak_kb: Cell::new(0),
        };
        let row = row(&bench, hosts, runs);
        let destroyed = bench.step(&format!("scale {hosts}: destroy"), &["destroy"]);
        machine_peak_kb.set(machine_peak_kb.get().max(bench.machine_peak_kb.get()));
        rows.push(row?);
        destroyed?;
    }
    Ok(rows)
}

fn row(bench: &Bench, hosts: usize, runs: usize) -> Result<ScaleRow> {
    let step = |what: &str, args: &[&str]| bench.step(&format!("scale {hosts}: {what}"), args);
    let create = step("create", &["create"])?;
    let apply = step("converge --only-files", &["converge", "--only-files"])?;
    let cgroups = ContainerCpu::of(&bench.scenario)?;
    let mut checks = Vec::new();
    let mut containers_cpu = Vec::new();
    for i in 1..=runs {
        let before = cgroups.seconds()?;
        checks.push(step(
            &format!("check #{i}"),
            &["idempotence", "--only-files"],
        )?);
        containers_cpu.push(cgroups.seconds()? - before);
    }
    let apply_bytes_per_worker = apply
        .hosts
        .iter()
        .filter(|(host, _)| host.starts_with("kube-worker-"))
        .map(|(_, c)| c.ssh_bytes_sent)
        .max()
        .unwrap_or(0);
    Ok(ScaleRow {
        hosts,
        create_seconds: create.wall_seconds,
        apply_seconds: apply.wall_seconds,
        apply_peak_rss_kb: apply.kubeforge_peak_rss_kb,
        apply_bytes_per_worker,
        check_seconds: spread(checks.iter().map(|c| c.wall_seconds).collect()),
        check_kubeforge_cpu_seconds: spread(
            checks.iter().map(|c| c.kubeforge_cpu_seconds).collect(),
        )
        .median,
        check_hosts_cpu_seconds: spread(
            checks
                .iter()
                .map(|c| c.hosts.values().map(|h| h.facts_cpu_seconds).sum())
                .collect(),
        )
        .median,
        check_containers_cpu_seconds: spread(containers_cpu).median,
        check_peak_rss_kb: checks
            .iter()
            .map(|c| c.kubeforge_peak_rss_kb)
            .max()
            .unwrap_or(0),
        check_most_round_trips: checks
            .iter()
            .flat_map(|c| c.hosts.values())
            .map(|c| c.ssh_round_trips)
            .max()
            .unwrap_or(0),
    })
}

/// The CPU accounting of a scenario's containers (cgroup v1 `cpuacct.usage` or v2
/// `cpu.stat`).
struct ContainerCpu {
    files: Vec<std::path::PathBuf>,
}

impl ContainerCpu {
    /// The containers the Podman driver made for `scenario` (named `kf-<scenario>-...`).
    fn of(scenario: &str) -> Result<Self> {
        let podman = |args: &[&str]| -> Result<String> {
            let out = std::process::Command::new("podman").args(args).output()?;
            if !out.status.success() {
                anyhow::bail!(
                    "podman {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let filter = format!("name=^kf-{scenario}-");
        let ids = podman(&["ps", "-q", "--filter", &filter])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            anyhow::bail!("no containers of {scenario} found to measure");
        }
        let mut args = vec!["inspect", "-f", "{{.State.CgroupPath}}"];
        args.extend(&ids);
        let files = podman(&args)?
            .lines()
            .map(|path| {
                let v1 = Path::new("/sys/fs/cgroup/cpuacct")
                    .join(path.trim_start_matches('/'))
                    .join("cpuacct.usage");
                if v1.exists() {
                    v1
                } else {
                    Path::new("/sys/fs/cgroup")
                        .join(path.trim_start_matches('/'))
                        .join("cpu.stat")
                }
            })
            .collect();
        Ok(ContainerCpu { files })
    }

    /// CPU seconds the containers have used so far.
    fn seconds(&self) -> Result<f64> {
        let mut total = 0.0;
        for file in &self.files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            total += cgroup_cpu_seconds(&text)
                .ok_or_else(|| anyhow::anyhow!("no CPU usage in {}", file.display()))?;
        }
        Ok(total)
    }
}

/// Seconds from a cgroup v1 `cpuacct.usage` (nanoseconds) or v2 `cpu.stat` (`usage_usec`).
fn cgroup_cpu_seconds(text: &str) -> Option<f64> {
    match text.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
        Some(usec) => Some(usec.trim().parse::<f64>().ok()? / 1e6),
        None => Some(text.trim().parse::<f64>().ok()? / 1e9),
    }
}

/// A scenario of `hosts` Podman hosts: etcd-01, kube-master-01 and workers.
fn scenario(hosts: usize) -> String {
    let mut s = String::from(
        "# Generated by `cargo xtask bench` (scaling rows): one etcd member, one master, workers.\n\
         driver:\n  name: podman\nplatforms:\n  - name: etcd-01\n    groups: [etcd]\n  \
         - name: kube-master-01\n    groups: [kube-master]\n",
    );
    for i in 1..=hosts.saturating_sub(2) {
        s.push_str(&format!(
            "  - name: kube-worker-{i:02}\n    groups: [kube-worker]\n"
        ));
    }
    s
}

/// The rows as a plain-text table; the check ratio is against the first (smallest) row.
pub fn table(rows: &[ScaleRow]) -> String {
    let mut s = format!(
        "\nscaling (--only-files: every file the installer writes, no service started; hosts at once: {})\n",
        kubeforge::connections::DEFAULT_HOSTS_AT_ONCE
    );
    s.push_str(&format!(
        "{:>5} {:>9} {:>9} {:>10} {:>12} {:>12} {:>13} {:>13} {:>13} {:>6} {:>13} {:>12}\n",
        "hosts",
        "create s",
        "apply s",
        "MB/worker",
        "check med s",
        "check/first",
        "kubeforge CPU",
        "facts CPU s",
        "hosts' CPU s",
        "trips",
        "check RSS MB",
        "RSS KB/host"
    ));
    let first = rows.first().map_or(f64::NAN, |r| r.check_seconds.median);
    for r in rows {
        s.push_str(&format!(
            "{:>5} {:>9.1} {:>9.1} {:>10.1} {:>12.2} {:>12.2} {:>13.2} {:>13.2} {:>13.2} {:>6} {:>13.1} {:>12.0}\n",
            r.hosts,
            r.create_seconds,
            r.apply_seconds,
            r.apply_bytes_per_worker as f64 / 1_048_576.0,
            r.check_seconds.median,
            r.check_seconds.median / first,
            r.check_kubeforge_cpu_seconds,
            r.check_hosts_cpu_seconds,
            r.check_containers_cpu_seconds,
            r.check_most_round_trips,
            r.check_peak_rss_kb as f64 / 1024.0,
            r.check_rss_kb_per_host()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_cpu_usage_of_either_version() {
        assert_eq!(cgroup_cpu_seconds("1500000000\n"), Some(1.5));
        let v2 = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        assert_eq!(cgroup_cpu_seconds(v2), Some(2.5));
        assert_eq!(cgroup_cpu_seconds("max\n"), None);
    }

    #[test]
    fn a_scaled_scenario_has_one_etcd_one_master_and_the_rest_workers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let project = project::generate(root, dir.path(), "scale-16", &scenario(16)).unwrap();
        let loaded = kubeforge::scenario::Scenario::load_named(&project, "scale-16").unwrap();
        let in_group = |g: &str| {
            loaded
                .platforms
                .iter()
                .filter(|p| p.groups.iter().any(|x| x.as_str() == g))
                .count()
        };
        assert_eq!(loaded.platforms.len(), 16);
        assert_eq!(
            (
                in_group("etcd"),
                in_group("kube-master"),
                in_group("kube-worker")
            ),
            (1, 1, 14)
        );
        assert!(project.join("templates").join(".").is_dir());
    }
}
