//! The facts script run for real by the local `sh`: the hash index (trusted while a file's
//! stat is as recorded, never for a hand edit, not recorded while racy, bypassed by full
//! hashing), several plans in one round trip, API objects in one kubectl call.

use std::path::{Path, PathBuf};

use super::super::hash_index::RACY_SECONDS;
use super::super::tests::{LocalShell, options, plan, run, setup};
use super::super::*;

/// The index entry of `path` under the test's index.
fn entry(dir: &Path, path: &Path) -> std::path::PathBuf {
    PathBuf::from(format!("{}/index{}", dir.display(), path.display()))
}

fn summaries(report: &HostReport) -> Vec<String> {
    report
        .tasks
        .iter()
        .flat_map(|t| &t.changes)
        .map(|c| format!("{}: {}", c.resource, c.summary()))
        .collect()
}

async fn check(dir: &Path, plan: &HostPlan, full: bool) -> HostReport {
    let options = options(dir, Mode::Check, full);
    run_host(&LocalShell, plan, &options, &Default::default(), None)
        .await
        .expect("check")
}

fn sh(script: &str) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Converge records what it wrote; an entry whose stat matches is believed (a wrong sha256
/// in it shows as a change), full hashing reads the file instead and drops the entry it
/// could not record again (the file is too recent).
#[tokio::test]
async fn the_index_is_trusted_while_the_stat_matches_and_full_hashing_reads_the_files() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);
    run(dir.path(), &p, Mode::Apply).await;
    let tool = entry(dir.path(), &dir.path().join("opt/bin/tool"));
    let recorded = std::fs::read_to_string(&tool).expect("converge recorded the upload");
    let (key, sha) = recorded.trim().rsplit_once(' ').unwrap();
    assert_eq!(sha, crate::files::sha256_hex(&std::fs::read(&bin).unwrap()));
    assert_eq!(key.split(' ').count(), 5, "size mtime ctime inode device");
    assert_eq!(check(dir.path(), &p, false).await.change_count(), 0);

    std::fs::write(&tool, format!("{key} {}\n", "0".repeat(64))).unwrap();
    let believed = summaries(&check(dir.path(), &p, false).await);
    assert_eq!(believed.len(), 1, "{believed:?}");
    assert!(believed[0].starts_with("binary "), "{believed:?}");
    assert_eq!(check(dir.path(), &p, true).await.change_count(), 0);
    assert!(!tool.exists(), "a racy entry is dropped, not kept wrong");
    assert_eq!(check(dir.path(), &p, false).await.change_count(), 0);
}

/// A hand edit that keeps the size and puts the mtime back still changes the ctime; a
/// binary replaced by another file (`cp` and `mv`) has another inode.
#[tokio::test]
async fn an_edit_that_keeps_size_and_mtime_or_a_replaced_binary_is_found() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);
    run(dir.path(), &p, Mode::Apply).await;
    let conf = dir.path().join("etc/app/app.conf");
    assert!(entry(dir.path(), &conf).exists());
    let tool = dir.path().join("opt/bin/tool");
    sh(&format!(
        "c={c}; touch -r $c $c.ref && printf 'name=app\\nsetting=9\\n' > $c && touch -r $c.ref $c && rm $c.ref\n\
         t={t}; head -c 300000 /dev/zero > $t.x && touch -r $t $t.x && mv $t.x $t && chmod 755 $t",
        c = conf.display(),
        t = tool.display()
    ));
    let found = summaries(&check(dir.path(), &p, false).await);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("app.conf"), "{found:?}");
    assert!(
        found[1].contains("binary") && found[1].contains("tool"),
        "{found:?}"
    );
}

/// A hash the facts script computed is recorded only once the file's ctime is older than
/// the racy window: a change within the same timestamp tick would leave its stat as it was.
#[tokio::test]
async fn a_hash_is_recorded_only_once_the_file_is_older_than_the_racy_window() {
    let (dir, bin) = setup();
    let p = plan(dir.path(), "1", &bin);
    run(dir.path(), &p, Mode::Apply).await;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let conf = entry(dir.path(), &dir.path().join("etc/app/app.conf"));
    assert_eq!(check(dir.path(), &p, false).await.change_count(), 0);
    assert!(!conf.exists(), "recorded a hash of a file changed just now");
    tokio::time::sleep(Duration::from_secs(u64::from(RACY_SECONDS) + 1)).await;
    assert_eq!(check(dir.path(), &p, false).await.change_count(), 0);
    let recorded = std::fs::read_to_string(&conf).expect("recorded once old enough");
    assert!(
        recorded
            .trim()
            .ends_with(&crate::files::sha256_hex(b"name=app\nsetting=1\n")),
        "{recorded}"
    );
    use std::os::unix::fs::PermissionsExt;
    let index = std::fs::metadata(dir.path().join("index")).unwrap();
    assert_eq!(index.permissions().mode() & 0o777, 0o700, "root-only");
}

