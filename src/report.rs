//! Progress output and run reports: the one place kubeforge prints, so secrets are redacted
//! everywhere and CI logs (no terminal) lose nothing that a spinner would have shown.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

/// Replaces private keys (PEM blocks) and secret values (`token`, `*key-data`, `password`)
/// with placeholders, so logs and reports can be shared.
pub fn redact(text: &str) -> String {
    redact_secret_values(&redact_private_keys(text))
}

fn redact_private_keys(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let skip = start + BEGIN.len() + label_end + 5;
        if !label.contains("PRIVATE KEY") || label.contains('\n') {
            out.push_str(&rest[..skip]);
            rest = &rest[skip..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str("<redacted private key>");
        let end_marker = format!("-----END {label}-----");
        // A truncated block (no END line) is redacted up to the end: better too much than a key.
        rest = match rest[skip..].find(&end_marker) {
            Some(end) => &rest[skip + end + end_marker.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Key names (case-insensitive suffixes) whose values are secrets. `key-data` covers
/// kubeconfig's base64 `client-key-data`, which the PEM check cannot see.
const SECRET_KEYS: [&str; 3] = ["token", "key-data", "password"];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Redacts `key: value`, `key=value` and `"key": "value"` for the keys in [`SECRET_KEYS`].
fn redact_secret_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    // Byte ranges of values to replace, in order and non-overlapping.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for key in SECRET_KEYS {
        for (pos, _) in lower.match_indices(key) {
            if let Some(range) = value_after_key(bytes, pos + key.len()) {
                ranges.push(range);
            }
        }
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in ranges {
        if start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The byte range of the value following a key that ends at `i`, if a separator follows it.
fn value_after_key(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let skip_blanks = |mut i: usize| {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        i
    };
    if i < b.len() && is_word_byte(b[i]) {
        return None; // e.g. `tokens`, `token_ttl`: a different key
    }
    if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
        i += 1;
    }
    i = skip_blanks(i);
    if i >= b.len() || (b[i] != b':' && b[i] != b'=') {
        return None;
    }
    i = skip_blanks(i + 1);
    let quote = b.get(i).copied().filter(|&q| q == b'"' || q == b'\'');
    let start = if quote.is_some() { i + 1 } else { i };
    let len = match quote {
        Some(q) => b[start..].iter().position(|&c| c == q || c == b'\n'),
        None => b[start..]
            .iter()
            .position(|&c| c.is_ascii_whitespace() || b",;}]\"'&".contains(&c)),
    }
    .unwrap_or(b.len() - start);
    (len > 0).then_some((start, start + len))
}

/// Where plain lines go: stderr in real runs, a buffer in tests.
type PlainSink = Mutex<Box<dyn Write + Send>>;

enum Output {
    /// Spinners for running activities, log lines printed above them.
    Terminal(MultiProgress),
    /// One timestamped line per event, for CI logs.
    Plain(PlainSink),
}

struct Inner {
    verbose: bool,
    output: Output,
    /// `None` once a write failed (reported once), so a full disk does not spam the console.
    log_file: Mutex<Option<(PathBuf, File)>>,
}

/// The one way kubeforge prints progress; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terminal = matches!(self.inner.output, Output::Terminal(_));
        f.debug_struct("Logger")
            .field("verbose", &self.inner.verbose)
            .field("terminal", &terminal)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Logger {
    /// Spinners on a terminal, plain timestamped lines otherwise; every line also goes to
    /// `log_file` (appended) if given.
    pub fn new(verbose: bool, log_file: Option<PathBuf>) -> Logger {
        let output = if std::io::stderr().is_terminal() {
            Output::Terminal(MultiProgress::new())
        } else {
            Output::Plain(Mutex::new(Box::new(std::io::stderr())))
        };
        Logger::with_output(verbose, log_file, output)
    }

    fn with_output(verbose: bool, log_file: Option<PathBuf>, output: Output) -> Logger {
        let logger = Logger {
            inner: Arc::new(Inner {
                verbose,
                output,
                log_file: Mutex::new(None),
            }),
        };
        if let Some(path) = log_file {
            let opened = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
            match opened {
                Ok(file) => *lock(&logger.inner.log_file) = Some((path, file)),
                Err(e) => logger.emit(&format!(
                    "warning: cannot open log file {}: {e}; logging to the console only",
                    path.display()
                )),
            }
        }
        logger
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        self.line(msg.as_ref(), true);
    }

    /// Detail printed only with `--verbose`, but always kept in the log file.
    pub fn verbose(&self, msg: impl AsRef<str>) {
        self.line(msg.as_ref(), self.inner.verbose);
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        self.line(&format!("warning: {}", msg.as_ref()), true);
    }

    pub fn error(&self, msg: impl AsRef<str>) {
        self.line(&format!("error: {}", msg.as_ref()), true);
    }

    /// Starts a named piece of work; finish it with [`Activity::finish`].
    pub fn activity(&self, label: impl Into<String>) -> Activity {
        let label = redact(&label.into());
        let bar = match &self.inner.output {
            Output::Terminal(multi) => {
                let style = ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style)
                        .with_prefix(label.clone()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                self.to_file(&format!("{label} ..."));
                Some(bar)
            }
            Output::Plain(_) => {
                self.line(&format!("{label} ..."), true);
                None
            }
        };
        Activity {
            logger: self.clone(),
            label,
            started: Instant::now(),
            bar,
            finished: false,
        }
    }

    fn line(&self, msg: &str, show: bool) {
        let msg = redact(msg);
        self.to_file(&msg);
        if show {
            self.emit(&msg);
        }
    }

    /// Prints an already redacted message on the console.
    fn emit(&self, msg: &str) {
        match &self.inner.output {
            Output::Terminal(multi) => {
                if multi.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
            Output::Plain(sink) => {
                let text = stamp(msg, "%H:%M:%S%.3f");
                // stderr failing leaves nowhere to report it.
                let _ = lock(sink).write_all(text.as_bytes());
            }
        }
    }

    fn to_file(&self, msg: &str) {
        let mut guard = lock(&self.inner.log_file);
        let Some((path, file)) = guard.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(stamp(msg, "%Y-%m-%d %H:%M:%S%.3f").as_bytes()) {
            let warning = format!(
                "warning: writing log file {}: {e}; logging to the console only",
                path.display()
            );
            *guard = None;
            drop(guard);
            self.emit(&warning);
        }
    }
}

/// Prefixes every line of `msg` with the local time, one output line per input line.
fn stamp(msg: &str, format: &str) -> String {
    let now = chrono::Local::now().format(format).to_string();
    let mut out = String::new();
    for line in msg.split('\n') {
        out.push_str(&format!("{now} {line}\n"));
    }
    out
}

/// A running piece of work shown as a spinner (terminal) or start/finish lines (plain).
pub struct Activity {
    logger: Logger,
    label: String,
    started: Instant,
    bar: Option<ProgressBar>,
    finished: bool,
}

impl Activity {
    /// Updates the spinner text; in plain mode, the message is printed as a line.
    pub fn set_message(&self, msg: impl AsRef<str>) {
        let msg = redact(msg.as_ref());
        match &self.bar {
            Some(bar) => {
                self.logger.to_file(&format!("{}: {msg}", self.label));
                bar.set_message(msg);
            }
            None => self.logger.line(&format!("{}: {msg}", self.label), true),
        }
    }

    /// Ends the activity, printing "label: outcome (1.2s)".
    pub fn finish(mut self, outcome: &str) {
        self.complete(outcome);
    }

    fn complete(&mut self, outcome: &str) {
        self.finished = true;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Output::Terminal(multi) = &self.logger.inner.output {
                multi.remove(&bar);
            }
        }
        let secs = self.started.elapsed().as_secs_f64();
        self.logger
            .info(format!("{}: {outcome} ({secs:.1}s)", self.label));
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if !self.finished {
            self.complete("interrupted");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: serializing JUnit report: {source}")]
    Serialize {
        path: PathBuf,
        source: quick_junit::SerializeError,
    },
}

/// The outcome of one scenario run, written as one JUnit test suite.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub scenario: String,
    pub cases: Vec<CaseReport>,
    pub properties: Vec<(String, String)>,
}

/// One step or verification of a run.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// e.g. "create", "converge", "verify: etcd cluster healthy".
    pub name: String,
    /// e.g. "kubeforge.default.step" or "kubeforge.default.verify".
    pub classname: String,
    pub seconds: f64,
    pub outcome: CaseOutcome,
    /// Captured output (JUnit system-out); redacted when written.
    pub output: String,
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaseOutcome {
    Passed,
    /// `message` names the host and task that failed; `detail` has the full output.
    Failed {
        message: String,
        detail: String,
    },
    Skipped {
        reason: String,
    },
}

impl RunReport {
    pub fn new(scenario: impl Into<String>) -> RunReport {
        RunReport {
            scenario: scenario.into(),
            cases: Vec::new(),
            properties: Vec::new(),
        }
    }

    pub fn push(&mut self, case: CaseReport) {
        self.cases.push(case);
    }

    /// True when no case failed (skipped cases do not fail a run).
    pub fn passed(&self) -> bool {
        self.count(|o| matches!(o, CaseOutcome::Failed { .. })) == 0
    }

    /// Exactly "N passed, N failed, N skipped".
    pub fn summary_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.count(|o| matches!(o, CaseOutcome::Passed)),
            self.count(|o| matches!(o, CaseOutcome::Failed { .. })),
            self.count(|o| matches!(o, CaseOutcome::Skipped { .. })),
        )
    }

    fn count(&self, pred: impl Fn(&CaseOutcome) -> bool) -> usize {
        self.cases.iter().filter(|c| pred(&c.outcome)).count()
    }

    fn to_junit(&self) -> Report {
        let mut suite = TestSuite::new(self.scenario.as_str());
        suite.add_properties(self.properties.iter().map(redacted_property));
        let mut total = 0.0;
        for case in &self.cases {
            let status = match &case.outcome {
                CaseOutcome::Passed => TestCaseStatus::success(),
                CaseOutcome::Failed { message, detail } => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(redact(message))
                        .set_description(redact(detail));
                    s
                }
                CaseOutcome::Skipped { reason } => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(redact(reason));
                    s
                }
            };
            let mut tc = TestCase::new(case.name.as_str(), status);
            tc.set_classname(case.classname.as_str())
                .set_time(Duration::try_from_secs_f64(case.seconds).unwrap_or_default())
                .add_properties(case.properties.iter().map(redacted_property));
            if !case.output.is_empty() {
                tc.set_system_out(redact(&case.output));
            }
            total += case.seconds;
            suite.add_test_case(tc);
        }
        suite.set_time(Duration::try_from_secs_f64(total).unwrap_or_default());
        let mut report = Report::new("kubeforge");
        report.add_test_suite(suite);
        report
    }

    /// Writes the JUnit XML atomically (temporary file, then rename), creating the directory.
    pub fn write_junit(&self, path: &Path) -> Result<(), ReportError> {
        let io = |action, source| ReportError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let xml = self
            .to_junit()
            .to_string()
            .map_err(|source| ReportError::Serialize {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("creating report directory", e))?;
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(xml.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp); // best effort; the error below is what matters
            return Err(io("writing JUnit report", e));
        }
        Ok(())
    }
}

fn redacted_property((name, value): &(String, String)) -> Property {
    Property::new(name.as_str(), redact(value))
}

/// The end-of-run table: one row per case (name, outcome, seconds), then the summary line.
fn summary_table(report: &RunReport) -> Vec<String> {
    let width = report.cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut lines = vec![format!("scenario {}:", report.scenario)];
    for case in &report.cases {
        let (outcome, note) = match &case.outcome {
            CaseOutcome::Passed => ("passed", String::new()),
            CaseOutcome::Failed { message, .. } => ("FAILED", format!("  {message}")),
            CaseOutcome::Skipped { reason } => ("skipped", format!("  {reason}")),
        };
        lines.push(format!(
            "  {:<width$}  {outcome:<7} {:>7.1}s{note}",
            case.name, case.seconds
        ));
    }
    lines.push(report.summary_line());
    lines
}

/// Prints the end-of-run table and summary line through the logger (so it is redacted too).
pub fn print_summary(logger: &Logger, report: &RunReport) {
    for line in summary_table(report) {
        logger.info(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBsecretsecret\nAoGBAKEY\n-----END EC PRIVATE KEY-----";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----";

    #[test]
    fn redact_removes_private_keys_but_keeps_certificates() {
        let text = format!("before\n{KEY}\nmiddle\n{CERT}\nafter");
        let out = redact(&text);
        assert_eq!(
            out,
            format!("before\n<redacted private key>\nmiddle\n{CERT}\nafter")
        );
        let pkcs8 = "x -----BEGIN PRIVATE KEY-----\nABC\n-----END PRIVATE KEY----- y";
        assert_eq!(redact(pkcs8), "x <redacted private key> y");
    }

    #[test]
    fn redact_truncated_private_key_to_the_end() {
        let out = redact("key: -----BEGIN RSA PRIVATE KEY-----\nMIIEsecret");
        assert_eq!(out, "key: <redacted private key>");
    }

    #[test]
    fn redact_token_forms() {
        assert_eq!(redact("token: abc.def123"), "token: <redacted>");
        assert_eq!(
            redact("  token:abc\nnext: 1"),
            "  token:<redacted>\nnext: 1"
        );
        assert_eq!(redact("url?token=s3cr3t&x=1"), "url?token=<redacted>&x=1");
        assert_eq!(
            redact(r#"{"token": "s3cr3t", "a": 1}"#),
            r#"{"token": "<redacted>", "a": 1}"#
        );
        assert_eq!(
            redact("bootstrapToken = 'x y'"),
            "bootstrapToken = '<redacted>'"
        );
        assert_eq!(
            redact("    client-key-data: LS0tLS1CRUdJTg=="),
            "    client-key-data: <redacted>"
        );
        assert_eq!(redact("TOKEN=abc more"), "TOKEN=<redacted> more");
    }

    #[test]
    fn redact_leaves_other_text_alone() {
        for text in [
            "tokens: 5",
            "token_ttl: 24h",
            "token:\n  nested: 1",
            "the token is rotated",
            "ünïcode token",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    /// A clonable in-memory stderr for plain-mode tests.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&lock(&self.0))
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn plain_logger(verbose: bool, log_file: Option<PathBuf>) -> (Logger, Buffer) {
        let buf = Buffer::default();
        let output = Output::Plain(Mutex::new(Box::new(buf.clone())));
        (Logger::with_output(verbose, log_file, output), buf)
    }

    /// Strips and checks the `HH:MM:SS.mmm ` prefix of a plain line.
    fn message(line: &str) -> &str {
        let (ts, msg) = line.split_at(13);
        let b = ts.as_bytes();
        assert!(
            b[2] == b':' && b[5] == b':' && b[8] == b'.' && b[12] == b' ',
            "bad timestamp in {line:?}"
        );
        msg
    }

    #[test]
    fn plain_lines_are_timestamped_prefixed_and_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("logs/run.log");
        let (logger, buf) = plain_logger(false, Some(log.clone()));
        logger.info("hello");
        logger.verbose("hidden detail");
        logger.warn("careful token=abc");
        logger.error(format!("boom\n{KEY}"));
        let console: Vec<String> = buf.lines().iter().map(|l| message(l).to_owned()).collect();
        assert_eq!(
            console,
            [
                "hello",
                "warning: careful token=<redacted>",
                "error: boom",
                "<redacted private key>"
            ]
        );
        let file = std::fs::read_to_string(&log).expect("log file");
        assert!(file.contains(" hidden detail\n"), "{file}");
        assert!(file.contains(" hello\n"));
        assert!(!file.contains("secret") && !file.contains("abc"), "{file}");
        assert_eq!(file.lines().count(), 5);
    }

    #[test]
    fn verbose_logger_prints_verbose_lines() {
        let (logger, buf) = plain_logger(true, None);
        logger.verbose("detail");
        assert_eq!(buf.lines().len(), 1);
        assert_eq!(message(&buf.lines()[0]), "detail");
    }

    #[test]
    fn activities_print_start_messages_and_outcome() {
        let (logger, buf) = plain_logger(false, None);
        let act = logger.activity("converge h1");
        act.set_message("task 3/9 token: xyz");
        act.finish("ok");
        drop(logger.activity("destroy"));
        let lines: Vec<String> = buf.lines().iter().map(|l| message(l).to_owned()).collect();
        assert_eq!(lines[0], "converge h1 ...");
        assert_eq!(lines[1], "converge h1: task 3/9 token: <redacted>");
        assert!(lines[2].starts_with("converge h1: ok (0.") && lines[2].ends_with("s)"));
        assert_eq!(lines[3], "destroy ...");
        assert!(
            lines[4].starts_with("destroy: interrupted ("),
            "{}",
            lines[4]
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn logger_is_send_sync_and_shared_between_clones() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Logger>();
        let (logger, buf) = plain_logger(false, None);
        let clone = logger.clone();
        std::thread::spawn(move || clone.info("from thread"))
            .join()
            .expect("thread");
        assert_eq!(message(&buf.lines()[0]), "from thread");
    }

    fn sample_report() -> RunReport {
        let mut report = RunReport::new("default");
        report
            .properties
            .push(("kubernetes".into(), "1.20.2".into()));
        report.push(CaseReport {
            name: "create".into(),
            classname: "kubeforge.default.step".into(),
            seconds: 2.5,
            outcome: CaseOutcome::Passed,
            output: format!("created 3 hosts\n{KEY}\n"),
            properties: vec![("hosts".into(), "3".into())],
        });
        report.push(CaseReport {
            name: "verify: etcd cluster healthy".into(),
            classname: "kubeforge.default.verify".into(),
            seconds: 1.25,
            outcome: CaseOutcome::Failed {
                message: "host cp1: task etcdctl endpoint health failed".into(),
                detail: "exit status 1 <stderr> token=abc".into(),
            },
            output: String::new(),
            properties: vec![],
        });
        report.push(CaseReport {
            name: "idempotence".into(),
            classname: "kubeforge.default.step".into(),
            seconds: 0.0,
            outcome: CaseOutcome::Skipped {
                reason: "converge failed".into(),
            },
            output: String::new(),
            properties: vec![],
        });
        report
    }

    #[test]
    fn junit_report_has_counts_cases_and_no_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports/nested/junit.xml");
        let report = sample_report();
        assert!(!report.passed());
        report.write_junit(&path).expect("write junit");
        let xml = std::fs::read_to_string(&path).expect("read junit");
        for needle in [
            r#"<testsuite name="default" tests="3" skipped="1" errors="0" failures="1" time="3.750">"#,
            r#"<testcase name="create" classname="kubeforge.default.step" time="2.500">"#,
            r#"<property name="hosts" value="3"/>"#,
            r#"<property name="kubernetes" value="1.20.2"/>"#,
            r#"<failure message="host cp1: task etcdctl endpoint health failed">exit status 1 &lt;stderr&gt; token=&lt;redacted&gt;</failure>"#,
            r#"<testcase name="verify: etcd cluster healthy" classname="kubeforge.default.verify""#,
            r#"<skipped message="converge failed"/>"#,
            "<system-out>created 3 hosts\n&lt;redacted private key&gt;\n</system-out>",
        ] {
            assert!(xml.contains(needle), "missing {needle:?} in\n{xml}");
        }
        assert!(
            !xml.contains("PRIVATE KEY") && !xml.contains("secret"),
            "{xml}"
        );
        // Only the final file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("junit.xml")]);
    }

    #[test]
    fn write_junit_error_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").expect("write");
        let path = blocker.join("junit.xml");
        let err = sample_report().write_junit(&path).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("creating report directory"), "{text}");
    }

    #[test]
    fn summary_counts_and_table() {
        let report = sample_report();
        assert_eq!(report.summary_line(), "1 passed, 1 failed, 1 skipped");
        let mut ok = RunReport::new("x");
        assert!(ok.passed());
        ok.push(CaseReport {
            outcome: CaseOutcome::Skipped { reason: "r".into() },
            ..report.cases[0].clone()
        });
        assert!(ok.passed());
        assert_eq!(ok.summary_line(), "0 passed, 0 failed, 1 skipped");

        let (logger, buf) = plain_logger(false, None);
        print_summary(&logger, &report);
        let lines: Vec<String> = buf.lines().iter().map(|l| message(l).to_owned()).collect();
        assert_eq!(
            lines,
            [
                "scenario default:",
                "  create                        passed      2.5s",
                "  verify: etcd cluster healthy  FAILED      1.2s  host cp1: task etcdctl endpoint health failed",
                "  idempotence                   skipped     0.0s  converge failed",
                "1 passed, 1 failed, 1 skipped",
            ]
        );
    }
}
