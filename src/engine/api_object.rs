//! A desired Kubernetes object and how it compares with the live one.
//!
//! The API server fills in much more than a manifest says (status, uid, defaults such as a
//! port's protocol), so a live object is up to date when it has every field the manifest
//! sets, with the same value: the manifest is a subset of the live object. Lists compare
//! element by element and must have the same length, so a removed container or port is a
//! difference.

use serde_json::Value;

/// A rendered manifest that does not hold Kubernetes objects.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct ManifestError {
    /// The template (and the file it was rendered to).
    pub source_name: String,
    pub problem: String,
}

/// One object of a rendered manifest, with what identifies it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiObject {
    value: Value,
}

impl ApiObject {
    /// The objects of a (multi-document) YAML manifest; empty documents are skipped.
    /// Each object needs apiVersion, kind and metadata.name.
    pub fn from_manifest(source: &str, text: &str) -> Result<Vec<ApiObject>, ManifestError> {
        let fail = |problem: String| ManifestError {
            source_name: source.to_string(),
            problem,
        };
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(text)
            .map_err(|e| fail(format!("not valid YAML: {e}")))?;
        let mut out = Vec::new();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            for field in ["apiVersion", "kind"] {
                if !doc.get(field).is_some_and(Value::is_string) {
                    return Err(fail(format!("an object has no {field}")));
                }
            }
            if !doc.pointer("/metadata/name").is_some_and(Value::is_string) {
                return Err(fail(format!(
                    "a {} has no metadata.name",
                    doc["kind"].as_str().unwrap_or_default()
                )));
            }
            out.push(ApiObject { value: doc });
        }
        Ok(out)
    }

    /// An object by its name alone, setting no field: for what only has to exist.
    pub fn named(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        let mut metadata = serde_json::json!({ "name": name });
        if let Some(ns) = namespace {
            metadata["namespace"] = ns.into();
        }
        ApiObject {
            value: serde_json::json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata }),
        }
    }

    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }

    /// `Kind namespace/name`, or `Kind name` for cluster-scoped objects.
    pub fn label(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    /// The object as JSON on one line, what `kubectl get -f -` and `kubectl apply -f -` read.
    pub fn manifest(&self) -> String {
        self.value.to_string()
    }

    /// Whether `live` (one of the objects a `kubectl get` printed) is this object: the same
    /// API group, kind, name and, when this object names one, namespace (kubectl puts an
    /// object without one in its default namespace).
    pub fn identifies(&self, live: &Value) -> bool {
        let group = |v: &Value| {
            v["apiVersion"]
                .as_str()
                .and_then(|a| a.rsplit_once('/'))
                .map_or("", |(g, _)| g)
                .to_string()
        };
        group(&self.value) == group(live)
            && live["kind"].as_str() == Some(self.kind())
            && live["metadata"]["name"].as_str() == Some(self.name())
            && self
                .namespace()
                .is_none_or(|ns| live["metadata"]["namespace"].as_str() == Some(ns))
    }

    /// Whether `live` has every field this object sets, with the same value, and was last
    /// applied from exactly this object: a field the installer set before and no longer
    /// sets is a difference too (`kubectl apply` removes it, by its three-way merge).
    pub fn matches(&self, live: &Value) -> bool {
        is_subset(&self.value, live) && last_applied(live).as_ref() == Some(&self.value)
    }

    /// A unified diff (as YAML) against the desired object: of the live object's fields
    /// that it sets, or, when those agree, of what was last applied (so fields that are to
    /// be removed show). `None` for Secrets, whose values are never shown.
    pub fn diff_against(&self, live: Option<&Value>, name: &str) -> Option<String> {
        if self.kind() == "Secret" {
            return None;
        }
        let old = live
            .map(|l| match last_applied(l) {
                Some(applied) if is_subset(&self.value, l) => to_yaml(&applied),
                _ => to_yaml(&project(&self.value, l)),
            })
            .unwrap_or_default();
        Some(super::resource::unified_diff(
            &format!(" {name}"),
            old.as_bytes(),
            to_yaml(&self.value).as_bytes(),
        ))
    }
}

/// What `kubectl apply` last applied to `live` (its last-applied-configuration annotation),
/// without the empty `annotations` map kubectl adds to it.
fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let mut applied: Value = serde_json::from_str(text).ok()?;
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.get("annotations") == Some(&Value::Object(Default::default()))
    {
        meta.remove("annotations");
    }
    Some(applied)
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|_| format!("{v:#}\n"))
}

/// `want` is contained in `have`: objects by key, lists element-wise with equal lengths.
fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| is_subset(wv, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(wv, hv)| is_subset(wv, hv))
        }
        (Value::Number(w), Value::Number(h)) => w.as_f64() == h.as_f64(),
        _ => want == have,
    }
}

