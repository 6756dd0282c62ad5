//! The build machine's Debian packages: what dpkg has installed, apt-get with its output in
//! a build log, a `deb-src` source derived from the machine's own sources, and pinned
//! `.deb` files downloaded once into the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};
use kubeforge::debian::{
    APT_GET_ENV, APT_GET_OPTIONS, apt_get_retrying, deb822_stanzas, one_line_sources,
};

use crate::bundle::{remove_dir_if_exists, write_atomic};
use crate::logged::{progress, run_logged};

const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/kubeforge-src.sources";
const APT_SOURCES_DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
const APT_SOURCES_LIST: &str = "/etc/apt/sources.list";

/// Which of `packages` dpkg does not have installed.
pub(crate) fn missing_packages(packages: &[&str]) -> Result<Vec<String>> {
    // dpkg-query exits 1 when a package is unknown; the output still lists the known ones.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    let installed = installed_packages(&String::from_utf8_lossy(&out.stdout));
    Ok(packages
        .iter()
        .filter(|p| !installed.iter().any(|i| i == *p))
        .map(|p| p.to_string())
        .collect())
}

/// Package names from `dpkg-query -f '${Package} ${db:Status-Status}\n'` that are installed.
fn installed_packages(dpkg_query: &str) -> Vec<String> {
    dpkg_query
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            (status.trim() == "installed").then(|| name.to_string())
        })
        .collect()
}

/// Adds a `deb-src` source for the machine's own Debian sources unless one exists; whether
/// it did (the package lists then need an update).
pub(crate) fn add_deb_src_source() -> Result<bool> {
    if Path::new(DEB_SRC_FILE).exists() {
        return Ok(false);
    }
    let stanzas = deb_src_stanzas()?;
    ensure!(
        !stanzas.is_empty(),
        "no Debian `deb` source found in {APT_SOURCES_DEB822} or {APT_SOURCES_LIST} to derive {DEB_SRC_FILE} from"
    );
    progress(&format!("adding {DEB_SRC_FILE}"));
    write_atomic(Path::new(DEB_SRC_FILE), stanzas.join("\n").as_bytes())?;
    Ok(true)
}

