//! The `kubeforge` command: a thin clap layer over the library's [`Runner`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand};
use kubeforge::report::{Logger, print_summary};
use kubeforge::runner::{DestroyPolicy, Runner};
use kubeforge::scenario::{Scenario, Step, list_scenarios};

#[derive(Parser)]
#[command(
    name = "kubeforge",
    version,
    about = "Molecule-style tests for a Kubernetes installer"
)]
struct Cli {
    /// Project directory (holds scenarios/ and templates/); default: the nearest parent
    /// of the current directory that has a scenarios/ directory.
    #[arg(long, global = true)]
    project: Option<PathBuf>,
    /// Print every change and driver line.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Write a JUnit XML report here.
    #[arg(long, global = true)]
    junit: Option<PathBuf>,
    /// Also append every line (verbose ones included, secrets redacted) to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Connect to, gather facts from and converge at most this many hosts at once.
    #[arg(long, global = true, default_value_t = kubeforge::connections::DEFAULT_HOSTS_AT_ONCE,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    hosts_at_once: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the scenario's hosts.
    Create { scenario: String },
    /// Validate the scenario and render and check every template.
    Syntax { scenario: String },
    /// Install the cluster (or, with --check, show what would change).
    Converge {
        scenario: String,
        /// Plan only: print changes with diffs, change nothing.
        #[arg(long)]
        check: bool,
        /// Limit the run to these roles (comma-separated), e.g. etcd; `test` runs only
        /// the smoke tests.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[command(flatten)]
        hashing: HashingArgs,
        #[command(flatten)]
        files: FilesArgs,
    },
    /// Check mode after converge: fails unless zero changes are planned.
    Idempotence {
        scenario: String,
        #[command(flatten)]
        hashing: HashingArgs,
        #[command(flatten)]
        files: FilesArgs,
    },
    /// Hand changes on the converged cluster that converge must find and repair.
    Drift { scenario: String },
    /// The scenario's faults: each made, served under, undone and converged.
    SideEffect { scenario: String },
    /// Run the smoke tests against the live cluster.
    Verify {
        scenario: String,
        /// Run only the checks whose names match this regular expression (repeatable);
        /// `kubeforge list` shows a scenario's checks.
        #[arg(long = "check", value_name = "PATTERN")]
        checks: Vec<String>,
    },
    /// Remove every host, network and volume of the scenario.
    Destroy { scenario: String },
    /// The whole sequence (create, syntax, converge, idempotence, verify, destroy).
    Test {
        scenario: String,
        /// When to destroy the hosts at the end.
        #[arg(long, value_enum, default_value = "always")]
        destroy: DestroyPolicy,
    },
    /// Open a shell on a host (system ssh with the scenario's key and pinned host keys).
    Login { scenario: String, host: String },
    /// Run the bundle's kubectl against the scenario's cluster with its admin kubeconfig,
    /// e.g. `kubeforge kubectl default -- get nodes`.
    Kubectl {
        scenario: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List scenarios and their hosts.
    List,
}

/// How converge and idempotence compare file contents.
#[derive(clap::Args)]
struct HashingArgs {
    /// Hash every managed file on the hosts, whatever their hash index says (it records
    /// size, mtime, ctime, inode and sha256 of each file, and is trusted while they match).
    #[arg(long)]
    full_hash: bool,
}

/// Whether converge and idempotence cover only the plan's files.
#[derive(clap::Args)]
struct FilesArgs {
    /// Only what the plan writes as files (directories, files, templates, units,
    /// certificates, binaries, links): no service started, no command run,
    /// no image imported, no API object applied.
    #[arg(long)]
    only_files: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(cli))
}

