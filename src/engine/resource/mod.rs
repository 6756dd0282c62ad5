//! Desired state of one thing on a host, and how it observes, diffs and applies itself.
//!
//! Observing is a [`Probe`] that the facts script batches with the others of its kind, and
//! applying a shell fragment, so that the engine can observe every resource of a host in
//! one facts script and change them in one apply script: a host costs a few SSH round
//! trips per run, whatever the number of tasks. Files kubeforge writes are recorded in the
//! host's hash index (`kf_seen`, see [`super::hash_index`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

pub use super::api_object::ApiObject;
use super::change::{Change, ChangeKind, RestartReason};
use super::facts::{Probe, Want};
use super::image::Image;
use super::object_record::ObjectRecord;
use super::route::Hop;
use crate::files::sha256_hex;
use crate::ssh::shell_quote;

/// Files larger than this are compared by checksum only (no text diff).
pub(super) const MAX_DIFF_BYTES: u64 = 256 * 1024;

/// Owner and permissions of a managed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perms {
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl Perms {
    pub fn root(mode: u32) -> Perms {
        Perms {
            mode,
            owner: "root".into(),
            group: "root".into(),
        }
    }
}

/// One managed thing on a host.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A directory with the given permissions.
    Directory { path: String, perms: Perms },
    /// A file whose whole content kubeforge owns. `secret` contents are never diffed or
    /// logged; `origin` names the template it was rendered from, if any.
    File {
        path: String,
        content: Vec<u8>,
        perms: Perms,
        secret: bool,
        origin: Option<String>,
    },
    /// A (large) file copied from the control machine, compared by checksum, streamed.
    Upload {
        path: String,
        local: PathBuf,
        sha256: String,
        perms: Perms,
    },
    /// A symbolic link.
    Symlink { path: String, target: String },
    /// A systemd unit that must be enabled and running. It is restarted when a resource of
    /// a task that notifies it (`notified_by`, task names of the same host plan, its own
    /// task included) changed in the same run: its restart inputs are derived from the
    /// tasks, never listed by hand.
    Service {
        unit: String,
        notified_by: Vec<String>,
        /// A command that must succeed after a (re)start before the run goes on.
        ready: Option<ReadyCheck>,
    },
    /// A command run only while its guard says it is needed.
    Command {
        name: String,
        command: String,
        guard: Guard,
    },
    /// A value behind a read/write pair of commands (an etcd key), compared whole.
    KeyValue {
        name: String,
        /// Prints the current value; a non-zero exit means absent.
        read: String,
        /// Reads the desired value on stdin and stores it.
        write: String,
        value: Vec<u8>,
    },
    /// An image in containerd, imported from its tarball on the host with `ctr` (a command
    /// line with its socket and namespace); every image of a host is read from one listing.
    Image { ctr: String, image: Image },
    /// A Kubernetes object, read and written with `kubectl` (a command line with its
    /// kubeconfig). It is up to date when every field it sets has that value in the live
    /// object; fields the API server adds (status, defaults, uid) are not compared.
    ApiObject { kubectl: String, object: ApiObject },
    /// A route in the host's main table: `destination` through `via`.
    Route { destination: String, via: Hop },
    /// A kernel setting under /proc/sys (`net.ipv4.ip_forward`).
    Sysctl { key: String, value: String },
    /// A restart of something outside systemd's reach (a static pod's container), run when
    /// one of `after_units` was started or restarted earlier in this run, on any host: what
    /// holds a connection to those units' services must reconnect to them.
    Handler {
        name: String,
        command: String,
        after_units: Vec<String>,
    },
    /// The record of the API objects applied on this host (see [`ObjectRecord`]).
    ObjectRecord(ObjectRecord),
    /// A readiness wait: satisfied while the read-only `until` command succeeds; apply polls
    /// it until `timeout`, then fails with `failure` and what `until` printed last.
    Wait {
        name: String,
        until: Until,
        timeout: Duration,
        failure: String,
    },
}

