//! Where each setting sits in the scenario file, so a rule that refuses a value can point at
//! its line and column, and what a YAML error says in the scenario's words.
//!
//! The typed settings keep no positions (every other module reads them as plain values); the
//! text is read a second time into a tree of positions instead, with serde-saphyr's
//! [`Spanned`] giving the position of every key and value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// A 1-based line and column in the scenario file.
pub(crate) type Position = (u64, u64);

/// Where the keys and values of one scenario file are, by setting path.
#[derive(Clone, Default)]
pub(crate) struct Locations {
    root: Option<Node>,
}

/// One YAML value and where it starts.
#[derive(Clone)]
struct Node {
    at: Position,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar,
}

/// A mapping entry: the key's text and position, and its value.
#[derive(Clone)]
struct Entry {
    key: String,
    key_at: Position,
    value: Node,
}

impl Locations {
    /// The positions in `text`; empty (every lookup answers 1:1) if the text is not YAML,
    /// which the typed parse has already reported.
    pub(crate) fn of(text: &str) -> Locations {
        Locations {
            root: serde_saphyr::from_str::<Node>(text).ok(),
        }
    }

    /// Whether the setting at `path` (`cluster.etcd.client_port`, `platforms.2.name`) is
    /// written in the file.
    pub(crate) fn has(&self, path: &str) -> bool {
        matches!(self.walk(path), (Some(_), true))
    }

    /// Where the setting at `path` is: its value when the file writes it, else the key of
    /// the nearest parent it writes (a default is blamed on the section that left it out),
    /// else 1:1.
    pub(crate) fn at(&self, path: &str) -> Position {
        self.walk(path).0.unwrap_or((1, 1))
    }

    /// The position found for `path` and whether all of it was found.
    fn walk(&self, path: &str) -> (Option<Position>, bool) {
        let Some(mut node) = self.root.as_ref() else {
            return (None, false);
        };
        let mut nearest = None;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            let next = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|e| e.key == segment)
                    .map(|e| (e.key_at, &e.value)),
                Kind::Seq(items) => segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|n| (n.at, n)),
                Kind::Scalar => None,
            };
            match next {
                Some((key_at, child)) => {
                    nearest = Some(key_at);
                    node = child;
                }
                None => return (nearest, false),
            }
        }
        (Some(node.at), true)
    }
}

/// The tree is big and says nothing a reader of a `Scenario` needs.
impl fmt::Debug for Locations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Locations { .. }")
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            at: position(&spanned),
            kind: spanned.value,
        })
    }
}

fn position<T>(spanned: &Spanned<T>) -> Position {
    (spanned.referenced.line(), spanned.referenced.column())
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

/// Keeps the shape (mappings with their keys, sequences) and drops scalar values.
struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            entries.push(Entry {
                key_at: position(&key),
                key: key.value.0,
                value: map.next_value()?,
            });
        }
        Ok(Kind::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }

    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
}

/// A mapping key as text, whatever scalar type YAML would give it.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        d.deserialize_str(KeyVisitor).map(KeyText)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E>(self, s: &str) -> Result<String, E> {
        Ok(s.to_string())
    }

    fn visit_i64<E>(self, n: i64) -> Result<String, E> {
        Ok(n.to_string())
    }

    fn visit_u64<E>(self, n: u64) -> Result<String, E> {
        Ok(n.to_string())
    }

    fn visit_bool<E>(self, b: bool) -> Result<String, E> {
        Ok(b.to_string())
    }
}

/// A YAML or type error in the reader's words: where it is, and what is wrong without the
/// parser's own advice (a duplicated key is called that, not a policy to relax).
pub(crate) fn describe_yaml_error(e: &serde_saphyr::Error) -> (Position, String) {
    let at = e
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|&(line, _)| line > 0)
        .unwrap_or((1, 1));
    let mut inner = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    let message: Cow<str> = match inner {
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => Cow::Owned(format!(
            "duplicated key{}: a mapping holds each key once (YAML 1.2), and which of the two values counts would be a guess",
            key.as_deref()
                .map(|k| format!(" '{k}'"))
                .unwrap_or_default()
        )),
        other => UserMessageFormatter.format_message(other),
    };
    let first = message.lines().next().unwrap_or_default().trim();
    // The parser quotes the file: keep terminal control characters out of the message.
    (at, first.chars().filter(|c| !c.is_control()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a comment
platforms:
  - name: etcd-01
    groups: [etcd, kube-master]
  - {name: kube-worker-01, groups: [kube-worker]}
cluster:
  etcd:
    client_port: 2379
  name: demo
";

    #[test]
    fn written_settings_are_found_at_their_value() {
        let l = Locations::of(TEXT);
        assert_eq!(l.at("platforms.0.name"), (3, 11));
        assert_eq!(l.at("platforms.0.groups"), (4, 13));
        assert_eq!(l.at("platforms.1.name"), (5, 12));
        assert_eq!(l.at("cluster.etcd.client_port"), (8, 18));
        assert_eq!(l.at("cluster.name"), (9, 9));
        assert!(l.has("cluster.etcd.client_port"));
    }

    #[test]
    fn defaults_are_blamed_on_the_nearest_written_parent() {
        let l = Locations::of(TEXT);
        assert!(!l.has("cluster.etcd.peer_port"));
        assert_eq!(l.at("cluster.etcd.peer_port"), (7, 3));
        assert_eq!(l.at("cluster.pod_network"), (6, 1));
        assert_eq!(l.at("driver.subnet"), (1, 1));
        assert_eq!(l.at("platforms.7.name"), (2, 1));
        assert_eq!(Locations::of(": [").at("cluster"), (1, 1));
    }

    #[test]
    fn yaml_errors_read_as_the_scenario_s_words() {
        let e = serde_saphyr::from_str::<serde_json::Value>("a: 1\nb: 2\na: 3\n").unwrap_err();
        let (at, message) = describe_yaml_error(&e);
        assert_eq!(at.0, 3);
        assert!(message.starts_with("duplicated key 'a':"), "{message}");
        assert!(!message.contains("DuplicateKeyPolicy"), "{message}");
    }
}
