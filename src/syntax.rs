//! Well-formedness checks for rendered files (the `syntax` step): catch a broken template
//! before converge copies its output onto a host, with an error naming the file and line.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// What a rendered file is, decided from its destination path, so the right check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A full systemd unit (`*.service`, `*.socket`, ...).
    SystemdUnit,
    /// A drop-in (`<unit>.d/*.conf`): it may extend a unit without `ExecStart=`.
    SystemdDropIn,
    Yaml,
    KubernetesManifest,
    Kubeconfig,
    Json,
    Other,
}

const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "path",
    "slice",
    "swap",
    "automount",
];

impl FileKind {
    /// Classifies a destination path on a host (e.g. `/etc/kubernetes/manifests/x.yaml`).
    pub fn for_path(path: &str) -> FileKind {
        let p = Path::new(path);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parent = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str());
        let under = |dir: &str| {
            p.parent()
                .is_some_and(|d| d.components().any(|c| c.as_os_str() == dir))
        };
        let is_unit_dir = parent
            .and_then(|d| d.strip_suffix(".d"))
            .and_then(|unit| unit.rsplit_once('.'))
            .is_some_and(|(_, suffix)| UNIT_SUFFIXES.contains(&suffix));
        if UNIT_SUFFIXES.contains(&ext) {
            FileKind::SystemdUnit
        } else if ext == "conf" && is_unit_dir {
            FileKind::SystemdDropIn
        } else if ext == "json"
            || ((ext == "conf" || ext == "conflist") && path.contains("cni/net.d/"))
        {
            FileKind::Json
        } else if name.contains("kubeconfig") {
            FileKind::Kubeconfig
        } else if ext == "yaml" || ext == "yml" {
            if under("manifests") || under("addons") {
                FileKind::KubernetesManifest
            } else {
                FileKind::Yaml
            }
        } else {
            FileKind::Other
        }
    }
}

/// A malformed rendered file. `line` is 1-based (0 only when the parser gave no position).
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct SyntaxError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

fn fail<T>(source: &str, line: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        source_name: source.to_owned(),
        line,
        message: message.into(),
    })
}

/// Checks that `text` is well-formed for `kind`; `source_name` names it in errors
/// (template and host). `FileKind::Other` (env files, PEM, ...) is not checked.
pub fn check(kind: FileKind, source_name: &str, text: &str) -> Result<(), SyntaxError> {
    match kind {
        FileKind::SystemdUnit => check_unit(source_name, text, false),
        FileKind::SystemdDropIn => check_unit(source_name, text, true),
        FileKind::Yaml => parse_yaml(source_name, text).map(drop),
        FileKind::KubernetesManifest => check_manifests(source_name, text),
        FileKind::Kubeconfig => check_kubeconfig(source_name, text),
        FileKind::Json => serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(drop)
            .or_else(|e| fail(source_name, e.line(), e.to_string())),
        FileKind::Other => Ok(()),
    }
}

// ---------------------------------------------------------------- systemd units

const EXEC_KEYS: &str = "Environment EnvironmentFile PassEnvironment WorkingDirectory \
    RootDirectory User Group SupplementaryGroups UMask Nice LimitNOFILE LimitNPROC LimitCORE \
    LimitMEMLOCK LimitAS LimitFSIZE LimitDATA LimitSTACK LimitSIGPENDING LimitRTPRIO TasksMax \
    TasksAccounting KillMode KillSignal SendSIGKILL FinalKillSignal Delegate OOMScoreAdjust \
    StandardInput StandardOutput StandardError SyslogIdentifier CPUAccounting MemoryAccounting \
    IOAccounting CPUQuota CPUWeight CPUShares MemoryMax MemoryLimit MemoryHigh Slice PrivateTmp \
    PrivateDevices ProtectSystem ProtectHome NoNewPrivileges CapabilityBoundingSet \
    AmbientCapabilities ReadWritePaths ReadOnlyPaths RuntimeDirectory RuntimeDirectoryMode \
    StateDirectory LogsDirectory ConfigurationDirectory TimeoutSec DirectoryMode";

