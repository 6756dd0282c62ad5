//! Resource builders every role uses: rendered files, binaries and images from the bundle,
//! certificates, kubeconfigs, API objects, tasks and services. Roles share these instead of
//! importing each other.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{InstallContext, RoleError};
use crate::cluster::commands::{ctr, kubectl};
use crate::cluster::paths::{BIN_DIR, CNI_BIN_DIR, CNI_CONF_DIR, IMAGE_DIR, K8S_SSL_DIR};
use crate::engine::{ApiObject, Image, Perms, ReadyCheck, Resource, Task};
use crate::pki::IssuedCert;

/// A named task of a role: what the seeds' Ansible task lists call a task.
pub fn task(role: &'static str, name: &str, resources: Vec<Resource>) -> Task {
    Task {
        name: name.to_string(),
        role,
        resources,
    }
}

/// A systemd unit kept enabled and running, restarted when a resource of one of the tasks
/// named in `notified_by` changes.
pub fn service(unit: &str, notified_by: &[&str], ready: Option<ReadyCheck>) -> Resource {
    Resource::Service {
        unit: unit.to_string(),
        notified_by: notified_by.iter().map(|t| t.to_string()).collect(),
        ready,
    }
}

pub fn directory(path: &str, mode: u32) -> Resource {
    Resource::Directory {
        path: path.to_string(),
        perms: Perms::root(mode),
    }
}

/// A certificate and its key as two files (`<stem>.pem`, `<stem>-key.pem`) in `dir`.
pub fn cert_files(dir: &str, stem: &str, cert: &IssuedCert) -> Vec<Resource> {
    vec![
        Resource::File {
            path: format!("{dir}/{stem}.pem"),
            content: cert.cert_pem.clone().into_bytes(),
            perms: Perms::root(0o644),
            secret: false,
            origin: None,
        },
        secret_file(
            &format!("{dir}/{stem}-key.pem"),
            cert.key_pem.expose().as_bytes(),
            None,
        ),
    ]
}

/// A file holding a key or credentials: 0600, never diffed or logged.
pub fn secret_file(path: &str, content: &[u8], origin: Option<&str>) -> Resource {
    Resource::File {
        path: path.to_string(),
        content: content.to_vec(),
        perms: Perms::root(0o600),
        secret: true,
        origin: origin.map(str::to_string),
    }
}

/// A public file that is not rendered from a template (a CA certificate, a public key).
pub fn plain_file(path: &str, content: &[u8]) -> Resource {
    Resource::File {
        path: path.to_string(),
        content: content.to_vec(),
        perms: Perms::root(0o644),
        secret: false,
        origin: None,
    }
}

fn rendered_file(path: &str, template: &str, text: String, mode: u32) -> Resource {
    Resource::File {
        path: path.to_string(),
        content: text.into_bytes(),
        perms: Perms::root(mode),
        secret: false,
        origin: Some(template.to_string()),
    }
}

