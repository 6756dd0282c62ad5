//! The `docker save` archive of a one-layer image, which `ctr -n k8s.io images import`
//! names from its `RepoTags`: `manifest.json`, `<config sha>.json`, `<layer sha>/layer.tar`.

use std::path::Path;

use anyhow::Result;
use kubeforge::files::sha256_hex;
use serde::Serialize;

use super::tree::{Data, Tree};
use super::{ImageSpec, PATH_ENV, source};

/// The image config (`docker image inspect`'s body) of a one-layer image.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    created: &'static str,
    config: RunConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    env: Vec<String>,
    entrypoint: Vec<String>,
    working_dir: String,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The `docker save` layout: `manifest.json`, `<config sha>.json`, `<layer sha>/layer.tar`.
pub(crate) fn docker_archive(
    spec: &ImageSpec,
    reference: &str,
    layer_digest: &str,
    layer: &Path,
) -> Result<Tree> {
    let config = ImageConfig {
        architecture: "amd64",
        os: "linux",
        created: EPOCH,
        config: RunConfig {
            env: vec![PATH_ENV.to_string()],
            entrypoint: spec.entrypoint.iter().map(|s| s.to_string()).collect(),
            working_dir: spec.workdir.to_string(),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![format!("sha256:{layer_digest}")],
        },
        history: vec![History {
            created: EPOCH,
            created_by: format!("cargo xtask artifacts ({})", source(spec)?),
        }],
    };
    let config = serde_json::to_vec(&config)?;
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&[ArchiveManifest {
        config: config_name.clone(),
        repo_tags: vec![reference.to_string()],
        layers: vec![layer_name.clone()],
    }])?;
    let mut tree = Tree::default();
    tree.file(&config_name, Data::Inline(config), 0o644);
    tree.file(&layer_name, Data::Host(layer.to_path_buf()), 0o644);
    tree.file("manifest.json", Data::Inline(manifest), 0o644);
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::super::IMAGES;
    use super::super::tests::temp_dir;
    use super::super::tree::tests::{entries, tar_bytes};
    use super::super::tree::write_tar;
    use super::*;
    use std::fs;

    #[test]
    fn docker_archive_names_the_image_and_links_config_to_layer() {
        let dir = temp_dir("archive");
        let layer = dir.join("layer.tar");
        let mut tree = Tree::default();
        tree.file("pause", Data::Inline(b"bin".to_vec()), 0o755);
        let (digest, _) = write_tar(&tree, &layer).unwrap();
        let spec = &IMAGES[4];
        assert_eq!(spec.repo, "pause");
        let archive = docker_archive(spec, "kubeforge.local/pause:3.4", &digest, &layer).unwrap();
        let rows = entries(&tar_bytes(&archive));
        let file = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.7.clone());

        let manifest: serde_json::Value =
            serde_json::from_slice(&file("manifest.json").unwrap()).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "kubeforge.local/pause:3.4");
        assert_eq!(manifest[0]["Layers"][0], format!("{digest}/layer.tar"));
        let config_bytes = file(config_name).unwrap();
        assert_eq!(config_name, format!("{}.json", sha256_hex(&config_bytes)));
        assert_eq!(
            file(&format!("{digest}/layer.tar")).unwrap(),
            fs::read(&layer).unwrap()
        );
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{digest}"));
        assert_eq!(config["config"]["Entrypoint"][0], "/pause");
        assert_eq!(config["config"]["Env"][0], PATH_ENV);
        fs::remove_dir_all(&dir).unwrap();
    }
}