/// The part of `have` that `want` describes (same keys, same list positions), so that a
/// diff shows only fields the manifest sets.
fn project(want: &Value, have: &Value) -> Value {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => Value::Object(
            w.iter()
                .filter_map(|(k, wv)| h.get(k).map(|hv| (k.clone(), project(wv, hv))))
                .collect(),
        ),
        (Value::Array(w), Value::Array(h)) => Value::Array(
            h.iter()
                .enumerate()
                .map(|(i, hv)| w.get(i).map_or_else(|| hv.clone(), |wv| project(wv, hv)))
                .collect(),
        ),
        _ => have.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BINDING: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-apiserver-kubelet-client
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: kube-apiserver-kubelet-client
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
spec:
  clusterIP: 10.3.0.10
  ports:
    - name: dns
      port: 53
      protocol: UDP
";

    fn objects() -> Vec<ApiObject> {
        ApiObject::from_manifest("test.yaml", BINDING).unwrap()
    }

    #[test]
    fn manifest_documents_become_objects_with_labels() {
        let o = objects();
        assert_eq!(o.len(), 2);
        assert_eq!(
            o[0].label(),
            "ClusterRoleBinding kube-apiserver-kubelet-client"
        );
        assert_eq!(o[1].label(), "Service kube-system/kube-dns");
        let err =
            ApiObject::from_manifest("x.yaml", "apiVersion: v1\nkind: Namespace\n").unwrap_err();
        assert_eq!(err.to_string(), "x.yaml: a Namespace has no metadata.name");
        assert!(
            ApiObject::from_manifest("x.yaml", "kind: [")
                .unwrap_err()
                .to_string()
                .starts_with("x.yaml: not valid YAML")
        );
    }

    /// The annotation `kubectl apply` leaves: the object, with an empty annotations map.
    fn applied(object: &Value) -> String {
        let mut o = object.clone();
        o["metadata"]["annotations"] = json!({});
        o.to_string()
    }

    #[test]
    fn a_live_object_with_added_fields_matches() {
        let svc = &objects()[1];
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "u-1",
                         "resourceVersion": "42",
                         "annotations": {LAST_APPLIED: applied(&svc.value)}},
            "spec": {"clusterIP": "10.3.0.10", "clusterIPs": ["10.3.0.10"], "type": "ClusterIP",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]},
            "status": {"loadBalancer": {}}
        });
        assert!(svc.matches(&live));
        let mut not_applied = live.clone();
        not_applied["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert!(
            !svc.matches(&not_applied),
            "an object kubeforge did not apply is not known to be exact"
        );
    }

    /// A field the installer used to set and no longer does (a label dropped from the
    /// template) is a difference, and the diff shows it going.
    #[test]
    fn a_field_no_longer_rendered_is_a_difference() {
        let svc = &objects()[1];
        let mut before = svc.value.clone();
        before["metadata"]["labels"] = json!({"k8s-app": "kube-dns"});
        let mut live = before.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: applied(&before)});
        assert!(!svc.matches(&live));
        let diff = svc
            .diff_against(Some(&live), "Service kube-system/kube-dns")
            .unwrap();
        assert!(diff.contains("-    k8s-app: kube-dns"), "{diff}");
    }

    #[test]
    fn a_changed_or_missing_field_is_a_difference_with_a_diff() {
        let svc = &objects()[1];
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "u-1"},
            "spec": {"clusterIP": "10.3.0.10",
                     "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]},
        });
        assert!(!svc.matches(&live));
        let diff = svc
            .diff_against(Some(&live), "Service kube-system/kube-dns")
            .unwrap();
        assert!(diff.contains("\n-    port: 5353\n"), "{diff}");
        assert!(diff.contains("\n+    port: 53\n"), "{diff}");
        assert!(
            !diff.contains("uid"),
            "only fields the manifest sets: {diff}"
        );
        let mut extra_port = live.clone();
        extra_port["spec"]["ports"] = json!([
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"}
        ]);
        assert!(!svc.matches(&extra_port), "list lengths must agree");
    }

    #[test]
    fn a_live_object_is_told_by_group_kind_namespace_and_name() {
        let [binding, svc] = &objects()[..] else {
            panic!("two objects")
        };
        let live = |api: &str, kind: &str, ns: Option<&str>, name: &str| {
            let mut v = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
            if let Some(ns) = ns {
                v["metadata"]["namespace"] = ns.into();
            }
            v
        };
        assert!(svc.identifies(&live("v1", "Service", Some("kube-system"), "kube-dns")));
        assert!(!svc.identifies(&live("v1", "Service", Some("default"), "kube-dns")));
        assert!(!svc.identifies(&live("v1", "Endpoints", Some("kube-system"), "kube-dns")));
        assert!(!svc.identifies(&live("v1", "Service", Some("kube-system"), "other")));
        let rbac = "rbac.authorization.k8s.io";
        assert!(binding.identifies(&live(
            &format!("{rbac}/v1beta1"),
            "ClusterRoleBinding",
            None,
            "kube-apiserver-kubelet-client"
        )));
        assert!(!binding.identifies(&live(
            "example.com/v1",
            "ClusterRoleBinding",
            None,
            "kube-apiserver-kubelet-client"
        )));
    }

    #[test]
    fn secrets_are_never_diffed() {
        let secret = &ApiObject::from_manifest(
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  token: c2VjcmV0\n",
        )
        .unwrap()[0];
        assert_eq!(secret.diff_against(None, "Secret s"), None);
    }
}
