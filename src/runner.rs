//! Runs a scenario's steps (create, syntax, converge, idempotence, verify, destroy) and
//! records each as a JUnit testcase. The CLI and the scenario test harness both drive this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::artifacts::{ArtifactError, Bundle};
use crate::driver::{self, DriverError};
use crate::engine::{self, EngineError, HostReport, Mode};
use crate::inventory::{Host, Inventory};
use crate::pki::{Pki, PkiError};
use crate::report::{CaseOutcome, CaseReport, Logger, RunReport};
use crate::roles::{self, InstallContext, RoleError};
use crate::scenario::{Group, Scenario, Step};
use crate::ssh::{ClientKey, HostKeyPins, SshError, SshOptions, SshSession, SshTarget};
use crate::state::{ScenarioState, StateDir, StateError, StepRecord};
use crate::templates::{TemplateError, Templates};
use crate::{syntax, verify};

/// When `test` destroys the hosts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestroyPolicy {
    Always,
    Never,
    Passing,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("scenario '{0}' has no hosts: run `kubeforge create {0}` first")]
    NotCreated(String),
    #[error("{0}: SSH key for the existing hosts not found")]
    MissingKey(PathBuf),
    #[error("unknown host '{host}' (hosts: {known})")]
    UnknownHost { host: String, known: String },
    #[error("syntax: {count} problem(s):\n{list}")]
    Syntax { count: usize, list: String },
    #[error("idempotence: {count} change(s) still planned after converge:\n{list}")]
    NotIdempotent { count: usize, list: String },
    #[error("verify: {failed} of {total} checks failed: {names}")]
    Verify {
        failed: usize,
        total: usize,
        names: String,
    },
}

/// One scenario, its state and open connections.
pub struct Runner {
    root: PathBuf,
    scenario: Scenario,
    state_dir: StateDir,
    state: ScenarioState,
    log: Logger,
    sessions: BTreeMap<String, SshSession>,
    pub report: RunReport,
    /// Limits converge to these roles (`--tags`).
    pub tags: Vec<String>,
    /// Print every change of a converge, not only in check mode.
    pub verbose: bool,
}

/// What a converge (or check) did on all hosts.
pub struct ConvergeReport {
    hosts: Vec<HostReport>,
}

impl ConvergeReport {
    fn changes(&self) -> usize {
        self.hosts.iter().map(HostReport::change_count).sum()
    }

    fn round_trips(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for h in &self.hosts {
            *out.entry(h.host.clone()).or_default() += h.round_trips;
        }
        out
    }
}

