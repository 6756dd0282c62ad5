//! Tests of the transport against servers on loopback: a listener that never speaks, a
//! closed port, and a throwaway sshd (as root, with openssh-server installed: the README's test
//! command sees to both).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant as StdInstant;

use rand::Rng as _;
use russh::keys::ssh_key::PublicKey;

use super::keys::fingerprint;
use super::quote::as_root;
use super::quote::tests::{TRICKY, text};
use super::session::{MAX_CHANNELS, upload_script};
use super::*;
use crate::files::sha256_hex;

const SSHD: &str = "/usr/sbin/sshd";
const T: Duration = Duration::from_secs(30);

/// A throwaway sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start(dir: &Path, host_key: &Path, port: u16) -> Sshd {
        let log = std::fs::File::create(dir.join(format!("sshd-{port}.log"))).unwrap();
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
            .args(["-o", "ListenAddress=127.0.0.1", "-h"])
            .arg(host_key)
            .arg("-o")
            .arg(format!(
                "AuthorizedKeysFile={}",
                dir.join("authorized_keys").display()
            ))
            .arg("-o")
            .arg(format!("PidFile={}", dir.join("sshd.pid").display()))
            .args([
                "-o",
                "StrictModes=no",
                "-o",
                "PermitRootLogin=prohibit-password",
            ])
            .args(["-o", "PasswordAuthentication=no"])
            .args(["-o", "KbdInteractiveAuthentication=no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join(format!("sshd-{port}.log")));
                panic!("sshd exited with {status}: {log:?}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Sshd { child, port };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("sshd did not listen on port {port}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// sshd as root can log us in as root. Without them these tests fail (never pass
/// unrun): `cargo xtask test` installs openssh-server and runs as root.
fn require_sshd() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    assert!(
        Path::new(SSHD).exists() && root,
        "the SSH transport tests need {SSHD} and root to run a throwaway sshd: run them as \
         root after `apt-get install openssh-server` (the README's test command does both)"
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    key: ClientKey,
    pins: Arc<Mutex<HostKeyPins>>,
    sshd: Sshd,
}

impl Fixture {
    fn new() -> Fixture {
        require_sshd();
        let dir = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_generate(&dir.path().join("client/id_ed25519")).unwrap();
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{}\n", key.public_openssh()),
        )
        .unwrap();
        // Our own generated key doubles as host key: proves sshd reads our format.
        let host_key = dir.path().join("host_a");
        ClientKey::load_or_generate(&host_key).unwrap();
        let sshd = Sshd::start(dir.path(), &host_key, free_port());
        Fixture {
            dir,
            key,
            pins: Arc::default(),
            sshd,
        }
    }

    fn target(&self) -> SshTarget {
        SshTarget {
            host: "node-a".into(),
            address: IpAddr::from([127, 0, 0, 1]),
            port: self.sshd.port,
            user: "root".into(),
        }
    }

    async fn connect(&self) -> Result<SshSession, SshError> {
        SshSession::connect(
            &self.target(),
            &self.key,
            self.pins.clone(),
            &SshOptions::default(),
        )
        .await
    }
}

#[tokio::test]
async fn connect_timeout_when_server_never_speaks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let conn = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(conn);
    });
    let dir = tempfile::tempdir().unwrap();
    let key = ClientKey::load_or_generate(&dir.path().join("k")).unwrap();
    let target = SshTarget {
        host: "silent".into(),
        address: IpAddr::from([127, 0, 0, 1]),
        port,
        user: "root".into(),
    };
    let opts = SshOptions {
        connect_timeout: Duration::from_millis(300),
        ..SshOptions::default()
    };
    let err = SshSession::connect(&target, &key, Arc::default(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("silent"), "{err}");
    hold.abort();
}