/// Keys accepted per section; a modest list, wide enough for the units kubeforge renders.
fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "Unit" => &[
            "Description Documentation Requires Requisite Wants BindsTo PartOf Conflicts \
            Before After OnFailure RequiresMountsFor StopWhenUnneeded RefuseManualStart \
            RefuseManualStop DefaultDependencies CollectMode FailureAction SuccessAction \
            StartLimitIntervalSec StartLimitBurst StartLimitAction ConditionPathExists \
            ConditionPathExistsGlob ConditionPathIsDirectory ConditionPathIsMountPoint \
            ConditionFileNotEmpty ConditionFileIsExecutable ConditionDirectoryNotEmpty \
            ConditionVirtualization ConditionHost ConditionKernelCommandLine ConditionSecurity \
            ConditionCapability ConditionEnvironment AssertPathExists AssertFileNotEmpty",
        ],
        "Service" => &[
            EXEC_KEYS,
            "Type RemainAfterExit GuessMainPID PIDFile BusName ExecStart \
            ExecStartPre ExecStartPost ExecCondition ExecReload ExecStop ExecStopPost Restart \
            RestartSec TimeoutStartSec TimeoutStopSec RuntimeMaxSec WatchdogSec SuccessExitStatus \
            RestartPreventExitStatus NotifyAccess Sockets OOMPolicy StartLimitInterval \
            StartLimitIntervalSec StartLimitBurst",
        ],
        "Socket" => &[
            EXEC_KEYS,
            "ListenStream ListenDatagram ListenSequentialPacket ListenFIFO \
            Accept SocketMode SocketUser SocketGroup Service Backlog BindIPv6Only FreeBind \
            ReusePort RemoveOnStop Symlinks MaxConnections",
        ],
        "Mount" => &[
            EXEC_KEYS,
            "What Where Type Options SloppyOptions LazyUnmount ForceUnmount",
        ],
        "Swap" => &[EXEC_KEYS, "What Priority Options"],
        "Slice" | "Scope" => &[EXEC_KEYS],
        "Timer" => &[
            "OnActiveSec OnBootSec OnStartupSec OnUnitActiveSec OnUnitInactiveSec \
            OnCalendar AccuracySec RandomizedDelaySec Unit Persistent WakeSystem",
        ],
        "Path" => &[
            "PathExists PathExistsGlob PathChanged PathModified DirectoryNotEmpty Unit \
            MakeDirectory DirectoryMode",
        ],
        "Automount" => &["Where ExtraOptions DirectoryMode TimeoutIdleSec"],
        "Install" => &["WantedBy RequiredBy Alias Also DefaultInstance"],
        _ => return None,
    })
}

fn check_unit(source: &str, text: &str, drop_in: bool) -> Result<(), SyntaxError> {
    let mut section: Option<&str> = None;
    let mut service_line = None;
    let mut has_exec = false;
    let mut continued = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue; // comments are ignored, even inside a continuation
        }
        if std::mem::replace(&mut continued, line.ends_with('\\')) || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return fail(source, n, format!("unterminated section header '{line}'"));
            };
            if section_keys(name).is_none() {
                return fail(source, n, format!("unknown section [{name}]"));
            }
            if name == "Service" && service_line.is_none() {
                service_line = Some(n);
            }
            section = Some(name);
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            return fail(
                source,
                n,
                format!("expected Key=Value, a [Section] header or a comment, found '{line}'"),
            );
        };
        let key = key.trim_end();
        let mut chars = key.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return fail(source, n, format!("invalid key '{key}'"));
        }
        let Some(name) = section else {
            return fail(source, n, format!("key '{key}' outside of any [Section]"));
        };
        let known = section_keys(name).is_some_and(|groups| {
            groups
                .iter()
                .any(|g| g.split_whitespace().any(|k| k == key))
        });
        if !known {
            return fail(source, n, format!("unknown key '{key}' in [{name}]"));
        }
        has_exec |= name == "Service" && (key == "ExecStart" || key == "ExecStop");
    }
    if drop_in {
        return Ok(());
    }
    if section.is_none() {
        return fail(source, 1, "unit file has no [Section]");
    }
    match service_line {
        Some(n) if !has_exec => fail(source, n, "[Service] has neither ExecStart= nor ExecStop="),
        _ => Ok(()),
    }
}

