//! The Kubernetes version's form: the bundle, the component images
//! (`kubeforge.local/kube-apiserver:<version>`) and the templates' flags by minor release are
//! all chosen by it. Whether the bundle holds it is checked where the bundle is known
//! ([`Scenario::check_bundle`]).

use super::Refusal;
use crate::scenario::Scenario;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    let version = &s.cluster.kubernetes_version;
    if parse(version).is_none() {
        return Err(Refusal::new(
            "cluster.kubernetes_version",
            format!(
                "cluster.kubernetes_version '{version}' is not of the form v1.<minor>.<patch>: the bundle, the component images and the flags the templates pass are chosen by it"
            ),
        ));
    }
    Ok(())
}

/// `v1.20.2` -> (20, 2); numbers without leading zeros, as Kubernetes releases are named.
fn parse(version: &str) -> Option<(u32, u32)> {
    let (minor, patch) = version.strip_prefix("v1.")?.split_once('.')?;
    let number = |s: &str| {
        (!s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
    };
    Some((number(minor)?, number(patch)?))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    #[test]
    fn kubernetes_version_is_v1_minor_patch() {
        assert_eq!(super::parse("v1.20.2"), Some((20, 2)));
        assert_eq!(super::parse("v1.31.10"), Some((31, 10)));
        accepted(&format!("{SEEDS}cluster:\n  kubernetes_version: v1.31.4\n"));
        for bad in [
            "1.20.2",
            "v1.20",
            "v2.0.0",
            "latest",
            "v1.20.2-rc.0",
            "v1.020.2",
            "v1..2",
        ] {
            let e = refused(
                &format!("{SEEDS}cluster:\n  kubernetes_version: {bad}\n"),
                11,
                &format!(
                    "cluster.kubernetes_version '{bad}' is not of the form v1.<minor>.<patch>"
                ),
            );
            assert!(e.contains(":11:23:"), "{e}");
        }
    }
}