#[tokio::test]
async fn refused_connection_names_host_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let key = ClientKey::load_or_generate(&dir.path().join("k")).unwrap();
    let port = free_port();
    let target = SshTarget {
        host: "gone".into(),
        address: IpAddr::from([127, 0, 0, 1]),
        port,
        user: "root".into(),
    };
    let err = SshSession::connect(&target, &key, Arc::default(), &SshOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("gone") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_collects_output_status_and_stdin() {
    let fx = Fixture::new();
    let s = fx.connect().await.unwrap();

    let out = s
        .exec("echo out; echo err >&2; exit 3", None, T)
        .await
        .unwrap();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status),
        ("out\n", "err\n", 3)
    );

    let out = s.exec("tr a-z A-Z", Some(b"hello"), T).await.unwrap();
    assert_eq!(text(&out.stdout), "HELLO");

    // More than the 2 MiB channel window each way: feeding and reading must overlap.
    let big: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| rand::thread_rng().r#gen())
        .collect();
    let out = s.exec("cat", Some(&big), T).await.unwrap();
    assert!(out.stdout == big, "echoed {} bytes", out.stdout.len());

    // A command that never reads its input must not hang the call.
    let out = s.exec("exit 0", Some(&big), T).await.unwrap();
    assert_eq!(out.status, 0);

    let out = s.exec("kill -KILL $$", None, T).await.unwrap();
    assert_eq!(out.status, 128 + 9);

    let out = s.exec_root("id -u", None, T).await.unwrap();
    assert_eq!(text(&out.stdout), "0\n");

    // The sudo wrapping, checked with a stand-in `sudo` that insists on -n.
    for tricky in TRICKY {
        let command = format!(
            "sudo() {{ [ \"$1\" = -n ] || exit 99; shift; \"$@\"; }}\n{}",
            as_root("kube", &format!("printf %s {}", shell_quote(tricky)))
        );
        let out = s.exec(&command, None, T).await.unwrap();
        assert_eq!((out.status, text(&out.stdout)), (0, *tricky));
    }

    let before = s.round_trips();
    assert_eq!(before, 6 + TRICKY.len() as u64);
    let n = 50;
    let start = StdInstant::now();
    for _ in 0..n {
        s.exec("true", None, T).await.unwrap();
    }
    let per = start.elapsed() / n;
    println!(
        "FIGURE exec round trip on loopback: {:.2} ms",
        per.as_secs_f64() * 1e3
    );
    assert_eq!(s.round_trips(), before + u64::from(n));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_execs_share_one_connection() {
    let fx = Fixture::new();
    let s = fx.connect().await.unwrap();
    let start = StdInstant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.exec(&format!("sleep 0.3; echo {i}"), None, T).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let out = task.await.unwrap().unwrap();
        assert_eq!(text(&out.stdout), format!("{i}\n"));
    }
    let elapsed = start.elapsed();
    println!("FIGURE 20 concurrent 0.3 s execs: {elapsed:?}");
    // 20 commands through 8 slots take three waves; more than 10 at once would
    // have been refused by sshd's MaxSessions.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert_eq!(s.round_trips(), 20);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_streams_large_file_atomically() {
    let fx = Fixture::new();
    let s = fx.connect().await.unwrap();
    let local = fx.dir.path().join("payload.bin");
    let mut data = vec![0u8; 50 * 1024 * 1024];
    rand::thread_rng().fill(&mut data[..]);
    std::fs::write(&local, &data).unwrap();
    let remote_dir = fx.dir.path().join("remote dir");
    std::fs::create_dir(&remote_dir).unwrap();
    let remote = remote_dir.join("it's.bin");
    let remote_str = remote.to_str().unwrap();
    std::fs::write(&remote, "old").unwrap();

    let start = StdInstant::now();
    s.upload_file(&local, remote_str, 0o640, Duration::from_secs(120))
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "FIGURE upload 50 MiB: {secs:.2} s = {:.0} MiB/s",
        50.0 / secs
    );
    let out = s
        .exec(&format!("sha256sum < {}", shell_quote(remote_str)), None, T)
        .await
        .unwrap();
    let local_sum = sha256_hex(&data);
    assert_eq!(
        text(&out.stdout).split_whitespace().next(),
        Some(local_sum.as_str())
    );
    let meta = std::fs::metadata(&remote).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    let names: Vec<_> = std::fs::read_dir(&remote_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("it's.bin")]);

    // A short transfer is caught by the size check and leaves nothing behind.
    let short = remote_dir.join("short.bin");
    let script = upload_script(short.to_str().unwrap(), 0o644, 10, 7);
    let out = s.exec(&script, Some(b"12345"), T).await.unwrap();
    assert_eq!(out.status, 1);
    assert!(text(&out.stderr).contains("received 5 of 10 bytes"));
    assert_eq!(std::fs::read_dir(&remote_dir).unwrap().count(), 1);

    // A missing parent directory is created; one that cannot be is a Remote error.
    let nested = remote_dir.join("new/dir/nested.bin");
    s.upload_file(&local, nested.to_str().unwrap(), 0o644, T)
        .await
        .unwrap();
    assert!(nested.exists());
    let blocker = remote_dir.join("blocker");
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let err = s
        .upload_file(&local, blocker.join("x").to_str().unwrap(), 0o644, T)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Remote { .. }), "{err}");
    assert!(err.to_string().contains("node-a"), "{err}");
    assert_eq!(s.round_trips(), 5);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_platform_stretches_every_command_timeout() {
    let fx = Fixture::new();
    let opts = SshOptions {
        timeout_scale: TimeoutScale::try_from(10.0).unwrap(),
        ..SshOptions::default()
    };
    let s = SshSession::connect(&fx.target(), &fx.key, fx.pins.clone(), &opts)
        .await
        .unwrap();
    // 0.5 s is beyond the 200 ms asked for, within the 2 s it becomes.
    let out = s
        .exec("sleep 0.5; echo done", None, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "done\n");
    let err = s
        .exec("sleep 32.5", None, Duration::from_millis(200))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timed out after 2.0 s") && msg.contains("sleep 32.5"),
        "{msg}"
    );
    s.exec("pkill -f 'sleep 3[2].5'", None, T).await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_names_host_and_command_and_frees_the_channel() {
    let fx = Fixture::new();
    let s = fx.connect().await.unwrap();
    let start = StdInstant::now();
    let err = s
        .exec("sleep 31.5", None, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("node-a") && msg.contains("sleep 31.5"),
        "{msg}"
    );
    // The channel slot came back: a full batch of channels still opens.
    let batch: Vec<_> = (0..MAX_CHANNELS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.exec("echo ok", None, T).await })
        })
        .collect();
    for task in batch {
        assert_eq!(text(&task.await.unwrap().unwrap().stdout), "ok\n");
    }
    // OpenSSH ignores signal requests for root logins, so clean up by hand.
    s.exec("pkill -f 'sleep 3[1].5'", None, T).await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_key_is_an_auth_error() {
    let fx = Fixture::new();
    let stranger = ClientKey::load_or_generate(&fx.dir.path().join("stranger")).unwrap();
    let err = SshSession::connect(
        &fx.target(),
        &stranger,
        fx.pins.clone(),
        &SshOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("node-a"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_until_the_pin_is_removed() {
    let mut fx = Fixture::new();
    fx.connect().await.unwrap().close().await;
    let pinned_a = fx.pins.lock().unwrap().get("node-a").unwrap().to_owned();
    let host_a = PublicKey::from_openssh(&pinned_a).unwrap();

    // The system ssh accepts the host with our known_hosts text and strict checking.
    let known_hosts = fx.dir.path().join("known_hosts");
    let addresses = [(
        "node-a".to_string(),
        IpAddr::from([127, 0, 0, 1]),
        fx.sshd.port,
    )];
    let (port, client_key) = (fx.sshd.port, fx.dir.path().join("client/id_ed25519"));
    let system_ssh = |known_hosts: &Path| {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(&client_key)
            .args(["-p", &port.to_string(), "root@127.0.0.1", "echo", "via-ssh"])
            .output()
    };
    std::fs::write(
        &known_hosts,
        fx.pins.lock().unwrap().known_hosts_lines(&addresses),
    )
    .unwrap();
    if let Ok(out) = system_ssh(&known_hosts) {
        assert_eq!(
            text(&out.stdout),
            "via-ssh\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Same address, new host key.
    fx.sshd.child.kill().unwrap();
    fx.sshd.child.wait().unwrap();
    let host_b = fx.dir.path().join("host_b");
    ClientKey::load_or_generate(&host_b).unwrap();
    fx.sshd = Sshd::start(fx.dir.path(), &host_b, port);
    let err = fx.connect().await.unwrap_err();
    match &err {
        SshError::HostKeyChanged {
            host, expected_fp, ..
        } => {
            assert_eq!(host, "node-a");
            assert_eq!(expected_fp, &fingerprint(&host_a));
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }
    assert!(err.to_string().contains("destroy the scenario"), "{err}");
    assert_eq!(
        fx.pins.lock().unwrap().get("node-a"),
        Some(pinned_a.as_str())
    );
    if let Ok(out) = system_ssh(&known_hosts) {
        assert!(
            !out.status.success(),
            "system ssh accepted a changed host key"
        );
    }

    assert!(fx.pins.lock().unwrap().remove("node-a"));
    fx.connect().await.unwrap().close().await;
    let pinned_b = fx.pins.lock().unwrap().get("node-a").unwrap().to_owned();
    assert_ne!(pinned_b, pinned_a);
}
