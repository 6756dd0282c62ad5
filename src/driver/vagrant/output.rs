//! What vagrant prints: its `--machine-readable` lines (turned into progress lines and error
//! tails) and `vagrant ssh-config` (turned into each VM's SSH endpoint).

use std::collections::BTreeMap;

use super::{CreatedVm, VagrantError, VagrantHostSpec};

/// A VM as `vagrant ssh-config` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfigEntry {
    pub host: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
}

/// One line of `vagrant --machine-readable`: `timestamp,target,type,data...`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MachineLine {
    pub(super) target: String,
    pub(super) kind: String,
    pub(super) data: Vec<String>,
}

/// One machine-readable line, unescaped; `None` for anything else vagrant prints.
pub(super) fn parse_machine_line(line: &str) -> Option<MachineLine> {
    let mut fields = line.split(',');
    let stamp = fields.next()?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let target = fields.next()?.to_string();
    let kind = fields.next()?.to_string();
    let data = fields
        .map(|f| {
            f.replace("%!(VAGRANT_COMMA)", ",")
                .replace("\\n", "\n")
                .replace("\\r", "")
        })
        .collect();
    Some(MachineLine { target, kind, data })
}

/// The progress line worth showing for a machine-readable line, if any: Vagrant's
/// `==> host: ...` headlines and errors, not its thousands of detail lines.
pub(super) fn progress_line(line: &MachineLine) -> Option<String> {
    match (line.kind.as_str(), line.data.first().map(String::as_str)) {
        ("ui", Some("info")) | ("ui", Some("output")) => {
            let text = line.data.get(1)?.trim();
            let first = text.lines().next()?.trim();
            // `==> host:  -- Memory: 512M` and the like are details, not progress.
            let detail = first
                .split_once(": ")
                .is_some_and(|(_, rest)| rest.starts_with(" --"));
            (first.starts_with("==>") && !detail).then(|| first.to_string())
        }
        ("ui", Some("error")) | ("error-exit", _) => {
            let text = line.data.last()?.trim();
            Some(format!("vagrant error: {}", text.lines().next()?.trim()))
        }
        _ => None,
    }
}

/// Why a vagrant command failed, read from its part of the log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct VagrantFailure {
    /// Vagrant's error message (its `error-exit`, else the last lines it printed), without
    /// Ruby backtrace lines, which bury the message and say nothing to a user.
    pub(super) message: String,
    /// Vagrant calls the error its own bug ("Please report this as a bug"): an exception
    /// inside vagrant or a plugin, such as the races of machines brought up in parallel,
    /// not a refusal of the configuration.
    pub(super) internal: bool,
}

/// The failure of the last command in a vagrant log, which holds every command of an
/// instance after a `$ command` header line.
pub(super) fn failure_of_last_command(log: &str) -> VagrantFailure {
    let last = match log.rfind("\n$ ") {
        Some(at) => log[at + 1..]
            .split_once('\n')
            .map_or("", |(_header, rest)| rest),
        None => log,
    };
    let exit = last
        .lines()
        .filter_map(parse_machine_line)
        .filter(|m| m.kind == "error-exit")
        .filter_map(|m| m.data.last().cloned())
        .next_back();
    let text = match exit {
        Some(message) => message,
        None => {
            let mut tail: Vec<String> = last
                .lines()
                .rev()
                .filter_map(|l| match parse_machine_line(l) {
                    Some(m) if m.kind == "ui" => m.data.last().cloned(),
                    Some(_) => None,
                    None => Some(l.to_string()),
                })
                .filter(|l| !l.trim().is_empty() && !is_backtrace_line(l))
                .take(12)
                .collect();
            tail.reverse();
            tail.join("\n")
        }
    };
    let message: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !is_backtrace_line(l))
        .collect();
    let message = message.join("\n").trim().to_string();
    VagrantFailure {
        internal: message.contains("Please report this as a bug"),
        message,
    }
}

/// `/usr/share/.../warden.rb:48:in `call'`: one frame of a Ruby backtrace.
fn is_backtrace_line(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('/') && line.contains(".rb:") && line.contains(":in ")
}

/// Each VM's state from `vagrant status --machine-readable` (`running`, `shutoff`,
/// `paused`, `not_created`, ...), by VM name.
pub(super) fn vm_states(status: &str) -> BTreeMap<String, String> {
    status
        .lines()
        .filter_map(parse_machine_line)
        .filter(|m| m.kind == "state" && !m.target.is_empty())
        .filter_map(|m| Some((m.target, m.data.first()?.clone())))
        .collect()
}

/// Blocks of `vagrant ssh-config`, by `Host`.
pub fn parse_ssh_config(text: &str) -> BTreeMap<String, SshConfigEntry> {
    let mut out = BTreeMap::new();
    let mut current: Option<SshConfigEntry> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "host" => {
                if let Some(e) = current.take() {
                    out.insert(e.host.clone(), e);
                }
                current = Some(SshConfigEntry {
                    host: value.to_string(),
                    hostname: String::new(),
                    port: 22,
                    user: String::new(),
                });
            }
            "hostname" => {
                if let Some(e) = current.as_mut() {
                    e.hostname = value.to_string();
                }
            }
            "port" => {
                if let (Some(e), Ok(p)) = (current.as_mut(), value.parse()) {
                    e.port = p;
                }
            }
            "user" => {
                if let Some(e) = current.as_mut() {
                    e.user = value.to_string();
                }
            }
            _ => {}
        }
    }
    if let Some(e) = current.take() {
        out.insert(e.host.clone(), e);
    }
    out
}

