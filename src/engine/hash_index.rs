//! The hash index a host keeps of its managed files, so that an unchanged file is not hashed
//! again on every run (git's index works this way).
//!
//! An entry is one file under the index directory, at the managed file's own path
//! (`<index>/opt/bin/kubelet`), holding the file's size, mtime, ctime, inode and device and
//! its sha256. The facts script trusts an entry only while the file's stat is exactly that;
//! anything else (a hand edit, a replaced file, a `touch` that put the mtime back: ctime
//! cannot be set back) makes it hash the file again. Entries are written by the apply
//! script right after kubeforge writes a file or installs an upload (with the sha256 it
//! wrote), and by the facts script when it hashed a file whose ctime is at least
//! [`RACY_SECONDS`] old: a change made within the same timestamp tick as the one it read
//! would leave the stat as it was, so such a hash is not recorded (git's "racily clean"
//! entries). What is left unseen is a change by another writer within the same tick right
//! after kubeforge's own write, or between an upload and its phase's apply script; `full`
//! hashing ([`Hashing::full`], `--full-hash`) reads every file whatever the index says.
//!
//! The directory is root-only (0700); entries are written atomically (a temporary file
//! renamed), and a lost or stale entry only costs a hash.

use crate::ssh::shell_quote;

/// Where the installer keeps the index on every host.
pub const INDEX_DIR: &str = "/var/lib/kubeforge/hashes";

/// How many seconds old a file's ctime must be for a hash the facts script computed to be
/// recorded: more than any filesystem's timestamp granularity (1 s on ext3, 2 s on FAT)
/// and the kernel's coarse clock tick.
pub const RACY_SECONDS: u32 = 2;

/// What a file's index key is made of: size, mtime, ctime, inode, device (`stat --printf`).
pub(super) const KEY_FORMAT: &str = "%s %.9Y %.9Z %i %d";

/// How file contents are compared with the wanted sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashing {
    /// The index directory on the host (the installer's is [`INDEX_DIR`]).
    pub index: String,
    /// Hash every managed file in full, whatever the index says (and record the result).
    pub full: bool,
}

impl Hashing {
    /// The installer's index, trusted (`full: false`) or not.
    pub fn installer(full: bool) -> Hashing {
        Hashing {
            index: INDEX_DIR.to_string(),
            full,
        }
    }

    /// Shell functions over the index, for both the facts and the apply script:
    /// `kf_entry PATH KEY SHA` records an entry; `kf_record PATH KEY SHA` records one the
    /// facts script hashed (unless racy, see the module doc: then the entry goes);
    /// `kf_seen PATH SHA` records a file kubeforge just wrote. None of them ever fails.
    pub(super) fn shell_functions(&self) -> String {
        format!(
            r#"KF_IDX={index}
kf_entry() {{ kf_e="$KF_IDX$1"; {{ [ -d "${{kf_e%/*}}" ] || {{ mkdir -p -m 0700 "$KF_IDX" && mkdir -p "${{kf_e%/*}}"; }}; }} 2>/dev/null && printf '%s %s\n' "$2" "$3" 2>/dev/null >"$kf_e.kf-tmp.$$" && mv -f "$kf_e.kf-tmp.$$" "$kf_e" 2>/dev/null || true; }}
kf_record() {{ kf_c=${{2#* * }}; kf_c=${{kf_c%%.*}}; if [ $((kf_now - kf_c)) -ge {RACY_SECONDS} ]; then kf_entry "$@"; else rm -f "$KF_IDX$1" 2>/dev/null || true; fi; }}
kf_seen() {{ if kf_k=$(stat --printf '{KEY_FORMAT}' -- "$1" 2>/dev/null); then kf_entry "$1" "$kf_k" "$2"; fi; }}
"#,
            index = shell_quote(&self.index),
        )
    }
}