/// Check mode gathers the facts of several plans of a host in one round trip; each plan's
/// diff is what it would be on its own.
#[tokio::test]
async fn several_plans_of_a_host_are_observed_in_one_round_trip() {
    let (dir, bin) = setup();
    let whole = plan(dir.path(), "1", &bin);
    let split = |tasks: std::ops::Range<usize>| HostPlan {
        host: "local".into(),
        tasks: whole.tasks[tasks].to_vec(),
    };
    let (first, second) = (split(0..1), split(1..3));
    let hashing = options(dir.path(), Mode::Check, false).hashing;
    let facts = gather(&LocalShell, "local", &[&first, &second], &hashing)
        .await
        .unwrap();
    assert_eq!(facts.len(), 2);
    let options = options(dir.path(), Mode::Check, false);
    let mut trips = 0;
    let mut changes = Vec::new();
    for (plan, facts) in [&first, &second].into_iter().zip(facts) {
        let report = run_host(
            &LocalShell,
            plan,
            &options,
            &Default::default(),
            Some(facts),
        )
        .await
        .unwrap();
        trips += report.cost.round_trips;
        changes.extend(summaries(&report));
    }
    assert_eq!(trips, 1);
    assert_eq!(
        changes,
        summaries(&run(dir.path(), &whole, Mode::Check).await)
    );
}

/// A `kubectl` stand-in that logs its calls, knows the objects stored as files named after
/// them, and, like kubectl, fails a whole `get` when a kind is unknown (here: Widget).
fn fake_kubectl(dir: &Path) -> String {
    let script = r#"#!/bin/sh
echo "$*" >> DIR/calls
[ "$1" = get ] || exit 2
input=$(cat)
case $input in *'"Widget"'*) exit 1 ;; esac
printf '{"kind":"List","items":['
sep=
printf '%s\n' "$input" | sed 's/.*"metadata":{"name":"\([^"]*\)".*/\1/' | while read -r name; do
  if [ -f DIR/store/$name ]; then printf '%s' "$sep"; cat DIR/store/$name; sep=,; fi
done
printf ']}'
"#;
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let path = dir.join("kubectl");
    std::fs::write(&path, script.replace("DIR", &dir.display().to_string())).unwrap();
    format!("sh {}", path.display())
}

fn object(kind: &str, name: &str) -> ApiObject {
    let api = if kind == "Widget" {
        "example.com/v1"
    } else {
        "v1"
    };
    let yaml = format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: default\n"
    );
    ApiObject::from_manifest("test.yaml", &yaml)
        .unwrap()
        .remove(0)
}

async fn observe(kubectl: &str, objects: &[ApiObject]) -> Vec<Option<serde_json::Value>> {
    let plan = HostPlan {
        host: "local".into(),
        tasks: vec![Task {
            name: "objects".into(),
            role: "test",
            resources: objects
                .iter()
                .map(|o| Resource::ApiObject {
                    kubectl: kubectl.to_string(),
                    object: o.clone(),
                })
                .collect(),
        }],
    };
    let hashing = Hashing::installer(false);
    let facts = gather(&LocalShell, "local", &[&plan], &hashing)
        .await
        .unwrap()
        .remove(0);
    (0..objects.len())
        .map(|i| {
            let live = facts.observed.get(&i).and_then(|o| o.get("live"));
            live.map(|j| serde_json::from_str(j).unwrap())
        })
        .collect()
}

