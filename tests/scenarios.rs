//! Every scenario under `scenarios/` is one test trial: its whole step sequence runs, in
//! order, inside the trial (test runners may put trials in separate processes, so a
//! stateful create..destroy sequence must not be split across trials).
//!
//! The trial runs the real `kubeforge test` against real hosts and writes JUnit to
//! `target/junit/<scenario>.xml`.

use std::path::Path;
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let mut args = Arguments::from_args();
    // One scenario at a time: emulated VMs and nested containers share two cores.
    args.test_threads.get_or_insert(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let trials = kubeforge::scenario::list_scenarios(root)
        .into_iter()
        .map(|name| {
            Trial::test(format!("scenario::{name}"), move || {
                run_scenario(root, &name)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn run_scenario(root: &Path, name: &str) -> Result<(), Failed> {
    let junit = root.join("target/junit").join(format!("{name}.xml"));
    let status = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(["--project", &root.display().to_string(), "--junit"])
        .arg(&junit)
        .args(["test", name])
        .status()
        .map_err(|e| format!("cannot run kubeforge: {e}"))?;
    if !status.success() {
        return Err(format!(
            "kubeforge test {name} failed ({status}); JUnit: {}",
            junit.display()
        )
        .into());
    }
    let xml = std::fs::read_to_string(&junit).map_err(|e| format!("{}: {e}", junit.display()))?;
    for step in ["create", "converge", "idempotence", "verify", "destroy"] {
        if !xml.contains(&format!("name=\"{step}\"")) {
            return Err(format!("{}: no testcase for step {step}", junit.display()).into());
        }
    }
    Ok(())
}