/// Each planned host with its SSH endpoint from `vagrant ssh-config` output.
pub fn vms_from_ssh_config(
    hosts: &[VagrantHostSpec],
    ssh_config: &str,
) -> Result<Vec<CreatedVm>, VagrantError> {
    let entries = parse_ssh_config(ssh_config);
    hosts
        .iter()
        .map(|h| {
            let entry = entries
                .get(&h.name)
                .ok_or_else(|| VagrantError::NoSshConfig {
                    host: h.name.clone(),
                })?;
            let ssh_address = entry
                .hostname
                .parse()
                .map_err(|_| VagrantError::SshHostName {
                    host: h.name.clone(),
                    hostname: entry.hostname.clone(),
                })?;
            Ok(CreatedVm {
                name: h.name.clone(),
                ip: h.ip,
                ssh_address,
                ssh_port: entry.port,
                user: entry.user.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_config_blocks_by_host() {
        let text = "Host etcd-01\n  HostName 192.168.121.14\n  User core\n  Port 22\n  \
                    IdentityFile /x/private_key\n  IdentitiesOnly yes\n\n\
                    Host etcd-02\n  HostName 127.0.0.1\n  User core\n  Port 2200\n";
        let entries = parse_ssh_config(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries["etcd-01"],
            SshConfigEntry {
                host: "etcd-01".into(),
                hostname: "192.168.121.14".into(),
                port: 22,
                user: "core".into(),
            }
        );
        assert_eq!(entries["etcd-02"].port, 2200);
        assert!(parse_ssh_config("").is_empty());
    }

    #[test]
    fn machine_readable_lines_unescape_and_filter() {
        let line = "1700000000,etcd-01,ui,info,==> etcd-01: Creating domain%!(VAGRANT_COMMA) please wait\\n";
        let m = parse_machine_line(line).expect("parsed");
        assert_eq!(m.target, "etcd-01");
        assert_eq!(m.kind, "ui");
        assert_eq!(
            progress_line(&m).as_deref(),
            Some("==> etcd-01: Creating domain, please wait")
        );
        for text in [
            "    etcd-01: -- Memory: 512M",
            "==> etcd-01:  -- Memory:            512M",
        ] {
            let detail =
                parse_machine_line(&format!("1700000000,etcd-01,ui,info,{text}")).expect("parsed");
            assert_eq!(progress_line(&detail), None, "{text}");
        }
        let state = parse_machine_line("1700000000,etcd-01,state,running").expect("parsed");
        assert_eq!(progress_line(&state), None);
        assert_eq!(parse_machine_line("Bringing machine up"), None);
        let err = parse_machine_line("1700000000,,error-exit,Vagrant::Errors::X,Box not found\\n")
            .expect("parsed");
        assert_eq!(
            progress_line(&err).as_deref(),
            Some("vagrant error: Box not found")
        );
    }

    #[test]
    fn a_failure_is_the_last_commands_error_without_its_backtrace() {
        let log = "\n$ vagrant up --provider=libvirt --machine-readable\n\
1700000000,,error-exit,Vagrant::Errors::BoxNotFound,an older failure\n\
\n$ vagrant up --provider=libvirt --machine-readable\n\
1700000001,a1,ui,error,==> a1: An error occurred. The error will be shown after all tasks complete.\n\
1700000001,,error-exit,Vagrant::Errors::BatchMultiError,An error occurred while executing multiple actions in parallel.\\n\\nAn unexpected error occurred when executing the action on the\\n'a1' machine. Please report this as a bug:\\n\\nuninitialized constant Util::Boom\\n\\n/usr/lib/ruby/vagrant/action/builtin/config_validate.rb:25:in `call'\\n/usr/lib/ruby/vagrant/action/warden.rb:48:in `call'\n";
        let failure = failure_of_last_command(log);
        assert!(failure.internal);
        assert!(
            failure
                .message
                .ends_with("Please report this as a bug:\n\nuninitialized constant Util::Boom"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("older failure"));
        assert!(!failure.message.contains("warden.rb"));

        let refused = failure_of_last_command(
            "\n$ vagrant up\n1700000000,,error-exit,Vagrant::Errors::BoxNotFound,The box 'x' could not be found\n",
        );
        assert_eq!(
            refused,
            VagrantFailure {
                message: "The box 'x' could not be found".into(),
                internal: false
            }
        );

        let no_exit = failure_of_last_command(
            "\n$ vagrant up\n1700000000,a1,ui,info,==> a1: Creating domain\nruby: killed\n/usr/lib/x.rb:3:in `y'\n",
        );
        assert_eq!(no_exit.message, "==> a1: Creating domain\nruby: killed");
        assert!(!no_exit.internal);
    }

    #[test]
    fn vm_states_by_name_from_vagrant_status() {
        let status = "1700000000,etcd-01,metadata,provider,libvirt\n\
                      1700000000,etcd-01,provider-name,libvirt\n\
                      1700000000,etcd-01,state,shutoff\n\
                      1700000000,etcd-01,state-human-short,shutoff\n\
                      1700000000,etcd-02,state,running\n\
                      1700000000,,ui,info,Current machine states:\n";
        let states = vm_states(status);
        assert_eq!(states.len(), 2);
        assert_eq!(states["etcd-01"], "shutoff");
        assert_eq!(states["etcd-02"], "running");
    }
}
