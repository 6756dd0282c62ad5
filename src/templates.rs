//! Templates in `templates/`, rendered strictly with tera: an undefined variable is an error
//! naming the template and the variable, never an empty string on a host.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub struct Templates {
    tera: tera::Tera,
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{dir}: cannot load templates: {message}")]
    Load { dir: PathBuf, message: String },
    #[error("template {template}: {message}")]
    Render { template: String, message: String },
}

/// The error and its causes on one line (tera puts the useful part in the source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Every file under `dir` as (name relative to `base`, content).
fn collect_files(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(base, &path, out)?;
        } else {
            let name = path
                .strip_prefix(base)
                .expect("walked from base")
                .to_string_lossy()
                .into_owned();
            out.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

impl Templates {
    /// Loads every file under `dir`; names are paths relative to it (`etcd/etcd-member.service`).
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let load_err = |message: String| TemplateError::Load {
            dir: dir.to_path_buf(),
            message,
        };
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files).map_err(|e| load_err(e.to_string()))?;
        let mut tera = tera::Tera::new();
        tera.add_raw_templates(files)
            .map_err(|e| load_err(chain(&e)))?;
        Ok(Templates {
            tera,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tera.get_template_names().map(String::from).collect();
        names.sort();
        names
    }

    pub fn render(&self, name: &str, context: &impl Serialize) -> Result<String, TemplateError> {
        let err = |message: String| TemplateError::Render {
            template: name.to_string(),
            message,
        };
        let ctx = tera::Context::from_serialize(context).map_err(|e| err(chain(&e)))?;
        self.tera.render(name, &ctx).map_err(|e| err(chain(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_variable_names_template_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        std::fs::write(
            dir.path().join("x/a.conf"),
            "name={{ name }}\nport={{ port }}\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert_eq!(t.names(), vec!["x/a.conf"]);
        let ok = t
            .render("x/a.conf", &serde_json::json!({"name": "n", "port": 1}))
            .unwrap();
        assert_eq!(ok, "name=n\nport=1\n");
        let e = t
            .render("x/a.conf", &serde_json::json!({"name": "n"}))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("template x/a.conf:"), "{e}");
        assert!(e.contains("port"), "{e}");
    }
}