impl InstallContext<'_> {
    /// A file rendered from `template` with `context`.
    pub fn template(
        &self,
        path: &str,
        template: &str,
        context: &impl Serialize,
        mode: u32,
    ) -> Result<Resource, RoleError> {
        let text = self.templates.render(template, context)?;
        Ok(rendered_file(path, template, text, mode))
    }

    /// A binary from the bundle, installed under /opt/bin (CoreOS keeps /usr read-only).
    pub fn binary(&self, name: &str) -> Result<Resource, RoleError> {
        self.upload(name, &format!("{BIN_DIR}/{name}"), 0o755)
    }

    /// A CNI plugin from the bundle, where containerd looks for plugins.
    pub fn cni_plugin(&self, name: &str) -> Result<Resource, RoleError> {
        self.upload(name, &format!("{CNI_BIN_DIR}/{name}"), 0o755)
    }

    fn upload(&self, name: &str, path: &str, mode: u32) -> Result<Resource, RoleError> {
        let (local, artifact) = self.bundle.get(name)?;
        Ok(Resource::Upload {
            path: path.to_string(),
            local,
            sha256: artifact.sha256.clone(),
            perms: Perms::root(mode),
        })
    }

    /// The node's one CNI network configuration, in the directory containerd reads.
    pub fn cni_config(
        &self,
        file: &str,
        template: &str,
        context: &impl Serialize,
    ) -> Result<Vec<Resource>, RoleError> {
        Ok(vec![
            directory("/etc/cni", 0o755),
            directory(CNI_CONF_DIR, 0o755),
            self.template(&format!("{CNI_CONF_DIR}/{file}"), template, context, 0o644)?,
        ])
    }

    /// The Kubernetes CA certificate (never its key) as a file.
    pub fn ca_file(&self, path: &str) -> Resource {
        plain_file(path, self.pki.kubernetes.ca_cert_pem().as_bytes())
    }

    /// etcd's own CA certificate (never its key) as a file: what etcd's clients trust.
    pub fn etcd_ca_file(&self, path: &str) -> Resource {
        plain_file(path, self.pki.etcd.ca_cert_pem().as_bytes())
    }

    /// A kubeconfig for `user` at `path`, authenticating with `<K8S_SSL_DIR>/<stem>.pem`.
    pub fn kubeconfig(
        &self,
        path: &str,
        user: &str,
        stem: &str,
        server: &str,
    ) -> Result<Resource, RoleError> {
        let t = json!({
            "cluster_name": self.cluster.settings.name,
            "server": server,
            "ssl_dir": K8S_SSL_DIR,
            "user": user,
            "stem": stem,
        });
        self.template(path, "kubernetes/kubeconfig", &t, 0o600)
    }

    /// An image from the bundle (`image:<reference>`, a docker-archive tarball) in
    /// containerd, streamed into its import (see [`Image`]); the import's record is kept in
    /// [`IMAGE_DIR`].
    pub fn image(&self, reference: &str) -> Result<Resource, RoleError> {
        let (local, artifact) = self.bundle.get(&format!("image:{reference}"))?;
        let stem: String = reference
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(Resource::Image {
            ctr: ctr(),
            image: Image {
                reference: reference.to_string(),
                local,
                sha256: artifact.sha256.clone(),
                marker: format!("{IMAGE_DIR}/{stem}.imported"),
            },
        })
    }

    /// A manifest rendered to `path` (on a master: for the user, and pinned by snapshots)
    /// and its objects, which kubectl creates or updates only where they differ.
    pub fn manifest_objects(
        &self,
        path: &str,
        template: &str,
        context: &impl Serialize,
    ) -> Result<(Resource, Vec<Resource>), RoleError> {
        let text = self.templates.render(template, context)?;
        manifest_file(path, template, text)
    }
}

/// A manifest written to `path` (`origin`: the template or workload it came from) and its
/// objects, each kept in the API by the cluster admin's kubectl.
pub fn manifest_file(
    path: &str,
    origin: &str,
    text: String,
) -> Result<(Resource, Vec<Resource>), RoleError> {
    let objects = ApiObject::from_manifest(&format!("{origin} (for {path})"), &text)?;
    Ok((
        rendered_file(path, origin, text, 0o644),
        objects.into_iter().map(api_object).collect(),
    ))
}

/// An object the cluster admin's kubectl on a master creates or updates.
fn api_object(object: ApiObject) -> Resource {
    Resource::ApiObject {
        kubectl: kubectl(),
        object,
    }
}

/// sha256 over what the tasks named in `names` install (contents, binaries' and images'
/// sha256): put in a static pod's annotations so the pod is recreated when one of its
/// inputs changes. The inputs are derived from the tasks, never listed by hand.
pub fn inputs_digest(tasks: &[Task], names: &[&str]) -> Result<String, RoleError> {
    let known: BTreeSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    if let Some(missing) = names.iter().find(|n| !known.contains(*n)) {
        return Err(RoleError::UnknownTask(missing.to_string()));
    }
    let mut h = Sha256::new();
    for task in tasks.iter().filter(|t| names.contains(&t.name.as_str())) {
        for r in task.resources.iter().filter(|r| r.is_restart_input()) {
            h.update(r.label().as_bytes());
            match r {
                Resource::File { content, .. } => h.update(content),
                Resource::Upload { sha256, .. } => h.update(sha256.as_bytes()),
                Resource::Command { command, .. } => h.update(command.as_bytes()),
                Resource::Image { image, .. } => h.update(image.sha256.as_bytes()),
                _ => {}
            }
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_digest_follows_the_named_tasks_only() {
        let tasks = |b: &str| {
            vec![
                task("t", "a", vec![plain_file("/a", b"1")]),
                task("t", "b", vec![secret_file("/b", b.as_bytes(), None)]),
            ]
        };
        let (x, y) = (tasks("2"), tasks("3"));
        assert_eq!(
            inputs_digest(&x, &["a"]).unwrap(),
            inputs_digest(&y, &["a"]).unwrap()
        );
        assert_ne!(
            inputs_digest(&x, &["a", "b"]).unwrap(),
            inputs_digest(&y, &["a", "b"]).unwrap()
        );
        assert!(matches!(
            inputs_digest(&x, &["c"]),
            Err(RoleError::UnknownTask(t)) if t == "c"
        ));
    }
}
