//! The engine's facts and apply scripts, run for real by the local `sh` against a temporary
//! directory: converge, idempotence (zero changes), drift repaired, check mode changes nothing.

use super::*;
use std::path::Path;

/// Runs the engine's scripts with the machine's own `sh` (tests run as root in CI; ownership
/// is set to the current user so they also pass unprivileged).
pub(super) struct LocalShell;

impl Transport for LocalShell {
    async fn exec_root(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Ok(ExecOutput {
            status: out.status.code().unwrap_or(255) as u32,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn upload_file(
        &self,
        local: &Path,
        remote_path: &str,
        mode: u32,
        _timeout: Duration,
    ) -> Result<(), TransportError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy(local, remote_path).unwrap();
        std::fs::set_permissions(remote_path, std::fs::Permissions::from_mode(mode)).unwrap();
        Ok(())
    }

    async fn exec_root_with_file(
        &self,
        command: &str,
        local: &Path,
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        self.exec_root(command, Some(&std::fs::read(local)?), timeout)
            .await
    }
}

fn me() -> (String, String) {
    let out = |flag: &str| {
        let o = std::process::Command::new("id").arg(flag).output().unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    (out("-un"), out("-gn"))
}

pub(super) fn perms(mode: u32) -> Perms {
    let (owner, group) = me();
    Perms { mode, owner, group }
}

pub(super) fn plan(dir: &Path, setting: &str, binary: &Path) -> HostPlan {
    let d = dir.display();
    let bin_sha = crate::files::sha256_hex(&std::fs::read(binary).unwrap());
    HostPlan {
        host: "local".into(),
        tasks: vec![
            Task {
                name: "config".into(),
                role: "test",
                resources: vec![
                    Resource::Directory {
                        path: format!("{d}/etc/app"),
                        perms: perms(0o755),
                    },
                    Resource::File {
                        path: format!("{d}/etc/app/app.conf"),
                        content: format!("name=app\nsetting={setting}\n").into_bytes(),
                        perms: perms(0o644),
                        secret: false,
                        origin: Some("app.conf".into()),
                    },
                    Resource::File {
                        path: format!("{d}/etc/app/key.pem"),
                        content: b"secret key material\n".to_vec(),
                        perms: perms(0o600),
                        secret: true,
                        origin: None,
                    },
                    Resource::Symlink {
                        path: format!("{d}/etc/app/current"),
                        target: "app.conf".into(),
                    },
                ],
            },
            Task {
                name: "binary".into(),
                role: "test",
                resources: vec![Resource::Upload {
                    path: format!("{d}/opt/bin/tool"),
                    local: binary.to_path_buf(),
                    sha256: bin_sha,
                    perms: perms(0o755),
                }],
            },
            Task {
                name: "init".into(),
                role: "test",
                resources: vec![
                    Resource::Command {
                        name: "init data".into(),
                        command: format!("mkdir -p {d}/data && echo ok > {d}/data/initialised"),
                        guard: Guard::Creates(format!("{d}/data/initialised")),
                    },
                    Resource::KeyValue {
                        name: "/kv/one".into(),
                        read: format!("cat {d}/kv-one"),
                        write: format!("cat > {d}/kv-one"),
                        value: b"{\"Network\":\"10.2.0.0/16\"}".to_vec(),
                    },
                ],
            },
        ],
    }
}

/// A run whose hash index is `<dir>/index` (not the machine's own).
pub(super) fn options(dir: &Path, mode: Mode, full: bool) -> Options {
    Options {
        mode,
        hashing: Hashing {
            index: dir.join("index").display().to_string(),
            full,
        },
    }
}

pub(super) async fn run(dir: &Path, plan: &HostPlan, mode: Mode) -> HostReport {
    run_host(
        &LocalShell,
        plan,
        &options(dir, mode, false),
        &Default::default(),
        None,
    )
    .await
    .expect("engine run")
}

pub(super) fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("tool.src");
    std::fs::write(&bin, vec![7u8; 300_000]).unwrap();
    std::fs::create_dir_all(dir.path().join("opt/bin")).unwrap();
    (dir, bin)
}

#[tokio::test]
async fn converge_then_idempotent_in_few_round_trips() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);

    let check = run(dir.path(), &p, Mode::Check).await;
    assert_eq!(check.cost.round_trips, 1);
    assert!(check.change_count() >= 7, "{check:?}");
    assert!(
        !dir.path().join("etc/app").exists(),
        "check mode wrote something"
    );

