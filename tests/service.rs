//! paddockd as a host service: socket activation and sd_notify as systemd does them, the unit
//! files, graceful shutdown (leaving or stopping the containers), SIGHUP reloads, and the
//! event stream as `ctl events --follow` prints it.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{bin_dir, process_alive, stderr, unique, Bundle, Paddock};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        // A bound on how long a message may take, not a synchronization.
        socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { path, socket }
    }

    /// Receives notifications until one has a line for which `want` holds; returns them all.
    fn until(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification ({e}); got {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(&want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
}

/// paddockd started by `systemd-socket-activate`, as systemd's socket unit would: it listens
/// on `<root>/paddockd.sock` and starts paddockd on the first connection.
struct Activated {
    child: Child,
    /// paddockd's log lines as the relay thread writes them to `activated.log`.
    log_lines: std::sync::mpsc::Receiver<String>,
}

impl Activated {
    fn start(p: &Paddock, notify: &NotifySocket, config: Option<&Path>, watchdog_usec: Option<u64>) -> Self {
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.arg("-l").arg(p.root().join("paddockd.sock"));
        // systemd-socket-activate passes on only what it is told to.
        cmd.arg("-E").arg(format!("NOTIFY_SOCKET={}", notify.path.display()));
        if let Some(usec) = watchdog_usec {
            cmd.arg("-E").arg(format!("WATCHDOG_USEC={usec}"));
        }
        cmd.arg(bin_dir().join("paddockd")).arg("--root").arg(p.root());
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let mut log = std::fs::File::create(p.root().join("activated.log")).unwrap();
        let mut child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(Stdio::piped()).spawn().unwrap();
        // It says when it listens; from then on, connections wait for paddockd.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().expect("systemd-socket-activate said nothing").unwrap();
        assert!(first.starts_with("Listening on"), "{first}");
        let (tx, log_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let _ = tx.send(line);
            }
        });
        Self { child, log_lines }
    }

    /// Reads paddockd's log until a line contains `want`: the relay thread may lag behind
    /// what paddockd already said on its notification socket.
    fn log_until(&self, want: &str) {
        let mut seen = Vec::new();
        loop {
            // A bound on how long a line may take, not a synchronization.
            match self.log_lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(want) => return,
                Ok(line) => seen.push(line),
                Err(e) => panic!("paddockd never logged {want:?} ({e}); it logged {seen:#?}"),
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Sends SIGTERM and waits for paddockd to exit; returns its exit code.
    fn terminate(mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        self.child.wait().unwrap().code()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn socket_activation_readiness_status_and_watchdog_reach_systemd() {
    let p = Paddock::new();
    let notify = NotifySocket::new(p.root());
    let daemon = Activated::start(&p, &notify, None, Some(200_000));
    // The first connection starts paddockd on the socket systemd made.
    let id = unique("activated");
    p.ctl_detached(&["run", "-d", "--name", &id, "--", "sleep", "100"]);
    assert_eq!(p.daemon_pid(), Some(daemon.pid()), "paddockd runs in place of systemd-socket-activate");
    daemon.log_until("listening on the socket systemd passed");
    let first = notify.until(|l| l == "READY=1");
    assert!(first.iter().any(|m| m.contains("STATUS=")), "{first:?}");
    // The status follows the containers; the watchdog is pinged.
    notify.until(|l| l == "STATUS=1 containers, 1 running");
    notify.until(|l| l == "WATCHDOG=1");
    p.ctl_ok(&["delete", "--force", &id]);
    notify.until(|l| l == "STATUS=0 containers, 0 running");
    assert_eq!(daemon.terminate(), Some(0));
    notify.until(|l| l == "STOPPING=1");
    // The socket is systemd's: paddockd leaves it in place.
    assert!(p.root().join("paddockd.sock").exists());
}

#[test]
fn the_unit_files_are_valid_for_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    let service = std::fs::read_to_string(units.join("paddockd.service")).unwrap();
    for key in ["Type=notify", "Delegate=yes", "KillMode=process", "Restart=always", "WatchdogSec="] {
        assert!(service.lines().any(|l| l.starts_with(key)), "paddockd.service lacks {key}");
    }
    let service = service.replace("@PREFIX@/bin/paddockd", &bin_dir().join("paddockd").display().to_string());
    std::fs::write(dir.path().join("paddockd.service"), service).unwrap();
    std::fs::copy(units.join("paddockd.socket"), dir.path().join("paddockd.socket")).unwrap();
    let out = harness::capture(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join("paddockd.service"))
            .arg(dir.path().join("paddockd.socket"))
            .current_dir(dir.path()),
    );
    assert!(out.status.success() && stderr(&out).trim().is_empty(), "{}", stderr(&out));
    // The documented configuration is the one paddockd accepts.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/paddockd.toml");
    let root = tempfile::Builder::new().prefix("pdk-").tempdir_in("/tmp").unwrap();
    let out = harness::capture(Command::new(bin_dir().join("paddockd")).args([
        "--config",
        config.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--check",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sigterm_leaves_containers_running_and_ends_event_streams() {
    let p = Paddock::new();
    let notify = NotifySocket::new(p.root());
    let daemon = Activated::start(&p, &notify, None, None);
    let id = unique("left");
    p.ctl_detached(&["run", "-d", "--name", &id, "--", "sleep", "100"]);
    let pid = p.state(&id)["pid"].as_i64().unwrap() as i32;
    let mut follower =
        p.command().args(["events", "--follow", &id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The follower has its history, so it is subscribed.
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("\"created\""));
    assert_eq!(daemon.terminate(), Some(0));
    // The event stream ends cleanly.
    assert!(lines.next().unwrap().unwrap().contains("\"started\""));
    assert!(lines.next().is_none());
    assert!(follower.wait().unwrap().success());
    assert!(process_alive(pid), "the container died with paddockd");
    // Any ctl brings paddockd back, and the container is still there.
    assert_eq!(p.state(&id)["status"], "running");
    p.ctl_ok(&["delete", "--force", &id]);
}

#[test]
fn shutdown_stop_stops_every_container_with_sigterm_then_sigkill() {
    let p = Paddock::new();
    let notify = NotifySocket::new(p.root());
    let config = p.root().join("paddockd.toml");
    std::fs::write(&config, "shutdown = \"stop\"\nstop_timeout = 2\n").unwrap();
    let daemon = Activated::start(&p, &notify, Some(&config), None);
    // PID 1 of its container: it ends on TERM through its handler, as under runc.
    let bundle = Bundle::busybox(&["sh", "-c", "trap 'exit 143' TERM; sleep 100 & wait"]);
    let polite = unique("polite");
    let stubborn = unique("stubborn");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &polite]);
    p.ctl_detached(&[
        "run",
        "-d",
        "--bundle",
        &bundle.path_str(),
        &stubborn,
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo ready > /dev/null; while :; do sleep 1; done",
    ]);
    let pids: Vec<i32> = [&polite, &stubborn].iter().map(|id| p.state(id)["pid"].as_i64().unwrap() as i32).collect();
    assert_eq!(daemon.terminate(), Some(0));
    for pid in pids {
        assert!(!process_alive(pid), "container process {pid} outlived paddockd's stop");
    }
    let code = |id: &str| {
        let v: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", id])).unwrap();
        v["exitStatus"].as_i64().unwrap()
    };
    assert_eq!(code(&polite), 143);
    assert_eq!(code(&stubborn), 137);
}

#[test]
fn sighup_reloads_the_configuration() {
    let p = Paddock::new();
    let notify = NotifySocket::new(p.root());
    let config = p.root().join("paddockd.toml");
    std::fs::write(&config, "overlay = \"none\"\n").unwrap();
    let daemon = Activated::start(&p, &notify, Some(&config), None);
    let bundle = Bundle::busybox(&["sh", "-c", "echo x > /written"]);
    bundle.edit_config(|c| c["root"]["readonly"] = serde_json::json!(false));
    let run = |id: &str| {
        let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), id]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(&unique("before"));
    assert!(bundle.rootfs().join("written").exists(), "without an overlay, the write reaches the bundle");
    std::fs::remove_file(bundle.rootfs().join("written")).unwrap();
    notify.until(|l| l == "READY=1");
    // A broken file is refused and the old configuration kept.
    std::fs::write(&config, "overlay = \"sideways\"\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    notify.until(|l| l == "READY=1");
    daemon.log_until("keeping the configuration in use");
    std::fs::write(&config, "overlay = \"root:memory\"\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let seen = notify.until(|l| l == "READY=1");
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    run(&unique("after"));
    assert!(!bundle.rootfs().join("written").exists(), "after the reload, writes go to a memory overlay");
}

#[test]
fn events_follow_sees_the_whole_story_in_order_by_several_subscribers() {
    let p = Paddock::new();
    p.ctl_ok(&["list"]);
    let id = unique("story");
    // A container the followers find in their history: reading it proves they subscribed.
    let anchor = unique("anchor");
    p.ctl_detached(&["run", "-d", "--name", &anchor, "--", "sleep", "100"]);
    let follow =
        || p.command().args(["events", "--follow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut followers = [follow(), follow()];
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    let readers: Vec<_> = followers
        .iter_mut()
        .map(|f| {
            let stdout = f.stdout.take().unwrap();
            let (id, subscribed_tx) = (id.clone(), subscribed_tx.clone());
            std::thread::spawn(move || {
                let mut story = Vec::new();
                for line in BufReader::new(stdout).lines() {
                    let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                    if event["type"] == "created" && event["id"] != id.as_str() {
                        let _ = subscribed_tx.send(());
                    }
                    if event["id"] == id.as_str() {
                        let kind = event["type"].as_str().unwrap().to_string();
                        story.push((event["seq"].as_u64().unwrap(), kind.clone(), event));
                        if kind == "deleted" {
                            return story;
                        }
                    }
                }
                story
            })
        })
        .collect();
    for _ in 0..2 {
        subscribed.recv_timeout(Duration::from_secs(20)).expect("a follower never subscribed");
    }
    let out = p.ctl(&["run", "--rm", "--name", &id, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    for reader in readers {
        let story = reader.join().unwrap();
        let kinds: Vec<&str> = story.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["created", "started", "exited", "deleted"]);
        assert!(story.windows(2).all(|w| w[0].0 < w[1].0), "seq increases");
        assert_eq!(story[2].2["exitStatus"], 3);
        assert!(story[1].2["pid"].as_i64().unwrap() > 0);
        assert_eq!(story[0].2["sandboxId"], id.as_str());
    }
    for mut f in followers {
        f.kill().unwrap();
        f.wait().unwrap();
    }
    // Without --follow: the history, and then the end. A deleted container has none left.
    let history = p.ctl(&["events", &id]);
    assert!(!history.status.success(), "a deleted container is unknown");
    assert!(stderr(&history).contains(&id), "{}", stderr(&history));
    let all = p.ctl_ok(&["events"]);
    assert!(!all.contains(&id), "deleted containers take their history with them: {all}");
    assert!(all.contains(&anchor));
    p.ctl_ok(&["delete", "--force", &anchor]);
}
