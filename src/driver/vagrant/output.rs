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
}
