//! The shell each declared check runs, by kind. Every value the scenario gives is shell
//! quoted; each command prints what it saw in the shape its judge reads (`judge.rs`), and
//! exits non-zero only when it could not look.

use std::net::IpAddr;

use super::judge::{EXIT_MARK, RESPONSE_MARK};
use crate::cluster::commands::kubectl;
use crate::cluster::paths::{ADMIN_KUBECONFIG, BIN_DIR};
use crate::scenario::checks::{
    Assertion, Client, CommandCheck, FileCheck, HttpCheck, KubernetesCheck, PodCheck, PodRef,
    RUN_TOKEN, Scheme, Server, UnitCheck, Value,
};
use crate::ssh::shell_quote as q;

/// The most of a file's content a file check reads.
const CONTENT_MAX: u32 = 65536;
/// How long a request may wait for its connection.
const CONNECT_TIMEOUT: u32 = 5;

/// `text` with the run's value in place of [`RUN_TOKEN`].
pub(super) fn with_run(text: &str, run: &str) -> String {
    text.replace(RUN_TOKEN, run)
}

/// The user's command in `sh -c`, with the tools a host has on PATH and, on a master, the
/// admin kubeconfig for kubectl.
pub(super) fn command(c: &CommandCheck, run: &str) -> String {
    format!(
        "export PATH={BIN_DIR}:$PATH; if [ -r {ADMIN_KUBECONFIG} ]; then export KUBECONFIG={ADMIN_KUBECONFIG}; fi; sh -c {}",
        q(&with_run(&c.run, run))
    )
}

/// `absent`, or `present <mode>` and, when the content is judged, its first bytes.
pub(super) fn file(f: &FileCheck) -> String {
    let content = if f.contains.is_some() {
        format!("; head -c {CONTENT_MAX} -- \"$p\"")
    } else {
        String::new()
    };
    format!(
        "p={}; if [ -e \"$p\" ]; then m=$(stat -L -c %a -- \"$p\") || exit 1; echo \"present $m\"{content}; else echo absent; fi",
        q(&f.path)
    )
}

/// `active=<state> enabled=<state>` as systemctl says.
pub(super) fn unit(u: &UnitCheck) -> String {
    format!(
        "command -v systemctl >/dev/null || {{ echo 'no systemctl on this host' >&2; exit 1; }}; u={}; a=$(systemctl is-active -- \"$u\"); e=$(systemctl is-enabled -- \"$u\" 2>/dev/null); echo \"active=${{a:-unknown}} enabled=${{e:-unknown}}\"",
        q(&u.name)
    )
}

/// `-n NS` when a namespace is given; kubectl's default namespace otherwise.
fn namespace(ns: &Option<String>) -> String {
    ns.as_ref()
        .map(|n| format!(" -n {}", q(n)))
        .unwrap_or_default()
}

/// The object (or kind) with its namespace and selector, as kubectl get takes them.
fn object_args(k: &KubernetesCheck) -> String {
    let selector = k
        .selector
        .as_ref()
        .map(|s| format!(" -l {}", q(s)))
        .unwrap_or_default();
    format!("{}{}{selector}", q(&k.object), namespace(&k.namespace))
}

/// kubectl as admin on the first master, printing what the assertion judges.
pub(super) fn kubernetes(k: &KubernetesCheck, run: &str) -> String {
    let kc = kubectl();
    let args = object_args(k);
    match &k.assertion {
        Assertion::Exists(_) => format!(
            "o=$({kc} get {args} -o name --ignore-not-found) && echo \"found=${{o:-none}}\""
        ),
        Assertion::Condition(c) => format!(
            "{kc} get {args} -o jsonpath={}",
            q(&format!(
                "{{.status.conditions[?(@.type==\"{c}\")].status}}"
            ))
        ),
        Assertion::JsonPath { path, .. } => {
            format!("{kc} get {args} -o jsonpath={}", q(&with_run(path, run)))
        }
        Assertion::Count(_) => format!(
            "echo items; {kc} get {args} -o jsonpath={}",
            q(
                "{range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"
            )
        ),
    }
}

