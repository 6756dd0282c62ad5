//! Ansible's side of the comparison: ansible-core from PyPI in a private virtualenv, and a
//! playbook doing kubeforge's file-level work, generated from kubeforge's own plan for a
//! created scenario (the same directories, files, uploads and links, with the same
//! contents, modes and owners), so both tools do the same work on the same kind of hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use kubeforge::engine::{Perms, Resource};
use kubeforge::inventory::Inventory;
use kubeforge::roles::Scope;
use kubeforge::scenario::Scenario;
use kubeforge::state::StateDir;
use kubeforge::steps::Workspace;
use serde::Serialize;
use serde_json::json;

use crate::packages;

/// Pinned so that runs compare: the newest release whose controller runs on bookworm's
/// Python 3.11 (2.20 needs 3.12).
pub const ANSIBLE_CORE: &str = "ansible-core==2.19.14";
/// Debian's interpreter, not whatever a version manager puts first on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// `<dir>/bin/ansible-playbook` from [`ANSIBLE_CORE`], installed into `<dir>` unless
/// an earlier run did (a marker holds the requirement it was installed from).
pub fn ensure_ansible(dir: &Path, log: &Path) -> Result<PathBuf> {
    let playbook = dir.join("bin/ansible-playbook");
    let marker = dir.join("kubeforge-bench-requirement");
    if playbook.is_file() && fs::read_to_string(&marker).ok().as_deref() == Some(ANSIBLE_CORE) {
        return Ok(playbook);
    }
    // ensurepip (python3-venv) is what Debian leaves out of python3.
    let missing = packages::missing_packages(&["python3-venv"])?;
    if !missing.is_empty() {
        eprintln!(
            "bench: installing {} (log {})",
            missing.join(" "),
            log.display()
        );
        let mut args = vec!["install", "--no-install-recommends"];
        args.extend(missing.iter().map(String::as_str));
        packages::apt_get(&args, None, log)?;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    eprintln!(
        "bench: installing {ANSIBLE_CORE} into {} (log {})",
        dir.display(),
        log.display()
    );
    let mut venv = Command::new(PYTHON);
    venv.args(["-m", "venv"]).arg(dir);
    crate::logged::run_logged(venv, log).context("python3 -m venv")?;
    let mut pip = Command::new(dir.join("bin/pip"));
    pip.args(["install", "--no-input", ANSIBLE_CORE]);
    crate::logged::run_logged(pip, log).with_context(|| format!("pip install {ANSIBLE_CORE}"))?;
    ensure!(
        playbook.is_file(),
        "pip install {ANSIBLE_CORE} left no {}",
        playbook.display()
    );
    fs::write(&marker, ANSIBLE_CORE).with_context(|| format!("writing {}", marker.display()))?;
    Ok(playbook)
}

/// A directory: planned ones with their permissions, parents of planned paths without
/// (created as `mkdir -p` would, as kubeforge's apply does).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct DirectoryItem {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

/// A file copied from this machine: rendered content or a bundle artifact.
#[derive(Debug, Clone, Serialize)]
struct CopyItem {
    src: PathBuf,
    path: String,
    mode: String,
    owner: String,
    group: String,
}

#[derive(Debug, Clone, Serialize)]
struct LinkItem {
    path: String,
    target: String,
}

/// One host's file-level work in the playbook's terms.
#[derive(Debug, Default)]
struct HostWork {
    directories: Vec<DirectoryItem>,
    files: Vec<CopyItem>,
    uploads: Vec<CopyItem>,
    links: Vec<LinkItem>,
}

/// What the playbook does, counted over every host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Work {
    pub hosts: usize,
    pub directories: usize,
    pub files: usize,
    pub file_bytes: u64,
    pub uploads: usize,
    pub upload_bytes: u64,
    pub links: usize,
}

/// A generated playbook and where Ansible runs it.
pub struct Playbook {
    /// Holds `ansible.cfg`, `inventory.yml`, `site.yml` and the rendered files (mode 0700).
    pub dir: PathBuf,
    pub work: Work,
    /// Seconds the plan took to make (templates, certificates), which Ansible is spared.
    pub plan_seconds: f64,
}

