//! Files on the control machine: written atomically, identified by their sha256.
//!
//! The state directory, the PKI, the SSH keys and the xtask's bundle all go through
//! [`write_atomic`], so a crash or a full disk never leaves a half-written file under its
//! real name; every sha256 the project compares is the lowercase hex of [`sha256_hex`],
//! [`sha256_file`] or [`Sha256Writer`].

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old content or the new one, never a mix. The temporary file gets
/// exactly `mode` (despite the umask) before any content is written, so a private key is
/// never readable by others even for a moment; it is synced before the rename and removed
/// when anything fails. The parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Hidden, random and `.tmp`: never mistaken for the real file, never shared by two writers.
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // open() filtered `mode` through the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file does not exist if creating it failed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The sha256 of the file at `path` as lowercase hex, read in chunks (bundle binaries are
/// hundreds of MB).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hashing = Sha256Writer::new(io::sink());
    io::copy(&mut file, &mut hashing)?;
    Ok(hashing.finish().1)
}

/// A writer that hashes and counts what passes through it, so a file's sha256 costs no
/// second read (downloads, tar archives).
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the sha256 (lowercase hex) and the byte count of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("{:x}", self.hasher.finalize()),
            self.len,
        )
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_content_with_exact_mode_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"first", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o644);
        // The umask (usually 022) must not weaken or strengthen the mode asked for.
        write_atomic(&path, b"second", 0o666).unwrap();
        assert_eq!(mode(&path), 0o666);
        write_atomic(&path, b"third", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), ["key.pem"]);
    }

    #[test]
    fn failed_write_atomic_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old", 0o600).unwrap();
        // A directory in the way makes the rename fail after the temporary was written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write_atomic(&blocked, b"new", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["blocked", "state.json"]);
        let missing = dir.path().join("no/such/dir/file");
        assert_eq!(
            write_atomic(&missing, b"x", 0o600).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn sha256_of_bytes_file_and_writer_agree() {
        // The well-known digest of "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), abc);
        assert!(sha256_file(&dir.path().join("missing")).is_err());

        let mut writer = Sha256Writer::new(Vec::new());
        writer.write_all(b"a").unwrap();
        writer.write_all(b"bc").unwrap();
        let (inner, digest, len) = writer.finish();
        assert_eq!(
            (inner.as_slice(), digest.as_str(), len),
            (&b"abc"[..], abc, 3)
        );
    }
}