/// Runs `systemd-analyze verify` on a full unit file; `None` when the analyzer is not
/// installed or cannot judge the file alone (drop-ins). Complaints about executables or
/// units missing on the control machine are dropped: only the file's own faults count.
pub fn check_systemd_with_analyzer(path_on_disk: &Path) -> Option<Result<(), String>> {
    if FileKind::for_path(&path_on_disk.to_string_lossy()) != FileKind::SystemdUnit {
        return None;
    }
    let path = match std::path::absolute(path_on_disk) {
        Ok(p) => p,
        Err(e) => return Some(Err(format!("{}: {e}", path_on_disk.display()))),
    };
    let unit = path.file_name()?.to_string_lossy().into_owned();
    // Older systemd lacks the newer flags: fall back until the options are accepted.
    let flag_sets: [&[&str]; 3] = [&["--man=no", "--recursive-errors=no"], &["--man=no"], &[]];
    let mut output = String::new();
    for flags in flag_sets {
        match run_analyzer(&path, flags) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("systemd-analyze verify {unit}: {e}"))),
            Ok(out) => output = out,
        }
        if !output.contains("unrecognized option") {
            break;
        }
    }
    let findings: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(&unit))
        .filter(|l| {
            !(l.contains("is not executable")
                || l.contains("not found")
                || l.contains("Failed to create"))
        })
        .collect();
    if findings.is_empty() {
        Some(Ok(()))
    } else {
        Some(Err(findings.join("\n")))
    }
}

/// Runs the analyzer with a deadline, returning its stdout and stderr interleaved.
fn run_analyzer(path: &Path, flags: &[&str]) -> std::io::Result<String> {
    let (mut reader, writer) = std::io::pipe()?;
    // The `Command` (holding our copies of the write end) is dropped after `spawn`, so the
    // reader sees EOF once the analyzer exits.
    let mut child = Command::new("systemd-analyze")
        .arg("verify")
        .args(flags)
        .arg(path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()?;
    let collector = std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer in 60 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    collector
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("output reader panicked")))
}

// ---------------------------------------------------------------- YAML

/// A YAML node whose children keep their source positions, so checks can point at lines.
#[derive(Debug)]
enum Node {
    Str(String),
    /// Null, boolean or number: its value never matters to these checks.
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Node, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// Scalar visitors: null, booleans and numbers all become `Node::Scalar`.
macro_rules! scalars {
    ($($name:ident($($arg:ty)?)),*) => {$(
        fn $name<E>(self $(, _: $arg)?) -> Result<Node, E> {
            Ok(Node::Scalar)
        }
    )*};
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML node")
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64)
    );
    scalars!(
        visit_u128(u128),
        visit_f64(f64),
        visit_bytes(&[u8]),
        visit_unit(),
        visit_none()
    );
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

fn line_of(node: &Spanned<Node>) -> usize {
    usize::try_from(node.referenced.line()).unwrap_or(0)
}

impl Node {
    fn get(&self, key: &str) -> Option<&Spanned<Node>> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Node::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string at `key`, or where and why it is missing (`at` is this map's line).
    fn str_at(&self, key: &str, at: usize) -> Result<(&str, usize), (usize, String)> {
        match self.get(key) {
            Some(v) => match &v.value {
                Node::Str(s) => Ok((s, line_of(v))),
                _ => Err((line_of(v), format!("'{key}' must be a string"))),
            },
            None => Err((at, format!("missing '{key}'"))),
        }
    }
}

/// Parses every document (empty ones are skipped by the parser).
fn parse_yaml(source: &str, text: &str) -> Result<Vec<Spanned<Node>>, SyntaxError> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_multiple_with_options::<Spanned<Node>, Vec<_>>(text, options).or_else(
        |e| {
            let line = e.location().map_or(0, |l| l.line());
            let message = e.to_string();
            let message = message.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
            fail(source, usize::try_from(line).unwrap_or(0), message)
        },
    )
}

