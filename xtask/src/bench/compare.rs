//! kubeforge and ansible-playbook side by side on the same file-level work: the default
//! scenario's four hosts (with python3 in their image, which Ansible needs), kubeforge's
//! `converge --only-files` from fresh hosts, again, and in check mode; then, on fresh
//! identical hosts, a playbook generated from kubeforge's plan from scratch, again, and with
//! `--check`. Each run is measured the same way (wall, CPU of this machine's process tree,
//! peak PSS), and kubeforge checks Ansible's hosts afterwards, so the two did the same work.

use std::cell::Cell;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::ansible::{self, Work};
use super::{Bench, StepRun, measure, project};

/// The generated project's scenario (and its directory name under target/bench).
const NAME: &str = "ansible-compare";
/// Ansible needs Python on the hosts; kubeforge's hosts get the identical image.
const HOST_PACKAGES: &str = "packages: [python3]";

/// One measured run of either tool.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub wall_seconds: f64,
    /// This machine's CPU: the tool's process tree (for Ansible with its SSH masters).
    pub cpu_seconds: f64,
    pub peak_pss_kb: u64,
    /// kubeforge: changes counted; Ansible: tasks reported changed, summed over hosts.
    pub changed: u64,
}

/// The three runs compared, and what each tool did besides.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub work: Work,
    pub ansible_core: &'static str,
    pub forks: usize,
    /// converge from scratch, second converge, check mode.
    pub kubeforge: [Run; 3],
    pub ansible: [Run; 3],
    /// kubeforge's `idempotence --only-files` on the hosts Ansible converged: zero changes
    /// when the playbook wrote what kubeforge plans.
    pub kubeforge_check_of_ansible_hosts: Run,
    pub equivalent: bool,
    pub plan_seconds: f64,
    pub differences: Vec<String>,
}

pub const ROWS: [&str; 3] = ["converge from scratch", "second converge", "check mode"];

/// Runs the comparison on a generated project under `out`; its hosts are destroyed at the
/// end whatever happened.
pub fn run(
    binary: &Path,
    root: &Path,
    out: &Path,
    machine_peak_kb: &Cell<u64>,
) -> Result<Comparison> {
    let dir = out.join("ansible");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ansible_playbook = ansible::ensure_ansible(&dir.join("venv"), &dir.join("install.log"))?;
    let project = project::generate(root, out, NAME, &scenario_yaml(root)?)?;
    let workloads = project.join("scenarios").join(NAME).join("workloads");
    if std::fs::symlink_metadata(&workloads).is_err() {
        std::os::unix::fs::symlink(root.join("scenarios/default/workloads"), &workloads)
            .with_context(|| format!("linking {}", workloads.display()))?;
    }
    let bench = Bench {
        binary: binary.to_path_buf(),
        root: project.clone(),
        out: dir.clone(),
        scenario: NAME.to_string(),
        machine_peak_kb: Cell::new(0),
    };
    // A run interrupted before its destroy left hosts: they are this benchmark's own.
    let has_hosts = |p: &Path| -> Result<bool> {
        let state = kubeforge::state::StateDir::for_scenario(p, NAME).load(NAME)?;
        Ok(state.inventory.is_some())
    };
    if has_hosts(&project)? {
        bench.step("compare: destroy leftover hosts", &["destroy"])?;
    }
    let compared = sides(&bench, &ansible_playbook, &dir);
    let destroyed = bench.step("compare: destroy", &["destroy"]);
    machine_peak_kb.set(machine_peak_kb.get().max(bench.machine_peak_kb.get()));
    let compared = compared?;
    destroyed?;
    Ok(compared)
}