/// Objects are read in one kubectl call and each gets its own live object; when the call
/// fails (an unknown kind), each is read on its own, so only that one reads as absent.
#[tokio::test]
async fn objects_are_read_in_one_call_and_one_by_one_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = fake_kubectl(dir.path());
    let stored = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"default","uid":"u-a"}}"#;
    std::fs::write(dir.path().join("store/a"), stored).unwrap();
    let (a, b, w) = (
        object("Service", "a"),
        object("Service", "b"),
        object("Widget", "w"),
    );
    let calls = || {
        std::fs::read_to_string(dir.path().join("calls"))
            .unwrap()
            .lines()
            .count()
    };

    let seen = observe(&kubectl, &[b.clone(), a.clone()]).await;
    assert_eq!(calls(), 1);
    assert_eq!(seen[0], None);
    assert_eq!(seen[1].as_ref().unwrap()["metadata"]["uid"], "u-a");

    let seen = observe(&kubectl, &[a, w, b]).await;
    assert_eq!(calls(), 1 + 1 + 3, "the group, then each object");
    assert_eq!(seen[0].as_ref().unwrap()["metadata"]["uid"], "u-a");
    assert_eq!((&seen[1], &seen[2]), (&None, &None));
}

/// The facts script's CPU time comes back as what its shell's `times` printed (dash's and
/// bash's formats), the shell's and its children's.
#[test]
fn the_facts_cpu_time_is_what_times_printed() {
    let dash = "KF 0 type none\nKF-TIMES\n0m0.010000s 0m0.000000s\n0m1.090000s 0m0.200000s\n";
    assert!((facts::cpu_seconds(dash) - 1.3).abs() < 1e-9);
    let bash = "KF-TIMES\n0m0.000s 0m0.006s\n1m0.100s 0m0.007s\nKF 1 type dir\n";
    assert!((facts::cpu_seconds(bash) - 60.113).abs() < 1e-9);
    assert_eq!(facts::cpu_seconds("KF 0 type none\n"), 0.0);
}

