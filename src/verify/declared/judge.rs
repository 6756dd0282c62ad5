//! How a declared check's output is judged: each kind's command prints what it saw in a
//! fixed shape, and the judge compares that with what the check expects. A failure always
//! says both: `expected <what the scenario asks>; seen <what the host said>`. Nothing
//! passes on empty output where output is judged, nor on a command that could not look.

use regex::Regex;

/// Marks the start of each HTTP response in an http check's output.
pub(super) const RESPONSE_MARK: &str = "@@kubeforge-response";
/// The last line of a pod check's output: the container's exit status.
pub(super) const EXIT_MARK: &str = "@@kubeforge-exit=";
/// The most of an output a result quotes.
const QUOTE_MAX: usize = 300;

/// What a declared check expects, by kind.
#[derive(Debug, Clone)]
pub enum Judge {
    /// A command's own exit status, stdout and stderr.
    Command {
        exit: u32,
        stdout: Option<Regex>,
        stderr: Option<Regex>,
    },
    /// A pod's exit status and output (its logs), after the [`EXIT_MARK`] line.
    Pod {
        exit: u32,
        stdout: Option<Regex>,
    },
    /// `absent`, or `present <octal mode>` then the content.
    File {
        exists: bool,
        mode: Option<u32>,
        contains: Option<Regex>,
    },
    /// `active=<state> enabled=<state>` from systemctl.
    Unit {
        active: Option<bool>,
        enabled: Option<bool>,
    },
    /// One response per request, each after a [`RESPONSE_MARK`] line.
    Http(Vec<Response>),
    Kubernetes(Kube),
}

/// What one HTTP request must get back.
#[derive(Debug, Clone)]
pub struct Response {
    pub path: String,
    pub status: u16,
    pub body: Option<Regex>,
}

/// A Kubernetes assertion on kubectl's output.
#[derive(Debug, Clone)]
pub enum Kube {
    /// `found=<kind/name>` or `found=none`.
    Exists(bool),
    /// The condition's status: `True`.
    Condition(String),
    Equals(String),
    Matches(Regex),
    /// `items` then a line per object (`name <Ready status>`); pods count when Ready.
    Count {
        count: u32,
        pods: bool,
    },
}

/// A check's output that does not meet its expectation: both, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}; seen {seen}")]
pub struct Unmet {
    pub expected: String,
    pub seen: String,
}

/// Up to [`QUOTE_MAX`] characters of `text`, quoted.
pub(super) fn quote(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTE_MAX).collect();
    if text.chars().count() > QUOTE_MAX {
        out.push_str("...");
    }
    format!("'{out}'")
}

impl Judge {
    /// What was seen, when the output meets the expectation.
    pub fn judge(&self, status: u32, stdout: &str, stderr: &str) -> Result<String, Unmet> {
        if let Judge::Command {
            exit,
            stdout: out,
            stderr: err,
        } = self
        {
            return command(*exit, out.as_ref(), err.as_ref(), status, stdout, stderr);
        }
        // The other kinds' commands exit 0 whenever they could look.
        if status != 0 {
            return Err(Unmet {
                expected: self.expected(),
                seen: format!(
                    "nothing: the check could not look (exit {status}): {} {}",
                    quote(stdout),
                    quote(stderr)
                ),
            });
        }
        let seen = match self {
            Judge::Command { .. } => unreachable!("judged above"),
            Judge::Pod { exit, stdout: out } => return pod(*exit, out.as_ref(), stdout),
            Judge::File {
                exists,
                mode,
                contains,
            } => file(*exists, *mode, contains.as_ref(), stdout),
            Judge::Unit { active, enabled } => unit(*active, *enabled, stdout),
            Judge::Http(responses) => return http(responses, stdout),
            Judge::Kubernetes(k) => kube(k, stdout),
        };
        seen.map_err(|seen| Unmet {
            expected: self.expected(),
            seen,
        })
    }

