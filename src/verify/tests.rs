//! The check runner against a scripted transport: retries until a window closes, keeps the
//! last error, never passes a failed command or empty output.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::engine::{ExecOutput, TransportError};

/// Answers each exec with the next scripted (status, stdout), repeating the last.
struct Scripted(Mutex<Vec<(u32, &'static str)>>);

impl Transport for Scripted {
    async fn exec_root(
        &self,
        _command: &str,
        _stdin: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<ExecOutput, TransportError> {
        let mut left = self.0.lock().unwrap();
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
}

fn check(expect: Expect, within: u64) -> Check {
    Check::on("h", "c", "true".into(), expect).within(within)
}

#[tokio::test]
async fn a_check_retries_until_it_passes_within_its_window() {
    let t = Scripted(Mutex::new(vec![(1, ""), (0, "wrong"), (0, "ok")]));
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
    let t = Scripted(Mutex::new(vec![(0, "nope")]));
    let r = run_check(&t, check(Expect::Output("ok".into()), 1)).await;
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.detail, "expected output 'ok', got 'nope'");
    assert!(r.seconds < 2.0, "{}", r.seconds);
    let t = Scripted(Mutex::new(vec![(2, "half")]));
    let r = run_check(&t, check(Expect::Success, 0)).await;
    assert_eq!(r.detail, "exit 2: half\nboom");
}

#[tokio::test]
async fn empty_output_or_a_failed_command_never_passes() {
    let t = Scripted(Mutex::new(vec![(0, "")]));
    let r = run_check(&t, check(Expect::Output(String::new()), 0)).await;
    assert_eq!(r.verdict, Verdict::Failed, "empty output passed");
    let t = Scripted(Mutex::new(vec![(1, "ok")]));
    let r = run_check(&t, check(Expect::Output("ok".into()), 0)).await;
    assert_eq!(r.verdict, Verdict::Failed, "a failed command passed");
}
