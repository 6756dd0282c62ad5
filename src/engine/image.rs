//! An image in containerd, imported from a tarball of the control machine streamed into
//! `ctr images import -` (a [`Resource::Image`](super::Resource::Image)): containerd holds
//! the only copy on the host. How the facts script reads every image of a host from one
//! `ctr images ls`, how a difference reads, and the import.
//!
//! A marker file on the host records the tarball's sha256 and the digest containerd gave
//! the image. The image is imported again while it is missing from containerd, has another
//! digest there (replaced under the same name) or came from another tarball (a rebuilt
//! image with the same tag).

use std::path::PathBuf;

use super::change::ChangeKind;
use super::resource::Observation;
use crate::ssh::shell_quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `kubeforge.local/pause:3.4`.
    pub reference: String,
    /// The docker-archive tarball on the control machine.
    pub local: PathBuf,
    /// The tarball's sha256.
    pub sha256: String,
    /// Where the tarball's sha256 and the image's digest are recorded after an import.
    pub marker: String,
}

impl Image {
    /// What must happen: nothing, or an import and why (facts: `digest` from containerd,
    /// `marker` as recorded).
    pub fn diff(&self, seen: &Observation) -> Option<ChangeKind> {
        let reason = match (seen.get("digest"), seen.get("marker")) {
            (None, _) => "not in containerd",
            (Some(digest), Some(marker)) if *marker == format!("{} {digest}", self.sha256) => {
                return None;
            }
            (Some(_), None) => "no record of its import",
            (Some(_), Some(_)) => "another tarball or digest than the one imported",
        };
        Some(ChangeKind::Import {
            reason: reason.to_string(),
        })
    }

    /// Imports the tarball fed on stdin with `ctr` (a command line), then records what it
    /// imported.
    pub fn import_script(&self, ctr: &str) -> String {
        format!(
            "set -e\n\
             {ctr} images import - >/dev/null\n\
             kf_d=$({digest})\n\
             [ -n \"$kf_d\" ] || {{ echo \"{tarball} does not hold image {reference}\" >&2; exit 1; }}\n\
             printf '%s %s\\n' {sha} \"$kf_d\" > {m}\n",
            digest = digest_of(ctr, &self.reference),
            tarball = self.local.display(),
            reference = self.reference,
            sha = self.sha256,
            m = shell_quote(&self.marker),
        )
    }
}

/// The digest `ctr images ls` gives `reference` (empty when it has none).
fn digest_of(ctr: &str, reference: &str) -> String {
    format!(
        "{ctr} images ls | while read -r kf_r kf_t kf_g kf_rest; do if [ \"$kf_r\" = {r} ]; then echo \"$kf_g\"; fi; done",
        r = shell_quote(reference)
    )
}

/// Facts of `images` (with their ids), all listed by one `ctr images ls`: `digest` of each
/// image containerd has, `marker` of each recorded import.
pub(super) fn probe_script(ctr: &str, images: &[(usize, &Image)]) -> String {
    let mut s = format!(
        "{ctr} images ls 2>/dev/null | while read -r kf_r kf_t kf_g kf_rest; do case $kf_r in\n"
    );
    for (id, image) in images {
        s.push_str(&format!(
            "{}) echo \"KF {id} digest $kf_g\" ;;\n",
            shell_quote(&image.reference)
        ));
    }
    s.push_str("esac; done\n");
    for (id, image) in images {
        s.push_str(&format!(
            "if read -r kf_m 2>/dev/null <{}; then echo \"KF {id} marker $kf_m\"; fi\n",
            shell_quote(&image.marker)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() -> Image {
        Image {
            reference: "kubeforge.local/pause:3.4".into(),
            local: "/var/cache/kubeforge/bundle/images/pause-3.4.tar".into(),
            sha256: "a".repeat(64),
            marker: "/var/lib/kubeforge/images/pause.imported".into(),
        }
    }

    fn seen(pairs: &[(&str, String)]) -> Observation {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn an_image_is_imported_again_unless_containerd_has_what_was_recorded() {
        let image = pause();
        let recorded = format!("{} sha256:1111", "a".repeat(64));
        let digest = "sha256:1111".to_string();
        let reason = |o: &Observation| match image.diff(o) {
            Some(ChangeKind::Import { reason }) => reason,
            other => format!("{other:?}"),
        };
        assert_eq!(
            image.diff(&seen(&[("digest", digest.clone()), ("marker", recorded)])),
            None
        );
        assert_eq!(reason(&seen(&[])), "not in containerd");
        assert_eq!(
            reason(&seen(&[("digest", digest.clone())])),
            "no record of its import"
        );
        let other = format!("{} sha256:2222", "a".repeat(64));
        assert_eq!(
            reason(&seen(&[("digest", digest), ("marker", other)])),
            "another tarball or digest than the one imported"
        );
    }
}