    let first = run(dir.path(), &p, Mode::Apply).await;
    assert_eq!(first.change_count(), check.change_count());
    // facts + one upload + one apply script; the binary is most of what was sent
    assert_eq!(first.cost.round_trips, 3);
    assert!(first.cost.bytes_sent > 300_000, "{:?}", first.cost);
    assert!(check.cost.bytes_sent < 20_000, "{:?}", check.cost);
    assert!(check.cost.bytes_received > 0);
    let conf = std::fs::read_to_string(dir.path().join("etc/app/app.conf")).unwrap();
    assert_eq!(conf, "name=app\nsetting=1\n");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(dir.path().join("etc/app/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read(dir.path().join("opt/bin/tool"))
            .unwrap()
            .len(),
        300_000
    );
    assert_eq!(
        std::fs::read_link(dir.path().join("etc/app/current")).unwrap(),
        Path::new("app.conf")
    );
    assert!(dir.path().join("data/initialised").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kv-one")).unwrap(),
        "{\"Network\":\"10.2.0.0/16\"}"
    );

    let again = run(dir.path(), &p, Mode::Check).await;
    assert_eq!(again.change_count(), 0, "not idempotent: {again:?}");
    assert_eq!(again.cost.round_trips, 1);
}

#[tokio::test]
async fn a_setting_change_shows_exactly_that_diff() {
    let (dir, bin) = setup();
    run(dir.path(), &plan(dir.path(), "1", &bin), Mode::Apply).await;
    let changed = run(dir.path(), &plan(dir.path(), "2", &bin), Mode::Check).await;
    let all: Vec<&Change> = changed.tasks.iter().flat_map(|t| &t.changes).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].kind, ChangeKind::Content { secret: false });
    let diff = all[0].diff.as_deref().unwrap();
    assert!(
        diff.contains("-setting=1") && diff.contains("+setting=2"),
        "{diff}"
    );
}

#[tokio::test]
async fn drift_is_reported_and_repaired() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);
    run(dir.path(), &p, Mode::Apply).await;
    std::fs::write(dir.path().join("etc/app/app.conf"), "edited by hand\n").unwrap();
    std::fs::write(dir.path().join("etc/app/key.pem"), "other key\n").unwrap();
    std::fs::write(dir.path().join("opt/bin/tool"), "corrupt").unwrap();
    let drift = run(dir.path(), &p, Mode::Check).await;
    let summaries: Vec<String> = drift
        .tasks
        .iter()
        .flat_map(|t| {
            t.changes
                .iter()
                .map(|c| format!("{}: {}", c.resource, c.summary()))
        })
        .collect();
    assert_eq!(summaries.len(), 3, "{summaries:?}");
    assert!(summaries[1].contains("secret, not shown"));
    let text: String = format!("{drift:?}");
    assert!(
        !text.contains("secret key material"),
        "secret leaked into the report"
    );
    run(dir.path(), &p, Mode::Apply).await;
    assert_eq!(run(dir.path(), &p, Mode::Check).await.change_count(), 0);
}