impl Runner {
    pub fn new(root: &Path, scenario: Scenario, log: Logger) -> Result<Runner, RunError> {
        let state_dir = StateDir::for_scenario(root, &scenario.name);
        let state = state_dir.load(&scenario.name)?;
        Ok(Runner {
            root: root.to_path_buf(),
            report: RunReport::new(&scenario.name),
            scenario,
            state_dir,
            state,
            log,
            sessions: BTreeMap::new(),
            tags: Vec::new(),
            verbose: false,
        })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn inventory(&self) -> Option<&Inventory> {
        self.state.inventory.as_ref()
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.state_dir
    }

    /// Runs the steps in order, stopping at the first failure; then destroys per `policy`
    /// (a failing run is always cleaned up unless the policy is `never`).
    pub async fn sequence(&mut self, steps: &[Step], policy: DestroyPolicy) -> bool {
        let mut ok = true;
        for step in steps {
            if *step == Step::Destroy {
                continue;
            }
            if !self.run_step(*step).await {
                ok = false;
                break;
            }
        }
        let wants_destroy = steps.contains(&Step::Destroy) || !ok;
        let destroy = match policy {
            DestroyPolicy::Always => wants_destroy,
            DestroyPolicy::Never => false,
            DestroyPolicy::Passing => ok && steps.contains(&Step::Destroy),
        };
        if destroy {
            ok &= self.run_step(Step::Destroy).await;
        } else if self.state.inventory.is_some() {
            self.log.info(format!(
                "hosts kept: `kubeforge destroy {}` removes them",
                self.scenario.name
            ));
        }
        ok
    }

    /// Runs one step, records it in the report and the state, and logs its outcome.
    pub async fn run_step(&mut self, step: Step) -> bool {
        let activity = self
            .log
            .activity(format!("{} {}", self.scenario.name, step));
        let start = Instant::now();
        let mut properties = Vec::new();
        let result = match step {
            Step::Create => self.create().await,
            Step::Syntax => self.syntax().await,
            Step::Converge => self.converge_step(Mode::Apply, &mut properties).await,
            Step::Idempotence => self.converge_step(Mode::Check, &mut properties).await,
            Step::Verify => self.verify().await,
            Step::Destroy => self.destroy().await,
        };
        let seconds = start.elapsed().as_secs_f64();
        let (outcome, output) = match result {
            Ok(summary) => {
                activity.finish("passed");
                (CaseOutcome::Passed, summary)
            }
            Err(e) => {
                activity.finish("failed");
                let message = e.to_string();
                self.log
                    .error(format!("{} {step}: {message}", self.scenario.name));
                let first = message.lines().next().unwrap_or_default().to_string();
                (
                    CaseOutcome::Failed {
                        message: first,
                        detail: message,
                    },
                    String::new(),
                )
            }
        };
        let passed = matches!(outcome, CaseOutcome::Passed);
        self.report.push(CaseReport {
            name: step.to_string(),
            classname: format!("kubeforge.{}.step", self.scenario.name),
            seconds,
            outcome,
            output,
            properties,
        });
        if step != Step::Destroy {
            self.state.steps.insert(
                step.to_string(),
                StepRecord {
                    passed,
                    seconds,
                    at: chrono::Local::now().to_rfc3339(),
                },
            );
            if let Err(e) = self.state_dir.save(&self.state) {
                self.log.error(e.to_string());
            }
        }
        passed
    }

    async fn create(&mut self) -> Result<String, RunError> {
        if let Some(inv) = &self.state.inventory {
            return Ok(format!("already created: {} hosts", inv.hosts.len()));
        }
        ClientKey::load_or_generate(&self.state_dir.ssh_key())?;
        let start = Instant::now();
        // Saved before the driver runs, so a failed create is still destroyed by name.
        self.state_dir.save(&self.state)?;
        let pub_key = self.state_dir.ssh_key().with_extension("pub");
        let ctx = driver::DriverContext {
            project_root: &self.root,
            state_dir: &self.state_dir,
            instance: &self.state.instance,
            log: &self.log,
        };
        let (inventory, network) = driver::create(&self.scenario, &ctx, &pub_key).await?;
        let ready = start.elapsed().as_secs_f64();
        // New hosts have new host keys: forget old pins, pin the new ones on first contact.
        let mut pins = HostKeyPins::load(&self.state_dir.host_key_pins())?;
        for h in &inventory.hosts {
            pins.remove(&h.name);
        }
        pins.save(&self.state_dir.host_key_pins())?;
        self.state.inventory = Some(inventory);
        self.state.network = Some(network.clone());
        self.state_dir.save(&self.state)?;
        self.connect_all().await?;
        let hosts = self.state.inventory.as_ref().map_or(0, |i| i.hosts.len());
        let msg = format!(
            "{hosts} hosts on {network}: SSH-ready in {ready:.1}s, connected in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        self.log.info(format!("{}: {msg}", self.scenario.name));
        Ok(msg)
    }

    /// Opens (once) an SSH session to every host, pinning host keys on first contact.
    async fn connect_all(&mut self) -> Result<(), RunError> {
        let inventory = self.created_inventory()?;
        let key = match &inventory.ssh_key {
            // The user's key must exist: never generate one in their place.
            Some(path) if !path.exists() => {
                return Err(RunError::MissingKey(path.clone()));
            }
            Some(path) => ClientKey::load_or_generate(path)?,
            None => ClientKey::load_or_generate(&self.state_dir.ssh_key())?,
        };
        let pins = Arc::new(Mutex::new(HostKeyPins::load(
            &self.state_dir.host_key_pins(),
        )?));
        let opts = SshOptions::default();
        let todo: Vec<&Host> = inventory
            .hosts
            .iter()
            .filter(|h| !self.sessions.contains_key(&h.name))
            .collect();
        let results = futures::future::join_all(todo.iter().map(|h| {
            let target = SshTarget {
                host: h.name.clone(),
                address: h.ssh_address,
                port: h.ssh_port,
                user: h.user.clone(),
            };
            let (key, pins, opts) = (&key, pins.clone(), &opts);
            async move { SshSession::connect(&target, key, pins, opts).await }
        }))
        .await;
        let pins = pins.lock().expect("pins lock").clone();
        pins.save(&self.state_dir.host_key_pins())?;
        let addresses: Vec<_> = inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.ssh_address, h.ssh_port))
            .collect();
        crate::state::write_atomic(
            &self.state_dir.known_hosts(),
            pins.known_hosts_lines(&addresses).as_bytes(),
            0o644,
        )?;
        for (h, r) in todo.iter().zip(results) {
            self.sessions.insert(h.name.clone(), r?);
        }
        Ok(())
    }

