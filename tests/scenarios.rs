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
    let log = root.join("target/junit").join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let status = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(["--project", &root.display().to_string(), "--junit"])
        .arg(&junit)
        .arg("--log")
        .arg(&log)
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
    // Every check the scenario declares ran (the run passed, so each passed), on each of
    // its hosts for a group.
    let scenario =
        kubeforge::scenario::Scenario::load_named(root, name).map_err(|e| e.to_string())?;
    for check in &scenario.checks {
        let testcase = format!("name=\"verify: {}", xml_escape(&check.name));
        if !xml.contains(&testcase) {
            return Err(format!(
                "{}: no testcase for check '{}'",
                junit.display(),
                check.name
            )
            .into());
        }
    }
    // Keys never reach a report or a log, verbose lines included.
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    for (file, content) in [(&junit, &xml), (&log, &text)] {
        if let Some(leak) = secret_in(content) {
            return Err(format!("{}: holds a secret: {leak}", file.display()).into());
        }
    }
    Ok(())
}

/// `text` as a JUnit attribute holds it.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The first private key or unredacted key data in `text`, if any.
fn secret_in(text: &str) -> Option<String> {
    if let Some(at) = text.find("PRIVATE KEY-----") {
        return Some(text[at.saturating_sub(40)..at + 16].to_string());
    }
    text.lines()
        .find(|l| {
            l.split_once("key-data:")
                .is_some_and(|(_, value)| !value.trim().is_empty() && !value.contains("<redacted>"))
        })
        .map(str::to_string)
}
