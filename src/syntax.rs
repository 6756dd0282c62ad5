//! Well-formedness checks for rendered files (the `syntax` step): catch a broken template
//! before converge copies its output onto a host, with an error naming the file and line.

use std::io::{Error, ErrorKind, Read};
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

const UNIT_SUFFIXES: &str = "service socket target timer mount path slice swap automount";

impl FileKind {
    /// Classifies a destination path on a host (e.g. `/etc/kubernetes/manifests/x.yaml`).
    pub fn for_path(path: &str) -> FileKind {
        let mut dirs: Vec<&str> = path.split('/').collect();
        let name = dirs.pop().unwrap_or_default();
        let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
        // `<unit>.d/*.conf`, e.g. `kubelet.service.d/10-args.conf`.
        let unit_dir = dirs
            .last()
            .and_then(|d| d.strip_suffix(".d")?.rsplit_once('.'));
        match ext {
            _ if is_unit_suffix(ext) => FileKind::SystemdUnit,
            "conf" if unit_dir.is_some_and(|(_, suffix)| is_unit_suffix(suffix)) => {
                FileKind::SystemdDropIn
            }
            "conf" | "conflist" if path.contains("cni/net.d/") => FileKind::Json,
            "json" => FileKind::Json,
            _ if name.contains("kubeconfig") => FileKind::Kubeconfig,
            "yaml" | "yml"
                if dirs
                    .iter()
                    .any(|d| ["manifests", "addons", "workloads"].contains(d)) =>
            {
                FileKind::KubernetesManifest
            }
            "yaml" | "yml" => FileKind::Yaml,
            _ => FileKind::Other,
        }
    }
}

fn is_unit_suffix(ext: &str) -> bool {
    UNIT_SUFFIXES.split_whitespace().any(|s| s == ext)
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
#[rustfmt::skip]
fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "Unit" => &["Description Documentation Requires Requisite Wants BindsTo PartOf Conflicts \
            Before After OnFailure RequiresMountsFor StopWhenUnneeded RefuseManualStart \
            RefuseManualStop DefaultDependencies CollectMode FailureAction SuccessAction \
            StartLimitIntervalSec StartLimitBurst StartLimitAction ConditionPathExists \
            ConditionPathExistsGlob ConditionPathIsDirectory ConditionPathIsMountPoint \
            ConditionFileNotEmpty ConditionFileIsExecutable ConditionDirectoryNotEmpty \
            ConditionVirtualization ConditionHost ConditionKernelCommandLine ConditionSecurity \
            ConditionCapability ConditionEnvironment AssertPathExists AssertFileNotEmpty"],
        "Service" => &[EXEC_KEYS, "Type RemainAfterExit GuessMainPID PIDFile BusName ExecStart \
            ExecStartPre ExecStartPost ExecCondition ExecReload ExecStop ExecStopPost Restart \
            RestartSec TimeoutStartSec TimeoutStopSec RuntimeMaxSec WatchdogSec SuccessExitStatus \
            RestartPreventExitStatus NotifyAccess Sockets OOMPolicy StartLimitInterval \
            StartLimitIntervalSec StartLimitBurst"],
        "Socket" => &[EXEC_KEYS, "ListenStream ListenDatagram ListenSequentialPacket ListenFIFO \
            Accept SocketMode SocketUser SocketGroup Service Backlog BindIPv6Only FreeBind \
            ReusePort RemoveOnStop Symlinks MaxConnections"],
        "Mount" => &[EXEC_KEYS, "What Where Type Options SloppyOptions LazyUnmount ForceUnmount"],
        "Swap" => &[EXEC_KEYS, "What Priority Options"],
        "Slice" | "Scope" => &[EXEC_KEYS],
        "Timer" => &["OnActiveSec OnBootSec OnStartupSec OnUnitActiveSec OnUnitInactiveSec \
            OnCalendar AccuracySec RandomizedDelaySec Unit Persistent WakeSystem"],
        "Path" => &["PathExists PathExistsGlob PathChanged PathModified DirectoryNotEmpty Unit \
            MakeDirectory DirectoryMode"],
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
            return fail(source, n, format!("expected Key=Value: '{line}'"));
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
        let mut known = section_keys(name).into_iter().flatten();
        if !known.any(|g| g.split_whitespace().any(|k| k == key)) {
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

/// Analyzer messages about things missing on the control machine, not faults of the file.
const TOLERATED: [&str; 3] = ["is not executable", "not found", "Failed to create"];

/// What `systemd-analyze verify` found wrong with a unit file (or why it could not run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnalyzerFindings(pub String);

/// Runs `systemd-analyze verify` on a full unit file; `None` when the analyzer is missing,
/// too old (< 250, no `--recursive-errors`) or cannot judge the file alone (drop-ins).
/// Complaints about executables or units missing on the control machine are dropped: only
/// the file's own faults count.
pub fn check_systemd_with_analyzer(path_on_disk: &Path) -> Option<Result<(), AnalyzerFindings>> {
    if FileKind::for_path(&path_on_disk.to_string_lossy()) != FileKind::SystemdUnit {
        return None;
    }
    let path = std::path::absolute(path_on_disk).ok()?; // fails only for an empty path
    let unit = path.file_name()?.to_string_lossy().into_owned();
    let output = match run_analyzer(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(Err(AnalyzerFindings(format!(
                "systemd-analyze verify {unit}: {e}"
            ))));
        }
        Ok(out) if out.contains("unrecognized option") => return None,
        Ok(out) => out,
    };
    let findings: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(&unit) && !TOLERATED.iter().any(|t| l.contains(t)))
        .collect();
    if findings.is_empty() {
        Some(Ok(()))
    } else {
        Some(Err(AnalyzerFindings(findings.join("\n"))))
    }
}