    /// The artifacts: the local bundle, or verified downloads kept in the state directory.
    fn bundle(&self) -> Result<Bundle, RunError> {
        let settings = &self.scenario.artifacts;
        match (&settings.download_url, &settings.pins) {
            (Some(url), Some(pins)) => {
                let pins = self.scenario.dir.join(pins);
                let cache = self.state_dir.root.join("downloads");
                self.log
                    .info(format!("{}: artifacts from {url}", self.scenario.name));
                Ok(tokio::task::block_in_place(|| {
                    Bundle::download(url, &pins, &cache)
                })?)
            }
            _ => Ok(Bundle::load(&Bundle::default_dir())?),
        }
    }

    /// The hosts `create` made, or an error saying to run it first.
    fn created_inventory(&self) -> Result<Inventory, RunError> {
        self.state
            .inventory
            .clone()
            .ok_or_else(|| RunError::NotCreated(self.scenario.name.clone()))
    }

    /// The open session to `host`.
    fn session(&self, host: &str) -> Result<SshSession, RunError> {
        self.sessions
            .get(host)
            .cloned()
            .ok_or_else(|| RunError::UnknownHost {
                host: host.to_string(),
                known: self.sessions.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    fn templates(&self) -> Result<Templates, RunError> {
        Ok(Templates::load(&roles::templates_dir(&self.root))?)
    }

    /// Renders every template for this scenario's hosts and checks each file's syntax.
    async fn syntax(&mut self) -> Result<String, RunError> {
        let templates = self.templates()?;
        let bundle = self.bundle()?;
        bundle.require_kubernetes(&self.scenario.cluster.kubernetes_version)?;
        // Before `create` there are no addresses: plan with documentation addresses
        // (never contacted) and a throwaway PKI.
        let scratch = tempfile_dir()?;
        let (inventory, pki) = match &self.state.inventory {
            Some(inv) => (
                inv.clone(),
                Pki::open(&self.state_dir.pki_dir(), &self.scenario.cluster.name)?,
            ),
            None => (
                Inventory::planned(&self.scenario),
                Pki::open(&scratch.join("pki"), &self.scenario.cluster.name)?,
            ),
        };
        let ctx = InstallContext {
            scenario: &self.scenario,
            inventory: &inventory,
            pki: &pki,
            bundle: &bundle,
            templates: &templates,
        };
        let plan = roles::plan(&ctx, &[])?;
        let files = roles::rendered_files(&plan.phases);
        let mut problems = Vec::new();
        for (host, template, path, content) in &files {
            let source = format!("{template} (for {host}, {path})");
            let text = String::from_utf8_lossy(content);
            let kind = syntax::FileKind::for_path(path);
            if let Err(e) = syntax::check(kind, &source, &text) {
                problems.push(e.to_string());
                continue;
            }
            // Full units also go through systemd's own parser where the machine has it.
            if kind == syntax::FileKind::SystemdUnit {
                let name = Path::new(path).file_name().unwrap_or_default();
                let on_disk = scratch.join(host).join(name);
                std::fs::create_dir_all(on_disk.parent().expect("has parent")).ok();
                if std::fs::write(&on_disk, content).is_ok()
                    && let Some(Err(e)) = syntax::check_systemd_with_analyzer(&on_disk)
                {
                    problems.push(format!("{source}: systemd-analyze: {e}"));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        if !problems.is_empty() {
            return Err(RunError::Syntax {
                count: problems.len(),
                list: problems.join("\n"),
            });
        }
        let used: std::collections::BTreeSet<&str> = files.iter().map(|f| f.1).collect();
        Ok(format!(
            "scenario valid; {} files rendered from {} templates, all well-formed",
            files.len(),
            used.len()
        ))
    }

    /// Converge (apply) or idempotence/check (plan only) over all phases.
    async fn converge_step(
        &mut self,
        mode: Mode,
        properties: &mut Vec<(String, String)>,
    ) -> Result<String, RunError> {
        let summary = self.converge(mode).await?;
        for (host, n) in summary.round_trips() {
            properties.push((format!("ssh_round_trips.{host}"), n.to_string()));
        }
        let changes = summary.changes();
        properties.push(("changes".into(), changes.to_string()));
        let trips: Vec<String> = summary
            .round_trips()
            .iter()
            .map(|(h, n)| format!("{h}={n}"))
            .collect();
        let text = format!(
            "{changes} change(s) {}; SSH round trips per host: {}",
            if mode == Mode::Apply {
                "applied"
            } else {
                "planned"
            },
            trips.join(" ")
        );
        self.log.info(format!("{}: {text}", self.scenario.name));
        if mode == Mode::Check && changes > 0 {
            return Err(RunError::NotIdempotent {
                count: changes,
                list: describe_changes(&summary.hosts, true),
            });
        }
        Ok(text)
    }

    /// Runs the plan; in check mode prints what would change, with diffs.
    pub async fn converge(&mut self, mode: Mode) -> Result<ConvergeReport, RunError> {
        self.connect_all().await?;
        let inventory = self.created_inventory()?;
        let templates = self.templates()?;
        let bundle = self.bundle()?;
        bundle.require_kubernetes(&self.scenario.cluster.kubernetes_version)?;
        let pki = Pki::open(&self.state_dir.pki_dir(), &self.scenario.cluster.name)?;
        let ctx = InstallContext {
            scenario: &self.scenario,
            inventory: &inventory,
            pki: &pki,
            bundle: &bundle,
            templates: &templates,
        };
        let plan = roles::plan(&ctx, &self.tags)?;
        // The admin kubeconfig (it embeds the admin key: 0600) for `kubeforge kubectl`.
        let admin = (mode == Mode::Apply && inventory.group(Group::KubeMaster).next().is_some())
            .then(|| roles::kubernetes::admin_kubeconfig(&ctx))
            .transpose()?;
        if mode == Mode::Apply {
            self.report_not_exercised(&plan.not_exercised);
        }
        let mut hosts = Vec::new();
        for phase in &plan.phases {
            let start = Instant::now();
            let sessions = phase
                .hosts
                .iter()
                .map(|hp| self.session(&hp.host))
                .collect::<Result<Vec<_>, _>>()?;
            let results = futures::future::join_all(
                phase
                    .hosts
                    .iter()
                    .zip(sessions)
                    .map(|(hp, s)| async move { engine::run_host(&s, hp, mode).await }),
            )
            .await;
            let mut phase_reports = Vec::new();
            for r in results {
                phase_reports.push(r?);
            }
            let changed: usize = phase_reports.iter().map(HostReport::change_count).sum();
            self.log.info(format!(
                "{}: phase '{}': {changed} change(s) {} in {:.1}s",
                self.scenario.name,
                phase.name,
                if mode == Mode::Apply {
                    "applied"
                } else {
                    "planned"
                },
                start.elapsed().as_secs_f64()
            ));
            if mode == Mode::Check || self.verbose {
                let text = describe_changes(&phase_reports, mode == Mode::Check);
                if !text.is_empty() {
                    self.log.info(text);
                }
            }
            hosts.extend(phase_reports);
        }
        if let Some(kubeconfig) = admin {
            let path = self.state_dir.kubeconfig();
            crate::state::write_atomic(&path, kubeconfig.as_bytes(), 0o600)?;
            self.log.info(format!(
                "{}: kubectl access: `kubeforge kubectl {} -- get nodes` or export KUBECONFIG={}",
                self.scenario.name,
                self.scenario.name,
                path.display()
            ));
        }
        Ok(ConvergeReport { hosts })
    }

    /// What the plan renders but leaves out: logged, and a skipped JUnit testcase each.
    fn report_not_exercised(&mut self, items: &[roles::NotExercised]) {
        for item in items {
            self.log.info(format!(
                "{}: not exercised: {}: {}",
                self.scenario.name, item.what, item.reason
            ));
            self.report.push(CaseReport {
                name: format!("converge: {}", item.what),
                classname: format!("kubeforge.{}.not-exercised", self.scenario.name),
                seconds: 0.0,
                outcome: CaseOutcome::Skipped {
                    reason: item.reason.clone(),
                },
                output: String::new(),
                properties: Vec::new(),
            });
        }
    }

    async fn verify(&mut self) -> Result<String, RunError> {
        self.connect_all().await?;
        let inventory = self.created_inventory()?;
        let checks = verify::checks(&self.scenario, &inventory);
        let mut failed = Vec::new();
        for check in &checks {
            let session = self.session(&check.host)?;
            let result = verify::run(&session, check).await;
            let outcome = if result.passed {
                self.log.info(format!("  ok    {}", check.name));
                CaseOutcome::Passed
            } else {
                self.log.error(format!(
                    "  FAIL  {} on {}: {}",
                    check.name, check.host, result.detail
                ));
                failed.push(check.name.clone());
                CaseOutcome::Failed {
                    message: format!("{}: check '{}' failed", check.host, check.name),
                    detail: result.detail.clone(),
                }
            };
            self.report.push(CaseReport {
                name: format!("verify: {}", check.name),
                classname: format!("kubeforge.{}.verify", self.scenario.name),
                seconds: result.seconds,
                outcome,
                output: result.detail,
                properties: vec![("host".into(), check.host.clone())],
            });
        }
        if !failed.is_empty() {
            return Err(RunError::Verify {
                failed: failed.len(),
                total: checks.len(),
                names: failed.join("; "),
            });
        }
        Ok(format!("{} checks passed", checks.len()))
    }

    pub async fn destroy(&mut self) -> Result<String, RunError> {
        let start = Instant::now();
        for (_, s) in std::mem::take(&mut self.sessions) {
            s.close().await;
        }
        let ctx = driver::DriverContext {
            project_root: &self.root,
            state_dir: &self.state_dir,
            instance: &self.state.instance,
            log: &self.log,
        };
        let what = driver::destroy(&self.scenario, &ctx).await?;
        if self.state_dir.root.exists() {
            std::fs::remove_dir_all(&self.state_dir.root).map_err(|source| StateError::Io {
                path: self.state_dir.root.clone(),
                action: "remove state directory",
                source,
            })?;
        }
        self.state = ScenarioState {
            instance: self.state.instance.clone(),
            ..Default::default()
        };
        let msg = format!("{what} in {:.1}s", start.elapsed().as_secs_f64());
        self.log.info(format!("{}: {msg}", self.scenario.name));
        Ok(msg)
    }

    /// The host's address, user and the files `ssh` needs to log in with pinned keys.
    pub fn login_command(&self, host: &str) -> Result<Vec<String>, RunError> {
        let inv = self.created_inventory()?;
        let h = inv.get(host).ok_or_else(|| RunError::UnknownHost {
            host: host.to_string(),
            known: inv.names().join(", "),
        })?;
        Ok(vec![
            "ssh".into(),
            "-i".into(),
            self.state_dir.ssh_key().display().to_string(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.state_dir.known_hosts().display()
            ),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-p".into(),
            h.ssh_port.to_string(),
            format!("{}@{}", h.user, h.ssh_address),
        ])
    }
}

/// Per host and task: each planned change, with diffs when `diffs`.
fn describe_changes(hosts: &[HostReport], diffs: bool) -> String {
    let mut out = String::new();
    for h in hosts {
        for t in &h.tasks {
            for c in &t.changes {
                out.push_str(&format!(
                    "  {} | {} | {}: {}\n",
                    h.host, t.task, c.resource, c.summary
                ));
                if diffs && let Some(d) = &c.diff {
                    for line in d.lines() {
                        out.push_str("      ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out.trim_end().to_string()
}

fn tempfile_dir() -> Result<PathBuf, RunError> {
    let dir = std::env::temp_dir().join(format!("kubeforge-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
        path: dir.clone(),
        action: "create scratch directory",
        source,
    })?;
    Ok(dir)
}