    /// The expectation in words.
    fn expected(&self) -> String {
        let pattern = |what: &str, re: &Option<Regex>| {
            re.as_ref()
                .map(|r| format!(", {what} matching /{r}/"))
                .unwrap_or_default()
        };
        match self {
            Judge::Command {
                exit,
                stdout,
                stderr,
            } => format!(
                "exit {exit}{}{}",
                pattern("stdout", stdout),
                pattern("stderr", stderr)
            ),
            Judge::Pod { exit, stdout } => {
                format!("the pod to exit {exit}{}", pattern("output", stdout))
            }
            Judge::File { exists: false, .. } => "no file".into(),
            Judge::File { mode, contains, .. } => format!(
                "a file{}{}",
                mode.map(|m| format!(" with mode {m:04o}"))
                    .unwrap_or_default(),
                pattern("content", contains)
            ),
            Judge::Unit { active, enabled } => {
                let state = |what: &str, want: &Option<bool>| match want {
                    Some(true) => Some(what.to_string()),
                    Some(false) => Some(format!("not {what}")),
                    None => None,
                };
                [state("active", active), state("enabled", enabled)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ")
            }
            Judge::Http(responses) => responses
                .iter()
                .map(|r| format!("GET {} -> {}{}", r.path, r.status, pattern("body", &r.body)))
                .collect::<Vec<_>>()
                .join(", then "),
            Judge::Kubernetes(Kube::Exists(true)) => "the object to exist".into(),
            Judge::Kubernetes(Kube::Exists(false)) => "no such object".into(),
            Judge::Kubernetes(Kube::Condition(c)) => format!("condition {c} True"),
            Judge::Kubernetes(Kube::Equals(v)) => quote(v),
            Judge::Kubernetes(Kube::Matches(r)) => format!("a value matching /{r}/"),
            Judge::Kubernetes(Kube::Count { count, pods }) => {
                format!("{count} {}", if *pods { "pods Ready" } else { "objects" })
            }
        }
    }
}

/// Whether `re` matches `text`; empty text never does (a pattern such as `.*` would).
fn matches(re: Option<&Regex>, text: &str) -> bool {
    re.is_none_or(|re| !text.is_empty() && re.is_match(text))
}

fn command(
    exit: u32,
    out_re: Option<&Regex>,
    err_re: Option<&Regex>,
    status: u32,
    stdout: &str,
    stderr: &str,
) -> Result<String, Unmet> {
    let seen = format!(
        "exit {status}, stdout {}, stderr {}",
        quote(stdout),
        quote(stderr)
    );
    if status == exit && matches(out_re, stdout) && matches(err_re, stderr) {
        return Ok(seen);
    }
    let judge = Judge::Command {
        exit,
        stdout: out_re.cloned(),
        stderr: err_re.cloned(),
    };
    Err(Unmet {
        expected: judge.expected(),
        seen,
    })
}

fn pod(exit: u32, out_re: Option<&Regex>, stdout: &str) -> Result<String, Unmet> {
    let expected = Judge::Pod {
        exit,
        stdout: out_re.cloned(),
    }
    .expected();
    let Some((logs, code)) = stdout.rsplit_once(EXIT_MARK) else {
        return Err(Unmet {
            expected,
            seen: format!("no exit status: {}", quote(stdout)),
        });
    };
    let logs = logs.trim();
    let seen = format!("exit {}, output {}", code.trim(), quote(logs));
    if code.trim() == exit.to_string() && matches(out_re, logs) {
        Ok(seen)
    } else {
        Err(Unmet { expected, seen })
    }
}

fn file(
    exists: bool,
    mode: Option<u32>,
    contains: Option<&Regex>,
    out: &str,
) -> Result<String, String> {
    let (first, content) = out.split_once('\n').unwrap_or((out, ""));
    let seen_mode = match (first.split_once(' '), first) {
        (_, "absent") if !exists => return Ok("no file".into()),
        (_, "absent") => return Err("no file".into()),
        (Some(("present", m)), _) => u32::from_str_radix(m.trim(), 8).map_err(|_| quote(out))?,
        _ => return Err(format!("unexpected output {}", quote(out))),
    };
    let seen = format!("a file with mode {seen_mode:04o}");
    if !exists {
        return Err(seen);
    }
    if mode.is_some_and(|m| m != seen_mode) {
        return Err(seen);
    }
    if !matches(contains, content) {
        return Err(format!("{seen}, content {}", quote(content)));
    }
    Ok(seen)
}

fn unit(active: Option<bool>, enabled: Option<bool>, out: &str) -> Result<String, String> {
    let field = |key: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .filter(|v| !v.is_empty())
    };
    let (Some(is_active), Some(is_enabled)) = (field("active"), field("enabled")) else {
        return Err(format!("unexpected output {}", quote(out)));
    };
    let seen = format!("{is_active}, {is_enabled}");
    let active_ok = active.is_none_or(|want| want == (is_active == "active"));
    let on = ["enabled", "enabled-runtime"].contains(&is_enabled);
    let enabled_ok = enabled.is_none_or(|want| want == on);
    if active_ok && enabled_ok {
        Ok(seen)
    } else {
        Err(seen)
    }
}

/// A response's status and body (after the headers; trimmed).
fn response(raw: &str) -> Option<(u16, &str)> {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let status = head
        .lines()
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    Some((status, body.trim()))
}

fn http(expected: &[Response], out: &str) -> Result<String, Unmet> {
    let answers: Vec<&str> = out.split(RESPONSE_MARK).skip(1).map(str::trim).collect();
    let mut seen = Vec::new();
    for (i, want) in expected.iter().enumerate() {
        let raw = answers.get(i).copied().unwrap_or_default();
        let pattern = want
            .body
            .as_ref()
            .map(|r| format!(", body matching /{r}/"))
            .unwrap_or_default();
        let expected = format!("GET {} -> {}{pattern}", want.path, want.status);
        let Some((status, body)) = response(raw) else {
            return Err(Unmet {
                expected,
                seen: format!("no HTTP answer: {}", quote(raw)),
            });
        };
        let got = format!("GET {} -> {status}, body {}", want.path, quote(body));
        if status != want.status || !matches(want.body.as_ref(), body) {
            return Err(Unmet {
                expected,
                seen: got,
            });
        }
        seen.push(got);
    }
    Ok(seen.join("; "))
}

fn kube(k: &Kube, out: &str) -> Result<String, String> {
    let ok = match k {
        Kube::Exists(want) => match out.strip_prefix("found=") {
            Some(found) if !found.is_empty() => *want == (found != "none"),
            _ => return Err(format!("unexpected output {}", quote(out))),
        },
        Kube::Condition(c) if out.is_empty() => return Err(format!("no condition {c}")),
        Kube::Condition(_) => out == "True",
        Kube::Equals(v) => !out.is_empty() && out == v,
        Kube::Matches(re) => matches(Some(re), out),
        Kube::Count { count, pods } => {
            let Some(items) = out.strip_prefix("items") else {
                return Err(format!("unexpected output {}", quote(out)));
            };
            let lines = items.lines().filter(|l| !l.trim().is_empty());
            let n = lines
                .filter(|l| !pods || l.split_whitespace().nth(1) == Some("True"))
                .count();
            let seen = format!("{n} {}", if *pods { "pods Ready" } else { "objects" });
            return if n == *count as usize {
                Ok(seen)
            } else {
                Err(seen)
            };
        }
    };
    let seen = if out.is_empty() {
        "no value".to_string()
    } else {
        quote(out)
    };
    if ok { Ok(seen) } else { Err(seen) }
}
