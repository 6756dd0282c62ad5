//! The `existing` driver against a host started outside kubeforge (plain podman here, as a
//! user's own machine would be): the whole sequence passes, destroy leaves the host alone,
//! and the host's key stays pinned: a changed key is refused on the next run.

use std::process::Command;
use std::time::{Duration, Instant};

/// Removes the test's container and network even when an assertion fails.
struct Cleanup {
    container: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t0", "-v", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["network", "rm", "-f", &self.network])
            .output();
    }
}

fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A host started the way a user's own machine would be (plain podman, on an internal
/// network), with the user's key authorized by hand: its cleanup guard, address, and the
/// project directory holding the key.
fn users_host() -> (Cleanup, String, tempfile::TempDir) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // This test drives podman itself, so it installs it the way kubeforge would.
    let log = kubeforge::report::Logger::new(false, None);
    rt.block_on(kubeforge::driver::host_image::ensure_prerequisites(&log))
        .expect("podman, runc and debootstrap");
    let image = rt
        .block_on(kubeforge::driver::host_image::ensure_host_image(&log))
        .expect("host image");
    let id = format!("kf-existing-test-{}", std::process::id());
    let guard = Cleanup {
        container: id.clone(),
        network: format!("{id}-net"),
    };
    podman(&["network", "create", "--internal", &guard.network]);
    podman(&[
        "run",
        "-d",
        "--name",
        &guard.container,
        "--hostname",
        "etcd-01",
        "--network",
        &guard.network,
        "--systemd=always",
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        &image,
        "/sbin/init",
    ]);
    let ip = podman(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            guard.network
        ),
        &guard.container,
    ]);

    // The user's own key, authorized on the host by hand.
    let project = tempfile::tempdir().unwrap();
    let key_path = project.path().join("user_key");
    let key = kubeforge::ssh::ClientKey::load_or_generate(&key_path).unwrap();
    let mut child = Command::new("podman")
        .args([
            "exec",
            "-i",
            &guard.container,
            "sh",
            "-c",
            "mkdir -p /etc/ssh/authorized_keys && cat > /etc/ssh/authorized_keys/core",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.public_openssh().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(
        &format!("{ip}:22").parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sshd on {ip} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (guard, ip, project)
}

#[test]
fn existing_host_runs_every_step_and_survives_destroy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (guard, ip, project) = users_host();
    let key_path = project.path().join("user_key");
    let dir = project.path().join("scenarios/existing");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("scenario.yml"),
        format!(
            "driver:\n  name: existing\n  key: {}\nplatforms:\n  - name: etcd-01\n    groups: [etcd]\n    address: {ip}\n",
            key_path.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("templates"), project.path().join("templates")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .arg("--project")
        .arg(project.path())
        .args(["test", "existing"])
        .env("KUBEFORGE_STATE_DIR", project.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("existing hosts left as they are"),
        "{stderr}"
    );
    assert_eq!(
        podman(&["inspect", "-f", "{{.State.Running}}", &guard.container]),
        "true"
    );

    // The host's key pin outlived `test` and its destroy: a host that now presents another
    // key (rebuilt, or something else answering at its address) is refused.
    podman(&[
        "exec",
        &guard.container,
        "sh",
        "-c",
        "rm -f /etc/ssh/ssh_host_*key* && ssh-keygen -A >/dev/null && systemctl restart ssh",
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .arg("--project")
        .arg(project.path())
        .args(["create", "existing"])
        .env("KUBEFORGE_STATE_DIR", project.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a changed host key was accepted:\n{stderr}"
    );
    assert!(
        stderr.contains("the host key of etcd-01 has changed"),
        "{stderr}"
    );
}
