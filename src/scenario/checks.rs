//! Checks a scenario declares (`checks:` in scenario.yml): what testinfra and Goss users
//! write most, as data. Each becomes a JUnit testcase under verify.
//!
//! The file's shape ([`CheckEntry`]: one key per kind, strict like every setting) is turned
//! into a typed [`DeclaredCheck`] when the scenario is read; a check with no kind or two, a
//! request with no address, a bad pattern or mode is refused there, located at its line and
//! column. What checks name (hosts, groups, nodes) is checked by the rules
//! (`rules/checks.rs`), and `crate::verify::declared` turns them into commands.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::rules::Refusal;
use super::{Group, Scenario};

/// Stands for a value unique to each verify run, in commands, paths and patterns: a check
/// that writes then reads back never reads an earlier run's data.
pub const RUN_TOKEN: &str = "${RUN}";
/// What [`RUN_TOKEN`] is replaced with when a pattern is compiled at load.
const SAMPLE_RUN: &str = "run0";

fn default_timeout() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

/// One entry of `checks:` as written: a name, the try's timeout, the retry window and
/// exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckEntry {
    name: String,
    #[serde(default = "default_timeout")]
    timeout: u64,
    #[serde(default)]
    within: u64,
    #[serde(default)]
    command: Option<CommandCheck>,
    #[serde(default)]
    file: Option<FileCheck>,
    #[serde(default)]
    unit: Option<UnitCheck>,
    #[serde(default)]
    http: Option<HttpEntry>,
    #[serde(default)]
    kubernetes: Option<KubernetesEntry>,
    #[serde(default)]
    pod: Option<PodCheck>,
}

/// A check of the scenario, typed.
#[derive(Debug, Clone, Serialize)]
pub struct DeclaredCheck {
    /// The testcase's name (unique in the scenario).
    pub name: String,
    /// Seconds one try may take.
    pub timeout: u64,
    /// Seconds the check keeps trying until it passes (0: one try).
    pub within: u64,
    pub kind: CheckKind,
}

/// What a check looks at.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Command(CommandCheck),
    File(FileCheck),
    Unit(UnitCheck),
    Http(HttpCheck),
    Kubernetes(KubernetesCheck),
    Pod(PodCheck),
}

impl CheckKind {
    /// The key that declares this kind in the scenario file.
    pub fn key(&self) -> &'static str {
        match self {
            CheckKind::Command(_) => "command",
            CheckKind::File(_) => "file",
            CheckKind::Unit(_) => "unit",
            CheckKind::Http(_) => "http",
            CheckKind::Kubernetes(_) => "kubernetes",
            CheckKind::Pod(_) => "pod",
        }
    }
}

/// A shell command (`sh -c`, as root, `/opt/bin` on PATH, the admin kubeconfig as
/// KUBECONFIG on masters) on every host of `on`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// A host, a group (`etcd`, `kube-master`, `kube-worker`), `nodes` or `all`.
    pub on: String,
    pub run: String,
    /// The exit status expected.
    #[serde(default)]
    pub exit: u32,
    #[serde(default)]
    pub stdout: Option<Pattern>,
    #[serde(default)]
    pub stderr: Option<Pattern>,
}

/// A file's state on every host of `on`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    pub on: String,
    pub path: String,
    #[serde(default = "default_true")]
    pub exists: bool,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// A pattern the content must match (the first 64 KiB).
    #[serde(default)]
    pub contains: Option<Pattern>,
}

/// A systemd unit's state on every host of `on`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitCheck {
    pub on: String,
    pub name: String,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Where a request comes from or goes to, as written: exactly one of the address fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    pod: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    address: Option<IpAddr>,
    #[serde(default)]
    namespace: Option<String>,
}

/// An HTTP(S) check as written: one request (`path`, `status`, `body`) or `requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpEntry {
    from: EndpointEntry,
    to: EndpointEntry,
    port: u16,
    #[serde(default)]
    scheme: Scheme,
    #[serde(default)]
    ca: Option<String>,
    #[serde(default = "default_true")]
    verify: bool,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    body: Option<Pattern>,
    #[serde(default)]
    requests: Option<Vec<Request>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// One GET and what its answer must be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub path: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub body: Option<Pattern>,
}

fn default_status() -> u16 {
    200
}