/// Runs the analyzer with a deadline, returning its stdout and stderr interleaved.
fn run_analyzer(path: &Path) -> std::io::Result<String> {
    let (mut reader, writer) = std::io::pipe()?;
    // The `Command` (holding our copies of the write end) is dropped after `spawn`, so the
    // reader sees EOF once the analyzer exits.
    let mut child = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--recursive-errors=no"])
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
            return Err(Error::new(ErrorKind::TimedOut, "no answer in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    collector
        .join()
        .unwrap_or_else(|_| Err(Error::other("output reader panicked")))
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
    scalars! { visit_bool(bool), visit_i64(i64), visit_i128(i128), visit_u64(u64) }
    scalars! { visit_u128(u128), visit_f64(f64), visit_bytes(&[u8]), visit_unit(), visit_none() }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let items = std::iter::from_fn(|| seq.next_element().transpose());
        items.collect::<Result<_, _>>().map(Node::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let entries = std::iter::from_fn(|| map.next_entry().transpose());
        entries.collect::<Result<_, _>>().map(Node::Map)
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
    let options = serde_saphyr::options! {
        with_snippet: false,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
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
            let message = if at == start {
                message
            } else {
                format!("{message} (line {at})")
            };
            return fail(source, start, format!("document {index}: {message}"));
        }
    }
    Ok(())
}

fn check_kubeconfig(source: &str, text: &str) -> Result<(), SyntaxError> {
    let docs = parse_yaml(source, text)?;
    let [root] = docs.as_slice() else {
        return fail(source, 1, format!("{} documents, expected 1", docs.len()));
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
    // The entries of a list (`clusters`, `users`, `contexts`) by their `name`.
    let named = |list: &str| -> Result<Vec<(&str, &Spanned<Node>)>, _> {
        match cfg.get(list).map(|v| (&v.value, line_of(v))) {
            None => Ok(Vec::new()),
            Some((Node::Seq(items), _)) => items
                .iter()
                .map(|e| Ok((e.value.str_at("name", line_of(e))?.0, e)))
                .collect(),
            Some((_, line)) => Err((line, format!("'{list}' must be a sequence"))),
        }
    };
    let (clusters, users) = (named("clusters")?, named("users")?);
    let contexts = named("contexts")?;
    for (name, entry) in &contexts {
        let Some(ctx) = entry.value.get("context") else {
            return Err((line_of(entry), format!("context '{name}' has no 'context'")));
        };
        for (key, pool) in [("cluster", &clusters), ("user", &users)] {
            let (target, line) = ctx.value.str_at(key, line_of(ctx))?;
            if !pool.iter().any(|(n, _)| *n == target) {
                return Err((line, format!("context '{name}': unknown {key} '{target}'")));
            }
        }
    }
    let (current, line) = cfg.str_at("current-context", at)?;
    if !contexts.iter().any(|(n, _)| *n == current) {
        return Err((line, format!("unknown current-context '{current}'")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FileKind::*;
    use super::*;

    const SRC: &str = "tpl (for h1)";

    /// Checks `text` and returns the error's line and message.
    fn problem(kind: FileKind, text: &str) -> (usize, String) {
        match check(kind, SRC, text) {
            Err(e) => {
                assert!(
                    e.to_string().starts_with(&format!("{SRC}:{}: ", e.line)),
                    "{e}"
                );
                (e.line, e.message)
            }
            Ok(()) => panic!("{kind:?} accepted:\n{text}"),
        }
    }

    fn valid(kind: FileKind, text: &str) {
        if let Err(e) = check(kind, SRC, text) {
            panic!("{kind:?} rejected: {e}\n{text}");
        }
    }

    #[test]
    fn kinds_follow_destination_paths() {
        for (path, kind) in [
            ("/etc/systemd/system/etcd-member.service", SystemdUnit),
            ("/etc/systemd/system/kubelet.socket", SystemdUnit),
            (
                "/etc/systemd/system/etcd-member.service.d/40-listen.conf",
                SystemdDropIn,
            ),
            ("/etc/systemd/system.conf.d/timeout.conf", Other),
            ("/etc/cni/net.d/10-bridge.conf", Json),
            ("/etc/cni/net.d/10-bridge.conflist", Json),
            ("/etc/kubernetes/kubelet.kubeconfig", Kubeconfig),
            ("/etc/kubernetes/admin-kubeconfig.yaml", Kubeconfig),
            (
                "/etc/kubernetes/manifests/kube-apiserver.yaml",
                KubernetesManifest,
            ),
            ("/srv/addons/dns.yml", KubernetesManifest),
            ("/etc/kubernetes/kubelet-config.yaml", Yaml),
            ("/etc/default/kubelet", Other),
            ("/etc/etcd/ssl/ca.pem", Other),
        ] {
            assert_eq!(FileKind::for_path(path), kind, "{path}");
        }
    }

    const UNIT: &str = "# Managed by kubeforge\n[Unit]\nDescription=etcd\nAfter=network-online.target\n\
        \n[Service]\nType=notify\nExecStart=/opt/bin/etcd \\\n  --name m1 \\\n  --data-dir /var/lib/etcd\n\
        ; comment\nRestart = on-failure\nLimitNOFILE=40000\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn systemd_units_and_drop_ins() {
        valid(SystemdUnit, UNIT);
        valid(
            SystemdUnit,
            "[Unit]\nDescription=a target\n[Install]\nWantedBy=multi-user.target\n",
        );
        // A drop-in may extend [Service] without ExecStart=; a full unit may not.
        let drop_in =
            "# drop-in\n[Service]\nEnvironment=ETCD_NAME=m1\nExecStartPre=/usr/bin/ssh-keygen -A\n";
        valid(SystemdDropIn, drop_in);
        assert_eq!(
            problem(SystemdUnit, drop_in),
            (2, "[Service] has neither ExecStart= nor ExecStop=".into())
        );
        let cases = [
            (
                "[Unit]\nDescription=x\n[Service]\nExecStrat=/bin/true\n",
                4,
                "unknown key 'ExecStrat' in [Service]",
            ),
            (
                "[Unit]\nDescription=x\n[Servce]\n",
                3,
                "unknown section [Servce]",
            ),
            (
                "Description=x\n[Unit]\n",
                1,
                "key 'Description' outside of any [Section]",
            ),
            (
                "[Unit]\n\nDescription x\n",
                3,
                "expected Key=Value: 'Description x'",
            ),
            ("[Unit]\nDescri-ption=x\n", 2, "invalid key 'Descri-ption'"),
            ("[Unit\n", 1, "unterminated section header '[Unit'"),
            ("# nothing\n", 1, "unit file has no [Section]"),
            // The continuation ends at line 3, so line 4 is parsed again.
            (
                "[Service]\nExecStart=/bin/a \\\n  b\nWantedBy=x\n",
                4,
                "unknown key 'WantedBy' in [Service]",
            ),
        ];
        for (text, line, message) in cases {
            assert_eq!(
                problem(SystemdUnit, text),
                (line, message.to_string()),
                "{text}"
            );
        }
        assert_eq!(problem(SystemdDropIn, "[Service]\nExecStrat=x\n").0, 2);
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        valid(
            Yaml,
            "a: 1\n---\n# only a comment\n---\nb: [1, .inf]\nc: {d: e}\n",
        );
        valid(Yaml, "");
        // Bad indent on line 7.
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  hostNetwork: true\n   restartPolicy: Never\n";
        let (line, message) = problem(Yaml, bad);
        assert_eq!(line, 7, "{message}");
        let (line, message) = problem(Yaml, "a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(line, 4);
        assert!(message.contains("duplicate mapping key"), "{message}");
        assert_eq!(problem(Yaml, "a: 1\n---\nb: [1,\nc: 3\n").0, 3);
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers: []\n";

    #[test]
    fn manifests_need_api_version_kind_and_name() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n";
        valid(KubernetesManifest, &format!("{POD}---\n---\n{list}"));
        valid(KubernetesManifest, "# rendered empty\n");
        // Document 3 (the second is empty) starts on line 11 and lacks metadata.name.
        let text = format!(
            "{POD}---\n# nothing\n---\napiVersion: v1\nkind: Service\nmetadata:\n  labels: {{}}\n"
        );
        assert_eq!(
            problem(KubernetesManifest, &text),
            (11, "document 3: missing 'metadata.name' (line 14)".into())
        );
        let text = "---\napiVersion: 1\nkind: Pod\nmetadata: {name: x}\n";
        assert_eq!(
            problem(KubernetesManifest, text),
            (2, "document 1: 'apiVersion' must be a string".into())
        );
        assert_eq!(
            problem(KubernetesManifest, "- a\n- b\n").1,
            "document 1: expected a mapping (a Kubernetes object)"
        );
        let text = format!("{list}- apiVersion: v1\n  metadata: {{name: b}}\n");
        assert_eq!(
            problem(KubernetesManifest, &text),
            (1, "document 1: item 2: missing 'kind' (line 7)".into())
        );
    }

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: kf\n  cluster:\n    server: https://192.0.2.10:6443\n\
        users:\n- name: kubelet\n  user:\n    client-certificate: /etc/kubernetes/pki/kubelet.pem\n\
        contexts:\n- name: default\n  context:\n    cluster: kf\n    user: kubelet\ncurrent-context: default\n";

    #[test]
    fn kubeconfig_references_resolve() {
        valid(Kubeconfig, KUBECONFIG);
        let broken = |from: &str, to: &str| problem(Kubeconfig, &KUBECONFIG.replace(from, to));
        assert_eq!(
            broken("current-context: default", "current-context: admin"),
            (16, "unknown current-context 'admin'".into())
        );
        assert_eq!(
            broken("    user: kubelet", "    user: admin"),
            (15, "context 'default': unknown user 'admin'".into())
        );
        assert_eq!(
            broken("    cluster: kf", "    cluster: other"),
            (14, "context 'default': unknown cluster 'other'".into())
        );
        assert_eq!(
            broken("kind: Config", "kind: Pod"),
            (2, "'kind' must be 'Config', found 'Pod'".into())
        );
        assert_eq!(
            broken("current-context: default\n", ""),
            (1, "missing 'current-context'".into())
        );
        assert_eq!(
            problem(Kubeconfig, &format!("{KUBECONFIG}---\na: 1\n")).0,
            1
        );
        assert_eq!(
            problem(Kubeconfig, "apiVersion: v1\nkind: Config\n clusters: []\n").0,
            3
        );
    }

    #[test]
    fn json_errors_carry_the_line() {
        valid(
            Json,
            "{\n  \"cniVersion\": \"0.4.0\",\n  \"plugins\": [{\"type\": \"bridge\"}]\n}\n",
        );
        let (line, message) = problem(
            Json,
            "{\n  \"cniVersion\": \"0.4.0\",\n  \"type\": \"bridge\",\n}\n",
        );
        assert_eq!(line, 4, "{message}");
        assert!(message.contains("column"), "{message}");
        assert_eq!(problem(Json, "").0, 1);
        valid(Other, "{ not checked");
    }

    #[test]
    fn analyzer_reports_only_the_units_own_faults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write unit");
            path
        };
        // A binary missing on the control machine and an unknown dependency are tolerated.
        let good = write(
            "kf-good.service",
            "[Unit]\nWants=kf-absent.service\n[Service]\nExecStart=/opt/absent/etcd\n",
        );
        let bad = write(
            "kf-bad.service",
            "[Unit]\nDescription=x\n[Service]\nExecStrat=/bin/true\nExecStart=/bin/true\n",
        );
        let drop_in = dir.path().join("kf.service.d");
        std::fs::create_dir(&drop_in).expect("mkdir");
        std::fs::write(drop_in.join("10.conf"), "[Service]\nEnvironment=A=1\n").expect("write");
        assert_eq!(check_systemd_with_analyzer(&drop_in.join("10.conf")), None);
        let installed = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| d.join("systemd-analyze").is_file())
        });
        assert!(
            installed,
            "systemd-analyze is needed to check units: apt-get install systemd (the README's test command installs it)"
        );
        assert_eq!(check_systemd_with_analyzer(&good), Some(Ok(())));
        match check_systemd_with_analyzer(&bad) {
            Some(Err(e)) => assert!(
                e.0.contains("kf-bad.service:4: Unknown key 'ExecStrat'"),
                "{e}"
            ),
            other => panic!("analyzer missed the unknown key: {other:?}"),
        }
    }
}
