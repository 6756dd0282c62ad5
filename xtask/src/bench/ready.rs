//! When a fresh cluster's nodes all became Ready, read from the API after converge: the
//! latest Ready condition's `lastTransitionTime` (whole seconds) of every node.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// How long after converge the nodes get to report Ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Seconds from `start` until the last node of `scenario` became Ready, polling the API
/// (through `kubeforge kubectl`) until every node is. The API's timestamps have whole
/// seconds, so the figure is within a second.
pub fn all_nodes_ready_after(
    binary: &Path,
    root: &Path,
    scenario: &str,
    start: SystemTime,
) -> Result<f64> {
    let started = start.duration_since(UNIX_EPOCH)?.as_secs_f64();
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let out = Command::new(binary)
            .args(["kubectl", scenario, "--", "get", "nodes", "-o", "json"])
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .context("running kubeforge kubectl")?;
        let last = if out.status.success() {
            last_ready(&serde_json::from_slice(&out.stdout)?)?
        } else {
            None
        };
        if let Some(ready) = last {
            return Ok(ready as f64 - started);
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes of {scenario} were not all Ready {}s after converge",
                READY_WITHIN.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The latest Ready transition (seconds since the epoch) of a node list whose nodes are all
/// Ready; `None` while one is not (or there are none).
fn last_ready(nodes: &Value) -> Result<Option<i64>> {
    let items = nodes["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut last = None;
    for node in items {
        let conditions = node["status"]["conditions"].as_array();
        let Some(ready) = conditions
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
        else {
            return Ok(None);
        };
        let at = ready["lastTransitionTime"].as_str().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("a Ready condition's lastTransitionTime {at:?}"))?
            .timestamp();
        last = last.max(Some(at));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, at: &str) -> Value {
        serde_json::json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "lastTransitionTime": "2026-12-02T13:00:00Z"},
            {"type": "Ready", "status": ready, "lastTransitionTime": at},
        ]}})
    }

    #[test]
    fn the_last_node_to_turn_ready_counts_and_none_until_all_are() {
        let all = serde_json::json!({"items": [
            node("True", "2026-12-02T13:47:02Z"),
            node("True", "2026-12-02T13:47:05Z"),
        ]});
        assert_eq!(last_ready(&all).unwrap(), Some(1_796_219_225));
        let one_not = serde_json::json!({"items": [
            node("True", "2026-12-02T13:47:02Z"),
            node("False", "2026-12-02T13:47:09Z"),
        ]});
        assert_eq!(last_ready(&one_not).unwrap(), None);
        assert_eq!(last_ready(&serde_json::json!({"items": []})).unwrap(), None);
    }
}
