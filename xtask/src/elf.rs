//! What an ELF binary needs at run time, read with readelf (binutils comes with gcc): its
//! program interpreter and the shared libraries (`NEEDED`) it loads.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use kubeforge::process::Program;

/// The program interpreter and `NEEDED` entries of an ELF file; a static binary has
/// neither.
pub(crate) fn dependencies(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    let path = path.to_string_lossy();
    let text = Program::new("readelf", &["-l", "-d", "-W", &path]).run_blocking()?;
    Ok((parse_interpreter(&text), parse_needed(&text)))
}

/// Whether `path` starts with the ELF magic, i.e. may need an interpreter and libraries.
pub(crate) fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"\x7fELF"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse_interpreter(readelf: &str) -> Option<String> {
    readelf.lines().find_map(|l| {
        let rest = l.split_once("[Requesting program interpreter: ")?.1;
        Some(rest.split_once(']')?.0.to_string())
    })
}

fn parse_needed(readelf: &str) -> Vec<String> {
    readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            let (lib, _) = rest.split_once(']')?;
            Some(lib.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_needed_entries_are_parsed() {
        let out = " 0x0000000000000001 (NEEDED)             Shared library: [libseccomp.so.2]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT)               0x4000\n";
        assert_eq!(parse_needed(out), vec!["libseccomp.so.2", "libc.so.6"]);
        assert!(parse_needed("\nThere is no dynamic section in this file.\n").is_empty());
    }

    #[test]
    fn readelf_interpreter_is_parsed() {
        let out = "Program Headers:\n  INTERP 0x000318 0x318 0x318 0x00001c 0x00001c R 0x1\n      [Requesting program interpreter: /lib64/ld-linux-x86-64.so.2]\n";
        assert_eq!(
            parse_interpreter(out).as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(parse_interpreter("There are no program headers\n"), None);
    }
}
