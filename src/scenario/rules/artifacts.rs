//! Where the artifacts come from (`artifacts:`): downloads need pins to check them against,
//! pins mean nothing without a download URL, and the URL is one the downloader can fetch.
//! Whether the bundle or the pins hold what the scenario needs is checked where they are
//! read ([`Scenario::check_artifacts`]).

use super::Refusal;
use crate::scenario::Scenario;

pub(super) fn check(s: &Scenario) -> Result<(), Refusal> {
    match (&s.artifacts.download_url, &s.artifacts.pins) {
        (Some(_), None) => Err(Refusal::new(
            "artifacts.download_url",
            "artifacts.download_url needs artifacts.pins: a manifest with the sha256 of every file",
        )),
        (None, Some(_)) => Err(Refusal::new(
            "artifacts.pins",
            "artifacts.pins without artifacts.download_url would be ignored: the local bundle would be installed instead",
        )),
        (Some(url), Some(_)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Err(Refusal::new(
                "artifacts.download_url",
                format!("artifacts.download_url '{url}' is not an http:// or https:// URL"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SEEDS, accepted, refused};

    #[test]
    fn downloads_come_with_pins_from_an_http_url() {
        let artifacts = |settings: &str| format!("{SEEDS}artifacts:\n{settings}");
        accepted(&artifacts(
            "  download_url: https://mirror.example/k8s\n  pins: pins.json\n",
        ));
        refused(
            &artifacts("  download_url: https://mirror.example/k8s\n"),
            11,
            "artifacts.download_url needs artifacts.pins",
        );
        refused(
            &artifacts("  pins: pins.json\n"),
            11,
            "artifacts.pins without artifacts.download_url would be ignored",
        );
        refused(
            &artifacts("  download_url: mirror.example/k8s\n  pins: pins.json\n"),
            11,
            "is not an http:// or https:// URL",
        );
    }
}