/// Writes, under `dir`, the playbook of `scenario`'s file-level plan (as `converge
/// --only-files` would apply it) for the hosts the scenario has in `project`. The
/// certificates the plan makes are committed to the scenario's state, as converge does
/// before writing them to hosts, so kubeforge agrees with what Ansible wrote.
pub fn write_playbook(project: &Path, name: &str, dir: &Path, forks: usize) -> Result<Playbook> {
    let started = std::time::Instant::now();
    let scenario = Scenario::load_named(project, name)?;
    let state_dir = StateDir::for_scenario(project, name);
    let inventory = state_dir
        .load(name)?
        .inventory
        .with_context(|| format!("scenario {name} in {} has no hosts", project.display()))?;
    let ws = Workspace {
        root: project.to_path_buf(),
        scenario,
        state_dir: state_dir.clone(),
        log: kubeforge::report::Logger::new(false, None),
    };
    let pki = ws.pki()?;
    let scope = Scope {
        tags: Vec::new(),
        only_files: true,
    };
    let (plan, _) = ws.plan(&inventory, &pki, &scope)?;
    pki.commit()?;
    let plan_seconds = started.elapsed().as_secs_f64();

    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    private_dir(dir)?;
    let mut hosts: BTreeMap<String, HostWork> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut work = Work::default();
    for hp in plan.phases.iter().flat_map(|p| &p.hosts) {
        let resources = hp.tasks.iter().flat_map(|t| &t.resources);
        for r in resources.filter(|r| r.is_file_level()) {
            let path = r.path().unwrap_or_default().to_string();
            // A path planned twice is written once, as kubeforge's engine would leave it.
            if !seen.insert((hp.host.clone(), path.clone())) {
                continue;
            }
            let host = hosts.entry(hp.host.clone()).or_default();
            add(host, r, dir, &hp.host, &mut work)?;
        }
    }
    for host in hosts.values_mut() {
        add_parents(host);
        work.directories += host.directories.len();
    }
    work.hosts = hosts.len();
    let known_hosts = state_dir.known_hosts();
    ensure!(
        known_hosts.is_file(),
        "{} is missing: create pins the hosts' keys there",
        known_hosts.display()
    );
    let key = inventory
        .ssh_key
        .clone()
        .unwrap_or_else(|| state_dir.ssh_key());
    write_private(
        &dir.join("inventory.yml"),
        &serde_json::to_vec_pretty(&inventory_json(&inventory, &hosts, &key))?,
    )?;
    write_private(&dir.join("site.yml"), &serde_json::to_vec_pretty(&site())?)?;
    write_private(
        &dir.join("ansible.cfg"),
        ansible_cfg(forks, &known_hosts).as_bytes(),
    )?;
    Ok(Playbook {
        dir: dir.to_path_buf(),
        work,
        plan_seconds,
    })
}

/// Adds one file-level resource to `host`'s work; rendered contents go to a private file.
fn add(host: &mut HostWork, r: &Resource, dir: &Path, name: &str, work: &mut Work) -> Result<()> {
    match r {
        Resource::Directory { path, perms } => {
            let (mode, owner, group) = perm_strings(perms);
            host.directories.push(DirectoryItem {
                path: path.clone(),
                mode: Some(mode),
                owner: Some(owner),
                group: Some(group),
            });
        }
        Resource::File {
            path,
            content,
            perms,
            ..
        } => {
            let files = dir.join("files").join(name);
            if !files.exists() {
                private_dir(&files)?;
            }
            let base = path.rsplit('/').next().unwrap_or("file");
            let src = files.join(format!("{:03}-{base}", host.files.len()));
            write_private(&src, content)?;
            work.files += 1;
            work.file_bytes += content.len() as u64;
            host.files.push(copy_item(src, path, perms));
        }
        Resource::Upload {
            path, local, perms, ..
        } => {
            let size = fs::metadata(local)
                .with_context(|| format!("bundle artifact {}", local.display()))?
                .len();
            work.uploads += 1;
            work.upload_bytes += size;
            host.uploads.push(copy_item(local.clone(), path, perms));
        }
        Resource::Symlink { path, target } => {
            work.links += 1;
            host.links.push(LinkItem {
                path: path.clone(),
                target: target.clone(),
            });
        }
        other => bail!("{} is not file-level work", other.label()),
    }
    Ok(())
}

fn copy_item(src: PathBuf, path: &str, perms: &Perms) -> CopyItem {
    let (mode, owner, group) = perm_strings(perms);
    CopyItem {
        src,
        path: path.to_string(),
        mode,
        owner,
        group,
    }
}

fn perm_strings(perms: &Perms) -> (String, String, String) {
    (
        format!("{:04o}", perms.mode),
        perms.owner.clone(),
        perms.group.clone(),
    )
}

