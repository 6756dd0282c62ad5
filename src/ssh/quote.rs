//! Remote command lines: POSIX shell quoting, the `sudo` wrapping for root, and the short
//! form of a command that error messages show.

/// `command` as root: unchanged for root, else through `sudo -n sh -c`.
pub(super) fn as_root(user: &str, command: &str) -> String {
    if user == "root" {
        command.to_owned()
    } else {
        format!("sudo -n sh -c {}", shell_quote(command))
    }
}

/// First line of `command`, cut to 80 characters, for error messages.
pub(super) fn command_summary(command: &str) -> String {
    const MAX: usize = 80;
    let first = command.trim_start().lines().next().unwrap_or("");
    let mut summary: String = first.chars().take(MAX).collect();
    if first.chars().count() > MAX || command.trim().lines().nth(1).is_some() {
        summary.push_str(" ...");
    }
    summary
}

/// POSIX shell quoting: the result is one word that the shell reads back as `s` exactly.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::process::Command;

    pub(in crate::ssh) fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    pub(in crate::ssh) const TRICKY: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "''",
        "'\\''",
        "\"double\" $HOME `id` $(id) \\n \\",
        "*.rs ? [a-z] ~ # ; & | < > ( ) { }",
        "line1\nline2\n",
        "tab\there",
        "ünïcødé ✓",
        "-n",
        "a'b'c'",
    ];

    #[test]
    fn shell_quote_round_trips_through_sh() {
        assert_eq!(shell_quote("abc/d-e_f.g:1=2"), "abc/d-e_f.g:1=2");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        for s in TRICKY {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert!(out.status.success(), "{s:?}");
            assert_eq!(text(&out.stdout), *s);
        }
    }

    #[test]
    fn command_summary_keeps_first_line_short() {
        assert_eq!(command_summary("  echo hi"), "echo hi");
        assert_eq!(command_summary("set -e\nrm -rf x"), "set -e ...");
        let long = "x".repeat(200);
        assert_eq!(command_summary(&long), format!("{} ...", "x".repeat(80)));
    }
}
