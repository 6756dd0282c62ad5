//! Files taken out of unpacked Debian packages for an image: symlinks with what they point
//! at, directories whole, and for every ELF file its interpreter and shared libraries,
//! transitively.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::tree::{Data, Node, Tree};
use super::{LIB_DIRS, rel};
use crate::elf;

/// Add `paths` (relative to `root`) to `tree`: symlinks with what they point at, directories
/// whole, and for every ELF file its interpreter and `NEEDED` libraries, transitively.
pub(crate) fn take_with_libraries(tree: &mut Tree, root: &Path, paths: &[&str]) -> Result<()> {
    let mut elves = Vec::new();
    for path in paths {
        take(tree, root, path, &mut elves)?;
    }
    let mut seen = BTreeSet::new();
    while let Some(elf) = elves.pop() {
        if !seen.insert(elf.clone()) {
            continue;
        }
        let (interpreter, needed) = elf::dependencies(&root.join(&elf))?;
        if let Some(interpreter) = interpreter {
            take(tree, root, rel(&interpreter), &mut elves)?;
        }
        for lib in needed {
            let found = LIB_DIRS
                .iter()
                .map(|dir| format!("{dir}/{lib}"))
                .find(|p| root.join(p).symlink_metadata().is_ok())
                .ok_or_else(|| {
                    anyhow!(
                        "{elf} needs {lib}, which none of the image's packages ships in {}",
                        LIB_DIRS.join(" or ")
                    )
                })?;
            take(tree, root, &found, &mut elves)?;
        }
    }
    Ok(())
}

/// Add one path of the unpacked tree; ELF files found are pushed onto `elves`.
fn take(tree: &mut Tree, root: &Path, path: &str, elves: &mut Vec<String>) -> Result<()> {
    // A directory may exist only as an implicit parent so far: walk it anyway.
    if matches!(
        tree.nodes.get(path),
        Some(Node::File { .. } | Node::Symlink { .. })
    ) {
        return Ok(());
    }
    let full = root.join(path);
    let meta = full
        .symlink_metadata()
        .with_context(|| format!("{path} is not in the unpacked packages"))?;
    if meta.file_type().is_symlink() {
        let target =
            fs::read_link(&full).with_context(|| format!("reading link {}", full.display()))?;
        let target = target
            .to_str()
            .ok_or_else(|| anyhow!("link {} is not UTF-8", full.display()))?
            .to_string();
        tree.symlink(path, &target);
        let resolved = resolve_link(path, &target)
            .ok_or_else(|| anyhow!("link {path} -> {target} leaves the image root"))?;
        take(tree, root, &resolved, elves)
    } else if meta.is_dir() {
        tree.dir(path, 0o755);
        let mut children = Vec::new();
        for entry in fs::read_dir(&full).with_context(|| format!("listing {}", full.display()))? {
            let entry = entry.with_context(|| format!("listing {}", full.display()))?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| anyhow!("a file name in {} is not UTF-8", full.display()))?;
            children.push(format!("{path}/{name}"));
        }
        children.sort();
        for child in children {
            take(tree, root, &child, elves)?;
        }
        Ok(())
    } else {
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        tree.file(path, Data::Host(full.clone()), mode);
        if elf::is_elf(&full)? {
            elves.push(path.to_string());
        }
        Ok(())
    }
}

/// The path (relative to the image root) a link at `path` pointing at `target` resolves to.
fn resolve_link(path: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::temp_dir;
    use super::*;

    #[test]
    fn a_directory_first_seen_as_parent_is_still_taken_whole() {
        let root = temp_dir("parent");
        fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        fs::write(root.join("usr/lib/x/a"), b"a").unwrap();
        fs::write(root.join("usr/lib/b"), b"b").unwrap();
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, &root, &["usr/lib/x/a", "usr/lib"]).unwrap();
        assert!(tree.nodes.contains_key("usr/lib/b"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn links_resolve_inside_the_image_root() {
        assert_eq!(
            resolve_link("usr/bin/redis-server", "redis-check-rdb").as_deref(),
            Some("usr/bin/redis-check-rdb")
        );
        assert_eq!(
            resolve_link(
                "lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            )
            .as_deref(),
            Some("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            resolve_link("usr/bin/iptables-xml", "../sbin/xtables-legacy-multi").as_deref(),
            Some("usr/sbin/xtables-legacy-multi")
        );
        assert_eq!(resolve_link("a", "../../etc"), None);
    }

    #[test]
    fn taking_a_link_takes_its_target_and_directories_whole() {
        let root = temp_dir("take");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("usr/lib/x/sub")).unwrap();
        fs::write(root.join("usr/bin/real"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("usr/bin/real"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("real", root.join("usr/bin/alias")).unwrap();
        fs::write(root.join("usr/lib/x/sub/data"), b"d").unwrap();
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, &root, &["usr/bin/alias", "usr/lib/x"]).unwrap();
        assert_eq!(
            tree.nodes["usr/bin/alias"],
            Node::Symlink {
                target: "real".into()
            }
        );
        assert_eq!(
            tree.nodes["usr/bin/real"],
            Node::File {
                data: Data::Host(root.join("usr/bin/real")),
                mode: 0o755
            }
        );
        assert!(matches!(
            tree.nodes["usr/lib/x/sub/data"],
            Node::File { mode: 0o644, .. }
        ));
        let err = take_with_libraries(&mut tree, &root, &["usr/bin/missing"]).unwrap_err();
        assert!(format!("{err:#}").contains("usr/bin/missing"), "{err:#}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn elf_closure_brings_interpreter_and_libraries() {
        // The build machine is Debian: its own /bin/dash needs libc and the loader.
        let mut tree = Tree::default();
        take_with_libraries(&mut tree, Path::new("/"), &["usr/bin/dash"]).unwrap();
        assert!(tree.nodes.contains_key("lib64/ld-linux-x86-64.so.2"));
        let libc = LIB_DIRS
            .iter()
            .any(|d| tree.nodes.contains_key(&format!("{d}/libc.so.6")));
        assert!(libc, "{:?}", tree.nodes.keys().collect::<Vec<_>>());
    }
}
