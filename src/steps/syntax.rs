//! `syntax`: the scenario is valid, every template renders strictly for this scenario's
//! hosts, and every rendered file is well-formed for its kind (systemd units also through
//! `systemd-analyze` where the machine has it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{StepError, StepOutcome, Workspace};
use crate::inventory::Inventory;
use crate::roles::{self, Scope};
use crate::state::{ScenarioState, StateError};
use crate::syntax;

/// What the syntax step checked, and the problems it found.
pub struct SyntaxOutput {
    pub files: usize,
    pub templates: usize,
    pub problems: Vec<String>,
}

pub async fn run(ws: &Workspace, state: &ScenarioState) -> Result<SyntaxOutput, StepError> {
    // Before `create` there are no addresses: plan with documentation addresses (never
    // contacted). Planning writes nothing, not even certificates.
    let inventory = match &state.inventory {
        Some(inv) => inv.clone(),
        None => Inventory::planned(&ws.scenario),
    };
    let (plan, _) = ws.plan(&inventory, &ws.pki()?, &Scope::default())?;
    let scratch = ScratchDir::new()?;
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
            let on_disk = scratch.0.join(host).join(name);
            std::fs::create_dir_all(on_disk.parent().expect("has parent")).ok();
            if std::fs::write(&on_disk, content).is_ok()
                && let Some(Err(e)) = syntax::check_systemd_with_analyzer(&on_disk)
            {
                problems.push(format!("{source}: systemd-analyze: {e}"));
            }
        }
    }
    let used: BTreeSet<&str> = files.iter().map(|f| f.1).collect();
    Ok(SyntaxOutput {
        files: files.len(),
        templates: used.len(),
        problems,
    })
}

impl From<&SyntaxOutput> for StepOutcome {
    fn from(output: &SyntaxOutput) -> StepOutcome {
        let failure = (!output.problems.is_empty()).then(|| {
            format!(
                "syntax: {} problem(s):\n{}",
                output.problems.len(),
                output.problems.join("\n")
            )
        });
        StepOutcome {
            summary: format!(
                "scenario valid; {} files rendered from {} templates, all well-formed",
                output.files, output.templates
            ),
            failure,
            ..Default::default()
        }
    }
}

/// A directory for this step's throwaway files, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir, StateError> {
        let dir = std::env::temp_dir().join(format!("kubeforge-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            action: "create scratch directory",
            source,
        })?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
