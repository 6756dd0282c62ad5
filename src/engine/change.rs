//! What a resource would do to reach its desired state, as a typed value: apply scripts and
//! reports match on the kind, and the human summary is only its rendering.

use std::fmt;

use super::object_record::GoneObject;

/// One planned change of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `file /etc/x`, `service etcd-member.service`, ...
    pub resource: String,
    pub kind: ChangeKind,
    /// Unified diff for non-secret text content.
    pub diff: Option<String>,
}

impl Change {
    /// Plain words: `create (mode 0644)`, `content`, `restart (... changed)`.
    pub fn summary(&self) -> String {
        self.kind.to_string()
    }
}

/// The kinds of change the engine plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A missing file or directory is created with this mode.
    Create {
        mode: u32,
    },
    /// Something of another type (`found`) stands where a `wanted` belongs.
    Replace {
        found: String,
        wanted: &'static str,
    },
    /// A file's content differs; secret content is never shown.
    Content {
        secret: bool,
    },
    Mode {
        from: u32,
        to: u32,
    },
    Owner {
        from: String,
        to: String,
    },
    /// A binary is streamed from the control machine (`from`: the short sha256 on the host).
    Upload {
        from: Option<String>,
        to: String,
    },
    /// A symbolic link is (re)pointed.
    Link {
        target: String,
    },
    Enable,
    /// A unit that is not running is started (`was`: its state).
    Start {
        was: String,
    },
    Restart(RestartReason),
    /// A guarded command runs because its guard is not met.
    Run {
        reason: String,
    },
    /// An image is imported into containerd from its tarball.
    Import {
        reason: String,
    },
    /// A value (etcd key) or API object that does not exist yet.
    ValueCreate,
    /// A value or API object that differs from the desired one.
    ValueUpdate,
    /// A route is missing or goes through another gateway.
    Route {
        from: Option<String>,
        to: String,
    },
    /// A kernel setting under /proc/sys has another value.
    Sysctl {
        from: String,
        to: String,
    },
    /// A readiness wait that is not satisfied yet: apply polls until it is.
    Wait {
        what: String,
    },
    /// The record of applied API objects is rewritten: `added` objects are applied that
    /// it does not hold yet; `gone` ones it holds are no longer applied, and are deleted
    /// when `prune`, else only named (they stay in the cluster).
    Record {
        added: usize,
        gone: Vec<GoneObject>,
        prune: bool,
    },
}

/// Why a running service is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartReason {
    /// Resources of the tasks that notify it changed in this run.
    InputsChanged(Vec<String>),
    /// An earlier run changed its inputs and stopped before restarting it.
    Pending,
    /// Its unit file changed on disk after systemd loaded it.
    UnitChanged(String),
    /// Its running process still executes a binary that was replaced or deleted on disk.
    BinaryReplaced(String),
    /// Units it depends on, on any host, were (re)started earlier in this run.
    UnitsRestarted(Vec<String>),
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeKind::Create { mode } => write!(f, "create (mode {mode:04o})"),
            ChangeKind::Replace { found, wanted } => write!(f, "replace {found} with {wanted}"),
            ChangeKind::Content { secret: false } => f.write_str("content"),
            ChangeKind::Content { secret: true } => f.write_str("content (secret, not shown)"),
            ChangeKind::Mode { from, to } => write!(f, "mode {from:04o} -> {to:04o}"),
            ChangeKind::Owner { from, to } => write!(f, "owner {from} -> {to}"),
            ChangeKind::Upload { from: None, to } => write!(f, "upload (sha256 {to})"),
            ChangeKind::Upload {
                from: Some(from),
                to,
            } => {
                write!(f, "upload (sha256 {from} -> {to})")
            }
            ChangeKind::Link { target } => write!(f, "link -> {target}"),
            ChangeKind::Enable => f.write_str("enable"),
            ChangeKind::Start { was } => write!(f, "start (now {was})"),
            ChangeKind::Restart(RestartReason::InputsChanged(inputs)) => {
                write!(f, "restart ({} changed)", inputs.join(", "))
            }
            ChangeKind::Restart(RestartReason::Pending) => {
                f.write_str("restart (left pending by an interrupted run)")
            }
            ChangeKind::Restart(RestartReason::UnitChanged(unit)) => {
                write!(
                    f,
                    "restart ({unit} changed on disk since systemd loaded it)"
                )
            }
            ChangeKind::Restart(RestartReason::UnitsRestarted(units)) => {
                write!(f, "restart ({} (re)started)", units.join(", "))
            }
            ChangeKind::Restart(RestartReason::BinaryReplaced(binary)) => {
                write!(f, "restart (the running process uses a replaced {binary})")
            }
            ChangeKind::Run { reason } => write!(f, "run ({reason})"),
            ChangeKind::Import { reason } => write!(f, "import ({reason})"),
            ChangeKind::Route { from: None, to } => write!(f, "add route {to}"),
            ChangeKind::Route {
                from: Some(from),
                to,
            } => {
                write!(f, "route '{from}' -> {to}")
            }
            ChangeKind::Sysctl { from, to } => write!(f, "value {from} -> {to}"),
            ChangeKind::ValueCreate => f.write_str("create"),
            ChangeKind::ValueUpdate => f.write_str("update"),
            ChangeKind::Wait { what } => write!(f, "wait ({what})"),
            ChangeKind::Record { added, gone, prune } => {
                let mut parts = Vec::new();
                if *added > 0 {
                    parts.push(format!("{added} object(s) to record"));
                }
                if !gone.is_empty() {
                    let names: Vec<&str> = gone.iter().map(|g| g.label.as_str()).collect();
                    parts.push(format!(
                        "no longer rendered: {} ({})",
                        names.join(", "),
                        if *prune {
                            "deleted from the cluster"
                        } else {
                            "kept in the cluster and forgotten: the scenario does not prune_objects"
                        }
                    ));
                }
                if parts.is_empty() {
                    parts.push("rewrite".into());
                }
                write!(f, "record: {}", parts.join("; "))
            }
        }
    }
}