/// The parent of every file, upload and link that no planned directory covers, without
/// permissions (kubeforge's apply runs `mkdir -p` on them); directories sorted, so a
/// parent comes before what it holds.
fn add_parents(host: &mut HostWork) {
    let planned: BTreeSet<String> = host.directories.iter().map(|d| d.path.clone()).collect();
    let paths = host
        .files
        .iter()
        .chain(&host.uploads)
        .map(|f| f.path.as_str())
        .chain(host.links.iter().map(|l| l.path.as_str()));
    let parents: BTreeSet<String> = paths
        .filter_map(|p| p.rsplit_once('/').map(|(parent, _)| parent.to_string()))
        .filter(|p| !p.is_empty() && !planned.contains(p))
        .collect();
    host.directories
        .extend(parents.into_iter().map(|path| DirectoryItem {
            path,
            mode: None,
            owner: None,
            group: None,
        }));
    host.directories.sort();
}

/// The inventory: every host by its address, the scenario's groups, its key and user,
/// and each host's work as variables the tasks loop over.
fn inventory_json(
    inventory: &Inventory,
    work: &BTreeMap<String, HostWork>,
    key: &Path,
) -> serde_json::Value {
    let mut hosts = serde_json::Map::new();
    let mut groups: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for h in &inventory.hosts {
        let empty = HostWork::default();
        let w = work.get(&h.name).unwrap_or(&empty);
        hosts.insert(
            h.name.clone(),
            json!({
                "ansible_host": h.ssh_address.to_string(),
                "ansible_port": h.ssh_port,
                "ansible_user": h.user,
                "kf_directories": w.directories,
                "kf_files": w.files,
                "kf_uploads": w.uploads,
                "kf_links": w.links,
            }),
        );
        for g in &h.groups {
            groups
                .entry(g.as_str())
                .or_default()
                .insert(h.name.clone(), json!({}));
        }
    }
    let children: serde_json::Map<String, serde_json::Value> = groups
        .into_iter()
        .map(|(g, members)| (g.to_string(), json!({ "hosts": members })))
        .collect();
    json!({
        "all": {
            "hosts": hosts,
            "children": children,
            "vars": {
                "ansible_ssh_private_key_file": key,
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        }
    })
}

/// One play over every host (hosts run in parallel up to `forks`), one looped task per
/// kind of work, in the order kubeforge's apply needs: directories, files, uploads, links.
fn site() -> serde_json::Value {
    let label = json!({ "label": "{{ item.path }}" });
    let copy = |items: &str| {
        json!({
            "name": items.trim_start_matches("kf_"),
            "ansible.builtin.copy": {
                "src": "{{ item.src }}",
                "dest": "{{ item.path }}",
                "mode": "{{ item.mode }}",
                "owner": "{{ item.owner }}",
                "group": "{{ item.group }}",
            },
            "loop": format!("{{{{ {items} }}}}"),
            "loop_control": label,
        })
    };
    json!([{
        "name": "kubeforge's file-level plan (generated by cargo xtask bench)",
        "hosts": "all",
        "gather_facts": false,
        "become": true,
        "tasks": [
            {
                "name": "directories",
                "ansible.builtin.file": {
                    "path": "{{ item.path }}",
                    "state": "directory",
                    "mode": "{{ item.mode | default(omit) }}",
                    "owner": "{{ item.owner | default(omit) }}",
                    "group": "{{ item.group | default(omit) }}",
                },
                "loop": "{{ kf_directories }}",
                "loop_control": label,
            },
            copy("kf_files"),
            copy("kf_uploads"),
            {
                "name": "links",
                "ansible.builtin.file": {
                    "src": "{{ item.target }}",
                    "dest": "{{ item.path }}",
                    "state": "link",
                    "force": true,
                },
                "loop": "{{ kf_links }}",
                "loop_control": label,
            },
        ],
    }])
}

/// Pipelining on, forks for every host at once, the scenario's pinned host keys with
/// strict checking; SSH connections shared per host (ControlPersist, Ansible's default)
/// without compression (the hosts are on a local bridge).
fn ansible_cfg(forks: usize, known_hosts: &Path) -> String {
    format!(
        "[defaults]\n\
         inventory = inventory.yml\n\
         forks = {forks}\n\
         gathering = explicit\n\
         host_key_checking = True\n\
         retry_files_enabled = False\n\
         interpreter_python = /usr/bin/python3\n\
         \n\
         [ssh_connection]\n\
         pipelining = True\n\
         ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}\n",
        known_hosts.display()
    )
}

/// A directory only this user can enter: the rendered files include private keys.
fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes `bytes` to a new file of mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs of an `ansible-playbook` command in `dir` with its configuration, its SSH
/// control sockets in `control_dir`.
pub fn playbook_command(
    ansible_playbook: &Path,
    dir: &Path,
    control_dir: &Path,
    check: bool,
) -> Command {
    let mut command = Command::new(ansible_playbook);
    command
        .arg("site.yml")
        .args(check.then_some("--check"))
        .current_dir(dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", control_dir)
        // ansible-core refuses to run without a UTF-8 locale.
        .env("LC_ALL", "C.UTF-8")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .stdin(Stdio::null());
    command
}

/// The PLAY RECAP's totals: (ok, changed, failed + unreachable) over every host.
pub fn recap(output: &str) -> Option<(u64, u64, u64)> {
    let start = output.find("PLAY RECAP")?;
    let mut totals = (0, 0, 0);
    for line in output[start..].lines().skip(1) {
        let Some((_, counts)) = line.split_once(" : ") else {
            continue;
        };
        for pair in counts.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value: u64 = value.parse().unwrap_or(0);
            match key {
                "ok" => totals.0 += value,
                "changed" => totals.1 += value,
                "failed" | "unreachable" => totals.2 += value,
                _ => {}
            }
        }
    }
    Some(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_planned_paths_come_before_what_they_hold() {
        let mut host = HostWork {
            directories: vec![DirectoryItem {
                path: "/etc/kubernetes/ssl".into(),
                mode: Some("0700".into()),
                owner: Some("root".into()),
                group: Some("root".into()),
            }],
            files: vec![copy_item(
                "/x/000-ca.pem".into(),
                "/etc/kubernetes/ssl/ca.pem",
                &Perms::root(0o644),
            )],
            uploads: vec![copy_item(
                "/bundle/kubelet".into(),
                "/opt/bin/kubelet",
                &Perms::root(0o755),
            )],
            links: vec![LinkItem {
                path: "/opt/cni/bin/bridge".into(),
                target: "/usr/lib/cni/bridge".into(),
            }],
        };
        add_parents(&mut host);
        let paths: Vec<(&str, Option<&str>)> = host
            .directories
            .iter()
            .map(|d| (d.path.as_str(), d.mode.as_deref()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("/etc/kubernetes/ssl", Some("0700")),
                ("/opt/bin", None),
                ("/opt/cni/bin", None),
            ]
        );
    }

    #[test]
    fn the_inventory_reaches_hosts_as_kubeforge_does() {
        use kubeforge::inventory::Host;
        use kubeforge::scenario::Group;
        let host = |name: &str, address: &str, groups: Vec<Group>| Host {
            name: name.into(),
            address: address.parse().unwrap(),
            ssh_address: address.parse().unwrap(),
            ssh_port: 22,
            user: "core".into(),
            groups,
            handle: None,
        };
        let inventory = Inventory {
            hosts: vec![
                host("etcd-01", "172.30.5.101", vec![Group::Etcd]),
                host("kube-worker-01", "172.30.5.121", vec![Group::KubeWorker]),
            ],
            ssh_key: None,
            kept_hosts: false,
        };
        let mut work = BTreeMap::new();
        work.insert(
            "etcd-01".to_string(),
            HostWork {
                links: vec![LinkItem {
                    path: "/opt/bin/etcdctl".into(),
                    target: "/opt/bin/etcdctl-3.4".into(),
                }],
                ..HostWork::default()
            },
        );
        let json = inventory_json(&inventory, &work, Path::new("/state/ssh/id_ed25519"));
        let all = &json["all"];
        assert_eq!(all["hosts"]["etcd-01"]["ansible_host"], "172.30.5.101");
        assert_eq!(all["hosts"]["etcd-01"]["ansible_user"], "core");
        assert_eq!(
            all["hosts"]["etcd-01"]["kf_links"][0]["target"],
            "/opt/bin/etcdctl-3.4"
        );
        assert_eq!(all["hosts"]["kube-worker-01"]["kf_files"], json!([]));
        assert_eq!(
            all["children"]["kube-worker"]["hosts"],
            json!({"kube-worker-01": {}})
        );
        assert_eq!(
            all["vars"]["ansible_ssh_private_key_file"],
            "/state/ssh/id_ed25519"
        );
    }

    #[test]
    fn recap_totals_every_host() {
        let out = "TASK [links] ***\nok: [etcd-01]\n\nPLAY RECAP *********\n\
etcd-01                    : ok=4    changed=3    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0\n\
kube-master-01             : ok=4    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0\n";
        assert_eq!(recap(out), Some((8, 3, 1)));
        assert_eq!(recap("no recap"), None);
    }

    #[test]
    fn the_playbook_loops_over_each_kind_of_work_in_order() {
        let site = site();
        let tasks = site[0]["tasks"].as_array().expect("tasks");
        let names: Vec<&str> = tasks.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["directories", "files", "uploads", "links"]);
        assert_eq!(tasks[2]["loop"], "{{ kf_uploads }}");
        assert_eq!(site[0]["become"], true);
    }
}
