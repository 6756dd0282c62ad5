//! Facts: what a host has, observed by one script in one round trip.
//!
//! Each resource prints its facts as `KF <id> <field> <value>` lines (see
//! [`Resource::probe`]); one script runs the probes of every resource of a plan, or of
//! several plans of a host (every phase of a check-mode run) at once.

use std::collections::BTreeMap;
use std::time::Duration;

use super::resource::{Observation, Resource};
use super::transport::Transport;
use super::{EngineError, HostPlan, quoted, tail};

const FACTS_TIMEOUT: Duration = Duration::from_secs(120);

/// What one plan's resources were found to be, by their index in the plan.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub(super) observed: BTreeMap<usize, Observation>,
    /// SSH round trips they cost: the one that observed several plans counts with the first.
    pub(super) round_trips: u64,
}

/// Observes the resources of `plans` (all for one host, in order) in one round trip.
pub async fn gather<T: Transport>(
    transport: &T,
    host: &str,
    plans: &[&HostPlan],
) -> Result<Vec<Facts>, EngineError> {
    let resources: Vec<&Resource> = plans
        .iter()
        .flat_map(|p| p.tasks.iter().flat_map(|t| &t.resources))
        .collect();
    let mut script = String::from("export LC_ALL=C\n");
    for (id, r) in resources.iter().enumerate() {
        script.push_str(&r.probe(id));
    }
    let out = transport
        .exec_root("sh -s", Some(script.as_bytes()), FACTS_TIMEOUT)
        .await
        .map_err(|source| EngineError::Transport {
            host: host.to_string(),
            what: "gather facts",
            tasks: quoted(
                &plans
                    .iter()
                    .flat_map(|p| &p.tasks)
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>(),
            ),
            source,
        })?;
    if out.status != 0 {
        return Err(EngineError::Facts {
            host: host.to_string(),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 1500),
        });
    }
    let mut observed = parse(&String::from_utf8_lossy(&out.stdout));
    // Split back by plan; the round trip counts with the first plan that has resources.
    let mut facts = Vec::with_capacity(plans.len());
    let mut offset = 0;
    let mut counted = false;
    for plan in plans {
        let n: usize = plan.tasks.iter().map(|t| t.resources.len()).sum();
        let mut mine = Facts::default();
        for id in offset..offset + n {
            if let Some(o) = observed.remove(&id) {
                mine.observed.insert(id - offset, o);
            }
        }
        if n > 0 && !counted {
            mine.round_trips = 1;
            counted = true;
        }
        offset += n;
        facts.push(mine);
    }
    Ok(facts)
}

/// Parses `KF <id> <field> [value]` lines; anything else is ignored.
pub(super) fn parse(stdout: &str) -> BTreeMap<usize, Observation> {
    let mut facts: BTreeMap<usize, Observation> = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("KF ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(id), Some(field)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<usize>() else {
            continue;
        };
        let value = parts.next().unwrap_or("").trim_end().to_string();
        let seen = facts.entry(id).or_default();
        if field != "value-absent" {
            seen.insert(field.to_string(), value);
        }
    }
    facts
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
