//! Project automation in plain Rust (rust-analyzer's xtask pattern): `cargo xtask <command>`.
//!
//! - `artifacts`: build or reuse the offline bundle (Kubernetes, etcd, containerd, CNI).
//! - `scenario NAME`: artifacts, then the whole step sequence of one scenario.
//! - `test`: what CI runs: artifacts, then `cargo test` (unit, snapshot and scenario tests).
//! - `bench`: a scenario's costs (steps, idempotence runs, per-host round trips, bytes and
//!   CPU), one table and `target/bench/bench.json`.

mod artifacts;
mod bench;
mod bundle;
mod elf;
mod images;
mod kubernetes;
mod logged;
mod packages;
mod vagrant_box;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "kubeforge project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build (or reuse from the cache) every binary the cluster needs, offline.
    Artifacts {
        /// Rebuild even when the cache is valid.
        #[arg(long)]
        force: bool,
        /// Cache directory (default: $KUBEFORGE_CACHE_DIR or /var/cache/kubeforge).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Run a scenario's whole sequence (create ... destroy) against real hosts.
    Scenario {
        name: String,
        /// Arguments passed on to `kubeforge test` (e.g. --junit out.xml, --destroy never).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install vagrant + libvirt and build (or reuse) the local Debian box for the Vagrant driver.
    VagrantBox {
        /// Rebuild and re-add the box even when vagrant already has it.
        #[arg(long)]
        force: bool,
    },
    /// Measure a scenario from fresh hosts to destroyed: each step's time, idempotence over
    /// several runs, per-host costs; one table, and JSON in target/bench/bench.json.
    Bench {
        /// The scenario (it must have no hosts: the benchmark creates and destroys them).
        #[arg(long, default_value = "default")]
        scenario: String,
        /// How many idempotence runs the min/median/max are taken over.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Host counts of the scaling rows (one etcd member, one master, workers; at least
        /// 3 each), comma-separated; `--scale none` for no rows.
        #[arg(long, value_delimiter = ',', default_value = "4,16,50", value_parser = scale_size)]
        scale: Vec<Option<usize>>,
        /// The side-by-side run with ansible-playbook on the file-level work (own hosts).
        #[arg(long, value_enum, default_value = "run")]
        ansible: bench::AnsibleMode,
    },
    /// Build the artifacts, then run every test: unit, snapshot and scenario trials.
    Test {
        /// Arguments passed on to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// A scaling row's host count (`none`: no row).
fn scale_size(value: &str) -> Result<Option<usize>, String> {
    if value == "none" {
        return Ok(None);
    }
    match value.parse::<usize>() {
        Ok(n) if n >= 3 => Ok(Some(n)),
        _ => Err(format!(
            "'{value}': a host count of at least 3 (one etcd member, one master, workers) or none"
        )),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root();
    match cli.command {
        Task::Artifacts { force, cache_dir } => {
            build_artifacts(cache_dir, force)?;
        }
        Task::Scenario { name, args } => {
            build_artifacts(None, false)?;
            let scenario = kubeforge::scenario::Scenario::load_named(&root, &name)?;
            if matches!(
                scenario.driver,
                kubeforge::scenario::DriverConfig::Vagrant { .. }
            ) {
                vagrant_box(&root, false)?;
            }
            // `cargo run` finds the binary wherever the target directory is
            // (CARGO_TARGET_DIR, build.target-dir) and passes its exit code on; not quiet,
            // so a first build shows its progress.
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["run", "--package", "kubeforge", "--", "test"])
                .arg(&name)
                .args(&args)
                .current_dir(&root)
                .status()
                .context("running kubeforge through cargo run")?;
            std::process::exit(status.code().unwrap_or(130));
        }
        Task::VagrantBox { force } => vagrant_box(&root, force)?,
        Task::Bench {
            scenario,
            runs,
            scale,
            ansible,
        } => {
            build_artifacts(None, false)?;
            let scale = scale.into_iter().flatten().collect();
            bench::run(
                &root,
                &bench::Options {
                    scenario,
                    runs,
                    scale,
                    ansible,
                },
            )?;
        }
        Task::Test { args } => {
            build_artifacts(None, false)?;
            // The scenario trials include the Vagrant ones: vagrant, libvirt and the box.
            vagrant_box(&root, false)?;
            test_tools()?;
            let mut all = vec!["test".to_string(), "--workspace".to_string()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            cargo(&root, &all)?;
        }
    }
    Ok(())
}

/// Tools the tests run for real rather than skip: a throwaway sshd for the SSH transport
/// tests, openssl for the PKI chain check, systemd-analyze for the unit checks.
const TEST_PACKAGES: [&str; 3] = ["openssh-server", "openssl", "systemd"];

fn test_tools() -> Result<()> {
    let missing = packages::missing_packages(&TEST_PACKAGES)?;
    if missing.is_empty() {
        return Ok(());
    }
    let layout = bundle::Layout::new(&bundle::default_cache_dir());
    layout.create()?;
    let log = layout.log("test-tools");
    eprintln!(
        "test tools: installing {} (log {})",
        missing.join(" "),
        log.display()
    );
    let mut args = vec!["install", "--no-install-recommends"];
    args.extend(missing.iter().map(String::as_str));
    packages::apt_get(&args, None, &log)
}

fn vagrant_box(root: &Path, force: bool) -> Result<()> {
    let cache_dir = bundle::default_cache_dir();
    let summary = vagrant_box::run(root, &vagrant_box::Options { cache_dir, force })?;
    eprintln!("vagrant box: {summary} ready");
    Ok(())
}

fn build_artifacts(cache_dir: Option<PathBuf>, force: bool) -> Result<()> {
    let manifest = artifacts::run(&artifacts::ArtifactsOptions {
        cache_dir: cache_dir.unwrap_or_else(bundle::default_cache_dir),
        force,
    })?;
    eprintln!(
        "artifacts: {} ready for Kubernetes {}",
        manifest.artifacts.len(),
        manifest.kubernetes_version
    );
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the project root")
        .to_path_buf()
}
