//! `cargo xtask bench`: what a scenario costs, measured on real hosts, printed as one table
//! and written as JSON (`target/bench/bench.json`). A benchmark, not a test: it judges
//! nothing but says where each figure stands against the targets of issue 15.
//!
//! It builds kubeforge, then runs each step as its own `kubeforge` process on a scenario
//! that has no hosts yet (create, syntax, converge from fresh hosts, idempotence `runs`
//! times, idempotence with `--full-hash`, a second converge, verify, destroy; destroy also
//! after a failure). Per step: wall seconds, the kubeforge process's CPU seconds and peak
//! RSS (sampled from `/proc` every 10 ms; CPU read once it has exited, before it is
//! reaped), and, for converge and idempotence, per host what the engine counts (SSH round
//! trips, payload bytes, the facts scripts' CPU seconds on the host), read from the step's
//! JUnit report. The machine's peak memory in use is sampled too (it includes whatever
//! else runs on the machine).
//!
//! Then (`--ansible run`, the default; `only` for nothing else) it runs kubeforge and
//! ansible-playbook side by side on the same file-level work on hosts of their own
//! ([`compare`]).

mod ansible;
mod compare;
mod project;
mod ready;
mod scale;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// The targets of issue 15 the table is read against.
const TARGET_IDEMPOTENCE_SECONDS: f64 = 1.0;
const TARGET_ROUND_TRIPS: u64 = 2;
const TARGET_FACTS_CPU_SECONDS: f64 = 0.2;
const TARGET_CONVERGE_SECONDS: f64 = 15.0;
const TARGET_NODES_READY_SECONDS: f64 = 20.0;
/// The largest inventory's check against the smallest's.
const TARGET_SCALE_RATIO: f64 = 2.0;

pub struct Options {
    pub scenario: String,
    pub runs: usize,
    /// Inventory sizes of the scaling rows (none: no rows).
    pub scale: Vec<usize>,
    pub ansible: AnsibleMode,
}

/// Whether the benchmark also compares kubeforge with ansible-playbook (issue 15 part 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnsibleMode {
    /// The scenario's steps, then the comparison.
    Run,
    /// The scenario's steps only.
    Skip,
    /// The comparison only.
    Only,
}

/// One step as run: its measures and, for converge and idempotence, each host's costs.
#[derive(Debug, Clone, Serialize)]
struct StepRun {
    name: String,
    wall_seconds: f64,
    kubeforge_cpu_seconds: f64,
    kubeforge_peak_rss_kb: u64,
    /// Peak proportional memory of the process and its children (what the Ansible
    /// comparison holds against ansible-playbook's process tree).
    peak_pss_kb: u64,
    /// The changes the step counted (converge, idempotence).
    changes: Option<u64>,
    hosts: BTreeMap<String, HostCost>,
}

