//! The control machine's Debian: `apt-get` that waits for another apt instead of failing
//! and retries once after refreshing its package lists, and apt's sources (deb822 and
//! one-line), read to find the mirror apt already uses, so image builds work wherever apt
//! does. Shared by the Podman host image and the xtask.

use std::path::PathBuf;

use crate::process::{CommandFailure, Program};
use crate::report::Logger;

/// Options of every apt-get run: quiet, yes to every question, and up to 10 minutes of
/// waiting for another apt (a parallel build, the machine's own updates) to release its lock.
pub const APT_GET_OPTIONS: [&str; 4] = ["-q", "-y", "-o", "DPkg::Lock::Timeout=600"];
/// No prompts and no change-log pager.
pub const APT_GET_ENV: [(&str, &str); 2] = [
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("APT_LISTCHANGES_FRONTEND", "none"),
];
/// Used when no source of apt names a mirror for the suite.
const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Runs `apt-get ARGS` through `run`; if that fails, tells `on_retry`, runs `apt-get
/// update` and tries once more: stale or missing package lists are the usual cause. `run`
/// gets the arguments without [`APT_GET_OPTIONS`], so callers can run apt-get their own
/// way (output captured, or appended to a build log).
pub fn apt_get_retrying<T, E>(
    args: &[&str],
    mut run: impl FnMut(&[&str]) -> Result<T, E>,
    on_retry: impl FnOnce(&E),
) -> Result<T, E> {
    match run(args) {
        Ok(out) => Ok(out),
        Err(first) => {
            on_retry(&first);
            run(&["update"])?;
            run(args)
        }
    }
}

/// `apt-get ARGS` on this machine, with [`APT_GET_OPTIONS`] and the retry of
/// [`apt_get_retrying`]; stdout on success. apt can run for minutes, so it runs on a
/// blocking thread.
pub async fn apt_get(args: &[&str], log: &Logger) -> Result<String, CommandFailure> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let log = log.clone();
    let work = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        apt_get_retrying(
            &args,
            |args| {
                let argv = [&APT_GET_OPTIONS[..], args].concat();
                Program::new("apt-get", &argv)
                    .env(&APT_GET_ENV)
                    .run_blocking()
            },
            |e| log.verbose(format!("{e}; refreshing the package lists and retrying")),
        )
    });
    match work.await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// One stanza of a deb822 `.sources` file: its fields in order, comment lines left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb822Stanza<'a> {
    pub fields: Vec<(&'a str, &'a str)>,
}

impl Deb822Stanza<'_> {
    /// The value of field `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// The whitespace-separated words of field `name` (`Types`, `Suites`, `URIs`...).
    pub fn words(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// Whether the stanza is enabled (no `Enabled: no`).
    pub fn enabled(&self) -> bool {
        self.get("Enabled")
            .is_none_or(|e| !e.eq_ignore_ascii_case("no"))
    }
}

/// The stanzas of a deb822 file (separated by blank lines).
pub fn deb822_stanzas(text: &str) -> Vec<Deb822Stanza<'_>> {
    text.split("\n\n")
        .map(|stanza| Deb822Stanza {
            fields: stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect(),
        })
        .filter(|s| !s.fields.is_empty())
        .collect()
}

/// One line of a one-line `sources.list`: `deb [opts] URI SUITE COMPONENTS...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneLineSource<'a> {
    /// `deb` or `deb-src`.
    pub kind: &'a str,
    /// `[key=value ...]` options, e.g. `signed-by`.
    pub options: Vec<(&'a str, &'a str)>,
    pub uri: &'a str,
    pub suite: &'a str,
    pub components: Vec<&'a str>,
}

/// The entries of a one-line sources file; comments and malformed lines are skipped.
pub fn one_line_sources(text: &str) -> Vec<OneLineSource<'_>> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let (kind, rest) = line.split_once(char::is_whitespace)?;
            if kind != "deb" && kind != "deb-src" {
                return None;
            }
            let mut rest = rest.trim_start();
            let mut options = Vec::new();
            if let Some(bracketed) = rest.strip_prefix('[') {
                let (inside, tail) = bracketed.split_once(']')?;
                options = inside
                    .split_whitespace()
                    .filter_map(|o| o.split_once('='))
                    .collect();
                rest = tail.trim_start();
            }
            let mut words = rest.split_whitespace();
            Some(OneLineSource {
                kind,
                options,
                uri: words.next()?,
                suite: words.next()?,
                components: words.collect(),
            })
        })
        .collect()
}

