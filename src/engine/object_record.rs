//! The record of the Kubernetes objects kubeforge applied, kept on the host that applies
//! them, so that an object it no longer renders (a manifest or template that dropped it) is
//! found: a plan names it, and deletes it when the scenario prunes, else forgets it once
//! named (it stays in the cluster, and the next plan is clean).
//!
//! The record is a file of one line per object: the object's apiVersion, kind, namespace
//! and name as a JSON manifest, which is what `kubectl delete -f -` reads to delete it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::api_object::ApiObject;
use super::change::ChangeKind;
use super::resource::Observation;
use crate::ssh::shell_quote;

/// What identifies an object, as one line of the record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef(String);

impl ObjectRef {
    pub fn of(object: &ApiObject) -> ObjectRef {
        let mut metadata = json!({ "name": object.name() });
        if let Some(ns) = object.namespace() {
            metadata["namespace"] = json!(ns);
        }
        ObjectRef(
            json!({
                "apiVersion": object.api_version(),
                "kind": object.kind(),
                "metadata": metadata,
            })
            .to_string(),
        )
    }

    /// A line of a record; `None` for a line that is no object reference (a record edited
    /// by hand), which the next write drops.
    fn parse(line: &str) -> Option<ObjectRef> {
        let v: Value = serde_json::from_str(line.trim()).ok()?;
        let named = ["apiVersion", "kind"]
            .iter()
            .all(|f| v[f].as_str().is_some_and(|s| !s.is_empty()))
            && v["metadata"]["name"]
                .as_str()
                .is_some_and(|s| !s.is_empty());
        named.then(|| ObjectRef(v.to_string()))
    }

