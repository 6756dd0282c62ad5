//! The scenario's own workloads (`workloads:` in the scenario file): manifests written to
//! the first master and their objects kept in the API exactly like the installer's own
//! (check mode shows their diff, idempotence covers them, removed fields are removed).

use super::builders::{directory, manifest_file, task};
use super::{InstallContext, RoleError, phase};
use crate::engine::Phase;

const ROLE: &str = "workloads";
/// Where the workload manifests are kept on the first master.
const WORKLOADS_DIR: &str = "/etc/kubernetes/workloads";

pub fn phases(ctx: &InstallContext) -> Result<Vec<Phase>, RoleError> {
    if ctx.workloads.is_empty() {
        return Ok(Vec::new());
    }
    let master = ctx
        .cluster
        .first_master()
        .expect("a cluster with nodes has a master");
    let mut resources = vec![directory(WORKLOADS_DIR, 0o755)];
    for w in ctx.workloads {
        let name = w.path.display().to_string().replace('/', "-");
        let (file, objects) = manifest_file(
            &format!("{WORKLOADS_DIR}/{name}"),
            &format!("workload {}", w.path.display()),
            w.text.clone(),
        )?;
        resources.push(file);
        resources.extend(objects);
    }
    Ok(vec![phase(
        "workloads",
        vec![(
            master.name.clone(),
            vec![task(ROLE, "workloads", resources)],
        )],
    )?])
}