/// What the engine counted on one host during a step (JUnit properties of the step).
#[derive(Debug, Clone, Default, Serialize)]
struct HostCost {
    ssh_round_trips: u64,
    ssh_bytes_sent: u64,
    ssh_bytes_received: u64,
    facts_cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Spread {
    runs: Vec<f64>,
    min: f64,
    median: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: String,
    machine: Machine,
    steps: Vec<StepRun>,
    idempotence_wall_seconds: Spread,
    /// From the start of converge on fresh hosts until the last node turned Ready.
    nodes_ready_seconds: Option<f64>,
    scaling: Vec<scale::ScaleRow>,
    /// kubeforge and ansible-playbook side by side on the same file-level work.
    ansible: Option<compare::Comparison>,
    targets: BTreeMap<&'static str, String>,
    not_measured: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    load_average_at_start: String,
    /// Whatever else ran meanwhile shows here too (the runs share the machine's CPUs).
    load_average_at_end: String,
    peak_memory_in_use_mb: u64,
}

/// Runs the benchmark and prints its table; the JSON goes to `<root>/target/bench/`.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let scenario_steps = options.ansible != AnsibleMode::Only;
    if scenario_steps {
        let state = kubeforge::state::StateDir::for_scenario(root, &options.scenario)
            .load(&options.scenario)?;
        if state.inventory.is_some() {
            bail!(
                "scenario {0} has hosts already: the benchmark starts from none (`cargo run -- destroy {0}`)",
                options.scenario
            );
        }
    }
    let binary = build_kubeforge(root)?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let bench = Bench {
        binary,
        root: root.to_path_buf(),
        out: out.clone(),
        scenario: options.scenario.clone(),
        machine_peak_kb: std::cell::Cell::new(0),
    };
    let mut steps = Vec::new();
    let mut nodes_ready_seconds = None;
    let mut scaling = Vec::new();
    if scenario_steps {
        let run = bench.steps(options.runs);
        let destroyed = bench.step("destroy", &["destroy"]);
        (steps, nodes_ready_seconds) = run?;
        steps.push(destroyed?);
        scaling = scale::rows(
            root,
            &bench.binary,
            &out,
            &options.scale,
            options.runs,
            &bench.machine_peak_kb,
        )?;
    }
    // A failed comparison still leaves the scenario's figures printed, then fails the run.
    let compared = match options.ansible {
        AnsibleMode::Skip => None,
        AnsibleMode::Run | AnsibleMode::Only => Some(compare::run(
            &bench.binary,
            root,
            &out,
            &bench.machine_peak_kb,
        )),
    };
    let (ansible, failed) = match compared {
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let idem: Vec<f64> = steps
        .iter()
        .filter(|s| s.name.starts_with("idempotence #"))
        .map(|s| s.wall_seconds)
        .collect();
    let mut not_measured = Vec::new();
    if scaling.is_empty() {
        not_measured.push("scaling rows (--scale none, or --ansible only)");
    }
    match (&ansible, &failed) {
        (None, None) => {
            not_measured.push("ansible-playbook side by side (skipped: --ansible skip)")
        }
        (None, Some(_)) => not_measured.push("ansible-playbook side by side (failed: see below)"),
        _ => {}
    }
    let report = Report {
        scenario: options.scenario.clone(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            load_average_at_start: load_average(&load),
            load_average_at_end: load_average(
                &std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
            ),
            peak_memory_in_use_mb: bench.machine_peak_kb.get() / 1024,
        },
        idempotence_wall_seconds: spread(idem),
        nodes_ready_seconds,
        scaling,
        ansible,
        targets: BTreeMap::new(),
        not_measured,
        steps,
    };
    let report = with_targets(report);
    print!("{}", table(&report));
    let json = out.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    println!("JSON: {}", json.display());
    match failed {
        Some(e) => Err(e.context("the comparison with ansible-playbook")),
        None => Ok(()),
    }
}

/// The 1, 5 and 15 minute load averages of a `/proc/loadavg` text.
fn load_average(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Bench {
    binary: PathBuf,
    root: PathBuf,
    out: PathBuf,
    scenario: String,
    machine_peak_kb: std::cell::Cell<u64>,
}

impl Bench {
    /// Every step but destroy, in order (the first failure stops them), and the seconds
    /// from the start of the first converge until all nodes were Ready.
    fn steps(&self, runs: usize) -> Result<(Vec<StepRun>, Option<f64>)> {
        let mut steps = vec![
            self.step("create", &["create"])?,
            self.step("syntax", &["syntax"])?,
        ];
        let start = std::time::SystemTime::now();
        steps.push(self.step("converge (fresh hosts)", &["converge"])?);
        let ready = ready::all_nodes_ready_after(&self.binary, &self.root, &self.scenario, start)?;
        for i in 1..=runs {
            steps.push(self.step(&format!("idempotence #{i}"), &["idempotence"])?);
        }
        steps.push(self.step("idempotence --full-hash", &["idempotence", "--full-hash"])?);
        steps.push(self.step("converge (again)", &["converge"])?);
        steps.push(self.step("verify", &["verify"])?);
        Ok((steps, Some(ready)))
    }

    /// Runs `kubeforge <args> <scenario>` with a JUnit report; fails when it does.
    fn step(&self, name: &str, args: &[&str]) -> Result<StepRun> {
        let (run, log) = self.try_step(name, args)?;
        match log {
            None => Ok(run),
            Some(log) => bail!("{name} failed: see {}", log.display()),
        }
    }

    /// [`Bench::step`] that measures a failed step too: its log when it failed.
    fn try_step(&self, name: &str, args: &[&str]) -> Result<(StepRun, Option<PathBuf>)> {
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let junit = self.out.join(format!("{file}.xml"));
        let log = self.out.join(format!("{file}.log"));
        let _ = std::fs::remove_file(&junit);
        eprintln!("bench: {name} (log {})", log.display());
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--junit")
            .arg(&junit)
            .args(&args[..1])
            .arg(&self.scenario)
            .args(&args[1..])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let measured = measure(command, &self.machine_peak_kb)?;
        let xml = std::fs::read_to_string(&junit).unwrap_or_default();
        let run = StepRun {
            name: name.to_string(),
            wall_seconds: measured.wall_seconds,
            kubeforge_cpu_seconds: measured.cpu_seconds,
            kubeforge_peak_rss_kb: measured.peak_rss_kb,
            peak_pss_kb: measured.peak_tree_pss_kb,
            changes: step_changes(&xml),
            hosts: host_costs(&xml),
        };
        Ok((run, (!measured.success).then_some(log)))
    }
}

/// `cargo build` of kubeforge (the dev profile `cargo run` uses); its executable's path.
fn build_kubeforge(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--package",
            "kubeforge",
            "--bin",
            "kubeforge",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build of kubeforge failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo build named no kubeforge executable")
}

struct Measured {
    success: bool,
    wall_seconds: f64,
    cpu_seconds: f64,
    peak_rss_kb: u64,
    /// Peak PSS summed over the process and its descendants: a tool that forks workers
    /// (Ansible) shows its whole footprint, shared pages counted once.
    peak_tree_pss_kb: u64,
}

/// Runs `command`, sampling its peak RSS (and the machine's memory in use) every 10 ms and
/// its process tree's PSS every 50 ms; its CPU time (its own and its reaped children's) is
/// read once it has exited and before it is reaped, from `/proc/<pid>/stat`.
fn measure(mut command: Command, machine_peak_kb: &std::cell::Cell<u64>) -> Result<Measured> {
    let ticks = clock_ticks();
    let start = Instant::now();
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let mut peak = 0;
    let mut tree_peak = 0;
    let mut samples = 0u64;
    let cpu = loop {
        let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        // The state follows the command name in parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state.is_none_or(|state| state == "Z") {
            break cpu_ticks(&stat) as f64 / ticks;
        }
        peak = peak.max(status_kb(&proc_dir.join("status"), "VmHWM:"));
        if samples.is_multiple_of(5) {
            tree_peak = tree_peak.max(tree_pss_kb(child.id()));
        }
        samples += 1;
        let meminfo = Path::new("/proc/meminfo");
        let in_use = status_kb(meminfo, "MemTotal:") - status_kb(meminfo, "MemAvailable:");
        machine_peak_kb.set(machine_peak_kb.get().max(in_use));
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = child
        .wait()
        .with_context(|| format!("waiting for {program}"))?;
    Ok(Measured {
        success: status.success(),
        wall_seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: cpu,
        peak_rss_kb: peak,
        peak_tree_pss_kb: tree_peak,
    })
}

/// PSS of `pid` and every process below it, in kB (`/proc/<pid>/task/*/children`).
fn tree_pss_kb(pid: u32) -> u64 {
    let mut total = 0;
    let mut pending = vec![pid.to_string()];
    while let Some(p) = pending.pop() {
        let dir = Path::new("/proc").join(&p);
        total += status_kb(&dir.join("smaps_rollup"), "Pss:");
        let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children"));
            pending.extend(
                children
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string),
            );
        }
    }
    total
}