impl ChangeKind {
    /// Whether the change starts a service's process (a start or a restart).
    pub fn starts(&self) -> bool {
        matches!(self, ChangeKind::Start { .. } | ChangeKind::Restart(_))
    }

    /// Whether the change alters what a process reads (a service's restart input): new
    /// content, a new binary or image, a link, a value; not a mode, an owner or a state.
    pub fn alters_content(&self) -> bool {
        matches!(
            self,
            ChangeKind::Create { .. }
                | ChangeKind::Replace { .. }
                | ChangeKind::Content { .. }
                | ChangeKind::Upload { .. }
                | ChangeKind::Link { .. }
                | ChangeKind::Run { .. }
                | ChangeKind::Import { .. }
                | ChangeKind::ValueCreate
                | ChangeKind::ValueUpdate
        )
    }

    /// The word a per-kind count in a report uses.
    pub fn tally(&self) -> &'static str {
        match self {
            ChangeKind::Create { .. } | ChangeKind::ValueCreate => "create",
            ChangeKind::Replace { .. } => "replace",
            ChangeKind::Content { .. } | ChangeKind::ValueUpdate => "update",
            ChangeKind::Mode { .. } => "mode",
            ChangeKind::Owner { .. } => "owner",
            ChangeKind::Upload { .. } => "upload",
            ChangeKind::Link { .. } => "link",
            ChangeKind::Enable => "enable",
            ChangeKind::Start { .. } => "start",
            ChangeKind::Restart(_) => "restart",
            ChangeKind::Run { .. } => "run",
            ChangeKind::Import { .. } => "import",
            ChangeKind::Wait { .. } => "wait",
            ChangeKind::Route { .. } => "route",
            ChangeKind::Sysctl { .. } => "sysctl",
            ChangeKind::Record {
                prune: true, gone, ..
            } if !gone.is_empty() => "prune",
            ChangeKind::Record { .. } => "record",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_plain_words() {
        let cases = [
            (ChangeKind::Create { mode: 0o644 }, "create (mode 0644)"),
            (
                ChangeKind::Replace {
                    found: "link".into(),
                    wanted: "a file",
                },
                "replace link with a file",
            ),
            (
                ChangeKind::Content { secret: true },
                "content (secret, not shown)",
            ),
            (
                ChangeKind::Mode {
                    from: 0o600,
                    to: 0o644,
                },
                "mode 0600 -> 0644",
            ),
            (
                ChangeKind::Upload {
                    from: Some("aaaa".into()),
                    to: "bbbb".into(),
                },
                "upload (sha256 aaaa -> bbbb)",
            ),
            (
                ChangeKind::Restart(RestartReason::InputsChanged(vec![
                    "/etc/a".into(),
                    "/opt/bin/b".into(),
                ])),
                "restart (/etc/a, /opt/bin/b changed)",
            ),
            (
                ChangeKind::Start {
                    was: "inactive".into(),
                },
                "start (now inactive)",
            ),
        ];
        for (kind, text) in cases {
            assert_eq!(kind.to_string(), text);
        }
    }
}