/// Who makes a request: a host's own network, or a pod's (entered on its node).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    Host(String),
    Pod(PodRef),
}

/// A pod by name, or the first Running pod a label selector finds.
#[derive(Debug, Clone, Serialize)]
pub struct PodRef {
    pub name: Option<String>,
    pub selector: Option<String>,
    pub namespace: Option<String>,
}

/// What a request goes to; Services and pods are looked up when the check runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    Service {
        name: String,
        namespace: Option<String>,
    },
    Pod(PodRef),
    Node(String),
    Address(IpAddr),
}

/// HTTP(S) requests, made in order from `from` to `to`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCheck {
    pub from: Client,
    pub to: Server,
    pub port: u16,
    pub scheme: Scheme,
    /// The CA (a file on the client's host) the server's certificate is verified against;
    /// the host's default CAs without it.
    pub ca: Option<String>,
    pub verify: bool,
    pub requests: Vec<Request>,
}

/// A Kubernetes assertion as written: an object and exactly one assertion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesEntry {
    object: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    jsonpath: Option<String>,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    matches: Option<Pattern>,
    #[serde(default)]
    count: Option<u32>,
}

/// An assertion on the API's objects, made with kubectl as admin on the first master.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesCheck {
    /// `kind/name`, or `kind` (with `selector`, for a jsonpath over a list or a count).
    pub object: String,
    pub namespace: Option<String>,
    pub selector: Option<String>,
    pub assertion: Assertion,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assertion {
    Exists(bool),
    /// The condition of this type is True.
    Condition(String),
    JsonPath {
        path: String,
        expect: Value,
    },
    /// How many objects there are (pods: how many are Ready).
    Count(u32),
}

/// What a printed value must be.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Value {
    Equals(String),
    Matches(Pattern),
}

/// A pod run once from a bundled image, its output (logs) and exit status judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodCheck {
    pub image: String,
    pub command: Vec<String>,
    /// The Kubernetes node it runs on; the scheduler's choice without it.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub exit: u32,
    #[serde(default)]
    pub stdout: Option<Pattern>,
}

/// A regular expression (Rust's `regex` syntax), compiled at load so a bad one is refused
/// where it is written. It may hold [`RUN_TOKEN`].
#[derive(Clone)]
pub struct Pattern {
    source: String,
}

impl Pattern {
    /// Compiles `source` (with a sample run value) or says why not.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        regex::Regex::new(&source.replace(RUN_TOKEN, SAMPLE_RUN))?;
        Ok(Pattern {
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression for one verify run; it compiled at load, and the run value is
    /// letters, digits and '-', so it compiles again.
    pub fn for_run(&self, run: &str) -> regex::Regex {
        regex::Regex::new(&self.source.replace(RUN_TOKEN, run))
            .expect("a pattern compiled at load compiles with any run value")
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source).map_err(|e| {
            let why = e.to_string();
            let last = why
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            de::Error::custom(format!(
                "not a valid pattern '{source}': {}",
                last.trim().trim_start_matches("error: ")
            ))
        })
    }
}

/// A file mode written as an octal string (`"0644"`): YAML would read an unquoted 0644 as
/// the decimal number 644.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        d.deserialize_any(ModeVisitor)
    }
}

struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = Mode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quoted octal mode such as '0644'")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Mode, E> {
        let octal = (3..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(s, 8) {
            Ok(mode) if octal => Ok(Mode(mode)),
            _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Mode, E> {
        Err(E::custom(format!(
            "mode {n} is a number: write it as a quoted octal string such as '0644'"
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Mode, E> {
        self.visit_u64(n.unsigned_abs())
    }

    /// The YAML reader may take `0644` for a float.
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Mode, E> {
        Err(E::custom(format!(
            "mode {n} is a number: write it as a quoted octal string such as '0644'"
        )))
    }
}

impl Scenario {
    /// The hosts a check's `on` names, in platform order: a host, a group, `nodes` (every
    /// Kubernetes node) or `all`; `None` when it names nothing the scenario has.
    pub fn check_hosts(&self, on: &str) -> Option<Vec<String>> {
        let group = |g: Group| move |p: &&super::Platform| p.in_group(g);
        let names = |f: &dyn Fn(&&super::Platform) -> bool| {
            self.platforms
                .iter()
                .filter(f)
                .map(|p| p.name.clone())
                .collect()
        };
        Some(match on {
            "all" => names(&|_| true),
            "nodes" => names(&|p| p.in_group(Group::KubeMaster) || p.in_group(Group::KubeWorker)),
            "etcd" => names(&group(Group::Etcd)),
            "kube-master" => names(&group(Group::KubeMaster)),
            "kube-worker" => names(&group(Group::KubeWorker)),
            host => vec![self.platforms.iter().find(|p| p.name == host)?.name.clone()],
        })
    }
}

impl CheckEntry {
    /// The typed check, or why its shape is wrong (located under `checks.<index>`).
    pub(crate) fn into_check(self, index: usize) -> Result<DeclaredCheck, Refusal> {
        let at = |field: &str| format!("checks.{index}.{field}");
        let written = [
            self.command.is_some().then_some("command"),
            self.file.is_some().then_some("file"),
            self.unit.is_some().then_some("unit"),
            self.http.is_some().then_some("http"),
            self.kubernetes.is_some().then_some("kubernetes"),
            self.pod.is_some().then_some("pod"),
        ];
        let kinds: Vec<&str> = written.into_iter().flatten().collect();
        let name = self.name.clone();
        let kind = match (
            self.command,
            self.file,
            self.unit,
            self.http,
            self.kubernetes,
            self.pod,
        ) {
            _ if kinds.len() > 1 => {
                return Err(Refusal::new(
                    at(kinds[1]),
                    format!(
                        "check '{name}' has two kinds ({}): a check is one of command, file, unit, http, kubernetes, pod",
                        kinds.join(", ")
                    ),
                ));
            }
            (Some(c), ..) => CheckKind::Command(c),
            (_, Some(f), ..) => CheckKind::File(f),
            (_, _, Some(u), ..) => CheckKind::Unit(u),
            (_, _, _, Some(h), ..) => {
                CheckKind::Http(h.typed(&at("http")).map_err(|r| said(r, index, &name))?)
            }
            (_, _, _, _, Some(k), _) => CheckKind::Kubernetes(
                k.typed(&at("kubernetes"))
                    .map_err(|r| said(r, index, &name))?,
            ),
            (.., Some(p)) => CheckKind::Pod(p),
            _ => {
                return Err(Refusal::new(
                    format!("checks.{index}.name"),
                    format!(
                        "check '{name}' says nothing to check: give it one of command, file, unit, http, kubernetes, pod"
                    ),
                ));
            }
        };
        Ok(DeclaredCheck {
            name: self.name,
            timeout: self.timeout,
            within: self.within,
            kind,
        })
    }
}

/// A refusal of check `name`'s shape, in the words of the file (`http.from`, not
/// `checks.3.http.from`).
fn said(r: Refusal, index: usize, name: &str) -> Refusal {
    let message = r.message.replace(&format!("checks.{index}."), "");
    Refusal {
        message: format!("check '{name}': {message}"),
        ..r
    }
}

impl EndpointEntry {
    /// The fields written, in a fixed order, but for `namespace`.
    fn written(&self) -> Vec<&'static str> {
        [
            self.host.is_some().then_some("host"),
            self.pod.is_some().then_some("pod"),
            self.selector.is_some().then_some("selector"),
            self.service.is_some().then_some("service"),
            self.node.is_some().then_some("node"),
            self.address.is_some().then_some("address"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Exactly one of `allowed` is written; which one.
    fn one_of(&self, at: &str, allowed: &[&str]) -> Result<&'static str, Refusal> {
        let written = self.written();
        let choices = allowed.join(", ");
        match written.as_slice() {
            [one] if allowed.contains(one) => {
                if self.namespace.is_some() && !["pod", "selector", "service"].contains(one) {
                    return Err(Refusal::new(
                        format!("{at}.namespace"),
                        format!(
                            "{at}: a namespace goes with a pod, selector or service, not a {one}"
                        ),
                    ));
                }
                Ok(one)
            }
            [one] => Err(Refusal::new(
                format!("{at}.{one}"),
                format!("{at}: '{one}' cannot be used here; one of: {choices}"),
            )),
            [] => Err(Refusal::new(at, format!("{at}: give one of: {choices}"))),
            [_, second, ..] => Err(Refusal::new(
                format!("{at}.{second}"),
                format!(
                    "{at}: give only one of: {choices} (found {})",
                    written.join(", ")
                ),
            )),
        }
    }

    fn pod_ref(self) -> PodRef {
        PodRef {
            name: self.pod,
            selector: self.selector,
            namespace: self.namespace,
        }
    }

    fn client(self, at: &str) -> Result<Client, Refusal> {
        Ok(match self.one_of(at, &["host", "pod", "selector"])? {
            "host" => Client::Host(self.host.expect("written")),
            _ => Client::Pod(self.pod_ref()),
        })
    }

    fn server(self, at: &str) -> Result<Server, Refusal> {
        let allowed = ["service", "pod", "selector", "node", "address"];
        Ok(match self.one_of(at, &allowed)? {
            "service" => Server::Service {
                name: self.service.expect("written"),
                namespace: self.namespace,
            },
            "node" => Server::Node(self.node.expect("written")),
            "address" => Server::Address(self.address.expect("written")),
            _ => Server::Pod(self.pod_ref()),
        })
    }
}

impl HttpEntry {
    fn typed(self, at: &str) -> Result<HttpCheck, Refusal> {
        let single = self.path.is_some() || self.status.is_some() || self.body.is_some();
        let requests = match (self.requests, single) {
            (Some(_), true) => {
                return Err(Refusal::new(
                    format!("{at}.requests"),
                    format!("{at}: give one request (path, status, body) or requests, not both"),
                ));
            }
            (Some(list), false) if list.is_empty() => {
                return Err(Refusal::new(
                    format!("{at}.requests"),
                    format!("{at}.requests: at least one request is needed"),
                ));
            }
            (Some(list), false) => list,
            (None, _) => vec![Request {
                path: self.path.unwrap_or_else(|| "/".into()),
                status: self.status.unwrap_or_else(default_status),
                body: self.body,
            }],
        };
        if self.ca.is_some() && self.scheme == Scheme::Http {
            return Err(Refusal::new(
                format!("{at}.ca"),
                format!("{at}.ca: a CA is for scheme https"),
            ));
        }
        Ok(HttpCheck {
            from: self.from.client(&format!("{at}.from"))?,
            to: self.to.server(&format!("{at}.to"))?,
            port: self.port,
            scheme: self.scheme,
            ca: self.ca,
            verify: self.verify,
            requests,
        })
    }
}

impl KubernetesEntry {
    fn typed(self, at: &str) -> Result<KubernetesCheck, Refusal> {
        let written: Vec<&str> = [
            self.exists.is_some().then_some("exists"),
            self.condition.is_some().then_some("condition"),
            self.jsonpath.is_some().then_some("jsonpath"),
            self.count.is_some().then_some("count"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let one = "one of exists, condition, jsonpath (with equals or matches), count";
        if written.len() != 1 {
            let (path, what) = match written.get(1) {
                Some(second) => (format!("{at}.{second}"), "only"),
                None => (format!("{at}.object"), "exactly"),
            };
            return Err(Refusal::new(path, format!("{at}: give {what} {one}")));
        }
        if (self.equals.is_some() || self.matches.is_some()) && self.jsonpath.is_none() {
            return Err(Refusal::new(
                format!(
                    "{at}.{}",
                    if self.equals.is_some() {
                        "equals"
                    } else {
                        "matches"
                    }
                ),
                format!("{at}: equals and matches judge a jsonpath's value"),
            ));
        }
        let assertion = match (self.exists, self.condition, self.jsonpath, self.count) {
            (Some(e), ..) => Assertion::Exists(e),
            (_, Some(c), ..) => Assertion::Condition(c),
            (.., Some(path), _) => Assertion::JsonPath {
                expect: match (self.equals, self.matches) {
                    (Some(e), None) => Value::Equals(e),
                    (None, Some(m)) => Value::Matches(m),
                    _ => {
                        return Err(Refusal::new(
                            format!("{at}.jsonpath"),
                            format!("{at}: a jsonpath needs one of equals or matches"),
                        ));
                    }
                },
                path,
            },
            (.., Some(n)) => Assertion::Count(n),
            _ => unreachable!("exactly one assertion is written"),
        };
        Ok(KubernetesCheck {
            object: self.object,
            namespace: self.namespace,
            selector: self.selector,
            assertion,
        })
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