/// Whether a Kubernetes check counts Ready pods (the kind is pods) or objects.
pub(super) fn counts_pods(k: &KubernetesCheck) -> bool {
    ["po", "pod", "pods"].contains(&k.object.to_ascii_lowercase().as_str())
}

/// The value a jsonpath must have, with the run's value in place.
pub(super) fn expected_value(v: &Value, run: &str) -> Value {
    match v {
        Value::Equals(e) => Value::Equals(with_run(e, run)),
        other => other.clone(),
    }
}

/// Prints `key=value` lines about a pod (by name, or the first Running one a selector
/// finds): `<prefix>name`, `<prefix>namespace`, `<prefix>node`, `<prefix>ip`; fails
/// unless it is Running.
fn pod_lookup(pod: &PodRef, prefix: &str) -> String {
    let kc = kubectl();
    let fields =
        "{.metadata.name} {.metadata.namespace} {.spec.nodeName} {.status.podIP} {.status.phase}";
    let (get, what) = match (&pod.name, &pod.selector) {
        (Some(name), _) => (
            format!(
                "{kc} get pod {}{} -o jsonpath={}",
                q(name),
                namespace(&pod.namespace),
                q(fields)
            ),
            format!("pod {name}"),
        ),
        (None, selector) => (
            format!(
                "{kc} get pods -l {}{} --field-selector=status.phase=Running -o jsonpath={} | head -n 1",
                q(selector.as_deref().unwrap_or_default()),
                namespace(&pod.namespace),
                q(&format!("{{range .items[*]}}{fields}{{\"\\n\"}}{{end}}"))
            ),
            format!(
                "no Running pod with labels {}",
                selector.as_deref().unwrap_or_default()
            ),
        ),
    };
    format!(
        "set -- $({get}); [ \"$5\" = Running ] || {{ echo {}; exit 1; }}; echo \"{prefix}name=$1\"; echo \"{prefix}namespace=$2\"; echo \"{prefix}node=$3\"; echo \"{prefix}ip=$4\"; ",
        q(&format!("{what} is not Running"))
    )
}

/// What runs on the first master before an http check: the client pod's node (`host=`)
/// and the target's address (`target=`), when either is a pod or a Service. `None` when
/// both are known already.
pub(super) fn http_lookup(h: &HttpCheck) -> Option<String> {
    let kc = kubectl();
    let mut script = String::new();
    if let Client::Pod(pod) = &h.from {
        script += &pod_lookup(pod, "client_");
        script += "echo \"host=$3\"; ";
    }
    match &h.to {
        Server::Service {
            name,
            namespace: ns,
        } => {
            script += &format!(
                "ip=$({kc} get service {}{} -o jsonpath='{{.spec.clusterIP}}'); case \"$ip\" in ''|None) echo {}; exit 1 ;; esac; echo \"target=$ip\"; ",
                q(name),
                namespace(ns),
                q(&format!("service {name} has no clusterIP"))
            );
        }
        Server::Pod(pod) => {
            script += &pod_lookup(pod, "server_");
            script += "echo \"target=$4\"; ";
        }
        Server::Node(_) | Server::Address(_) => {}
    }
    (!script.is_empty()).then_some(script)
}

