//! Running programs on the control machine (podman, vagrant, virsh, apt-get, the user's
//! commands): one runner that captures their output, and one failure type that names the
//! command line, the exit status and the end of stderr, so every error says what ran.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};

use crate::ssh::shell_quote;

/// Lines of stderr a failure keeps: programs say what went wrong at the end.
const STDERR_TAIL_LINES: usize = 5;

/// A program that could not start or exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` {outcome}")]
pub struct CommandFailure {
    /// The command line, quoted so it can be pasted into a shell.
    pub command: String,
    pub outcome: Outcome,
}

/// How a [`CommandFailure`] ended.
#[derive(Debug)]
pub enum Outcome {
    NotStarted(io::Error),
    /// The last lines of stderr, joined with ` | `.
    Exited {
        status: ExitStatus,
        stderr_tail: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotStarted(e) => write!(f, "could not start: {e}"),
            Outcome::Exited {
                status,
                stderr_tail,
            } => write!(f, "exited with {status}: {stderr_tail}"),
        }
    }
}

impl CommandFailure {
    /// The end of the program's stderr (empty if it never started), for callers that
    /// recognise a particular failure.
    pub fn stderr_tail(&self) -> &str {
        match &self.outcome {
            Outcome::NotStarted(_) => "",
            Outcome::Exited { stderr_tail, .. } => stderr_tail,
        }
    }
}

/// A program with its arguments and additions to the environment; stdin is closed.
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    program: &'a str,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    dir: Option<&'a Path>,
}

impl<'a> Program<'a> {
    pub fn new(program: &'a str, args: &'a [&'a str]) -> Program<'a> {
        Program {
            program,
            args,
            env: &[],
            dir: None,
        }
    }

    /// Variables set on top of the inherited environment.
    pub fn env(self, env: &'a [(&'a str, &'a str)]) -> Program<'a> {
        Program { env, ..self }
    }

    pub fn current_dir(self, dir: &'a Path) -> Program<'a> {
        Program {
            dir: Some(dir),
            ..self
        }
    }

    /// Runs to completion; stdout on success. Dropping the future kills the program.
    pub async fn run(&self) -> Result<String, CommandFailure> {
        self.check(self.command().output().await)
    }

    /// [`run`](Self::run) for synchronous callers (the xtask, apt-get on a blocking thread).
    pub fn run_blocking(&self) -> Result<String, CommandFailure> {
        let mut command = std::process::Command::new(self.program);
        command
            .args(self.args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null());
        if let Some(dir) = self.dir {
            command.current_dir(dir);
        }
        self.check(command.output())
    }

    /// The program as a tokio command (stdin closed, killed when dropped), for callers
    /// that connect pipes themselves; judge what it did with [`check`](Self::check).
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.program);
        command
            .args(self.args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = self.dir {
            command.current_dir(dir);
        }
        command
    }

    /// Stdout of a finished run, or the failure naming this program.
    pub fn check(&self, output: io::Result<Output>) -> Result<String, CommandFailure> {
        let output = output.map_err(|e| self.failure(Outcome::NotStarted(e)))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.trim().lines().collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
        Err(self.failure(Outcome::Exited {
            status: output.status,
            stderr_tail: tail.join(" | "),
        }))
    }

    /// This program's failure, e.g. when a pipe's `spawn` failed.
    pub fn failure(&self, outcome: Outcome) -> CommandFailure {
        CommandFailure {
            command: self.command_line(),
            outcome,
        }
    }

    pub fn command_line(&self) -> String {
        command_line(
            std::iter::once(OsStr::new(self.program)).chain(self.args.iter().map(OsStr::new)),
        )
    }
}

/// `program args...` with stdin closed; stdout on success.
pub async fn run(program: &str, args: &[&str]) -> Result<String, CommandFailure> {
    Program::new(program, args).run().await
}

/// A program and its arguments as one shell-quoted line, for messages and logs.
pub fn command_line<'s>(words: impl IntoIterator<Item = &'s OsStr>) -> String {
    words
        .into_iter()
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where `name` would be run from: the first executable file of that name on PATH or in
/// the sbin and bin directories (root's tools are often missing from a user's PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    find_in(dirs, name)
}

fn find_in(dirs: impl IntoIterator<Item = PathBuf>, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process runs with effective uid 0 (installing packages needs it).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_uid(&s))
        == Some(0)
}

/// Effective uid from the text of /proc/self/status (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn success_gives_stdout_with_env_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = Program::new("sh", &["-c", "echo \"$GREETING\"; pwd"])
            .env(&[("GREETING", "hello there")])
            .current_dir(dir.path())
            .run()
            .await
            .unwrap();
        let expected = format!(
            "hello there\n{}\n",
            dir.path().canonicalize().unwrap().display()
        );
        assert_eq!(out, expected);
        let program = Program::new("sh", &["-c", "echo \"$GREETING\"; pwd"])
            .env(&[("GREETING", "hello there")])
            .current_dir(dir.path());
        assert_eq!(program.run_blocking().unwrap(), expected);
        // stdin is closed, so a program reading it sees EOF at once.
        assert_eq!(run("cat", &[]).await.unwrap(), "");
    }

    #[tokio::test]
    async fn failure_names_the_quoted_command_status_and_stderr_tail() {
        let script = "echo out; for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3";
        let err = run("sh", &["-c", script]).await.unwrap_err();
        assert_eq!(err.command, format!("sh -c '{script}'"));
        assert_eq!(err.stderr_tail(), "line3 | line4 | line5 | line6 | line7");
        assert_eq!(
            err.to_string(),
            format!(
                "`sh -c '{script}'` exited with exit status: 3: line3 | line4 | line5 | line6 | line7"
            )
        );
        let blocking = Program::new("sh", &["-c", script])
            .run_blocking()
            .unwrap_err();
        assert_eq!(blocking.to_string(), err.to_string());

        let err = run("/nonexistent/program", &["a b"]).await.unwrap_err();
        assert!(matches!(err.outcome, Outcome::NotStarted(_)), "{err}");
        assert_eq!(err.stderr_tail(), "");
        assert!(
            err.to_string()
                .starts_with("`/nonexistent/program 'a b'` could not start: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_piped_command_is_judged_like_a_plain_run() {
        let program = Program::new("sh", &["-c", "printf piped; echo oops >&2; exit 1"]);
        let output = program
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await;
        let err = program.check(output).unwrap_err();
        assert_eq!(err.stderr_tail(), "oops");
        let ok = Program::new("printf", &["piped"]);
        let output = ok.command().stdout(Stdio::piped()).output().await;
        assert_eq!(ok.check(output).unwrap(), "piped");
    }

    #[test]
    fn programs_are_found_only_when_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (plain, tool) = (dir.path().join("plain"), dir.path().join("tool"));
        std::fs::write(&plain, "data").unwrap();
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        let dirs = || [dir.path().join("missing"), dir.path().to_path_buf()];
        assert_eq!(find_in(dirs(), "tool"), Some(tool));
        assert_eq!(find_in(dirs(), "plain"), None);
        assert_eq!(find_in(dirs(), "subdir"), None);
        assert!(find_program("sh").is_some());
        assert_eq!(find_program("no-such-program-anywhere"), None);
    }

    #[test]
    fn effective_uid_is_second_uid_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }
}
