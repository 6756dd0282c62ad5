//! Helpers the tests that drive the `kubeforge` binary against real Podman hosts share: a
//! throwaway project with one scenario, the command, and what podman still holds.

use std::process::Command;

/// Names of the containers (`ps`), volumes or networks (`volume ls`, `network ls`) with
/// the instance's label. A podman failure fails the test: an empty answer must mean none.
pub fn podman_names(what: &[&str], instance: &str) -> String {
    // Containers have `Names`; volumes and networks have `Name`.
    let field = if what[0] == "ps" {
        "{{.Names}}"
    } else {
        "{{.Name}}"
    };
    let out = Command::new("podman")
        .args(what)
        .args([
            "--filter",
            &format!("label=kubeforge.instance={instance}"),
            "--format",
            field,
        ])
        .output()
        .expect("podman runs");
    assert!(
        out.status.success(),
        "podman {what:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A project with one scenario (the repository's templates), and its state directory.
pub fn project_with(name: &str, scenario: &str) -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("scenarios").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scenario.yml"), scenario).unwrap();
    std::os::unix::fs::symlink(root.join("templates"), project.path().join("templates")).unwrap();
    project
}

pub fn kubeforge(project: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeforge"));
    cmd.arg("--project")
        .arg(project)
        .args(args)
        .env("KUBEFORGE_STATE_DIR", project.join("state"));
    cmd
}

/// The driver prints the instance name as the prefix of every container and its network.
pub fn instance_in(output: &str, scenario: &str) -> String {
    output
        .split_whitespace()
        .find(|w| w.starts_with(&format!("kf-{scenario}-")))
        .map(|w| w.trim_end_matches(':').trim_end_matches("-net").to_string())
        .unwrap_or_else(|| panic!("no instance name in output:\n{output}"))
}

pub fn assert_nothing_left(project: &std::path::Path, scenario: &str, instance: &str) {
    assert_eq!(podman_names(&["ps", "-a"], instance), "");
    assert_eq!(podman_names(&["volume", "ls"], instance), "");
    assert_eq!(podman_names(&["network", "ls"], instance), "");
    assert!(!project.join("state").join(scenario).exists());
}