/// The `changes` property of a step's JUnit report.
fn step_changes(xml: &str) -> Option<u64> {
    let (_, rest) = xml.split_once("<property name=\"changes\" value=\"")?;
    rest.split('"').next()?.parse().ok()
}

/// utime + stime + cutime + cstime of a `/proc/<pid>/stat` line, in clock ticks.
fn cpu_ticks(stat: &str) -> u64 {
    // Fields after the command name in parentheses: state, ppid, ... utime is the 14th
    // field of the line, stime, cutime, cstime the next.
    stat.rsplit_once(')').map_or(0, |(_, rest)| {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields
            .get(11..15)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
    })
}

/// A `Key:   123 kB` line of a /proc status file, in kB (0 when absent).
fn status_kb(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The per-host properties of a JUnit report (`<what>.<host>` = value).
fn host_costs(xml: &str) -> BTreeMap<String, HostCost> {
    let mut hosts: BTreeMap<String, HostCost> = BTreeMap::new();
    for rest in xml.split("<property name=\"").skip(1) {
        let Some((name, rest)) = rest.split_once("\" value=\"") else {
            continue;
        };
        let Some(value) = rest.split('"').next() else {
            continue;
        };
        let Some((what, host)) = name.split_once('.') else {
            continue;
        };
        let cost = hosts.entry(host.to_string()).or_default();
        let int = || value.parse::<u64>().unwrap_or(0);
        match what {
            "ssh_round_trips" => cost.ssh_round_trips = int(),
            "ssh_bytes_sent" => cost.ssh_bytes_sent = int(),
            "ssh_bytes_received" => cost.ssh_bytes_received = int(),
            "facts_cpu_seconds" => cost.facts_cpu_seconds = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    hosts.retain(|_, c| c.ssh_round_trips > 0);
    hosts
}

fn spread(runs: Vec<f64>) -> Spread {
    let mut ordered = runs.clone();
    ordered.sort_by(f64::total_cmp);
    let at = |i: usize| ordered.get(i).copied().unwrap_or(f64::NAN);
    let median = match ordered.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => at(n / 2),
        n => (at(n / 2 - 1) + at(n / 2)) / 2.0,
    };
    Spread {
        min: at(0),
        median,
        max: ordered.last().copied().unwrap_or(f64::NAN),
        runs,
    }
}

/// Where the figures stand against issue 15's targets, as words in the report.
fn with_targets(mut report: Report) -> Report {
    let idem: Vec<&StepRun> = report
        .steps
        .iter()
        .filter(|s| s.name.starts_with("idempotence #"))
        .collect();
    // `--ansible only` runs no idempotence to judge.
    if idem.is_empty() {
        return report;
    }
    let most_trips = idem
        .iter()
        .flat_map(|s| s.hosts.values())
        .map(|c| c.ssh_round_trips)
        .max()
        .unwrap_or(0);
    let most_cpu = idem
        .iter()
        .flat_map(|s| s.hosts.values())
        .map(|c| c.facts_cpu_seconds)
        .fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let median = report.idempotence_wall_seconds.median;
    if let Some(converge) = report
        .steps
        .iter()
        .find(|s| s.name == "converge (fresh hosts)")
    {
        let wall = converge.wall_seconds;
        report.targets.insert(
            "converge from fresh hosts <= 15 s",
            format!("{} ({wall:.2} s)", verdict(wall <= TARGET_CONVERGE_SECONDS)),
        );
    }
    if let Some(ready) = report.nodes_ready_seconds {
        report.targets.insert(
            "converge start to all nodes Ready <= 20 s",
            format!(
                "{} ({ready:.1} s, the API's Ready times have whole seconds)",
                verdict(ready <= TARGET_NODES_READY_SECONDS)
            ),
        );
    }
    if let (Some(first), Some(last)) = (report.scaling.first(), report.scaling.last())
        && last.hosts > first.hosts
    {
        let ratio = last.check_seconds.median / first.check_seconds.median;
        report.targets.insert(
            "check of the largest inventory <= 2x the smallest's",
            format!(
                "{} ({} hosts {:.2} s, {} hosts {:.2} s: {ratio:.2}x)",
                verdict(ratio <= TARGET_SCALE_RATIO),
                last.hosts,
                last.check_seconds.median,
                first.hosts,
                first.check_seconds.median
            ),
        );
    }
    report.targets.extend([
        (
            "idempotence median wall <= 1.0 s",
            format!(
                "{} ({median:.2} s)",
                verdict(median <= TARGET_IDEMPOTENCE_SECONDS)
            ),
        ),
        (
            "round trips per host per idempotence <= 2",
            format!(
                "{} (at most {most_trips})",
                verdict(most_trips <= TARGET_ROUND_TRIPS)
            ),
        ),
        (
            "host CPU per check <= 0.2 s per host",
            format!(
                "{} (at most {most_cpu:.2} s, facts scripts only)",
                verdict(most_cpu <= TARGET_FACTS_CPU_SECONDS)
            ),
        ),
    ]);
    report
}

/// The report as a plain-text table.
fn table(report: &Report) -> String {
    let mut s = format!(
        "\nkubeforge bench: scenario {}, {} CPUs, load average {} at start, {} at end, machine memory in use at most {} MB\n\n",
        report.scenario,
        report.machine.cpus,
        report.machine.load_average_at_start,
        report.machine.load_average_at_end,
        report.machine.peak_memory_in_use_mb
    );
    if !report.steps.is_empty() {
        s.push_str(&steps_table(report));
    }
    if !report.scaling.is_empty() {
        s.push_str(&scale::table(&report.scaling));
    }
    if let Some(ansible) = &report.ansible {
        s.push_str(&compare::table(ansible));
    }
    if !report.targets.is_empty() {
        s.push_str("\ntargets (issue 15):\n");
    }
    for (target, verdict) in &report.targets {
        s.push_str(&format!("  {target}: {verdict}\n"));
    }
    if !report.not_measured.is_empty() {
        s.push_str("not measured:\n");
    }
    for what in &report.not_measured {
        s.push_str(&format!("  {what}\n"));
    }
    s
}

/// Each step of the scenario, its idempotence runs and what each host cost.
fn steps_table(report: &Report) -> String {
    let mut s = format!(
        "{:<26} {:>9} {:>15} {:>13}\n",
        "step", "wall s", "kubeforge CPU s", "peak RSS MB"
    );
    for step in &report.steps {
        s.push_str(&format!(
            "{:<26} {:>9.2} {:>15.2} {:>13.1}\n",
            step.name,
            step.wall_seconds,
            step.kubeforge_cpu_seconds,
            step.kubeforge_peak_rss_kb as f64 / 1024.0
        ));
    }
    if let Some(ready) = report.nodes_ready_seconds {
        s.push_str(&format!(
            "\nall nodes Ready {ready:.1} s after converge (fresh hosts) started\n"
        ));
    }
    let i = &report.idempotence_wall_seconds;
    s.push_str(&format!(
        "\nidempotence over {} runs: min {:.2} s, median {:.2} s, max {:.2} s\n\n",
        i.runs.len(),
        i.min,
        i.median,
        i.max
    ));
    s.push_str(&format!(
        "{:<26} {:<16} {:>11} {:>10} {:>10} {:>12}\n",
        "per host", "host", "round trips", "sent KB", "recv KB", "facts CPU s"
    ));
    for step in report.steps.iter().filter(|s| !s.hosts.is_empty()) {
        for (host, c) in &step.hosts {
            s.push_str(&format!(
                "{:<26} {:<16} {:>11} {:>10.1} {:>10.1} {:>12.2}\n",
                step.name,
                host,
                c.ssh_round_trips,
                c.ssh_bytes_sent as f64 / 1024.0,
                c.ssh_bytes_received as f64 / 1024.0,
                c.facts_cpu_seconds
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_costs_come_from_the_step_properties() {
        let xml = r#"<testcase name="idempotence"><properties>
<property name="ssh_round_trips.etcd-01" value="1"/>
<property name="ssh_bytes_sent.etcd-01" value="4586"/>
<property name="facts_cpu_seconds.etcd-01" value="0.03"/>
<property name="changes" value="0"/>
<property name="ssh_round_trips.kube-master-01" value="2"/>
</properties></testcase>"#;
        let hosts = host_costs(xml);
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        assert_eq!(hosts["etcd-01"].ssh_bytes_sent, 4586);
        assert_eq!(hosts["etcd-01"].facts_cpu_seconds, 0.03);
        assert_eq!(hosts["kube-master-01"].ssh_round_trips, 2);
    }

    #[test]
    fn spread_of_runs() {
        let s = spread(vec![0.9, 0.6, 0.7, 1.4, 0.65]);
        assert_eq!((s.min, s.median, s.max), (0.6, 0.7, 1.4));
        assert_eq!(spread(vec![1.0, 3.0]).median, 2.0);
        assert!(spread(Vec::new()).median.is_nan());
    }
}
