//! Declared checks: the commands they render (some run here, in `sh`, and judged on what
//! they print), the checks a declaration makes, and how outputs are judged: a failure
//! always says what was expected and what was seen.

use std::path::Path;

use super::*;
use crate::inventory::Inventory;
use crate::scenario::checks::Pattern;

/// The seeds' four hosts.
const SEEDS: &str = "platforms:
  - {name: etcd-01, groups: [etcd]}
  - {name: kube-master-01, groups: [kube-master]}
  - {name: kube-worker-01, groups: [kube-worker]}
  - {name: kube-worker-02, groups: [kube-worker]}
";

fn scenario(checks: &str) -> Scenario {
    let text = format!("{SEEDS}checks:\n{checks}");
    Scenario::parse("t", Path::new("scenarios/t/scenario.yml"), &text).unwrap()
}

/// The checks the scenario's declared checks make, with the run value `r1`.
fn built(checks: &str) -> Vec<Check> {
    let s = scenario(checks);
    let cluster = Cluster::derive(&s, &Inventory::planned(&s)).unwrap();
    s.checks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| checks_of(&cluster, &s, i, c, "r1"))
        .collect()
}

fn judge(c: &Check) -> &Judge {
    match &c.expect {
        Expect::Declared(j) => j,
        other => panic!("not declared: {other:?}"),
    }
}