/// The requests, each after a [`RESPONSE_MARK`] line, from the client host's network or the
/// client pod's (entered on its node). Needs `$target` (set here or by the lookup) and,
/// from a pod, `$client_name` and `$client_namespace`.
pub(super) fn http(h: &HttpCheck, node_address: Option<IpAddr>, run: &str, timeout: u64) -> String {
    let fixed = match (&h.to, node_address) {
        (Server::Address(ip), _) => format!("target={ip}; "),
        (Server::Node(_), Some(ip)) => format!("target={ip}; "),
        _ => String::new(),
    };
    let (enter, nsenter) = match &h.from {
        Client::Host(_) => (String::new(), ""),
        Client::Pod(_) => (
            format!(
                "pid={}; [ -n \"$pid\" ] || {{ echo \"pod $client_name is not running on this node\"; exit 1; }}; ",
                super::super::traffic::task_pid(
                    "\"labels.\\\"io.kubernetes.pod.name\\\"==$client_name,labels.\\\"io.kubernetes.pod.namespace\\\"==$client_namespace\""
                )
            ),
            "nsenter -t \"$pid\" -n ",
        ),
    };
    let address = match h.scheme {
        Scheme::Http => format!("TCP:$addr:{},connect-timeout={CONNECT_TIMEOUT}", h.port),
        Scheme::Https => {
            let trust = match (&h.ca, h.verify) {
                (_, false) => ",verify=0".to_string(),
                (Some(ca), true) => format!(",cafile={}", q(ca)),
                (None, true) => String::new(),
            };
            format!(
                "OPENSSL:$addr:{},connect-timeout={CONNECT_TIMEOUT}{trust}",
                h.port
            )
        }
    };
    let requests: String = h
        .requests
        .iter()
        .map(|r| format!("echo {RESPONSE_MARK}; req {}; ", q(&with_run(&r.path, run))))
        .collect();
    format!(
        "{fixed}{enter}case \"$target\" in *:*) addr=\"[$target]\" ;; *) addr=\"$target\" ;; esac; req() {{ printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' \"$1\" \"$target\" | {nsenter}socat -T{timeout} - {address} 2>&1 | tr -d '\\r'; }}; {requests}"
    )
}

/// Creates the pod, waits until it has finished (at most `timeout` seconds), prints its
/// logs and an [`EXIT_MARK`] line with its container's exit status, and deletes it.
pub(super) fn pod(p: &PodCheck, name: &str, master: bool, run: &str, timeout: u64) -> String {
    let kc = kubectl();
    let ns = p.namespace.clone().unwrap_or_else(|| "default".into());
    let mut spec = serde_json::json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "check",
            "image": p.image,
            "imagePullPolicy": "Never",
            "command": p.command.iter().map(|a| with_run(a, run)).collect::<Vec<_>>(),
        }],
    });
    if let Some(node) = &p.node {
        spec["nodeSelector"] = serde_json::json!({ "kubernetes.io/hostname": node });
    }
    if master {
        spec["tolerations"] = serde_json::json!([{ "key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule" }]);
    }
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "labels": { "app": "kubeforge-check" } },
        "spec": spec,
    });
    let state = "{.status.phase} {.status.containerStatuses[0].state.waiting.reason}";
    format!(
        "k() {{ {kc} -n {ns} \"$@\"; }}; n={name}; k delete pod \"$n\" --ignore-not-found --wait=true --timeout=20s >/dev/null 2>&1; \
         printf '%s' {object} | k create -f - >/dev/null || exit 1; end=$(( $(date +%s) + {timeout} )); \
         while :; do s=$(k get pod \"$n\" -o jsonpath={state}); case \"$s\" in Succeeded*|Failed*) break ;; esac; [ \"$(date +%s)\" -lt \"$end\" ] || break; sleep 1; done; \
         code=$(k get pod \"$n\" -o jsonpath='{{.status.containerStatuses[0].state.terminated.exitCode}}'); k logs \"$n\" 2>&1; \
         k delete pod \"$n\" --wait=false >/dev/null 2>&1; \
         [ -n \"$code\" ] || {{ echo \"the pod did not finish within {timeout}s (${{s:-no status}})\" >&2; exit 1; }}; echo; echo \"{EXIT_MARK}$code\"",
        ns = q(&ns),
        object = q(&object.to_string()),
        state = q(state),
    )
}