fn project_root(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join("scenarios").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

async fn run(cli: Cli) -> ExitCode {
    let root = project_root(cli.project);
    let log = Logger::new(cli.verbose, cli.log.clone());
    let name = match &cli.command {
        Command::List => return list(&root),
        Command::Create { scenario }
        | Command::Syntax { scenario }
        | Command::Converge { scenario, .. }
        | Command::Idempotence { scenario, .. }
        | Command::Drift { scenario }
        | Command::SideEffect { scenario }
        | Command::Verify { scenario, .. }
        | Command::Destroy { scenario }
        | Command::Test { scenario, .. }
        | Command::Login { scenario, .. }
        | Command::Kubectl { scenario, .. } => scenario.clone(),
    };
    // A bad scenario file is exit 2 and nothing is created.
    let scenario = match Scenario::load_named(&root, &name) {
        Ok(s) => s,
        Err(e) => {
            log.error(e.to_string());
            return ExitCode::from(2);
        }
    };
    // Commands that make or install hosts first check that the artifacts hold what the
    // scenario asks for: a wrong bundle is exit 2 too, before any host exists.
    let installs = matches!(
        cli.command,
        Command::Create { .. }
            | Command::Converge { .. }
            | Command::Idempotence { .. }
            | Command::Drift { .. }
            | Command::SideEffect { .. }
            | Command::Test { .. }
    );
    if installs && let Err(e) = scenario.check_artifacts() {
        log.error(e.to_string());
        return ExitCode::from(2);
    }
    let mut runner = match Runner::new(&root, scenario, log.clone()) {
        Ok(r) => r,
        Err(e) => {
            log.error(e.to_string());
            return ExitCode::from(2);
        }
    };
    runner.set_hosts_at_once(cli.hosts_at_once);
    let ok = match cli.command {
        Command::Create { .. } => runner.run_step(Step::Create).await,
        Command::Syntax { .. } => runner.run_step(Step::Syntax).await,
        Command::Converge {
            check,
            tags,
            hashing,
            files,
            ..
        } => {
            runner.full_hash = hashing.full_hash;
            runner.scope.only_files = files.only_files;
            match converge(&mut runner, check, tags, &log).await {
                Ok(ok) => ok,
                Err(code) => {
                    write_junit(&runner, cli.junit.as_deref(), &log);
                    return code;
                }
            }
        }
        Command::Idempotence { hashing, files, .. } => {
            runner.full_hash = hashing.full_hash;
            runner.scope.only_files = files.only_files;
            runner.run_step(Step::Idempotence).await
        }
        Command::Drift { .. } => runner.run_step(Step::Drift).await,
        Command::SideEffect { .. } => runner.run_step(Step::SideEffect).await,
        Command::Verify { checks, .. } => {
            let Some(selection) = selection(&checks, &log) else {
                return ExitCode::from(2);
            };
            runner.checks = selection;
            runner.run_step(Step::Verify).await
        }
        Command::Destroy { .. } => runner.run_step(Step::Destroy).await,
        Command::Test { destroy, .. } => match test(&mut runner, destroy, &log).await {
            Some(ok) => ok,
            None => {
                write_junit(&runner, cli.junit.as_deref(), &log);
                return ExitCode::from(130);
            }
        },
        Command::Login { host, .. } => return login(&runner, &host, &log),
        Command::Kubectl { args, .. } => return kubectl(&runner, &args, &log),
        Command::List => unreachable!("handled above"),
    };
    write_junit(&runner, cli.junit.as_deref(), &log);
    if !runner.report.cases.is_empty() {
        print_summary(&log, &runner.report);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `converge`: with `--check` the plan only; `--tags test` runs the smoke tests instead (the
/// seeds' `make smoketest`). `Err` is an exit code to return at once.
async fn converge(
    runner: &mut Runner,
    check: bool,
    tags: Vec<String>,
    log: &Logger,
) -> Result<bool, ExitCode> {
    if let Some(bad) = tags
        .iter()
        .find(|t| *t != "test" && !kubeforge::roles::ROLES.contains(&t.as_str()))
    {
        log.error(format!(
            "unknown tag '{bad}' (tags: {}, test)",
            kubeforge::roles::ROLES.join(", ")
        ));
        return Err(ExitCode::from(2));
    }
    if tags.iter().any(|t| t == "test") {
        let ok = runner.run_step(Step::Verify).await;
        print_summary(log, &runner.report);
        return Err(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    runner.scope.tags = tags;
    if !check {
        return Ok(runner.run_step(Step::Converge).await);
    }
    match runner.check().await {
        Ok(_) => Ok(true),
        Err(e) => {
            log.error(e.to_string());
            Ok(false)
        }
    }
}

/// `test`: the whole sequence; `None` when Ctrl-C stopped it (the hosts are destroyed
/// unless the policy keeps them).
async fn test(runner: &mut Runner, destroy: DestroyPolicy, log: &Logger) -> Option<bool> {
    let steps = runner.scenario().sequence.clone();
    let outcome = tokio::select! {
        ok = runner.sequence(&steps, destroy) => Some(ok),
        _ = tokio::signal::ctrl_c() => None,
    };
    if outcome.is_none() {
        log.warn("interrupted");
        if destroy != DestroyPolicy::Never {
            runner.run_step(Step::Destroy).await;
        }
    }
    outcome
}

/// The `--check` patterns as a selection; a bad pattern is said and refused.
fn selection(patterns: &[String], log: &Logger) -> Option<kubeforge::verify::Selection> {
    kubeforge::verify::Selection::new(patterns)
        .map_err(|e| log.error(format!("--check: {e}")))
        .ok()
}

fn write_junit(runner: &Runner, path: Option<&Path>, log: &Logger) {
    if let Some(path) = path {
        match runner.report.write_junit(path) {
            Ok(()) => log.info(format!("JUnit report: {}", path.display())),
            Err(e) => log.error(e.to_string()),
        }
    }
}

fn login(runner: &Runner, host: &str, log: &Logger) -> ExitCode {
    let name = &runner.scenario().name;
    match kubeforge::access::login_command(name, runner.state(), runner.state_dir(), host) {
        Ok(argv) => {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
            log.error(format!("cannot run ssh: {err}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            log.error(e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn kubectl(runner: &Runner, args: &[String], log: &Logger) -> ExitCode {
    let (kubectl, kubeconfig) = match kubeforge::access::kubectl_command(runner.state_dir()) {
        Ok(found) => found,
        Err(e) => {
            log.error(e.to_string());
            return ExitCode::FAILURE;
        }
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&kubectl)
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .exec();
    log.error(format!("cannot run {}: {err}", kubectl.display()));
    ExitCode::FAILURE
}

/// Every scenario with its hosts (or `not created`) and the checks it declares.
fn list(root: &Path) -> ExitCode {
    for name in list_scenarios(root) {
        let dir = kubeforge::state::StateDir::for_scenario(root, &name);
        let hosts = Some(dir.state_file())
            .filter(|f| f.exists())
            .and_then(|_| dir.load(&name).ok())
            .and_then(|s| s.inventory)
            .map(|inv| {
                inv.hosts
                    .iter()
                    .map(|h| format!("{} ({})", h.name, h.address))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "not created".into());
        println!("{name:<20} {hosts}");
        match Scenario::load_named(root, &name) {
            Ok(scenario) => {
                for c in &scenario.checks {
                    let window = match c.within {
                        0 => String::new(),
                        s => format!(", within {s}s"),
                    };
                    println!("  check  {} ({}{window})", c.name, c.kind.key());
                }
            }
            Err(e) => println!("  invalid: {e}"),
        }
    }
    ExitCode::SUCCESS
}
