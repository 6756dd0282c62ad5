//! Projects the benchmark generates: one scenario file beside a link to the repository's
//! templates, run by kubeforge with `--project`. Their state (`.kubeforge/`) stays in the
//! generated project, and the repository's `scenarios/` (each one a CI trial) stays as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `<out>/projects/<name>/scenarios/<name>/scenario.yml` holding `scenario_yaml`,
/// with `templates` linked to `<root>/templates`; the generated project's directory.
pub fn generate(root: &Path, out: &Path, name: &str, scenario_yaml: &str) -> Result<PathBuf> {
    let project = out.join("projects").join(name);
    let dir = project.join("scenarios").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("scenario.yml");
    std::fs::write(&file, scenario_yaml).with_context(|| format!("writing {}", file.display()))?;
    let templates = project.join("templates");
    if std::fs::symlink_metadata(&templates).is_err() {
        std::os::unix::fs::symlink(root.join("templates"), &templates)
            .with_context(|| format!("linking {}", templates.display()))?;
    }
    Ok(project)
}