/// The Debian mirror the machine's apt uses for `suite` (component main), from
/// /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}, else
/// [`FALLBACK_MIRROR`].
pub fn mirror(suite: &str) -> String {
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        sources.push((false, text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let deb822 = path.extension().is_some_and(|e| e == "sources");
            let list = path.extension().is_some_and(|e| e == "list");
            if let (true, Ok(text)) = (deb822 || list, std::fs::read_to_string(&path)) {
                sources.push((deb822, text));
            }
        }
    }
    sources
        .iter()
        .find_map(|(deb822, text)| {
            if *deb822 {
                mirror_from_deb822(text, suite)
            } else {
                mirror_from_one_line(text, suite)
            }
        })
        .unwrap_or_else(|| FALLBACK_MIRROR.to_string())
}

/// A URI debootstrap can fetch from (not `cdrom:` and the like).
fn usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

/// First `deb` URI serving `suite` with component main, in deb822 (`.sources`) format.
fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    deb822_stanzas(text).iter().find_map(|stanza| {
        let serves = stanza.words("Types").contains(&"deb")
            && stanza.words("Suites").contains(&suite)
            && stanza.words("Components").contains(&"main");
        if !(stanza.enabled() && serves) {
            return None;
        }
        stanza
            .words("URIs")
            .into_iter()
            .find(|uri| usable_uri(uri))
            .map(str::to_string)
    })
}

/// First `deb` URI serving `suite` with component main, in one-line (`.list`) format.
fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    one_line_sources(text)
        .into_iter()
        .find(|s| {
            s.kind == "deb"
                && s.suite == suite
                && s.components.contains(&"main")
                && usable_uri(s.uri)
        })
        .map(|s| s.uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_picks_main_suite_not_security() {
        let text = "Types: deb\n\
                    # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                    URIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    \n\
                    Types: deb\n\
                    URIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n";
        assert_eq!(
            mirror_from_deb822(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_from_deb822(text, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_and_source_stanzas() {
        let text = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n\
                    Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n\n\
                    Types: deb\nURIs: cdrom:/media http://on.example/debian\nSuites: bookworm\nComponents: main contrib\n";
        assert_eq!(
            mirror_from_deb822(text, "bookworm").as_deref(),
            Some("http://on.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options_and_comments() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb http://sec.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_from_one_line(text, "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb http://x/debian bookworm contrib\n", "bookworm"),
            None
        );
    }

    #[test]
    fn mirror_comes_from_either_sources_format() {
        let deb822 = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        let one = "deb [arch=amd64] http://one.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_one_line(one, "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb http://x/debian trixie main\n", "bookworm"),
            None
        );
    }

    #[test]
    fn sources_parse_into_fields_and_entries() {
        let stanzas = deb822_stanzas(
            "Types: deb\n# c: x\nURIs: http://a\nEnabled: No\n\n\n\nTypes: deb-src\nSuites: s t\n",
        );
        assert_eq!(stanzas.len(), 2);
        assert_eq!(
            stanzas[0].fields,
            [("Types", "deb"), ("URIs", "http://a"), ("Enabled", "No")]
        );
        assert!(!stanzas[0].enabled());
        assert!(stanzas[1].enabled());
        assert_eq!(stanzas[1].get("suites"), Some("s t"));
        assert_eq!(stanzas[1].words("Suites"), ["s", "t"]);
        assert!(stanzas[1].words("URIs").is_empty());

        let entries = one_line_sources(
            "deb [signed-by=/k.gpg arch=amd64] http://m/debian bookworm main contrib # note\n\
             deb-src http://m/debian bookworm main\n\
             deb http://short\n\
             rpm http://m/fedora 39 main\n",
        );
        assert_eq!(
            entries,
            [
                OneLineSource {
                    kind: "deb",
                    options: vec![("signed-by", "/k.gpg"), ("arch", "amd64")],
                    uri: "http://m/debian",
                    suite: "bookworm",
                    components: vec!["main", "contrib"],
                },
                OneLineSource {
                    kind: "deb-src",
                    options: vec![],
                    uri: "http://m/debian",
                    suite: "bookworm",
                    components: vec!["main"],
                },
            ]
        );
    }

    #[test]
    fn apt_get_retries_once_after_an_update() {
        let mut calls = Vec::new();
        let mut retried = None;
        let result: Result<(), String> = apt_get_retrying(
            &["install", "pkg"],
            |args| {
                calls.push(args.join(" "));
                if calls.len() == 1 {
                    Err("stale lists".to_string())
                } else {
                    Ok(())
                }
            },
            |e| retried = Some(e.clone()),
        );
        assert_eq!(result, Ok(()));
        assert_eq!(calls, ["install pkg", "update", "install pkg"]);
        assert_eq!(retried.as_deref(), Some("stale lists"));

        let mut calls = 0;
        let result: Result<(), u32> = apt_get_retrying(
            &["install", "pkg"],
            |_| {
                calls += 1;
                Err(calls)
            },
            |_| {},
        );
        assert_eq!(
            result,
            Err(2),
            "a failed update is the error, nothing more runs"
        );
        let ok: Result<u32, ()> = apt_get_retrying(&["x"], |_| Ok(7), |_| panic!("no retry"));
        assert_eq!(ok, Ok(7));
    }
}