    /// `Kind namespace/name`, as plans name objects.
    pub fn label(&self) -> String {
        let v: Value = serde_json::from_str(&self.0).unwrap_or_default();
        let (kind, name) = (
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default(),
        );
        match v["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

/// The record on one host: every object applied there, and whether objects that are no
/// longer applied are deleted (`prune`) or only named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// `kubectl` with its kubeconfig.
    pub kubectl: String,
    pub path: String,
    pub objects: BTreeSet<ObjectRef>,
    pub prune: bool,
}

impl ObjectRecord {
    /// The facts script's line: the whole record, base64 on one line.
    pub fn probe_lines(&self, id: usize) -> String {
        format!(
            "if [ -r {p} ]; then echo \"KF {id} record $(base64 -w0 < {p})\"; fi\n",
            p = shell_quote(&self.path)
        )
    }

    /// The record's content as it must be.
    pub fn content(&self) -> String {
        self.objects.iter().map(|o| format!("{}\n", o.0)).collect()
    }

    /// What must change: the record rewritten to hold what is applied now, naming (and,
    /// when pruning, deleting) what it held that is no longer applied.
    pub fn diff(&self, seen: &Observation) -> Option<ChangeKind> {
        let text = seen.get("record").map(|b64| decode(b64));
        if text.as_deref() == Some(self.content().as_str()) {
            return None;
        }
        let recorded: BTreeSet<ObjectRef> = text
            .unwrap_or_default()
            .lines()
            .filter_map(ObjectRef::parse)
            .collect();
        Some(ChangeKind::Record {
            added: self.objects.difference(&recorded).count(),
            gone: recorded
                .difference(&self.objects)
                .map(|o| GoneObject {
                    label: o.label(),
                    reference: o.0.clone(),
                })
                .collect(),
            prune: self.prune,
        })
    }

    /// Deletes the objects `change` found gone (when pruning), then writes the record.
    pub fn apply_script(&self, change: &ChangeKind) -> String {
        let mut script = String::new();
        if let ChangeKind::Record {
            gone, prune: true, ..
        } = change
        {
            for g in gone {
                script.push_str(&format!(
                    "printf '%s\\n' {} | {} delete --ignore-not-found -f - >/dev/null\n",
                    shell_quote(&g.reference),
                    self.kubectl
                ));
            }
        }
        script.push_str(&format!(
            "mkdir -p \"$(dirname {p})\"\nprintf %s {content} | kf_write {p} 0600 root:root\n",
            p = shell_quote(&self.path),
            content = shell_quote(&encode(self.content().as_bytes())),
        ));
        script
    }
}

/// An object a record held that is no longer applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneObject {
    /// `Kind namespace/name`.
    pub label: String,
    /// Its line in the record, what `kubectl delete -f -` reads.
    pub reference: String,
}

fn encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(b64: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Hashing;

    fn objects(manifest: &str) -> BTreeSet<ObjectRef> {
        ApiObject::from_manifest("t.yaml", manifest)
            .unwrap()
            .iter()
            .map(ObjectRef::of)
            .collect()
    }

    const TWO: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\ndata: {k: v}\n---\n\
                       apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n";
    const ONE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\n";

    fn record(manifest: &str, prune: bool) -> ObjectRecord {
        ObjectRecord {
            kubectl: "kubectl".into(),
            path: "/r".into(),
            objects: objects(manifest),
            prune,
        }
    }

    fn holding(record: &ObjectRecord) -> Observation {
        [("record".to_string(), encode(record.content().as_bytes()))].into()
    }

    #[test]
    fn the_record_names_what_is_no_longer_applied_and_what_is_new() {
        let before = record(TWO, false);
        let now = record(ONE, false);
        assert_eq!(before.diff(&holding(&before)), None);
        match now.diff(&holding(&before)) {
            Some(ChangeKind::Record {
                added: 0,
                gone,
                prune: false,
            }) => {
                assert_eq!(
                    gone.iter().map(|g| g.label.as_str()).collect::<Vec<_>>(),
                    ["ClusterRole r"]
                );
            }
            other => panic!("{other:?}"),
        }
        // No record yet (a fresh host, or deleted by hand): everything is new.
        assert!(matches!(
            before.diff(&Observation::new()),
            Some(ChangeKind::Record { added: 2, ref gone, .. }) if gone.is_empty()
        ));
        // A line edited by hand is no object: the record is rewritten.
        let mut edited = holding(&before);
        let text = format!("{}not an object\n", before.content());
        edited.insert("record".into(), encode(text.as_bytes()));
        assert!(matches!(
            before.diff(&edited),
            Some(ChangeKind::Record { added: 0, ref gone, .. }) if gone.is_empty()
        ));
    }

    /// The apply script, run by sh with a kubectl that logs what it is asked: the object no
    /// longer applied is deleted only when pruning, and the record then holds what is
    /// applied now.
    #[test]
    fn pruning_deletes_what_is_gone_and_the_record_is_rewritten() {
        for prune in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (log, path) = (dir.path().join("kubectl.log"), dir.path().join("record"));
            let before = record(TWO, prune);
            let now = ObjectRecord {
                kubectl: format!("kf_kubectl {}", log.display()),
                path: path.display().to_string(),
                ..record(ONE, prune)
            };
            let change = now.diff(&holding(&before)).unwrap();
            let script = format!(
                "{prelude}kf_kubectl() {{ kf_l=$1; shift; echo \"$* $(cat)\" >> \"$kf_l\"; }}\n{apply}",
                prelude = super::super::apply_prelude(&Hashing {
                    index: dir.path().join("index").display().to_string(),
                    full: false,
                }),
                apply = now
                    .apply_script(&change)
                    .replace("root:root", "\"$(id -un):$(id -gn)\""),
            );
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let asked = std::fs::read_to_string(&log).unwrap_or_default();
            if prune {
                assert_eq!(
                    asked.trim(),
                    r#"delete --ignore-not-found -f - {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"r"}}"#
                );
            } else {
                assert_eq!(asked, "");
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), now.content());
            let seen: Observation =
                [("record".to_string(), encode(now.content().as_bytes()))].into();
            assert_eq!(now.diff(&seen), None);
        }
    }
}
