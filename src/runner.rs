//! Orders a scenario's steps, records each outcome in the scenario's state, and builds the
//! run report (one JUnit testcase per step and per case a step adds). The CLI and the
//! scenario test harness both drive this; the steps themselves live in [`crate::steps`].

use std::path::Path;
use std::time::Instant;

use crate::connections::Connections;
use crate::engine::{Mode, Options};
use crate::report::{CaseOutcome, CaseReport, Logger, RunReport};
use crate::roles::Scope;
use crate::scenario::{Scenario, Step};
use crate::state::{ScenarioState, StateDir, StateError, StepRecord};
use crate::steps::{self, StepError, StepOutcome, SubCase, Workspace, converge::ConvergeOutput};
use crate::verify::Selection;

/// When `test` destroys the hosts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestroyPolicy {
    Always,
    Never,
    Passing,
}

/// One scenario, its state, open connections and report.
pub struct Runner {
    ws: Workspace,
    state: ScenarioState,
    connections: Connections,
    pub report: RunReport,
    /// The part of the plan converge and idempotence cover (`--tags`, `--only-files`).
    pub scope: Scope,
    /// Limits verify to the checks whose names match (`--check`).
    pub checks: Selection,
    /// Converge and idempotence hash every managed file, whatever the hosts' hash index
    /// says (`--full-hash`).
    pub full_hash: bool,
}

impl Runner {
    pub fn new(root: &Path, scenario: Scenario, log: Logger) -> Result<Runner, StateError> {
        let state_dir = StateDir::for_scenario(root, &scenario.name);
        let state = state_dir.load(&scenario.name)?;
        let connections = Connections::new(scenario.timeout_scale);
        Ok(Runner {
            report: RunReport::new(&scenario.name),
            ws: Workspace {
                root: root.to_path_buf(),
                scenario,
                state_dir,
                log,
            },
            state,
            connections,
            scope: Scope::default(),
            checks: Selection::default(),
            full_hash: false,
        })
    }

    /// Connects to, gathers from and converges at most `n` hosts at once.
    pub fn set_hosts_at_once(&mut self, n: usize) {
        self.connections.set_hosts_at_once(n);
    }

    pub fn scenario(&self) -> &Scenario {
        &self.ws.scenario
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.ws.state_dir
    }

    pub fn state(&self) -> &ScenarioState {
        &self.state
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
            self.ws.log.info(format!(
                "hosts kept: `kubeforge destroy {}` removes them",
                self.ws.scenario.name
            ));
        }
        ok
    }

    /// Runs one step, records it in the report and the state, and logs its outcome.
    pub async fn run_step(&mut self, step: Step) -> bool {
        let name = self.ws.scenario.name.clone();
        let activity = self.ws.log.activity(format!("{name} {step}"));
        let start = Instant::now();
        let result = self.dispatch(step).await;
        let seconds = start.elapsed().as_secs_f64();
        let (outcome, output, properties) = match result {
            Ok(StepOutcome {
                summary,
                properties,
                subcases,
                failure,
            }) => {
                for sub in subcases {
                    self.push_subcase(sub);
                }
                match failure {
                    None => (CaseOutcome::Passed, summary, properties),
                    Some(message) => (failed(message), String::new(), properties),
                }
            }
            Err(e) => (failed(e.to_string()), String::new(), Vec::new()),
        };
        let passed = matches!(outcome, CaseOutcome::Passed);
        activity.finish(if passed { "passed" } else { "failed" });
        if let CaseOutcome::Failed { detail, .. } = &outcome {
            self.ws.log.error(format!("{name} {step}: {detail}"));
        }
        self.report.push(CaseReport {
            name: step.to_string(),
            classname: format!("kubeforge.{name}.step"),
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
            if let Err(e) = self.ws.state_dir.save(&self.state) {
                self.ws.log.error(e.to_string());
            }
        }
        passed
    }

    async fn dispatch(&mut self, step: Step) -> Result<StepOutcome, StepError> {
        let (ws, state, conns) = (&self.ws, &mut self.state, &mut self.connections);
        let full_hash = self.full_hash;
        Ok(match step {
            Step::Create => (&steps::create::run(ws, state, conns).await?).into(),
            Step::Syntax => (&steps::syntax::run(ws, state).await?).into(),
            Step::Converge => {
                let options = Options::installer(Mode::Apply, full_hash);
                (&steps::converge::run(ws, state, conns, &options, &self.scope).await?).into()
            }
            Step::Idempotence => {
                (&steps::idempotence::run(ws, state, conns, full_hash, &self.scope).await?).into()
            }
            Step::Drift => (&steps::drift::run(ws, state, conns).await?).into(),
            Step::SideEffect => (&steps::side_effect::run(ws, state, conns).await?).into(),
            Step::Verify => (&steps::verify::run(ws, state, conns, &self.checks).await?).into(),
            Step::Destroy => (&steps::destroy::run(ws, state, conns).await?).into(),
        })
    }

    /// `converge --check`: the plan with diffs, recorded nowhere.
    pub async fn check(&mut self) -> Result<ConvergeOutput, StepError> {
        steps::converge::run(
            &self.ws,
            &self.state,
            &mut self.connections,
            &Options::installer(Mode::Check, self.full_hash),
            &self.scope,
        )
        .await
    }

    fn push_subcase(&mut self, sub: SubCase) {
        self.report.push(CaseReport {
            name: sub.name,
            classname: format!("kubeforge.{}.{}", self.ws.scenario.name, sub.group),
            seconds: sub.seconds,
            outcome: sub.outcome,
            output: sub.output,
            properties: sub.properties,
        });
    }
}

/// A failed step: the first line as the message, everything as the detail.
fn failed(message: String) -> CaseOutcome {
    CaseOutcome::Failed {
        message: message.lines().next().unwrap_or_default().to_string(),
        detail: message,
    }
}
