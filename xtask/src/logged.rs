//! What a build step says: progress lines on stderr, and commands run with their output
//! appended to the step's log file, a failure quoting the log's last lines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use kubeforge::process::command_line;

/// One progress line on stderr, prefixed so it stands out from cargo's output.
pub(crate) fn progress(line: &str) {
    eprintln!("artifacts: {line}");
}

fn display_command(cmd: &Command) -> String {
    command_line(std::iter::once(cmd.get_program()).chain(cmd.get_args()))
}

/// Run `cmd` with its output appended to `log`; a failure names the command and shows the tail.
pub(crate) fn run_logged(mut cmd: Command, log: &Path) -> Result<()> {
    let shown = display_command(&cmd);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    writeln!(file, "\n$ {shown}").with_context(|| format!("writing log {}", log.display()))?;
    let stderr = file
        .try_clone()
        .with_context(|| format!("opening log {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    if status.success() {
        return Ok(());
    }
    let tail = log_tail(log, 40).unwrap_or_else(|e| format!("(cannot read log: {e})"));
    bail!(
        "`{shown}` failed ({status}); last lines of {}:\n{tail}",
        log.display()
    )
}

fn log_tail(log: &Path, lines: usize) -> std::io::Result<String> {
    let mut file = File::open(log)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn failed_command_error_names_command_and_shows_log_tail() {
        let log =
            std::env::temp_dir().join(format!("kubeforge-artifacts-{}.log", std::process::id()));
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo first"]);
        run_logged(ok, &log).unwrap();
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
        let err = run_logged(failing, &log).unwrap_err().to_string();
        fs::remove_file(&log).unwrap();
        assert!(
            err.contains("`sh -c 'echo to-stdout; echo to-stderr >&2; exit 3'` failed"),
            "{err}"
        );
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("first\n"), "{err}");
        assert!(err.contains("to-stdout\nto-stderr"), "{err}");
    }
}