/// Checks one Kubernetes object (recursing into `kind: List`).
fn check_object(obj: &Spanned<Node>) -> Result<(), (usize, String)> {
    let at = line_of(obj);
    if !matches!(obj.value, Node::Map(_)) {
        return Err((at, "expected a mapping (a Kubernetes object)".into()));
    }
    obj.value.str_at("apiVersion", at)?;
    let (kind, _) = obj.value.str_at("kind", at)?;
    if kind == "List" {
        return match obj.value.get("items").map(|i| &i.value) {
            Some(Node::Seq(items)) => items.iter().enumerate().try_for_each(|(i, item)| {
                check_object(item).map_err(|(l, m)| (l, format!("item {}: {m}", i + 1)))
            }),
            Some(Node::Scalar) => Ok(()), // `items: []` rendered empty, or null
            _ => Err((at, "kind List needs a sequence 'items'".into())),
        };
    }
    match obj.value.get("metadata") {
        Some(meta) if matches!(meta.value, Node::Map(_)) => match meta.value.get("name") {
            Some(name) if matches!(name.value, Node::Str(_)) => Ok(()),
            Some(name) => Err((line_of(name), "'metadata.name' must be a string".into())),
            None => Err((line_of(meta), "missing 'metadata.name'".into())),
        },
        Some(meta) => Err((line_of(meta), "'metadata' must be a mapping".into())),
        None => Err((at, "missing 'metadata'".into())),
    }
}

/// The 1-based index of the document holding `line`, counting empty documents too (the
/// parser skips those): `---` markers before it, plus one if content precedes the first.
fn document_index(text: &str, line: usize) -> usize {
    let is_marker = |l: &str| l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
    let before: Vec<&str> = text.lines().take(line).collect();
    let markers = before.iter().filter(|l| is_marker(l)).count();
    let implicit_first = before
        .iter()
        .take_while(|l| !is_marker(l))
        .any(|l| !(l.trim().is_empty() || l.starts_with('#') || l.starts_with('%')));
    markers + usize::from(implicit_first || markers == 0)
}

fn check_manifests(source: &str, text: &str) -> Result<(), SyntaxError> {
    for doc in parse_yaml(source, text)? {
        if let Err((at, message)) = check_object(&doc) {
            let (start, index) = (line_of(&doc), document_index(text, line_of(&doc)));
            let at = if at == start {
                String::new()
            } else {
                format!(" (line {at})")
            };
            return fail(source, start, format!("document {index}: {message}{at}"));
        }
    }
    Ok(())
}

fn check_kubeconfig(source: &str, text: &str) -> Result<(), SyntaxError> {
    let docs = parse_yaml(source, text)?;
    let [root] = docs.as_slice() else {
        return fail(
            source,
            1,
            format!("expected one YAML document, found {}", docs.len()),
        );
    };
    kubeconfig_problem(root).or_else(|(line, message)| fail(source, line, message))
}

fn kubeconfig_problem(root: &Spanned<Node>) -> Result<(), (usize, String)> {
    let (cfg, at) = (&root.value, line_of(root));
    if !matches!(cfg, Node::Map(_)) {
        return Err((at, "a kubeconfig must be a mapping".into()));
    }
    for (key, want) in [("apiVersion", "v1"), ("kind", "Config")] {
        let (value, line) = cfg.str_at(key, at)?;
        if value != want {
            return Err((line, format!("'{key}' must be '{want}', found '{value}'")));
        }
    }
    // The `name`s of a list (`clusters`, `users`, `contexts`) with each entry's body.
    let named = |list: &str, body: &str| -> Result<Vec<(String, Option<&Spanned<Node>>)>, _> {
        let entries = match cfg.get(list) {
            None => return Ok(Vec::new()),
            Some(v) => match &v.value {
                Node::Seq(items) => items,
                _ => return Err((line_of(v), format!("'{list}' must be a sequence"))),
            },
        };
        entries
            .iter()
            .map(|e| {
                let (name, _) = e.value.str_at("name", line_of(e))?;
                Ok((name.to_owned(), e.value.get(body)))
            })
            .collect()
    };
    let clusters = named("clusters", "cluster")?;
    let users = named("users", "user")?;
    let contexts = named("contexts", "context")?;
    for (name, body) in &contexts {
        let Some(ctx) = body else {
            return Err((at, format!("context '{name}' has no 'context'")));
        };
        for (key, pool) in [("cluster", &clusters), ("user", &users)] {
            let (target, line) = ctx.value.str_at(key, line_of(ctx))?;
            if !pool.iter().any(|(n, _)| n == target) {
                return Err((
                    line,
                    format!("context '{name}' names unknown {key} '{target}'"),
                ));
            }
        }
    }
    let (current, line) = cfg.str_at("current-context", at)?;
    if !contexts.iter().any(|(n, _)| n == current) {
        return Err((
            line,
            format!("current-context '{current}' names no context"),
        ));
    }
    Ok(())
}
