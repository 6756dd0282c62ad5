//! A file tree written as a deterministic tar (sorted entries, mtime 0, uid/gid 0,
//! normalised modes), so the same inputs give the same sha256.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kubeforge::files::Sha256Writer;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Host(PathBuf),
    Inline(Vec<u8>),
}

/// One entry of a [`Tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir { mode: u32 },
    File { data: Data, mode: u32 },
    Symlink { target: String },
}

/// A file tree written as a tar with sorted names, mtime 0 and uid/gid 0.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Relative paths without a trailing slash; sorted order puts parents first.
    pub(crate) nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Adds the parent directories of `path` that are not there yet (mode 0755).
    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.nodes
                .entry(path[..end].to_string())
                .or_insert(Node::Dir { mode: 0o755 });
            end += 1;
        }
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::Dir { mode });
    }

    pub(crate) fn file(&mut self, path: &str, data: Data, mode: u32) {
        self.parents(path);
        self.nodes
            .insert(path.to_string(), Node::File { data, mode });
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.nodes.insert(
            path.to_string(),
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// Writes the tree as a tar to `out`: entries in name order, owner and mtime zeroed.
    pub(crate) fn write<W: Write>(&self, out: W) -> Result<W> {
        let mut builder = tar::Builder::new(out);
        for (path, node) in &self.nodes {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match node {
                Node::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())
                }
                Node::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    match data {
                        Data::Inline(bytes) => {
                            header.set_size(bytes.len() as u64);
                            builder.append_data(&mut header, path, bytes.as_slice())
                        }
                        Data::Host(from) => {
                            let file = File::open(from)
                                .with_context(|| format!("opening {}", from.display()))?;
                            let len = file
                                .metadata()
                                .with_context(|| format!("reading size of {}", from.display()))?
                                .len();
                            header.set_size(len);
                            builder.append_data(&mut header, path, std::io::Read::take(file, len))
                        }
                    }
                }
                Node::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)
                }
            }
            .with_context(|| format!("adding {path} to the tar"))?;
        }
        builder.into_inner().context("finishing the tar")
    }
}

/// Write `tree` as a tar to `dest`; returns its sha256 (hex) and size.
pub(crate) fn write_tar(tree: &Tree, dest: &Path) -> Result<(String, u64)> {
    let file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let writer = Sha256Writer::new(BufWriter::with_capacity(1 << 20, file));
    let mut writer = tree
        .write(writer)
        .with_context(|| format!("writing {}", dest.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    let (_, sha256, len) = writer.finish();
    Ok((sha256, len))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::temp_dir;
    use super::super::{IPTABLES_MULTI, PASSWD};
    use super::*;
    use kubeforge::files::sha256_hex;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    pub(in crate::images) fn tar_bytes(tree: &Tree) -> Vec<u8> {
        tree.write(Vec::new()).unwrap()
    }

    /// (path, type, mode, uid, gid, mtime, link target, content) of every entry, in order.
    pub(in crate::images) type Row = (
        String,
        tar::EntryType,
        u32,
        u64,
        u64,
        u64,
        Option<String>,
        Vec<u8>,
    );

    pub(in crate::images) fn entries(bytes: &[u8]) -> Vec<Row> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                (
                    path,
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    link,
                    content,
                )
            })
            .collect()
    }

    #[test]
    fn tar_is_sorted_with_parents_modes_and_zeroed_metadata() {
        let dir = temp_dir("entries");
        let host = dir.join("bin");
        fs::write(&host, b"\x7fELF-not-really").unwrap();
        let mut tree = Tree::default();
        tree.file("usr/local/bin/tool", Data::Host(host), 0o755);
        tree.file("etc/passwd", Data::Inline(PASSWD.into()), 0o644);
        tree.dir("tmp", 0o1777);
        tree.symlink("usr/sbin/iptables", IPTABLES_MULTI);
        let long = format!("usr/lib/{}/libx.so", "d".repeat(120));
        tree.file(&long, Data::Inline(b"x".to_vec()), 0o644);

        let rows = entries(&tar_bytes(&tree));
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/passwd",
                "tmp/",
                "usr/",
                "usr/lib/",
                &format!("usr/lib/{}/", "d".repeat(120)),
                &long,
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool",
                "usr/sbin/",
                "usr/sbin/iptables",
            ]
        );
        for row in &rows {
            assert_eq!((row.3, row.4, row.5), (0, 0, 0), "{}", row.0);
        }
        let get = |name: &str| rows.iter().find(|r| r.0 == name).unwrap();
        assert_eq!(get("tmp/").1, tar::EntryType::Directory);
        assert_eq!(get("tmp/").2, 0o1777);
        assert_eq!(get("usr/").2, 0o755);
        assert_eq!(get("usr/local/bin/tool").2, 0o755);
        assert_eq!(get("usr/local/bin/tool").7, b"\x7fELF-not-really");
        assert_eq!(get("etc/passwd").2, 0o644);
        assert_eq!(get("etc/passwd").7, PASSWD.as_bytes());
        assert_eq!(get("usr/sbin/iptables").1, tar::EntryType::Symlink);
        assert_eq!(get("usr/sbin/iptables").6.as_deref(), Some(IPTABLES_MULTI));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tar_bytes_do_not_depend_on_insertion_order_or_host_metadata() {
        let dir = temp_dir("determinism");
        let host = dir.join("f");
        fs::write(&host, b"payload").unwrap();
        let mut a = Tree::default();
        a.file("b/f", Data::Host(host.clone()), 0o755);
        a.file("a/x", Data::Inline(b"1".to_vec()), 0o644);
        a.symlink("a/l", "x");
        let first = tar_bytes(&a);
        // Touch the host file's mtime and mode: the archive must not change.
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&host, b"payload").unwrap();
        let mut b = Tree::default();
        b.symlink("a/l", "x");
        b.file("a/x", Data::Inline(b"1".to_vec()), 0o644);
        b.file("b/f", Data::Host(host.clone()), 0o755);
        assert_eq!(first, tar_bytes(&b));

        let (sha1, size1) = write_tar(&a, &dir.join("one.tar")).unwrap();
        let (sha2, size2) = write_tar(&b, &dir.join("two.tar")).unwrap();
        assert_eq!((&sha1, size1), (&sha2, size2));
        assert_eq!(sha1, sha256_hex(&first));
        assert_eq!(size1, first.len() as u64);

        b.file("a/x", Data::Inline(b"2".to_vec()), 0o644);
        assert_ne!(first, tar_bytes(&b), "content must change the archive");
        fs::remove_dir_all(&dir).unwrap();
    }
}