/// Runs `script` in `sh` here: (status, stdout, stderr), trimmed like the runner does.
fn sh(script: &str) -> (u32, String, String) {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (
        out.status.code().unwrap_or(255) as u32,
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// What a judge says, as the result's detail reads.
trait Said {
    fn said(&self, status: u32, stdout: &str, stderr: &str) -> Result<String, String>;
}

impl Said for Judge {
    fn said(&self, status: u32, stdout: &str, stderr: &str) -> Result<String, String> {
        self.judge(status, stdout, stderr)
            .map_err(|u| u.to_string())
    }
}

fn re(p: &str) -> Option<regex::Regex> {
    Some(Pattern::new(p).unwrap().for_run("r1"))
}

#[test]
fn a_check_on_a_group_is_one_check_per_host_named_after_it() {
    let checks = built(
        "  - name: kubelet
    unit: {on: nodes, name: kubelet.service, active: true}
  - name: ping
    command: {on: kube-master-01, run: 'echo ${RUN}', stdout: '^${RUN}$'}
",
    );
    let names: Vec<(&str, &str)> = checks
        .iter()
        .map(|c| (c.name.as_str(), c.host.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("kubelet [kube-master-01]", "kube-master-01"),
            ("kubelet [kube-worker-01]", "kube-worker-01"),
            ("kubelet [kube-worker-02]", "kube-worker-02"),
            ("ping", "kube-master-01"),
        ]
    );
    let ping = &checks[3];
    assert_eq!(
        ping.command,
        "export PATH=/opt/bin:$PATH; if [ -r /etc/kubernetes/admin.kubeconfig ]; then export KUBECONFIG=/etc/kubernetes/admin.kubeconfig; fi; sh -c 'echo r1'"
    );
    // The command runs here too, and its judge reads it.
    let (status, out, err) = sh(&ping.command);
    assert_eq!(
        judge(ping).said(status, &out, &err),
        Ok("exit 0, stdout 'r1', stderr ''".into())
    );
    assert_eq!(ping.within, Duration::from_secs(0));
    assert_eq!(ping.timeout, Duration::from_secs(30));
}

#[test]
fn a_file_check_runs_and_says_what_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("it's here.conf");
    std::fs::write(&path, "listen: 8080\n").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let file = |p: &Path, extra: &str| {
        built(&format!(
            "  - name: f\n    file: {{on: etcd-01, path: \"{}\"{extra}}}\n",
            p.display()
        ))
        .remove(0)
    };
    let c = file(&path, ", mode: '0640', contains: '^listen: \\d+$'");
    let (status, out, err) = sh(&c.command);
    assert_eq!(
        judge(&c).said(status, &out, &err),
        Ok("a file with mode 0640".into())
    );
    let c = file(&path, ", mode: '0600', contains: '9090'");
    let (status, out, err) = sh(&c.command);
    assert_eq!(
        judge(&c).said(status, &out, &err),
        Err(
            "expected a file with mode 0600, content matching /9090/; seen a file with mode 0640"
                .into()
        )
    );
    let c = file(&path, ", contains: '9090'");
    let (status, out, err) = sh(&c.command);
    assert_eq!(
        judge(&c).said(status, &out, &err),
        Err("expected a file, content matching /9090/; seen a file with mode 0640, content 'listen: 8080'".into())
    );
    let c = file(&dir.path().join("gone"), "");
    let (status, out, err) = sh(&c.command);
    assert_eq!(
        judge(&c).said(status, &out, &err),
        Err("expected a file; seen no file".into())
    );
    let c = file(&dir.path().join("gone"), ", exists: false");
    let (status, out, err) = sh(&c.command);
    assert_eq!(judge(&c).said(status, &out, &err), Ok("no file".into()));
}

#[test]
fn a_command_never_passes_on_empty_output_or_another_status() {
    let j = Judge::Command {
        exit: 0,
        stdout: re(".*"),
        stderr: None,
    };
    assert_eq!(
        j.said(0, "", ""),
        Err("expected exit 0, stdout matching /.*/; seen exit 0, stdout '', stderr ''".into())
    );
    assert!(
        j.said(1, "x", "no such file")
            .unwrap_err()
            .contains("seen exit 1, stdout 'x', stderr 'no such file'")
    );
    let j = Judge::Command {
        exit: 3,
        stdout: None,
        stderr: re("denied"),
    };
    assert!(j.said(3, "", "permission denied").is_ok());
    // Other kinds' commands fail only when they could not look.
    let j = Judge::Kubernetes(Kube::Condition("Ready".into()));
    assert_eq!(
        j.said(1, "", "Error from server (NotFound)"),
        Err("expected condition Ready True; seen nothing: the check could not look (exit 1): '' 'Error from server (NotFound)'".into())
    );
}

#[test]
fn kubernetes_checks_ask_kubectl_on_the_first_master() {
    let checks = built(
        "  - name: a
    kubernetes: {object: deployment/web, namespace: apps, condition: Available}
  - name: b
    kubernetes: {object: pods, selector: 'app=web', count: 2}
  - name: c
    kubernetes: {object: svc/web, jsonpath: '{.spec.clusterIP}', equals: 10.3.0.9}
  - name: d
    kubernetes: {object: configmap/x, exists: false}
",
    );
    let k = crate::cluster::commands::kubectl();
    assert!(checks.iter().all(|c| c.host == "kube-master-01"));
    assert_eq!(
        checks[0].command,
        format!(
            "{k} get deployment/web -n apps -o jsonpath='{{.status.conditions[?(@.type==\"Available\")].status}}'"
        )
    );
    assert_eq!(
        checks[1].command,
        format!(
            "echo items; {k} get pods -l app=web -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.status.conditions[?(@.type==\"Ready\")].status}}{{\"\\n\"}}{{end}}'"
        )
    );
    assert_eq!(
        checks[2].command,
        format!("{k} get svc/web -o jsonpath='{{.spec.clusterIP}}'")
    );
    assert_eq!(
        checks[3].command,
        format!(
            "o=$({k} get configmap/x -o name --ignore-not-found) && echo \"found=${{o:-none}}\""
        )
    );
    assert_eq!(judge(&checks[0]).said(0, "True", ""), Ok("'True'".into()));
    assert_eq!(
        judge(&checks[0]).said(0, "False", ""),
        Err("expected condition Available True; seen 'False'".into())
    );
    assert_eq!(
        judge(&checks[1]).said(0, "items\nweb-1 True\nweb-2 False", ""),
        Err("expected 2 pods Ready; seen 1 pods Ready".into())
    );
    assert_eq!(
        judge(&checks[2]).said(0, "", ""),
        Err("expected '10.3.0.9'; seen no value".into())
    );
    assert_eq!(
        judge(&checks[3]).said(0, "found=none", ""),
        Ok("'found=none'".into())
    );
    assert!(judge(&checks[3]).said(0, "found=configmap/x", "").is_err());
}

#[test]
fn an_http_check_from_a_pod_looks_up_its_node_and_the_service() {
    let checks = built(
        "  - name: web
    within: 20
    http:
      from: {pod: leader}
      to: {service: frontend}
      port: 80
      requests:
        - {path: '/set?msg=m-${RUN}', body: ^OK$}
        - {path: /get, body: '^m-${RUN}$'}
",
    );
    let c = &checks[0];
    let lookup = c.lookup.as_ref().expect("a lookup");
    assert_eq!(lookup.host, "kube-master-01");
    let k = crate::cluster::commands::kubectl();
    assert!(
        lookup.command.starts_with(&format!(
            "set -- $({k} get pod leader -o jsonpath='{{.metadata.name}} {{.metadata.namespace}}"
        )),
        "{}",
        lookup.command
    );
    assert!(
        lookup.command.contains("echo \"host=$3\"; "),
        "{}",
        lookup.command
    );
    assert!(lookup.command.contains(&format!(
        "ip=$({k} get service frontend -o jsonpath='{{.spec.clusterIP}}')"
    )));
    assert!(
        c.command
            .contains("nsenter -t \"$pid\" -n socat -T30 - TCP:$addr:80,connect-timeout=5"),
        "{}",
        c.command
    );
    assert!(
        c.command
            .contains("labels.\\\"io.kubernetes.pod.namespace\\\"==$client_namespace")
    );
    assert!(c.command.ends_with(
        "echo @@kubeforge-response; req '/set?msg=m-r1'; echo @@kubeforge-response; req /get; "
    ));
    let answer = |body: &str| format!("HTTP/1.0 200 OK\nContent-Type: text/plain\n\n{body}\n");
    let out = format!(
        "@@kubeforge-response\n{}@@kubeforge-response\n{}",
        answer("OK"),
        answer("m-r1")
    );
    assert_eq!(
        judge(c).said(0, out.trim(), ""),
        Ok("GET /set?msg=m-r1 -> 200, body 'OK'; GET /get -> 200, body 'm-r1'".into())
    );
    let stale = format!(
        "@@kubeforge-response\n{}@@kubeforge-response\n{}",
        answer("OK"),
        answer("m-r0")
    );
    assert_eq!(
        judge(c).said(0, stale.trim(), ""),
        Err(
            "expected GET /get -> 200, body matching /^m-r1$/; seen GET /get -> 200, body 'm-r0'"
                .into()
        )
    );
    let refused =
        "@@kubeforge-response\nsocat E connect(5, AF=2 10.3.0.203:80): Connection refused";
    assert!(
        judge(c)
            .said(0, refused, "")
            .unwrap_err()
            .contains("seen no HTTP answer: 'socat E connect")
    );
}

#[test]
fn an_https_check_from_a_host_to_a_node_needs_no_lookup() {
    let c = built(
        "  - name: kubelet
    http:
      from: {host: kube-master-01}
      to: {node: kube-worker-01}
      port: 10250
      scheme: https
      ca: /etc/kubernetes/ssl/ca.pem
      path: /pods
      status: 401
",
    )
    .remove(0);
    assert!(c.lookup.is_none());
    assert_eq!(c.host, "kube-master-01");
    assert!(
        c.command.starts_with("target=192.0.2.121; "),
        "{}",
        c.command
    );
    assert!(
        c.command.contains("| socat -T30 - OPENSSL:$addr:10250,connect-timeout=5,cafile=/etc/kubernetes/ssl/ca.pem 2>&1"),
        "{}",
        c.command
    );
}

#[test]
fn a_pod_check_runs_a_pod_once_and_reads_its_exit_status() {
    let c = built(
        "  - name: once
    timeout: 40
    pod: {image: kubeforge.local/redis:7, node: kube-master-01, command: [redis-cli, -h, 10.3.0.202, ping], stdout: ^PONG$}
",
    )
    .remove(0);
    assert_eq!(c.host, "kube-master-01");
    assert_eq!(
        c.timeout,
        Duration::from_secs(60),
        "its timeout and the pod's creation and removal"
    );
    for part in [
        "n=kubeforge-check-0-r1;",
        "\"imagePullPolicy\":\"Never\"",
        "\"nodeSelector\":{\"kubernetes.io/hostname\":\"kube-master-01\"}",
        "\"key\":\"node-role.kubernetes.io/master\"",
        "\"command\":[\"redis-cli\",\"-h\",\"10.3.0.202\",\"ping\"]",
        "end=$(( $(date +%s) + 40 ))",
        "echo \"@@kubeforge-exit=$code\"",
    ] {
        assert!(c.command.contains(part), "{part} not in {}", c.command);
    }
    assert_eq!(
        judge(&c).said(0, "PONG\n\n@@kubeforge-exit=0", ""),
        Ok("exit 0, output 'PONG'".into())
    );
    assert_eq!(
        judge(&c).said(0, "Could not connect to Redis\n\n@@kubeforge-exit=1", ""),
        Err("expected the pod to exit 0, output matching /^PONG$/; seen exit 1, output 'Could not connect to Redis'".into())
    );
    assert!(
        judge(&c)
            .said(
                1,
                "",
                "the pod did not finish within 40s (Pending ErrImageNeverPull)"
            )
            .unwrap_err()
            .contains("ErrImageNeverPull")
    );
}

#[test]
fn a_unit_is_judged_on_what_systemctl_says() {
    let j = Judge::Unit {
        active: Some(true),
        enabled: Some(true),
    };
    assert_eq!(
        j.said(0, "active=active enabled=enabled", ""),
        Ok("active, enabled".into())
    );
    assert_eq!(
        j.said(0, "active=failed enabled=enabled", ""),
        Err("expected active and enabled; seen failed, enabled".into())
    );
    assert!(j.said(0, "", "").is_err());
    let c = built("  - name: u\n    unit: {on: etcd-01, name: \"it's.service\", enabled: false}\n")
        .remove(0);
    assert!(c.command.contains("u='it'\\''s.service';"), "{}", c.command);
}

#[test]
fn verify_waits_for_what_a_workload_rolls_out() {
    let s = scenario("  - name: x\n    unit: {on: all, name: u, active: true}\n");
    let cluster = Cluster::derive(&s, &Inventory::planned(&s)).unwrap();
    let workload = |text: &str| Workload {
        path: "workloads/app.yaml".into(),
        text: text.into(),
    };
    let waits = workload_waits(
        &cluster,
        &[
            workload(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: apps}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db}\n",
            ),
            workload("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"),
        ],
    );
    assert_eq!(waits.len(), 1, "nothing to wait for in a ConfigMap");
    let k = crate::cluster::commands::kubectl();
    assert_eq!(
        waits[0].name,
        "workload workloads/app.yaml: rollouts complete, pods Ready"
    );
    assert_eq!(
        waits[0].command,
        format!(
            "{k} -n apps rollout status deployment/web --timeout=60s >/dev/null && {k} -n default wait --for=condition=Ready pod/db --timeout=60s >/dev/null && echo ready"
        )
    );
}