/// What a [`Resource::Wait`] waits for; observing it changes nothing.
#[derive(Debug, Clone)]
pub enum Until {
    /// A command succeeds.
    Command(String),
    /// An object exists in the API. Facts read it with the host's other objects of the same
    /// `kubectl` (one process for all), apply polls a `kubectl get` of it.
    Exists { kubectl: String, object: ApiObject },
}

impl Until {
    /// The command that succeeds once the wait is over.
    fn command(&self) -> String {
        match self {
            Until::Command(command) => command.clone(),
            Until::Exists { kubectl, object } => format!(
                "printf '%s\\n' {} | {kubectl} get -f - -o name",
                shell_quote(&object.manifest())
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadyCheck {
    pub command: String,
    pub timeout: Duration,
}

/// When a [`Resource::Command`] has nothing left to do.
#[derive(Debug, Clone)]
pub enum Guard {
    /// Done once this path exists.
    Creates(String),
    /// Done while this (read-only) command succeeds.
    Unless(String),
}

/// What a facts script found for one resource: `field -> value` lines.
pub type Observation = BTreeMap<String, String>;

impl Resource {
    /// Written as a file on the host: a directory, file, upload or link (see
    /// [`Scope::only_files`](crate::roles::Scope::only_files)).
    pub fn is_file_level(&self) -> bool {
        matches!(
            self,
            Resource::Directory { .. }
                | Resource::File { .. }
                | Resource::Upload { .. }
                | Resource::Symlink { .. }
        )
    }

    /// A short stable name, as shown in reports.
    pub fn label(&self) -> String {
        match self {
            Resource::Directory { path, .. } => format!("directory {path}"),
            Resource::File { path, .. } => format!("file {path}"),
            Resource::Upload { path, .. } => format!("binary {path}"),
            Resource::Symlink { path, .. } => format!("symlink {path}"),
            Resource::Service { unit, .. } => format!("service {unit}"),
            Resource::Command { name, .. } => format!("command {name}"),
            Resource::KeyValue { name, .. } => format!("key {name}"),
            Resource::ObjectRecord(record) => format!("object record {}", record.path),
            Resource::Image { image, .. } => format!("image {}", image.reference),
            Resource::ApiObject { object, .. } => format!("object {}", object.label()),
            Resource::Route { destination, .. } => format!("route {destination}"),
            Resource::Sysctl { key, .. } => format!("sysctl {key}"),
            Resource::Handler { name, .. } => format!("handler {name}"),
            Resource::Wait { name, .. } => format!("wait {name}"),
        }
    }

    /// The managed path, for resources that have one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Resource::Directory { path, .. }
            | Resource::File { path, .. }
            | Resource::Upload { path, .. }
            | Resource::Symlink { path, .. } => Some(path),
            _ => None,
        }
    }

    /// How the facts script observes this resource; `id` is what its `KF` lines carry.
    pub fn probe(&self, id: usize) -> Probe {
        let path = |path: &str, want: Want| Probe::Path {
            path: path.to_string(),
            want,
        };
        match self {
            Resource::Directory { path: p, .. } => path(p, Want::Kind),
            Resource::Symlink { path: p, .. } => path(p, Want::Target),
            Resource::Upload {
                path: p, sha256, ..
            } => path(
                p,
                Want::Sha256 {
                    sha256: sha256.clone(),
                    show: false,
                },
            ),
            Resource::File {
                path: p,
                content,
                secret,
                ..
            } => path(
                p,
                Want::Sha256 {
                    sha256: sha256_hex(content),
                    show: !*secret,
                },
            ),
            Resource::Image { ctr, image } => Probe::Image {
                ctr: ctr.clone(),
                image: image.clone(),
            },
            Resource::ApiObject { kubectl, object } => Probe::Object {
                kubectl: kubectl.clone(),
                object: object.clone(),
            },
            Resource::Wait {
                until: Until::Exists { kubectl, object },
                ..
            } => Probe::Object {
                kubectl: kubectl.clone(),
                object: object.clone(),
            },
            Resource::Service { unit, .. } => Probe::Service { unit: unit.clone() },
            Resource::Handler { .. } => Probe::Nothing,
            _ => Probe::Lines(self.probe_lines(id)),
        }
    }

    /// The facts of resources that are not paths or objects, as shell lines.
    fn probe_lines(&self, id: usize) -> String {
        match self {
            Resource::Command { guard, .. } => match guard {
                Guard::Creates(path) => format!(
                    "if [ -e {p} ]; then echo \"KF {id} guard met\"; else echo \"KF {id} guard unmet\"; fi\n",
                    p = shell_quote(path)
                ),
                Guard::Unless(cmd) => format!(
                    "if ( {cmd} ) >/dev/null 2>&1 </dev/null; then echo \"KF {id} guard met\"; else echo \"KF {id} guard unmet\"; fi\n"
                ),
            },
            Resource::KeyValue { read, .. } => format!(
                "if kf_v=$( ( {read} ) 2>/dev/null </dev/null); then echo \"KF {id} value $(printf %s \"$kf_v\" | base64 -w0)\"; else echo \"KF {id} value-absent\"; fi\n"
            ),
            Resource::Route { destination, .. } => format!(
                "echo \"KF {id} route $(ip -4 route show exact {} 2>/dev/null | head -n 1)\"\n",
                shell_quote(destination)
            ),
            Resource::Sysctl { key, .. } => {
                let p = shell_quote(&sysctl_path(key));
                format!(
                    "if [ -e {p} ]; then echo \"KF {id} value $(cat {p})\"; else echo \"KF {id} absent yes\"; fi\n"
                )
            }
            Resource::Wait {
                until: Until::Command(until),
                ..
            } => format!(
                "if ( {until} ) >/dev/null 2>&1 </dev/null; then echo \"KF {id} ready yes\"; fi\n"
            ),
            Resource::ObjectRecord(record) => record.probe_lines(id),
            _ => String::new(),
        }
    }

    /// Compares desired and observed state. `restart_inputs` holds, for a service, the
    /// labels of the resources of its notifying tasks that change in this run.
    pub fn diff(&self, seen: &Observation, restart_inputs: &[String]) -> Vec<Change> {
        let mut found = Vec::new();
        let mut push = |kind: ChangeKind, diff: Option<String>| found.push((kind, diff));
        match self {
            Resource::Directory { perms, .. } => match kind(seen) {
                "dir" => perm_changes(seen, perms, &mut push),
                "none" => push(ChangeKind::Create { mode: perms.mode }, None),
                other => push(replace(other, "a directory"), None),
            },
            Resource::File { .. } => self.diff_file(seen, &mut push),
            Resource::Upload { sha256, perms, .. } => {
                let upload = |from: Option<&str>| ChangeKind::Upload {
                    from: from.map(str::to_string),
                    to: sha256[..12].to_string(),
                };
                match kind(seen) {
                    "file" => {
                        if seen.get("sha") != Some(sha256) {
                            let on_host = seen.get("sha").map_or("?", |s| &s[..s.len().min(12)]);
                            push(upload(Some(on_host)), None);
                        }
                        perm_changes(seen, perms, &mut push);
                    }
                    "none" => push(upload(None), None),
                    other => push(replace(other, "a file"), None),
                }
            }
            Resource::Symlink { target, .. } => match kind(seen) {
                "link" if seen.get("target") == Some(target) => {}
                "link" | "none" => push(
                    ChangeKind::Link {
                        target: target.clone(),
                    },
                    None,
                ),
                other => push(replace(other, "a link"), None),
            },
            Resource::Service { unit, .. } => diff_service(unit, seen, restart_inputs, &mut push),
            Resource::Command { guard, .. } => {
                if seen.get("guard").map(String::as_str) != Some("met") {
                    let reason = match guard {
                        Guard::Creates(p) => format!("{p} does not exist"),
                        Guard::Unless(_) => "its check fails".to_string(),
                    };
                    push(ChangeKind::Run { reason }, None);
                }
            }
            Resource::KeyValue { name, value, .. } => diff_value(name, value, seen, &mut push),
            Resource::Image { image, .. } => {
                if let Some(import) = image.diff(seen) {
                    push(import, None);
                }
            }
            Resource::ApiObject { object, .. } => diff_object(object, seen, &mut push),
            Resource::ObjectRecord(record) => {
                if let Some(change) = record.diff(seen) {
                    push(change, None);
                }
            }
            Resource::Route { via, .. } => {
                let route = seen.get("route").map_or("", |r| r.trim());
                if !via.matches(route) {
                    let kind = ChangeKind::Route {
                        from: Some(route.to_string()).filter(|r| !r.is_empty()),
                        to: via.to_string(),
                    };
                    push(kind, None);
                }
            }
            Resource::Sysctl { value, .. } => match seen.get("value") {
                Some(v) if v.trim() == value => {}
                seen_value => push(
                    ChangeKind::Sysctl {
                        from: seen_value.map_or("absent".into(), |v| v.trim().to_string()),
                        to: value.clone(),
                    },
                    None,
                ),
            },
            Resource::Handler { .. } => {
                if !restart_inputs.is_empty() {
                    let units = RestartReason::UnitsRestarted(restart_inputs.to_vec());
                    push(ChangeKind::Restart(units), None);
                }
            }
            Resource::Wait { until, .. } => {
                let ready = match until {
                    Until::Command(_) => seen.get("ready").is_some_and(|r| r == "yes"),
                    Until::Exists { .. } => seen.contains_key("live"),
                };
                if !ready {
                    let what = "not ready yet".to_string();
                    push(ChangeKind::Wait { what }, None);
                }
            }
        }
        found
            .into_iter()
            .map(|(kind, diff)| Change {
                resource: self.label(),
                kind,
                diff,
            })
            .collect()
    }

    fn diff_file(&self, seen: &Observation, push: &mut impl FnMut(ChangeKind, Option<String>)) {
        let Resource::File {
            path,
            content,
            perms,
            secret,
            ..
        } = self
        else {
            return;
        };
        match kind(seen) {
            "file" => {
                if seen.get("sha").map(String::as_str) != Some(&sha256_hex(content)) {
                    let diff = (!*secret)
                        .then(|| seen.get("content"))
                        .flatten()
                        .map(|b64| content_diff(path, &decode(b64), content));
                    push(ChangeKind::Content { secret: *secret }, diff);
                }
                perm_changes(seen, perms, push);
            }
            "none" => {
                let diff = (!*secret).then(|| content_diff(path, b"", content));
                push(ChangeKind::Create { mode: perms.mode }, diff)
            }
            other => push(replace(other, "a file"), None),
        }
    }

    /// Shell lines that carry out `changes` (which came from [`Resource::diff`]).
    /// Large uploads are streamed beforehand by the engine; this only fixes their modes.
    pub fn apply_script(&self, changes: &[Change]) -> String {
        if changes.is_empty() {
            return String::new();
        }
        let has = |pred: fn(&ChangeKind) -> bool| changes.iter().any(|c| pred(&c.kind));
        match self {
            Resource::Directory { path, perms } => {
                let p = shell_quote(path);
                format!(
                    "if [ -e {p} ] && [ ! -d {p} ]; then rm -f {p}; fi\nmkdir -p {p}\nchmod {:04o} {p}\nchown {}:{} {p}\n",
                    perms.mode, perms.owner, perms.group
                )
            }
            Resource::File {
                path,
                content,
                perms,
                ..
            } => {
                let p = shell_quote(path);
                let mut s = format!(
                    "mkdir -p \"$(dirname {p})\"\nkf_write {p} {:04o} {}:{} <<'KF_EOF'\n",
                    perms.mode, perms.owner, perms.group
                );
                s.push_str(&base64_lines(content));
                s.push_str(&format!("KF_EOF\nkf_seen {p} {}\n", sha256_hex(content)));
                s
            }
            Resource::Upload {
                path,
                perms,
                sha256,
                ..
            } => {
                let p = shell_quote(path);
                format!(
                    "chmod {:04o} {p}\nchown {}:{} {p}\nkf_seen {p} {sha256}\n",
                    perms.mode, perms.owner, perms.group
                )
            }
            Resource::Symlink { path, target } => format!(
                "mkdir -p \"$(dirname {p})\"\nln -sfn {t} {p}.kf-tmp && mv -Tf {p}.kf-tmp {p}\n",
                p = shell_quote(path),
                t = shell_quote(target)
            ),
            Resource::Service { unit, ready, .. } => {
                let u = shell_quote(unit);
                let mut s = String::new();
                if has(|k| matches!(k, ChangeKind::Enable)) {
                    s.push_str(&format!("systemctl enable --quiet {u}\n"));
                }
                if has(ChangeKind::starts) {
                    s.push_str(&format!(
                        "systemctl restart {u}\nrm -f {}\n",
                        shell_quote(&pending_marker(unit))
                    ));
                    if let Some(r) = ready {
                        s.push_str(&format!(
                            "kf_wait {} {} || {{ echo \"{unit} did not become ready within {}s: $(systemctl status --no-pager -n 5 {u} 2>&1 | tail -n 5)\" >&2; exit 1; }}\n",
                            r.timeout.as_secs().max(1),
                            shell_quote(&r.command),
                            r.timeout.as_secs()
                        ));
                    }
                }
                s
            }
            Resource::Command { command, .. } | Resource::Handler { command, .. } => {
                format!("( {command} )\n")
            }
            Resource::KeyValue { write, value, .. } => stdin_script(write, value),
            // Streamed by the engine between parts of the apply script (see engine::apply_steps).
            Resource::Image { .. } => String::new(),
            Resource::ObjectRecord(record) => record.apply_script(&changes[0].kind),
            Resource::ApiObject { kubectl, object } => stdin_script(
                &format!("{kubectl} apply -f - >/dev/null"),
                object.manifest().as_bytes(),
            ),
            Resource::Route { destination, via } => via.replace_script(destination),
            Resource::Sysctl { key, value, .. } => format!(
                "printf '%s\\n' {} > {}\n",
                shell_quote(value),
                shell_quote(&sysctl_path(key))
            ),
            Resource::Wait {
                until,
                timeout,
                failure,
                ..
            } => {
                let secs = timeout.as_secs().max(1);
                let until = until.command();
                format!(
                    "kf_wait {secs} {q} || {{ echo \"{failure} after {secs}s: $( ( {until} ) 2>&1 </dev/null | tail -n 2)\" >&2; exit 1; }}\n",
                    q = shell_quote(&until),
                )
            }
        }
    }

    /// Whether a change of this resource is an input of a service its task notifies:
    /// anything with content or identity (files, binaries, images, links, values), not a
    /// directory's mode or a service's own state.
    pub fn is_restart_input(&self) -> bool {
        !matches!(
            self,
            Resource::Directory { .. }
                | Resource::Service { .. }
                | Resource::Wait { .. }
                | Resource::Handler { .. }
                | Resource::Route { .. }
                | Resource::Sysctl { .. }
        )
    }
}

/// Marks a unit whose inputs changed but which has not been restarted yet, so that a run
/// interrupted between the two still restarts it next time.
pub fn pending_marker(unit: &str) -> String {
    format!("/var/lib/kubeforge/restart-pending/{unit}")
}

/// Whether a change to this path means systemd must reload its unit files.
pub fn is_unit_file(path: &str) -> bool {
    path.starts_with("/etc/systemd/system/")
}

fn kind(seen: &Observation) -> &str {
    seen.get("type").map(String::as_str).unwrap_or("none")
}

fn perm_changes(
    seen: &Observation,
    want: &Perms,
    push: &mut impl FnMut(ChangeKind, Option<String>),
) {
    let Some(perms) = seen.get("perms") else {
        return;
    };
    let mut parts = perms.split_whitespace();
    let mode = parts
        .next()
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(u32::MAX);
    let owner = parts.next().unwrap_or("");
    let group = parts.next().unwrap_or("");
    if mode != want.mode {
        push(
            ChangeKind::Mode {
                from: mode,
                to: want.mode,
            },
            None,
        );
    }
    if owner != want.owner || group != want.group {
        push(
            ChangeKind::Owner {
                from: format!("{owner}:{group}"),
                to: format!("{}:{}", want.owner, want.group),
            },
            None,
        );
    }
}

/// A value compared whole (trailing newlines aside), shown as a diff.
fn diff_value(
    name: &str,
    value: &[u8],
    seen: &Observation,
    push: &mut impl FnMut(ChangeKind, Option<String>),
) {
    match seen.get("value") {
        None => push(
            ChangeKind::ValueCreate,
            Some(unified_diff(name, b"", value)),
        ),
        Some(b64) => {
            let old = decode(b64);
            if trim_end(&old) != trim_end(value) {
                push(
                    ChangeKind::ValueUpdate,
                    Some(unified_diff(name, &old, value)),
                );
            }
        }
    }
}

/// An API object against the live one kubectl printed (absent when it printed nothing).
fn diff_object(
    object: &ApiObject,
    seen: &Observation,
    push: &mut impl FnMut(ChangeKind, Option<String>),
) {
    let live = seen
        .get("live")
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
    let name = object.label();
    match live {
        None => push(ChangeKind::ValueCreate, object.diff_against(None, &name)),
        Some(live) if !object.matches(&live) => push(
            ChangeKind::ValueUpdate,
            object.diff_against(Some(&live), &name),
        ),
        Some(_) => {}
    }
}

/// Enable, start, or restart for one of the reasons a running service has to.
fn diff_service(
    unit: &str,
    seen: &Observation,
    restart_inputs: &[String],
    push: &mut impl FnMut(ChangeKind, Option<String>),
) {
    let active = seen.get("active").map(String::as_str).unwrap_or("");
    if seen.get("enabled").map(String::as_str) != Some("enabled") {
        push(ChangeKind::Enable, None);
    }
    let replaced = seen
        .get("exe")
        .and_then(|exe| exe.strip_suffix(" (deleted)"));
    let restart = if !restart_inputs.is_empty() {
        Some(RestartReason::InputsChanged(restart_inputs.to_vec()))
    } else if let Some(binary) = replaced {
        Some(RestartReason::BinaryReplaced(binary.to_string()))
    } else if seen.contains_key("pending") {
        Some(RestartReason::Pending)
    } else if seen.get("reload").map(String::as_str) == Some("yes") {
        Some(RestartReason::UnitChanged(unit.to_string()))
    } else {
        None
    };
    if active != "active" {
        let was = if active.is_empty() { "unknown" } else { active };
        push(ChangeKind::Start { was: was.into() }, None);
    } else if let Some(reason) = restart {
        push(ChangeKind::Restart(reason), None);
    }
}

/// `net.ipv4.ip_forward` -> `/proc/sys/net/ipv4/ip_forward`.
fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Base64 facts (file contents, values, live objects); garbage decodes to nothing.
fn decode(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default()
}

fn replace(found: &str, wanted: &'static str) -> ChangeKind {
    ChangeKind::Replace {
        found: found.to_string(),
        wanted,
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1] == b'\n' {
        end -= 1;
    }
    &b[..end]
}

/// Runs `command` with `content` on its stdin (carried base64-encoded in a here-document).
fn stdin_script(command: &str, content: &[u8]) -> String {
    format!(
        "base64 -d <<'KF_EOF' | ( {command} )\n{}KF_EOF\n",
        base64_lines(content)
    )
}

fn base64_lines(content: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    let mut s = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for chunk in encoded.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s
}

/// A file's diff: certificates as what they say (subject, issuer, validity, names), not as
/// base64; other text as is.
fn content_diff(path: &str, old: &[u8], new: &[u8]) -> String {
    let described = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(crate::pki::describe_certificate)
    };
    match (described(new), old.is_empty()) {
        (Some(new), true) => unified_diff(path, b"", new.as_bytes()),
        (Some(new), false) => match described(old) {
            Some(old) => unified_diff(path, old.as_bytes(), new.as_bytes()),
            None => unified_diff(path, b"(not a certificate)\n", new.as_bytes()),
        },
        (None, _) => unified_diff(path, old, new),
    }
}

/// A unified diff of two texts (binary content is summarised instead).
pub fn unified_diff(name: &str, old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(o), Ok(n)) => similar::TextDiff::from_lines(o, n)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a{name}"), &format!("b{name}"))
            .to_string(),
        _ => format!(
            "binary content differs ({} -> {} bytes)\n",
            old.len(),
            new.len()
        ),
    }
}

#[cfg(test)]
mod tests;