/// The default scenario with python3 in its hosts' image.
fn scenario_yaml(root: &Path) -> Result<String> {
    let file = root.join("scenarios/default/scenario.yml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let driver = "driver:\n  name: podman\n";
    if !text.contains(driver) {
        bail!(
            "{}: the comparison adds {HOST_PACKAGES} to a '{}' block, which the file no longer has",
            file.display(),
            driver.replace('\n', " ")
        );
    }
    Ok(text.replacen(driver, &format!("{driver}  {HOST_PACKAGES}\n"), 1))
}

fn sides(bench: &Bench, ansible_playbook: &Path, dir: &Path) -> Result<Comparison> {
    bench.step("compare: kubeforge create", &["create"])?;
    let kubeforge = [
        bench.step(
            "compare: kubeforge converge --only-files (fresh hosts)",
            &["converge", "--only-files"],
        )?,
        bench.step(
            "compare: kubeforge converge --only-files (again)",
            &["converge", "--only-files"],
        )?,
        bench.step(
            "compare: kubeforge idempotence --only-files",
            &["idempotence", "--only-files"],
        )?,
    ]
    .map(kubeforge_run);
    bench.step("compare: kubeforge destroy", &["destroy"])?;
    bench.step("compare: create Ansible's hosts", &["create"])?;
    let inventory = kubeforge::state::StateDir::for_scenario(&bench.root, NAME)
        .load(NAME)?
        .inventory
        .context("create left no inventory")?;
    // At least one fork per host: every host at once, as kubeforge does.
    let forks = inventory.hosts.len().max(5);
    eprintln!("bench: compare: the playbook from kubeforge's file-level plan");
    let playbook = ansible::write_playbook(&bench.root, NAME, &dir.join("playbook"), forks)?;
    let mut ansible = Vec::new();
    for (i, check) in [(1, false), (2, false), (3, true)] {
        ansible.push(ansible_run(
            bench,
            ansible_playbook,
            &playbook.dir,
            i,
            check,
        )?);
    }
    let (cross, failed) = bench.try_step(
        "compare: kubeforge idempotence --only-files of Ansible's hosts",
        &["idempotence", "--only-files"],
    )?;
    if let Some(log) = &failed {
        eprintln!(
            "bench: compare: kubeforge plans changes on the hosts Ansible converged: see {}",
            log.display()
        );
    }
    let ansible: [Run; 3] = ansible
        .try_into()
        .map_err(|_| anyhow::anyhow!("three Ansible runs"))?;
    Ok(Comparison {
        differences: differences(&playbook.work, forks, playbook.plan_seconds),
        work: playbook.work,
        ansible_core: ansible::ANSIBLE_CORE,
        forks,
        kubeforge,
        ansible,
        equivalent: failed.is_none() && cross.changes == Some(0),
        kubeforge_check_of_ansible_hosts: kubeforge_run(cross),
        plan_seconds: playbook.plan_seconds,
    })
}

fn kubeforge_run(step: StepRun) -> Run {
    Run {
        wall_seconds: step.wall_seconds,
        cpu_seconds: step.kubeforge_cpu_seconds,
        peak_pss_kb: step.peak_pss_kb,
        changed: step.changes.unwrap_or(0),
    }
}

/// One `ansible-playbook` run, measured, with fresh SSH connections: its ControlPersist
/// masters (detached from ansible-playbook, so not among its children) are closed after
/// it and their CPU added.
fn ansible_run(
    bench: &Bench,
    ansible_playbook: &Path,
    dir: &Path,
    i: usize,
    check: bool,
) -> Result<Run> {
    let what = ROWS[i - 1];
    let log = bench.out.join(format!("ansible-run-{i}.log"));
    let control_dir = bench.out.join(format!("cp{i}"));
    if control_dir.exists() {
        close_masters(&control_dir);
        std::fs::remove_dir_all(&control_dir)
            .with_context(|| format!("removing {}", control_dir.display()))?;
    }
    eprintln!(
        "bench: compare: ansible-playbook, {what} (log {})",
        log.display()
    );
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = ansible::playbook_command(ansible_playbook, dir, &control_dir, check);
    command.stdout(file.try_clone()?).stderr(file);
    let measured = measure(command, &bench.machine_peak_kb);
    let masters_cpu = close_masters(&control_dir);
    let measured = measured?;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let recap = ansible::recap(&output);
    match recap {
        Some((_, _, 0)) if measured.success => {}
        _ => bail!("ansible-playbook ({what}) failed: see {}", log.display()),
    }
    Ok(Run {
        wall_seconds: measured.wall_seconds,
        cpu_seconds: measured.cpu_seconds + masters_cpu,
        peak_pss_kb: measured.peak_tree_pss_kb,
        changed: recap.map_or(0, |(_, changed, _)| changed),
    })
}

/// Closes the SSH masters whose sockets are in `control_dir`; the CPU seconds they used.
fn close_masters(control_dir: &Path) -> f64 {
    let Ok(sockets) = std::fs::read_dir(control_dir) else {
        return 0.0;
    };
    let ticks = super::clock_ticks();
    let mut cpu = 0.0;
    for socket in sockets.flatten().map(|e| e.path()) {
        let ssh = |op: &str| {
            Command::new("ssh")
                .args(["-O", op, "-o"])
                .arg(format!("ControlPath={}", socket.display()))
                .arg("kubeforge-bench")
                .output()
        };
        // `Master running (pid=1234)`, on stderr.
        let pid = ssh("check").ok().and_then(|out| {
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            let (_, rest) = text.split_once("(pid=")?;
            rest.split(')').next()?.parse::<u32>().ok()
        });
        if let Some(pid) = pid {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            cpu += super::cpu_ticks(&stat) as f64 / ticks;
        }
        let _ = ssh("exit");
    }
    cpu
}

/// What differs between the two sides, as the output says it.
fn differences(work: &Work, forks: usize, plan_seconds: f64) -> Vec<String> {
    vec![
        format!(
            "kubeforge renders templates and makes certificates inside each timed run; Ansible gets the contents kubeforge's library rendered beforehand ({plan_seconds:.2} s, not timed)"
        ),
        "kubeforge records each file it writes in its hash index on the host (/var/lib/kubeforge/hashes) and later hashes only files whose stat changed; Ansible's copy checksums every file on the host and on this machine in every run, check mode included".into(),
        format!(
            "Ansible: forks {forks} (all {} hosts at once), pipelining on, SSH ControlPersist within a run (masters closed after it, their CPU counted), no SSH compression, interpreter /usr/bin/python3 given, no fact gathering; one looped task per kind (directories, files, uploads, links), each item one module run",
            work.hosts
        ),
        "Ansible also creates the parents of planned paths that the plan does not list (kubeforge's apply runs mkdir -p on them)".into(),
        "kubeforge: one process, SSH in-process, all hosts concurrently, each phase one apply script per host".into(),
        "changed: kubeforge counts changed resources, Ansible tasks reported changed per host".into(),
        "CPU: this machine only (hosts' CPU not counted for either); memory: peak PSS of the process tree, sampled every 50 ms".into(),
        "the hosts: the same python3 image from kubeforge's Podman driver, fresh for each tool (kubeforge's destroyed before Ansible's are created)".into(),
    ]
}

/// The comparison as a table with ratios (ansible / kubeforge).
pub fn table(c: &Comparison) -> String {
    let w = &c.work;
    let mut s = format!(
        "\nkubeforge vs ansible-playbook ({}): file-level work of {} hosts: {} directories, {} files ({:.0} KB), {} uploads ({:.0} MB), {} links\n\n",
        c.ansible_core,
        w.hosts,
        w.directories,
        w.files,
        w.file_bytes as f64 / 1024.0,
        w.uploads,
        w.upload_bytes as f64 / 1048576.0,
        w.links
    );
    s.push_str(&format!(
        "{:<22} {:>27}   {:>27}   {:>20}\n",
        "", "kubeforge", "ansible-playbook", "ansible / kubeforge"
    ));
    s.push_str(&format!(
        "{:<22} {:>7} {:>6} {:>6} {:>5}   {:>7} {:>6} {:>6} {:>5}   {:>6} {:>6} {:>6}\n",
        "run", "wall s", "CPU s", "MB", "chg", "wall s", "CPU s", "MB", "chg", "wall", "CPU", "mem"
    ));
    for ((what, k), a) in ROWS.iter().zip(&c.kubeforge).zip(&c.ansible) {
        let ratio = |a: f64, k: f64| {
            if k > 0.0 {
                format!("{:.1}x", a / k)
            } else {
                "-".into()
            }
        };
        let mb = |kb: u64| kb as f64 / 1024.0;
        s.push_str(&format!(
            "{:<22} {:>7.2} {:>6.2} {:>6.0} {:>5}   {:>7.2} {:>6.2} {:>6.0} {:>5}   {:>6} {:>6} {:>6}\n",
            what,
            k.wall_seconds,
            k.cpu_seconds,
            mb(k.peak_pss_kb),
            k.changed,
            a.wall_seconds,
            a.cpu_seconds,
            mb(a.peak_pss_kb),
            a.changed,
            ratio(a.wall_seconds, k.wall_seconds),
            ratio(a.cpu_seconds, k.cpu_seconds),
            ratio(mb(a.peak_pss_kb), mb(k.peak_pss_kb)),
        ));
    }
    let x = &c.kubeforge_check_of_ansible_hosts;
    s.push_str(&format!(
        "\nkubeforge's check of the hosts Ansible converged: {} change(s) in {:.2} s, {:.2} CPU s ({})\n",
        x.changed,
        x.wall_seconds,
        x.cpu_seconds,
        if c.equivalent {
            "the playbook wrote what kubeforge plans"
        } else {
            "NOT equivalent: see its log"
        }
    ));
    // Like with like for hashing: no index there yet, so every file is read on its host.
    if x.wall_seconds > 0.0 {
        s.push_str(&format!(
            "  with no hash index on those hosts, kubeforge reads every file as Ansible does: ansible check mode / that check = {:.1}x wall\n",
            c.ansible[2].wall_seconds / x.wall_seconds
        ));
    }
    s.push_str("what differs:\n");
    for d in &c.differences {
        s.push_str(&format!("  - {d}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compared_scenario_is_the_default_one_with_python() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = scenario_yaml(root).unwrap();
        assert!(
            text.starts_with("driver:\n  name: podman\n  packages: [python3]\n")
                || text.contains("\ndriver:\n  name: podman\n  packages: [python3]\n"),
            "{text}"
        );
        // Parsed where the default scenario is, so its workloads resolve as they will.
        let path = root.join("scenarios/default/scenario.yml");
        let scenario = kubeforge::scenario::Scenario::parse(NAME, &path, &text).unwrap();
        assert_eq!(scenario.platforms.len(), 4);
    }
}