/// A `ctr` stand-in keeping imported images as files (`example.com/<stem>:1`, the stem the
/// first word of the tarball fed on stdin, its digest the tarball's sha256), logging its calls.
fn fake_ctr(dir: &Path) -> String {
    let script = r#"#!/bin/sh
echo "$*" >> DIR/calls
case "$1 $2" in
"images ls") echo "REF TYPE DIGEST SIZE PLATFORMS LABELS"; cat DIR/store/* 2>/dev/null ;;
"images import") tarball=$(cat); n=${tarball%% *}
  echo "example.com/$n:1 application/vnd.docker sha256:$(printf %s "$tarball" | sha256sum | cut -c1-12) 1KiB linux/amd64 -" > DIR/store/$n ;;
*) exit 2 ;;
esac
"#;
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let path = dir.join("ctr");
    std::fs::write(&path, script.replace("DIR", &dir.display().to_string())).unwrap();
    format!("sh {}", path.display())
}

/// Every image of a host is read from one `ctr images ls`; an image is imported while it is
/// missing from containerd or came from another tarball, and not once it is as recorded.
#[tokio::test]
async fn images_are_read_from_one_listing_and_imported_until_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ctr = fake_ctr(dir.path());
    let image = |stem: &str, content: &str| {
        let tarball = dir.path().join(format!("{stem}.tar"));
        std::fs::write(&tarball, content).unwrap();
        Resource::Image {
            ctr: ctr.clone(),
            image: Image {
                reference: format!("example.com/{stem}:1"),
                local: tarball.clone(),
                sha256: crate::files::sha256_hex(content.as_bytes()),
                marker: dir
                    .path()
                    .join(format!("{stem}.imported"))
                    .display()
                    .to_string(),
            },
        }
    };
    let plan = |b: &str| HostPlan {
        host: "local".into(),
        tasks: vec![Task {
            name: "images".into(),
            role: "test",
            resources: vec![image("a", "a tarball"), image("b", b)],
        }],
    };
    let listings = || {
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
        calls.lines().filter(|l| *l == "images ls").count()
    };
    let before = summaries(&run(dir.path(), &plan("b tarball"), Mode::Check).await);
    assert_eq!(
        before,
        [
            "image example.com/a:1: import (not in containerd)",
            "image example.com/b:1: import (not in containerd)"
        ]
    );
    assert_eq!(listings(), 1);
    run(dir.path(), &plan("b tarball"), Mode::Apply).await;
    assert_eq!(
        check(dir.path(), &plan("b tarball"), false)
            .await
            .change_count(),
        0
    );

    std::fs::remove_file(dir.path().join("store/a")).unwrap();
    let after = summaries(&check(dir.path(), &plan("b tarball, rebuilt"), false).await);
    assert_eq!(
        after,
        [
            "image example.com/a:1: import (not in containerd)",
            "image example.com/b:1: import (another tarball or digest than the one imported)"
        ]
    );
}

/// An image is imported where the plan has it: after what comes before it (a runtime
/// started) and before what follows (a service that runs it), with its tarball fed on stdin.
#[tokio::test]
async fn an_image_is_streamed_into_its_import_between_the_resources_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctr = fake_ctr(dir.path());
    let tarball = dir.path().join("c.tar");
    std::fs::write(&tarball, "c tarball").unwrap();
    let calls = dir.path().join("calls");
    let note = |word: &str| Resource::Command {
        name: word.into(),
        command: format!("echo {word} >> {}", calls.display()),
        guard: Guard::Creates(dir.path().join(word).display().to_string()),
    };
    let plan = HostPlan {
        host: "local".into(),
        tasks: vec![Task {
            name: "images".into(),
            role: "test",
            resources: vec![
                note("before"),
                Resource::Image {
                    ctr,
                    image: Image {
                        reference: "example.com/c:1".into(),
                        local: tarball,
                        sha256: crate::files::sha256_hex(b"c tarball"),
                        marker: dir.path().join("c.imported").display().to_string(),
                    },
                },
                note("after"),
            ],
        }],
    };
    let report = run(dir.path(), &plan, Mode::Apply).await;
    assert_eq!(report.cost.round_trips, 4, "facts, script, import, script");
    let log = std::fs::read_to_string(&calls).unwrap();
    let order: Vec<&str> = log
        .lines()
        .filter(|l| ["before", "images import -", "after"].contains(l))
        .collect();
    assert_eq!(order, ["before", "images import -", "after"]);
    assert!(dir.path().join("store/c").exists());
    let again = summaries(&check(dir.path(), &plan, false).await);
    assert!(again.iter().all(|s| !s.starts_with("image ")), "{again:?}");
}

/// Every unit of a host is read by one `systemctl list-unit-files` and one `show`, whose
/// blocks come in the order the units were named, a missing unit's too: each unit gets its
/// own facts, whatever their number.
#[test]
fn units_are_read_by_two_systemctl_calls_and_each_gets_its_own_facts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let running = std::process::id();
    std::fs::write(
        dir.path().join("systemctl"),
        format!(
            "#!/bin/sh\necho \"$1\" >> {log}\ncase $1 in\n\
             list-unit-files) echo 'a.service enabled enabled'; echo 'c.service disabled enabled' ;;\n\
             show) printf 'MainPID={running}\\nActiveState=active\\nNeedDaemonReload=no\\n\\n\
             MainPID=0\\nActiveState=inactive\\nNeedDaemonReload=no\\n\\n\
             MainPID=0\\nActiveState=inactive\\nNeedDaemonReload=yes\\n\\n' ;;\nesac\n",
            log = log.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}/systemctl", dir.path().display()));
    let probes: Vec<facts::Probe> = ["a.service", "b.service", "c.service"]
        .map(|u| facts::Probe::Service { unit: u.into() })
        .into();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(facts::script(
            &probes,
            &options(dir.path(), Mode::Check, false).hashing,
        ))
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .output()
        .unwrap();
    let facts = facts::parse(&String::from_utf8_lossy(&out.stdout), &probes);
    let seen = |id: usize, field: &str| facts.get(&id).and_then(|o| o.get(field)).cloned();
    let exe = std::fs::read_link(format!("/proc/{running}/exe")).unwrap();
    assert_eq!(seen(0, "enabled").as_deref(), Some("enabled"));
    assert_eq!(seen(0, "active").as_deref(), Some("active"));
    assert_eq!(seen(0, "exe"), Some(exe.display().to_string()));
    assert_eq!(seen(1, "enabled"), None);
    assert_eq!(seen(1, "active").as_deref(), Some("inactive"));
    assert_eq!(seen(1, "reload").as_deref(), Some("no"));
    assert_eq!(seen(2, "enabled").as_deref(), Some("disabled"));
    assert_eq!(seen(2, "reload").as_deref(), Some("yes"));
    assert_eq!(seen(2, "exe"), None);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls, "list-unit-files\nshow\n");
}