#[tokio::test]
async fn a_failing_step_names_the_task_and_leaves_no_partial_file() {
    let (dir, bin) = setup();
    let d = dir.path().display();
    let mut p = plan(dir.path(), "1", &bin);
    p.tasks.push(Task {
        name: "broken".into(),
        role: "test",
        resources: vec![Resource::Command {
            name: "fails".into(),
            command: "echo boom >&2; false".into(),
            guard: Guard::Creates(format!("{d}/never")),
        }],
    });
    let options = options(dir.path(), Mode::Apply, false);
    let err = run_host(&LocalShell, &p, &options, &Default::default(), None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("local: task 'broken' failed (command fails)"),
        "{msg}"
    );
    assert!(msg.contains("boom"), "{msg}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("etc/app"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("kf-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

fn parse_facts(stdout: &str) -> BTreeMap<usize, Observation> {
    facts::parse(stdout, &[])
}

#[test]
fn facts_parser_ignores_noise() {
    let f =
        parse_facts("motd\nKF 0 type file\nKF 0 perms 644 root root\nKF x y\nKF 1 value-absent\n");
    assert_eq!(f[&0]["perms"], "644 root root");
    assert!(f[&1].is_empty());
}

/// The object scripts' plumbing (manifest on stdin, live object read back as JSON), with a
/// `kubectl` stand-in that keeps one object in a file (and, like kubectl, prints what it
/// finds through `-f` as a List): create, no change, drift repaired.
#[tokio::test]
async fn api_object_created_then_unchanged_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("object.json");
    let kubectl = dir.path().join("kubectl");
    // Like kubectl: apply keeps what it applied (the last-applied annotation), get prints
    // the object with that annotation, wrapped in a List.
    let applied = dir.path().join("applied.json");
    let script = r#"#!/bin/sh
case "$1" in
get) cat >/dev/null; [ -f STORE ] || exit 0
  a=$(sed 's/\\/\\\\\\\\/g; s/"/\\\\"/g' APPLIED)
  printf '{"kind":"List","items":['
  sed "s|\"metadata\":{|\"metadata\":{\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"$a\"},|" STORE
  printf ']}' ;;
apply) tee STORE > APPLIED ;;
*) exit 2 ;;
esac
"#;
    std::fs::write(
        &kubectl,
        script
            .replace("STORE", &store.display().to_string())
            .replace("APPLIED", &applied.display().to_string()),
    )
    .unwrap();
    let object = |port: u16| {
        ApiObject::from_manifest(
            "svc.yaml",
            &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  ports:\n    - port: {port}\n"),
        )
        .unwrap()
        .remove(0)
    };
    let plan = |port: u16| HostPlan {
        host: "local".into(),
        tasks: vec![Task {
            name: "objects".into(),
            role: "test",
            resources: vec![Resource::ApiObject {
                kubectl: format!("sh {}", kubectl.display()),
                object: object(port),
            }],
        }],
    };
    let check = run(dir.path(), &plan(80), Mode::Check).await;
    assert_eq!(check.tasks[0].changes[0].kind, ChangeKind::ValueCreate);
    assert!(!store.exists(), "check mode wrote the object");
    run(dir.path(), &plan(80), Mode::Apply).await;
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert_eq!(stored["spec"]["ports"][0]["port"], 80);
    // The API server adds fields; the object is still up to date.
    let mut live = stored.clone();
    live["metadata"]["uid"] = "u-1".into();
    live["spec"]["ports"][0]["protocol"] = "TCP".into();
    std::fs::write(&store, live.to_string()).unwrap();
    assert_eq!(
        run(dir.path(), &plan(80), Mode::Check).await.change_count(),
        0
    );
    let changed = run(dir.path(), &plan(8080), Mode::Check).await;
    let change = &changed.tasks[0].changes[0];
    assert_eq!(change.kind, ChangeKind::ValueUpdate);
    assert!(
        change.diff.as_deref().unwrap().contains("+  - port: 8080"),
        "{change:?}"
    );
    run(dir.path(), &plan(8080), Mode::Apply).await;
    assert_eq!(
        run(dir.path(), &plan(8080), Mode::Check)
            .await
            .change_count(),
        0
    );
}

fn service_plan(notified_by: &[&str]) -> Result<HostPlan, PlanError> {
    let upload = Resource::Upload {
        path: "/opt/bin/tool".into(),
        local: "/nonexistent".into(),
        sha256: "1".repeat(64),
        perms: Perms::root(0o755),
    };
    let dir = Resource::Directory {
        path: "/etc/tool".into(),
        perms: Perms::root(0o755),
    };
    HostPlan::new(
        "local".into(),
        vec![
            Task {
                name: "tool binary".into(),
                role: "test",
                resources: vec![upload],
            },
            Task {
                name: "tool service".into(),
                role: "test",
                resources: vec![
                    dir,
                    Resource::Service {
                        unit: "tool.service".into(),
                        notified_by: notified_by.iter().map(|s| s.to_string()).collect(),
                        ready: None,
                    },
                ],
            },
        ],
    )
}

