//! The check runner against a scripted transport: retries until a window closes, keeps the
//! last error, never passes a failed command or empty output; a lookup moves a check to
//! the host it names and gives its command variables; a selection keeps matching names.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::engine::{ExecOutput, TransportError};

/// Answers each exec with the next scripted (status, stdout), repeating the last, and
/// records `host: command` of every exec.
#[derive(Clone)]
struct Scripted {
    answers: Arc<Mutex<Vec<(u32, &'static str)>>>,
    host: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn scripted(answers: Vec<(u32, &'static str)>) -> Scripted {
    Scripted {
        answers: Arc::new(Mutex::new(answers)),
        host: String::new(),
        seen: Arc::default(),
    }
}

impl Hosts for Scripted {
    type Session = Scripted;
    fn session(&self, host: &str) -> Result<Scripted, ConnectionError> {
        if host == "gone" {
            return Err(ConnectionError::UnknownHost {
                host: host.into(),
                known: "h".into(),
            });
        }
        Ok(Scripted {
            host: host.to_string(),
            ..self.clone()
        })
    }
    fn timeout_scale(&self) -> TimeoutScale {
        TimeoutScale::NORMAL
    }
}

impl Transport for Scripted {
    async fn exec_root(
        &self,
        command: &str,
        _stdin: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{}: {command}", self.host));
        let mut left = self.answers.lock().unwrap();
        let (status, out) = if left.len() > 1 {
            left.remove(0)
        } else {
            left[0]
        };
        Ok(ExecOutput {
            status,
            stdout: out.as_bytes().to_vec(),
            stderr: b"boom".to_vec(),
        })
    }

    async fn upload_file(
        &self,
        _local: &Path,
        _remote_path: &str,
        _mode: u32,
        _timeout: Duration,
    ) -> Result<(), TransportError> {
        unreachable!("checks do not upload")
    }

    async fn exec_root_with_file(
        &self,
        _command: &str,
        _local: &Path,
        _timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        unreachable!("checks do not stream files")
    }
}

fn check(expect: Expect, within: u64) -> Check {
    Check::on("h", "c", "true".into(), expect).within(within)
}

#[tokio::test]
async fn a_check_retries_until_it_passes_within_its_window() {
    let t = scripted(vec![(1, ""), (0, "wrong"), (0, "ok")]);
    let r = run_check(&t, check(Expect::Output("ok".into()), 5)).await;
    assert!(r.passed(), "{r:?}");
    assert!(
        r.seconds >= 0.9,
        "two pauses before the third try: {}",
        r.seconds
    );
}

#[tokio::test]
async fn a_failing_check_stops_at_its_window_with_the_last_error() {
    let t = scripted(vec![(0, "nope")]);
    let r = run_check(&t, check(Expect::Output("ok".into()), 1)).await;
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.detail, "expected output 'ok', got 'nope'");
    assert!(r.seconds < 2.0, "{}", r.seconds);
    let t = scripted(vec![(2, "half")]);
    let r = run_check(&t, check(Expect::Success, 0)).await;
    assert_eq!(r.detail, "exit 2: half\nboom");
}

#[tokio::test]
async fn empty_output_or_a_failed_command_never_passes() {
    let t = scripted(vec![(0, "")]);
    let r = run_check(&t, check(Expect::Output(String::new()), 0)).await;
    assert_eq!(r.verdict, Verdict::Failed, "empty output passed");
    let t = scripted(vec![(1, "ok")]);
    let r = run_check(&t, check(Expect::Output("ok".into()), 0)).await;
    assert_eq!(r.verdict, Verdict::Failed, "a failed command passed");
}

#[tokio::test]
async fn a_lookup_moves_the_check_and_fills_its_variables() {
    let t = scripted(vec![(0, "host=w2\ntarget=10.3.0.9"), (0, "ok")]);
    let mut c = check(Expect::Output("ok".into()), 0);
    c.lookup = Some(Lookup {
        host: "m1".into(),
        command: "find".into(),
    });
    c.command = "use $target".into();
    let r = run_check(&t, c).await;
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.check.host, "w2");
    assert_eq!(
        *t.seen.lock().unwrap(),
        ["m1: find", "w2: host=w2; target=10.3.0.9; use $target"]
    );
}

#[tokio::test]
async fn a_failed_lookup_fails_the_check_and_says_where() {
    let t = scripted(vec![(1, "pod web is not Running")]);
    let mut c = check(Expect::Output("ok".into()), 0);
    c.lookup = Some(Lookup {
        host: "m1".into(),
        command: "find".into(),
    });
    let r = run_check(&t, c).await;
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(
        r.detail,
        "lookup on m1 failed: exit 1: pod web is not Running boom"
    );
    let t = scripted(vec![(0, "not a pair")]);
    let mut c = check(Expect::Success, 0);
    c.lookup = Some(Lookup {
        host: "m1".into(),
        command: "find".into(),
    });
    let r = run_check(&t, c).await;
    assert!(
        r.detail.contains("unexpected output 'not a pair'"),
        "{}",
        r.detail
    );
    let r = run_check(&t, Check::on("gone", "c", "true".into(), Expect::Success)).await;
    assert!(r.detail.contains("unknown host 'gone'"), "{}", r.detail);
}

#[test]
fn a_selection_keeps_the_names_it_matches() {
    let s = Selection::new(&["guestbook".into(), "^etcd member".into()]).unwrap();
    assert!(s.wants("guestbook stores a message") && s.wants("etcd member count"));
    assert!(!s.wants("kubelet on etcd member"));
    assert!(Selection::default().wants("anything"));
    assert!(Selection::new(&["(".into()]).is_err());
}