/// deb822 stanzas enabling `deb-src` for the machine's own Debian sources.
fn deb_src_stanzas() -> Result<Vec<String>> {
    if let Ok(text) = fs::read_to_string(APT_SOURCES_DEB822) {
        return Ok(deb_src_from_deb822(&text));
    }
    match fs::read_to_string(APT_SOURCES_LIST) {
        Ok(text) => Ok(deb_src_from_one_line(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {APT_SOURCES_LIST}")),
    }
}

/// Copy every enabled `deb` stanza of a deb822 file as a `deb-src` stanza.
fn deb_src_from_deb822(text: &str) -> Vec<String> {
    deb822_stanzas(text)
        .iter()
        .filter(|stanza| stanza.words("Types").contains(&"deb") && stanza.enabled())
        .map(|stanza| {
            let mut src = String::from("Types: deb-src\n");
            for (k, v) in &stanza.fields {
                if !k.eq_ignore_ascii_case("Types") {
                    src.push_str(&format!("{k}: {v}\n"));
                }
            }
            src
        })
        .collect()
}

/// Turn one-line `deb [opts] URI SUITE COMPONENTS...` entries into deb822 `deb-src` stanzas.
fn deb_src_from_one_line(text: &str) -> Vec<String> {
    one_line_sources(text)
        .iter()
        .filter(|source| source.kind == "deb")
        .map(|source| {
            let mut src = format!(
                "Types: deb-src\nURIs: {}\nSuites: {}\nComponents: {}\n",
                source.uri,
                source.suite,
                source.components.join(" ")
            );
            if let Some((_, key)) = source.options.iter().find(|(k, _)| *k == "signed-by") {
                src.push_str(&format!("Signed-By: {key}\n"));
            }
            src
        })
        .collect()
}

/// apt-get with the library's options and environment, its output appended to the log.
pub(crate) fn apt_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    // The cache is root's: apt's `_apt` sandbox user could not write the downloads there.
    cmd.args(APT_GET_OPTIONS)
        .args(["-o", "APT::Sandbox::User=root"])
        .args(args)
        .envs(APT_GET_ENV);
    cmd
}

/// apt-get, retried once after `apt-get update` (stale or missing package lists).
pub(crate) fn apt_get(args: &[&str], cwd: Option<&Path>, log: &Path) -> Result<()> {
    apt_get_retrying(
        args,
        |args| {
            let mut cmd = apt_command(args);
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            run_logged(cmd, log)
        },
        |_| progress("apt-get failed; refreshing package lists and retrying"),
    )
}

/// The file `apt-get download PKG=VER` writes, if it is here.
pub(crate) fn cached_deb(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let version = version.replace(':', "%3a");
    ["amd64", "all"]
        .iter()
        .map(|arch| dir.join(format!("{package}_{version}_{arch}.deb")))
        .find(|p| p.is_file())
}

/// Downloads into `dir` the pinned packages (`(package, version)`) not cached there yet; apt
/// verifies them, and they only get their final name once complete, so a cached file is
/// trusted.
pub(crate) fn download_debs(dir: &Path, pins: &[(&str, &str)], log: &Path) -> Result<()> {
    let missing: Vec<String> = pins
        .iter()
        .filter(|(p, v)| cached_deb(dir, p, v).is_none())
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let partial = dir.join(".partial");
    remove_dir_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    match missing.as_slice() {
        [one] => progress(&format!("downloading {one}")),
        many => progress(&format!(
            "downloading {} Debian packages into {}",
            many.len(),
            dir.display()
        )),
    }
    let args: Vec<&str> = std::iter::once("download")
        .chain(missing.iter().map(String::as_str))
        .collect();
    apt_get(&args, Some(&partial), log)?;
    for entry in fs::read_dir(&partial).with_context(|| format!("listing {}", partial.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", partial.display()))?
            .path();
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
        fs::rename(&path, dir.join(name))
            .with_context(|| format!("moving {} into {}", path.display(), dir.display()))?;
    }
    remove_dir_if_exists(&partial)?;
    for (p, v) in pins {
        ensure!(
            cached_deb(dir, p, v).is_some(),
            "apt-get download {p}={v} left no {p}_*.deb in {}",
            dir.display()
        );
    }
    Ok(())
}

/// `[epoch:]upstream[-revision]` -> `upstream`.
pub(crate) fn upstream_version(debian_version: &str) -> &str {
    let no_epoch = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, rest)| rest);
    no_epoch
        .rsplit_once('-')
        .map_or(no_epoch, |(upstream, _)| upstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_become_deb_src_stanzas() {
        let text = "Types: deb\n# snapshot comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://x\nSuites: s\nComponents: main\nEnabled: no\n\nTypes: deb-src\nURIs: http://y\nSuites: s\nComponents: main\n";
        let stanzas = deb_src_from_deb822(text);
        assert_eq!(
            stanzas,
            vec![
                "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ]
        );
    }

    #[test]
    fn one_line_sources_become_deb_src_stanzas() {
        let text = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\ndeb-src http://m/debian bookworm main\ndeb http://m/debian-security bookworm-security main\n";
        assert_eq!(
            deb_src_from_one_line(text),
            vec![
                "Types: deb-src\nURIs: http://m/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /k.gpg\n",
                "Types: deb-src\nURIs: http://m/debian-security\nSuites: bookworm-security\nComponents: main\n",
            ]
        );
    }

    #[test]
    fn dpkg_query_output_gives_installed_packages_only() {
        let out = "dpkg-dev installed\ngolang-go not-installed\njq installed\nrsync config-files\n";
        assert_eq!(installed_packages(out), vec!["dpkg-dev", "jq"]);
    }

    #[test]
    fn upstream_version_strips_epoch_and_revision() {
        assert_eq!(upstream_version("3.4.23-4+b4"), "3.4.23");
        assert_eq!(upstream_version("1.6.20~ds1-1+deb12u3"), "1.6.20~ds1");
        assert_eq!(upstream_version("2:1.19~1"), "1.19~1");
        assert_eq!(upstream_version("1.0"), "1.0");
    }
}