/// A service restarts when anything of a task that notifies it changes (here a binary),
/// without listing that binary anywhere; a directory or a file's mode is not an input.
#[test]
fn restart_inputs_are_derived_from_the_notifying_tasks() {
    let resources = |plan: &HostPlan| -> Vec<(usize, Resource)> {
        plan.tasks
            .iter()
            .enumerate()
            .flat_map(|(t, task)| task.resources.iter().map(move |r| (t, r.clone())))
            .collect()
    };
    let diff = |plan: &HostPlan, facts| {
        let owned = resources(plan);
        let borrowed: Vec<(usize, &Resource)> = owned.iter().map(|(t, r)| (*t, r)).collect();
        diff_all(plan, &borrowed, facts, &Default::default())
    };
    let plan = service_plan(&["tool binary", "tool service"]).unwrap();
    let facts = parse_facts(
        "KF 0 type file\nKF 0 perms 755 root root\nKF 0 sha 2222\n\
         KF 1 type dir\nKF 1 perms 700 root root\n\
         KF 2 enabled enabled\nKF 2 active active\nKF 2 reload no\n",
    );
    let changes = diff(&plan, &facts);
    assert_eq!(
        changes[2][0].kind,
        ChangeKind::Restart(RestartReason::InputsChanged(vec![
            "binary /opt/bin/tool".into()
        ]))
    );
    // The binary's mode alone changes: not an input.
    let mode_only = parse_facts(&format!(
        "KF 0 type file\nKF 0 perms 700 root root\nKF 0 sha {}\n\
         KF 2 enabled enabled\nKF 2 active active\nKF 2 reload no\n",
        "1".repeat(64)
    ));
    let changes = diff(&plan, &mode_only);
    assert_eq!(changes[0][0].summary(), "mode 0700 -> 0755");
    assert!(changes[2].is_empty(), "{:?}", changes[2]);
    // Not notified by the binary's task: the same facts plan no restart.
    let plan = service_plan(&["tool service"]).unwrap();
    let changes = diff(&plan, &facts);
    assert!(changes[2].is_empty(), "{:?}", changes[2]);
}

#[test]
fn a_service_notified_by_a_missing_or_later_task_is_refused() {
    let err = service_plan(&["no such task"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "local: service tool.service is notified by task 'no such task', which does not come before it in the same phase"
    );
}

/// The temporary file of an atomic write is private from its first byte: a stand-in
/// `base64` (run once the redirection created the file) records its mode.
#[test]
fn an_atomic_write_is_never_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("key.pem");
    let seen = dir.path().join("mode-while-writing");
    let script = format!(
        "{prelude}base64() {{ stat -c %a \"$kf_t\" > {seen}; command base64 \"$@\"; }}\n\
         printf c2VjcmV0 | kf_write {target} 0600 \"$(id -un):$(id -gn)\"\n",
        prelude = apply_prelude(&Hashing {
            index: dir.path().join("index").display().to_string(),
            full: false,
        }),
        seen = seen.display(),
        target = target.display(),
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
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "600");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
}

/// A host that answers the facts script, then drops (its connection resets) before the
/// apply script: as a host dying in the middle of a converge.
struct DroppingShell {
    calls: std::sync::atomic::AtomicUsize,
}

impl Transport for DroppingShell {
    async fn exec_root(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return LocalShell.exec_root(command, stdin, timeout).await;
        }
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset").into())
    }

    async fn upload_file(
        &self,
        local: &Path,
        remote_path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        LocalShell
            .upload_file(local, remote_path, mode, timeout)
            .await
    }

    async fn exec_root_with_file(
        &self,
        command: &str,
        local: &Path,
        timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        LocalShell
            .exec_root_with_file(command, local, timeout)
            .await
    }
}

/// A host that drops during converge fails the run with its name and the tasks that were
/// being applied.
#[tokio::test]
async fn a_host_that_drops_is_named_with_the_tasks_it_was_applying() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);
    let dropping = DroppingShell {
        calls: Default::default(),
    };
    let options = options(dir.path(), Mode::Apply, false);
    let err = run_host(&dropping, &p, &options, &Default::default(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("local: apply (task 'config', 'binary', 'init'): connection reset"),
        "{err}"
    );
}

/// `kf_wait`'s limit is seconds, not tries: a probe that takes 2 s is tried twice within a
/// 3 s limit (counting tries, it was tried 3 times and took 9 s).
#[test]
fn a_wait_gives_up_after_its_seconds_however_long_each_try_takes() {
    let dir = tempfile::tempdir().unwrap();
    let tries = dir.path().join("tries");
    let script = format!(
        "{prelude}kf_wait 3 'echo x >> {tries}; sleep 2; false' && echo ready || echo gave-up",
        prelude = apply_prelude(&Hashing {
            index: dir.path().join("index").display().to_string(),
            full: false,
        }),
        tries = tries.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "gave-up");
    let count = std::fs::read_to_string(&tries).unwrap().lines().count();
    assert_eq!(count, 2);
}
