//! Docker runs on paddock: a private dockerd (Debian's docker.io 20.10, installed by .ci/run)
//! with `paddock` beside `runc` among its runtimes, and every check a Docker user would make,
//! run through the same code with `--runtime runc` and `--runtime paddock` in the same test.
//! The table printed at the end shows both columns; the test fails when a check that passes
//! on runc fails on paddock.
//!
//! The daemon is the test's own: its data root, exec root, socket, pid file, trust key and
//! cgroup parent are under a temporary directory and names of the test's, its bridge
//! `pdk-docker0` has a private subnet, and `--iptables=false --ip-forward=false` keep it off
//! the host's firewall and routing. The data root stays as dockerd leaves it (shared, as on
//! every systemd host: the suite runs with `/` rshared). Traffic goes only between this host
//! and its containers: through docker-proxy on 127.0.0.1 and to a container's address on the
//! bridge.
//!
//! How dockerd calls the runtime: the containerd shim runs `<path> --root
//! <exec-root>/runtime-runc/moby --log <bundle>/log.json --log-format json <command> ...` for
//! every runtime (`runtimeArgs` of daemon.json go before it, so a `--root` there is overridden
//! by the shim's). paddock's state root is therefore `<exec-root>/runtime-runc/moby`, private
//! to this test; its paddockd's log is `paddockd.log` there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::{capture_within, ctl_path, eventually, pidfd, process_alive, stderr, stdout, wait_child, Bundle};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The image every check runs: busybox, imported from a tar the test builds.
const IMAGE: &str = "pdk-busybox:latest";
/// The bridge of the test's dockerd, and its private subnet.
const BRIDGE: &str = "pdk-docker0";
const BRIDGE_ADDRESS: &str = "10.213.0.1/24";
const BRIDGE_PREFIX: &str = "10.213.0.";
/// The runtimes compared: the reference first.
const RUNTIMES: [&str; 2] = ["runc", "paddock"];
/// How long one docker command may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A dockerd of the test's own, with everything it made removed on drop.
struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
    cgroup_parent: String,
    /// Whether /run/docker was made by this dockerd (its plugin directory is not configurable).
    made_run_docker: bool,
}

impl Dockerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("pdk-docker-").tempdir_in("/tmp").expect("temp dir").keep();
        let cgroup_parent = format!("pdk-docker-{}", std::process::id());
        let config = serde_json::json!({
            "runtimes": {"paddock": {"path": ctl_path()}},
            // dockerd writes its trust key to /etc/docker unless told otherwise.
            "deprecated-key-path": dir.join("key.json"),
        });
        std::fs::write(dir.join("daemon.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        std::fs::create_dir(dir.join("client")).unwrap();
        let made_run_docker = !Path::new("/run/docker").exists();
        let mut me = Self { dir, child: None, cgroup_parent, made_run_docker };
        me.make_bridge();
        me.launch();
        me
    }

    /// The bridge, made afresh (one left by a killed run of this test is removed first).
    fn make_bridge(&self) {
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            let _ = capture_within(Command::new("ip").args(["link", "del", BRIDGE]), DOCKER_TIMEOUT);
        }
        for args in [
            &["link", "add", BRIDGE, "type", "bridge"][..],
            &["addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
            &["link", "set", BRIDGE, "up"],
        ] {
            let out = capture_within(Command::new("ip").args(args), DOCKER_TIMEOUT);
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        }
    }

    /// Starts dockerd (again, after a kill: same directories) and waits until it answers.
    fn launch(&mut self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .env_clear()
            .env("PATH", PATH)
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args(["--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge", BRIDGE])
            .args(["--experimental", "--live-restore", "--storage-driver", "overlay2"])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup_parent))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(60), || {
            self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
                && self.docker(&["version", "--format", "{{.Server.Version}}"]).status.success()
        });
        assert!(up, "dockerd did not come up:\n{}", self.log_tail("dockerd.log", 0, |_| true));
    }

    /// SIGKILLs dockerd and waits until it is gone, and its containerd too (dockerd starts it
    /// with a parent-death signal): a new dockerd would take the dying one's pid for a live
    /// containerd and wait for it in vain.
    fn kill_dockerd(&mut self) {
        let containerd = std::fs::read_to_string(self.dir.join("exec/containerd/containerd.pid")).unwrap_or_default();
        let mut child = self.child.take().expect("dockerd runs");
        let _ = child.kill();
        assert!(wait_exit(&mut child, Duration::from_secs(30)), "dockerd survived SIGKILL");
        let containerd = Path::new("/proc").join(containerd.trim());
        let reaped = eventually(Duration::from_secs(30), || containerd.as_os_str() == "/proc" || !containerd.exists());
        assert!(reaped, "dockerd's containerd ({}) outlived it", containerd.display());
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", PATH)
            .env("DOCKER_HOST", format!("unix://{}", self.dir.join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_CLI_HINTS", "false");
        c
    }

    /// `docker ARGS`, bounded in time.
    fn docker(&self, args: &[&str]) -> Output {
        capture_within(self.command("docker").args(args), DOCKER_TIMEOUT)
    }

    /// `docker ARGS`, required to succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            errors(&out),
            stdout(&out)
        );
        stdout(&out)
    }

    /// `docker run --runtime RUNTIME ARGS`.
    fn run(&self, runtime: &str, args: &[&str]) -> Output {
        let mut all = vec!["run", "--runtime", runtime];
        all.extend(args);
        self.docker(&all)
    }

    /// `docker run -d --runtime RUNTIME --name NAME EXTRA IMAGE COMMAND`, required to succeed.
    fn detached(&self, runtime: &str, name: &str, extra: &[&str], command: &[&str]) {
        let mut args = vec!["-d", "--name", name];
        args.extend(extra);
        args.push(IMAGE);
        args.extend(command);
        let out = self.run(runtime, &args);
        assert!(out.status.success(), "docker run {} failed ({}): {}", args.join(" "), out.status, errors(&out));
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name]).trim().to_string()
    }

    /// A shell command line run by util-linux's `script` on a terminal of its own (`-it` needs
    /// one); `script -e` returns the command's exit code. Its input stays open (and empty) until
    /// it exits: at the end of its input, script would end the terminal's input too.
    fn on_a_terminal(&self, line: &str) -> Output {
        let mut child = self
            .command("script")
            .args(["-qec", line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let input = child.stdin.take();
        let out = harness::finish(child);
        drop(input);
        out
    }

    /// Removes every container (and unused volume); returns how many there were.
    fn remove_all(&self) -> usize {
        let ids = self.ok(&["ps", "-aq", "--no-trunc"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(&ids);
            self.ok(&args);
        }
        let _ = self.docker(&["volume", "prune", "-f"]);
        ids.len()
    }

    /// paddock's state root: the shim's `--root` (see the module's comment).
    fn paddock_root(&self) -> PathBuf {
        self.dir.join("exec/runtime-runc/moby")
    }

    /// Sizes of the logs, to show later only what was written after.
    fn log_sizes(&self) -> (u64, u64) {
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        (size(self.dir.join("dockerd.log")), size(self.paddock_root().join("paddockd.log")))
    }

    /// The lines of log `name` (under the test's directory) written after `from`, that
    /// `keep` selects, at most 12 of them.
    fn log_tail(&self, name: &str, from: u64, keep: impl Fn(&str) -> bool) -> String {
        let text = std::fs::read(self.dir.join(name)).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
        let shown = &lines[lines.len().saturating_sub(12)..];
        shown.iter().map(|l| format!("    {}\n", l.chars().take(400).collect::<String>())).collect()
    }

    /// What the logs say about a failure: errors of dockerd (and its containerd and shims) and
    /// of paddockd since `since`, and the `--log` files of the runtime's calls for the containers
    /// that still exist.
    fn failure_context(&self, since: (u64, u64)) -> String {
        let mut context = String::new();
        let dockerd = self.log_tail("dockerd.log", since.0, |l| l.contains("level=error"));
        if !dockerd.is_empty() {
            context += &format!("  dockerd.log:\n{dockerd}");
        }
        let paddockd = self
            .log_tail("exec/runtime-runc/moby/paddockd.log", since.1, |l| l.contains("ERROR") || l.contains("WARN"));
        if !paddockd.is_empty() {
            context += &format!("  paddockd.log:\n{paddockd}");
        }
        let tasks = self.dir.join("exec/containerd/daemon/io.containerd.runtime.v2.task/moby");
        for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            let log = task.path().join("log.json");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.trim().is_empty() {
                let relative = log.strip_prefix(&self.dir).unwrap_or(&log).to_path_buf();
                context +=
                    &format!("  {}:\n{}", relative.display(), self.log_tail(relative.to_str().unwrap(), 0, |_| true));
            }
        }
        context
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Never a panic here: this may run while the test is already failing.
        // Bounded, and its output through a file (never a panic, unlike capture).
        let quietly = |cmd: &mut Command| -> Option<String> {
            let out = tempfile::tempfile().ok()?;
            let mut child =
                cmd.stdin(Stdio::null()).stdout(out.try_clone().ok()?).stderr(Stdio::null()).spawn().ok()?;
            if wait_child(&mut child, DOCKER_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            let mut text = String::new();
            std::io::Seek::rewind(&mut &out).ok()?;
            (&out).read_to_string(&mut text).ok()?;
            Some(text)
        };
        if let Some(mut child) = self.child.take() {
            // With --live-restore, dockerd leaves running containers behind when it stops.
            let list = quietly(self.command("docker").args(["ps", "-aq", "--no-trunc"])).unwrap_or_default();
            for id in list.split_whitespace() {
                quietly(self.command("docker").args(["rm", "-f", "-v", id]));
            }
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if !wait_exit(&mut child, Duration::from_secs(30)) {
                eprintln!("dockerd did not stop on SIGTERM within 30 s: killed");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // paddockd (started by ctl for the shim's root) outlives dockerd; stop it gracefully.
        let paddockd = std::fs::read_to_string(self.paddock_root().join("paddockd.pid"));
        if let Some(pid) = paddockd.ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            if let Ok(fd) = pidfd(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                harness::wait_pidfd(&fd, Duration::from_secs(20));
            }
        }
        // Whatever of ours is left — containerd, shims, docker-proxy, paddock's helpers — names
        // this directory on its command line.
        let dir = self.dir.display().to_string();
        for pid in harness::processes_mentioning(&dir) {
            eprintln!("killing process {pid} left behind: {}", cmdline(pid).unwrap_or_default());
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !eventually(Duration::from_secs(20), || harness::processes_mentioning(&dir).is_empty()) {
            eprintln!("processes of {dir} survive SIGKILL: {:?}", harness::processes_mentioning(&dir));
        }
        // The cgroups of the containers, then their parent (each empty once its tasks are gone).
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let parent = hierarchy.path().join(&self.cgroup_parent);
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            if parent.exists() && std::fs::remove_dir(&parent).is_err() {
                eprintln!("cgroup {} could not be removed", parent.display());
            }
        }
        // Nothing is deleted through a mount: everything mounted beneath the directory (overlays,
        // shm, netns files) is detached first, and the removal refuses to cross a mount point.
        unmount_beneath(&self.dir);
        if let Err(e) = sys::remove::remove_dir_within_mount(&self.dir) {
            eprintln!("{} was not removed: {e}", self.dir.display());
        }
        quietly(Command::new("ip").args(["link", "del", BRIDGE]));
        if self.made_run_docker {
            // Empty directories only: never a recursive removal outside the test's directory.
            let _ = std::fs::remove_dir("/run/docker/plugins");
            let _ = std::fs::remove_dir("/run/docker");
        }
    }
}

/// Waits until `child` has exited, at most `timeout`; whether it has (reaped already or not).
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    match child.try_wait() {
        Ok(Some(_)) | Err(_) => true,
        // Not reaped yet, so its pid is still its own.
        Ok(None) => wait_child(child, timeout).is_some(),
    }
}

/// Mount points strictly beneath `dir` in this mount namespace.
fn mounts_beneath(dir: &Path) -> Vec<PathBuf> {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let unescape = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
            match octal {
                Some(v) if bytes[i] == b'\\' => {
                    out.push(v);
                    i += 4;
                }
                _ => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect()
}

/// Detaches every mount beneath `dir`, deepest first, until none is left.
fn unmount_beneath(dir: &Path) {
    for _ in 0..20 {
        let mut mounts = mounts_beneath(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    eprintln!("mounts beneath {} remain: {:?}", dir.display(), mounts_beneath(dir));
}

/// The stderr of a docker command without the warning every `run` prints here (forwarding is
/// off on purpose).
fn errors(out: &Output) -> String {
    stderr(out)
        .lines()
        .filter(|l| !l.starts_with("WARNING: IPv4 forwarding is disabled"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn cmdline(pid: i32) -> Option<String> {
    Some(String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?).replace('\0', " "))
}

/// A number no other process on the host sleeps for: `sleep <marker>` finds a container's
/// process among the host's.
fn marker() -> String {
    static NEXT: Mutex<u32> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    *next += 1;
    format!("{}{:04}", std::process::id(), *next)
}

/// The host pid of the one process whose command line is exactly `sleep <marker>`.
fn host_pid(marker: &str) -> i32 {
    let wanted = format!("sleep\0{marker}\0").into_bytes();
    let mut found = Vec::new();
    let seen = eventually(Duration::from_secs(20), || {
        found = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted) && process_alive(*pid)
            })
            .collect();
        !found.is_empty()
    });
    assert!(seen, "no process `sleep {marker}` on the host");
    assert_eq!(found.len(), 1, "more than one `sleep {marker}`: {found:?}");
    found[0]
}

fn namespace(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|l| l.display().to_string()).unwrap_or_default()
}

/// The directory of host process `pid`'s cgroup in the v1 hierarchy of `controller`.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("process {pid} has no {controller} cgroup: {text}"));
    Path::new("/sys/fs/cgroup").join(controller).join(path.trim_start_matches('/'))
}

fn read_number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|_| panic!("{}: not a number: {text:?}", path.display()))
}

/// A `stat` entry of a cgroup's memory.stat.
fn memory_stat(dir: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join("memory.stat")).expect("memory.stat");
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

/// Bytes of a size as `docker stats` prints it (`612KiB`, `1.5MiB`, `0B`).
fn parse_size(s: &str) -> f64 {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let number: f64 = s[..split].parse().unwrap_or_else(|_| panic!("not a size: {s:?}"));
    let unit = match &s[split..] {
        "B" => 1.0,
        "KiB" | "kB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unknown unit {other:?} in {s:?}"),
    };
    number * unit
}

/// A word quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Waits (at most 5 s) until a container's terminal has a size (Docker sets it after the
/// start; until then busybox's `stty size` prints nothing), then prints `tty` and `stty size`.
const SHOW_TERMINAL: &str = "i=0; until [ -n \"$(stty size 2>/dev/null)\" ] || [ $i -ge 500 ]; do usleep 10000; i=$((i+1)); done; tty; stty size";

/// An HTTP GET of `/` from `address`, bounded; the whole answer.
fn http_get(address: &str) -> Option<String> {
    let address: std::net::SocketAddr = address.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The checks. Each runs one runtime's containers, panics (an assertion) when the check fails,
// and leaves its containers for the caller to remove.

fn run_and_exit_codes(d: &Dockerd, rt: &str) {
    let out = d.run(rt, &["--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "`exit 3`: {}", errors(&out));
    assert_eq!((stdout(&out).as_str(), errors(&out).as_str()), ("out\n", "err\n"));
    let out = d.run(rt, &["--rm", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(0), "`true`: {}", errors(&out));
    let out = d.run(rt, &["--rm", IMAGE, "sh", "-c", "sleep 1000 & kill -KILL $!; wait $!"]);
    assert_eq!(out.status.code(), Some(137), "a child's SIGKILL as the exit status: {}", errors(&out));
}

fn run_command_not_found_is_127(d: &Dockerd, rt: &str) {
    let out = d.run(rt, &["--rm", IMAGE, "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", errors(&out));
    assert!(errors(&out).contains("/no/such/program"), "{}", errors(&out));
}

fn logs(d: &Dockerd, rt: &str) {
    let name = format!("logs-{rt}");
    d.detached(rt, &name, &[], &["sh", "-c", "echo one; echo two >&2"]);
    assert_eq!(d.ok(&["wait", &name]).trim(), "0");
    let out = d.docker(&["logs", &name]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("one\n", "two\n"));
}

fn run_it_with_size(d: &Dockerd, rt: &str) {
    let line = format!(
        "stty rows 33 cols 101; docker run --rm -it --runtime {rt} {IMAGE} sh -c {}",
        quote(&format!("{SHOW_TERMINAL}; exit 4"))
    );
    let out = d.on_a_terminal(&line);
    assert_eq!(out.status.code(), Some(4), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("/dev/pts/") && stdout(&out).contains("33 101"), "{:?}", stdout(&out));
}

fn exec(d: &Dockerd, rt: &str) {
    let name = format!("exec-{rt}");
    d.detached(rt, &name, &[], &["sleep", &marker()]);
    assert_eq!(d.docker(&["exec", &name, "sh", "-c", "exit 5"]).status.code(), Some(5), "exec's exit code");
    assert_eq!(d.ok(&["exec", "-u", "65534:65534", &name, "sh", "-c", "id -u; id -g"]), "65534\n65534\n");
    assert_eq!(d.ok(&["exec", "-e", "FOO=bar", &name, "sh", "-c", "echo $FOO"]), "bar\n");
    assert_eq!(d.ok(&["exec", "-w", "/tmp", &name, "pwd"]), "/tmp\n");
    let line =
        format!("stty rows 20 cols 70; docker exec -it {name} sh -c {}", quote(&format!("{SHOW_TERMINAL}; exit 6")));
    let out = d.on_a_terminal(&line);
    assert_eq!(out.status.code(), Some(6), "exec -it: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("/dev/pts/") && stdout(&out).contains("20 70"), "exec -it: {:?}", stdout(&out));
    d.ok(&["exec", "-d", &name, "touch", "/tmp/detached"]);
    let ran = eventually(Duration::from_secs(10), || {
        d.docker(&["exec", &name, "test", "-e", "/tmp/detached"]).status.success()
    });
    assert!(ran, "exec -d did not run");
}

fn top(d: &Dockerd, rt: &str) {
    let name = format!("top-{rt}");
    let (first, second) = (marker(), marker());
    d.detached(rt, &name, &[], &["sh", "-c", &format!("sleep {second} & exec sleep {first}")]);
    let pids = [host_pid(&first), host_pid(&second)];
    let top = d.ok(&["top", &name]);
    let listed: Vec<i32> = top.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect();
    for pid in pids {
        assert!(listed.contains(&pid), "docker top does not list host pid {pid}:\n{top}");
    }
    assert!(top.contains(&format!("sleep {first}")) && top.contains(&format!("sleep {second}")), "{top}");
}

fn pause_unpause(d: &Dockerd, rt: &str) {
    let name = format!("pause-{rt}");
    let m = marker();
    d.detached(rt, &name, &[], &["sleep", &m]);
    let freezer = cgroup_dir(host_pid(&m), "freezer").join("freezer.state");
    d.ok(&["pause", &name]);
    assert_eq!(d.inspect(&name, "{{.State.Status}}"), "paused");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap_or_default().trim(), "FROZEN", "{}", freezer.display());
    d.ok(&["unpause", &name]);
    assert_eq!(d.inspect(&name, "{{.State.Status}}"), "running");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap_or_default().trim(), "THAWED");
    d.ok(&["exec", &name, "true"]);
}

fn cp(d: &Dockerd, rt: &str) {
    let name = format!("cp-{rt}");
    d.detached(rt, &name, &[], &["sleep", &marker()]);
    let into = d.dir.join(format!("cp-in-{rt}"));
    std::fs::write(&into, format!("to the {rt} container\n")).unwrap();
    d.ok(&["cp", into.to_str().unwrap(), &format!("{name}:/tmp/in")]);
    assert_eq!(d.ok(&["exec", &name, "cat", "/tmp/in"]), format!("to the {rt} container\n"));
    d.ok(&["exec", &name, "sh", "-c", "echo from the container > /tmp/out"]);
    let out = d.dir.join(format!("cp-out-{rt}"));
    d.ok(&["cp", &format!("{name}:/tmp/out"), out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "from the container\n");
}

fn kill_with_a_signal(d: &Dockerd, rt: &str) {
    let name = format!("kill-{rt}");
    let script = "trap 'echo got usr1; exit 7' USR1; echo ready; while :; do usleep 50000; done";
    d.detached(rt, &name, &[], &["sh", "-c", script]);
    // PID 1 ignores a signal it has no handler for: send it once the trap is set.
    let ready = eventually(Duration::from_secs(10), || stdout(&d.docker(&["logs", &name])).contains("ready"));
    assert!(ready, "the container never said ready");
    d.ok(&["kill", "-s", "USR1", &name]);
    assert_eq!(d.ok(&["wait", &name]).trim(), "7");
    assert!(stdout(&d.docker(&["logs", &name])).contains("got usr1"));
}

fn restart_policies(d: &Dockerd, rt: &str) {
    let name = format!("restart-{rt}");
    d.detached(rt, &name, &["--restart", "on-failure:2"], &["sh", "-c", "echo run; exit 3"]);
    let format = "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}";
    let mut last = String::new();
    let done = eventually(Duration::from_secs(30), || {
        last = d.inspect(&name, format);
        last == "2 exited 3"
    });
    assert!(done, "on-failure:2 ended as {last:?}, not `2 exited 3`");
    assert_eq!(stdout(&d.docker(&["logs", &name])).matches("run").count(), 3, "three runs");
    let always = format!("restart-always-{rt}");
    d.detached(rt, &always, &["--restart", "always"], &["sh", "-c", "echo run"]);
    let restarted = eventually(Duration::from_secs(30), || {
        last = d.inspect(&always, "{{.RestartCount}}");
        last.parse::<u32>().is_ok_and(|n| n >= 2)
    });
    assert!(restarted, "always: restarted {last} times");
    d.ok(&["stop", &always]);
    assert_eq!(d.inspect(&always, "{{.State.Status}}"), "exited");
}

fn read_only(d: &Dockerd, rt: &str) {
    let out = d.run(rt, &["--rm", "--read-only", IMAGE, "touch", "/x"]);
    assert!(!out.status.success() && errors(&out).contains("Read-only file system"), "{}", errors(&out));
    let out = d.run(rt, &["--rm", "--read-only", "--tmpfs", "/tmp", IMAGE, "touch", "/tmp/x"]);
    assert!(out.status.success(), "a tmpfs on a read-only root: {}", errors(&out));
}

fn tmpfs(d: &Dockerd, rt: &str) {
    let script = "grep ' /data ' /proc/mounts; stat -c %a /data; echo written > /data/f; cat /data/f";
    let out = d.run(rt, &["--rm", "--tmpfs", "/data:rw,size=1m,mode=1777", IMAGE, "sh", "-c", script]);
    assert!(out.status.success(), "{}", errors(&out));
    let text = stdout(&out);
    assert!(text.contains("tmpfs /data tmpfs") && text.contains("size=1024k"), "{text}");
    assert!(text.contains("\n1777\n") && text.ends_with("written\n"), "{text}");
}

fn volumes(d: &Dockerd, rt: &str) {
    let host = d.dir.join(format!("volume-{rt}"));
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/data", host.display());
    let out = d.run(rt, &["--rm", "-v", &bind, IMAGE, "sh", "-c", "echo written > /data/f"]);
    assert!(out.status.success(), "-v rw: {}", errors(&out));
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap_or_default(), "written\n");
    let bind = format!("{}:/ro:ro", host.display());
    let out = d.run(rt, &["--rm", "-v", &bind, IMAGE, "touch", "/ro/x"]);
    assert!(!out.status.success() && errors(&out).contains("Read-only file system"), "-v ro: {}", errors(&out));
    let named = format!("pdkvol-{rt}:/v");
    let out = d.run(rt, &["--rm", "-v", &named, IMAGE, "sh", "-c", "echo kept > /v/f"]);
    assert!(out.status.success(), "a named volume: {}", errors(&out));
    let out = d.run(rt, &["--rm", "-v", &named, IMAGE, "cat", "/v/f"]);
    assert_eq!(stdout(&out), "kept\n", "a named volume, again: {}", errors(&out));
}

fn capabilities(d: &Dockerd, rt: &str) {
    let effective = |flags: &[&str]| {
        let mut args = vec!["--rm"];
        args.extend(flags);
        args.extend([IMAGE, "grep", "CapEff", "/proc/self/status"]);
        let out = d.run(rt, &args);
        assert!(out.status.success(), "{flags:?}: {}", errors(&out));
        stdout(&out).split_whitespace().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(effective(&[]), "00000000a80425fb", "Docker's default set");
    assert_eq!(effective(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]), "0000000000001000");
    let out = d.run(rt, &["--rm", "--cap-drop", "CHOWN", IMAGE, "chown", "65534", "/tmp"]);
    assert!(!out.status.success(), "chown without CAP_CHOWN succeeded");
}

fn no_new_privileges(d: &Dockerd, rt: &str) {
    let flag = |flags: &[&str]| {
        let mut args = vec!["--rm"];
        args.extend(flags);
        args.extend([IMAGE, "grep", "NoNewPrivs", "/proc/self/status"]);
        stdout(&d.run(rt, &args)).split_whitespace().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(flag(&["--security-opt", "no-new-privileges"]), "1");
    assert_eq!(flag(&[]), "0");
}

fn user(d: &Dockerd, rt: &str) {
    for user in ["65534:65534", "nobody"] {
        let out = d.run(rt, &["--rm", "--user", user, IMAGE, "sh", "-c", "id -u; id -g"]);
        assert_eq!(stdout(&out), "65534\n65534\n", "--user {user}: {}", errors(&out));
    }
}

fn ulimit(d: &Dockerd, rt: &str) {
    let out = d.run(rt, &["--rm", "--ulimit", "nofile=1234:2345", IMAGE, "cat", "/proc/self/limits"]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    assert_eq!(line.split_whitespace().skip(3).take(2).collect::<Vec<_>>(), ["1234", "2345"], "{text}{}", errors(&out));
}

fn pids_limit(d: &Dockerd, rt: &str) {
    let name = format!("pids-{rt}");
    let (m, extra) = (marker(), marker());
    d.detached(rt, &name, &["--pids-limit", "10"], &["sleep", &m]);
    let pids = cgroup_dir(host_pid(&m), "pids");
    assert_eq!(std::fs::read_to_string(pids.join("pids.max")).unwrap_or_default().trim(), "10", "{}", pids.display());
    let script = format!("i=0; while [ $i -lt 20 ]; do sleep {extra} & i=$((i+1)); done; echo spawned");
    let out = d.docker(&["exec", &name, "sh", "-c", &script]);
    assert!(errors(&out).contains("fork"), "20 forks under --pids-limit 10: {}{}", stdout(&out), errors(&out));
    let current = read_number(&pids.join("pids.current"));
    assert!(current <= 10, "pids.current {current} above the limit");
}

fn published_port(d: &Dockerd, rt: &str) {
    let name = format!("web-{rt}");
    let script = format!("mkdir -p /www && echo hello from {rt} > /www/index.html && exec httpd -f -p 80 -h /www");
    d.detached(rt, &name, &["-p", "127.0.0.1::80"], &["sh", "-c", &script]);
    let port = d.ok(&["port", &name, "80/tcp"]);
    let published = port.lines().next().unwrap_or_default().trim().to_string();
    assert!(published.starts_with("127.0.0.1:"), "docker port: {port}");
    let expected = format!("hello from {rt}");
    let mut answer = None;
    let served = eventually(Duration::from_secs(20), || {
        answer = http_get(&published);
        answer.as_deref().is_some_and(|a| a.contains(&expected))
    });
    assert!(served, "nothing served on {published} (docker-proxy): {answer:?}");
    let address = d.inspect(&name, "{{.NetworkSettings.IPAddress}}");
    assert!(address.starts_with(BRIDGE_PREFIX), "the container's address {address:?} is not on {BRIDGE}");
    let direct = http_get(&format!("{address}:80"));
    assert!(direct.as_deref().is_some_and(|a| a.contains(&expected)), "nothing served on {address}:80: {direct:?}");
}

/// Starts a counter printing 1, 2, 3... and returns what `docker logs` shows of it.
fn counting<'a>(d: &'a Dockerd, rt: &str, name: &str) -> impl Fn() -> Vec<u64> + 'a {
    d.detached(rt, name, &[], &["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; usleep 100000; done"]);
    let name = name.to_string();
    move || stdout(&d.docker(&["logs", &name])).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn checkpoint_create(d: &Dockerd, rt: &str) {
    let name = format!("ckpt-{rt}");
    let logged = counting(d, rt, &name);
    assert!(eventually(Duration::from_secs(10), || logged().len() >= 3), "the counter does not count");
    d.ok(&["checkpoint", "create", &name, "one"]);
    assert_eq!(d.inspect(&name, "{{.State.Status}}"), "exited");
    assert!(d.ok(&["checkpoint", "ls", &name]).contains("one"));
}

fn start_from_checkpoint(d: &Dockerd, rt: &str) {
    let name = format!("restore-{rt}");
    let logged = counting(d, rt, &name);
    assert!(eventually(Duration::from_secs(10), || logged().len() >= 3), "the counter does not count");
    d.ok(&["checkpoint", "create", &name, "one"]);
    let at_checkpoint = logged().len();
    d.ok(&["start", "--checkpoint", "one", &name]);
    assert_eq!(d.inspect(&name, "{{.State.Status}}"), "running");
    assert!(eventually(Duration::from_secs(10), || logged().len() >= at_checkpoint + 3), "no count after the restore");
    let counts = logged();
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "the restored counter did not go on: {counts:?}");
}

fn stats_equal_the_cgroup(d: &Dockerd, rt: &str) {
    let name = format!("stats-{rt}");
    let (first, second, third) = (marker(), marker(), marker());
    let script = format!("sleep {second} & sleep {third} & exec sleep {first}");
    d.detached(rt, &name, &["--memory", "100m"], &["sh", "-c", &script]);
    let pids: Vec<i32> = [&first, &second, &third].iter().map(|m| host_pid(m)).collect();
    let memory = cgroup_dir(pids[0], "memory");
    let pids_cgroup = cgroup_dir(pids[0], "pids");
    let stats = d.ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", &name]);
    let in_cgroup = read_number(&pids_cgroup.join("pids.current"));
    let usage = read_number(&memory.join("memory.usage_in_bytes")) as f64;
    let usage = usage - memory_stat(&memory, "total_inactive_file") as f64;
    let (mem, pid_count) = stats.trim().split_once('|').unwrap_or_else(|| panic!("docker stats: {stats}"));
    let (used, limit) = mem.split_once(" / ").unwrap_or_else(|| panic!("docker stats: {stats}"));
    assert_eq!(pid_count, in_cgroup.to_string(), "docker stats PIDs against the cgroup's pids.current ({stats})");
    assert_eq!(read_number(&memory.join("memory.limit_in_bytes")), 100 << 20, "{}", memory.display());
    assert_eq!(parse_size(limit), (100u64 << 20) as f64, "docker stats limit ({stats})");
    let used = parse_size(used);
    assert!(
        (used - usage).abs() <= 1024.0 * 1024.0,
        "docker stats says {used} B used, the container's cgroup {usage} B ({stats}; {})",
        memory.display()
    );
    // And the cgroup holds the container's processes, and with paddock the process State.Pid
    // names (the pid file's monitor, which stands in the container's cgroups so that
    // containerd's metrics and OOM watch read them): one task more than runc's.
    let procs = std::fs::read_to_string(pids_cgroup.join("cgroup.procs")).unwrap_or_default();
    let procs: Vec<(i32, String)> =
        procs.split_whitespace().filter_map(|p| p.parse().ok()).map(|p| (p, cmdline(p).unwrap_or_default())).collect();
    let state_pid: i32 = d.inspect(&name, "{{.State.Pid}}").parse().unwrap_or(0);
    let others: Vec<&(i32, String)> = procs.iter().filter(|(p, _)| !pids.contains(p)).collect();
    match rt {
        "runc" => assert!(others.is_empty(), "runc's cgroup holds more than the container's 3 processes: {procs:?}"),
        _ => assert_eq!(
            others.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![state_pid],
            "the container's 3 processes and State.Pid's monitor, nothing else: {procs:?}"
        ),
    }
}

fn oom_killed(d: &Dockerd, rt: &str) {
    let name = format!("oom-{rt}");
    let sync = d.dir.join(format!("oom-{rt}"));
    std::fs::create_dir_all(&sync).unwrap();
    let since = format!("{:.0}", unix_now() - 1.0);
    // The allocation waits for docker run to return: Docker watches for the OOM from start on.
    let script = "while [ ! -e /sync/go ]; do usleep 10000; done; exec dd if=/dev/zero of=/dev/null bs=64M count=1";
    let volume = format!("{}:/sync", sync.display());
    d.detached(rt, &name, &["--memory", "32m", "-v", &volume], &["sh", "-c", script]);
    std::fs::write(sync.join("go"), "").unwrap();
    assert_eq!(d.ok(&["wait", &name]).trim(), "137", "dd over --memory 32m");
    let mut state = String::new();
    let oom = eventually(Duration::from_secs(10), || {
        state = d.inspect(&name, "{{.State.OOMKilled}}");
        state == "true"
    });
    assert!(oom, "State.OOMKilled is {state}");
    let mut events = String::new();
    let seen = eventually(Duration::from_secs(10), || {
        let until = format!("{:.0}", unix_now() + 1.0);
        let filters = ["--filter", &format!("container={name}"), "--filter", "event=oom"];
        let mut args = vec!["events", "--since", &since, "--until", &until, "--format", "{{.Action}}"];
        args.extend(filters);
        events = d.ok(&args);
        events.lines().any(|l| l == "oom")
    });
    assert!(seen, "no `oom` event: {events:?}");
}

/// Which runtimes join a container of runtime `rt` in a check: its own, and runc's.
fn joiners(rt: &str) -> Vec<&str> {
    if rt == "runc" {
        vec!["runc"]
    } else {
        vec![rt, "runc"]
    }
}

fn joins_a_container(d: &Dockerd, rt: &str, kind: &str, flag: &str, extra: &[&str]) {
    let name = format!("{kind}-joined-{rt}");
    let m = marker();
    d.detached(rt, &name, extra, &["sleep", &m]);
    let theirs = namespace(&host_pid(&m).to_string(), kind);
    let hosts = namespace("self", kind);
    assert_ne!(theirs, hosts, "the {rt} container is in the host's {kind} namespace");
    for joiner in joiners(rt) {
        let target = format!("container:{name}");
        let out = d.run(joiner, &["--rm", flag, &target, IMAGE, "readlink", &format!("/proc/self/ns/{kind}")]);
        let joined = stdout(&out).trim().to_string();
        assert_ne!(joined, hosts, "a {joiner} container with {flag} {target} is in the HOST's {kind} namespace");
        assert_eq!(joined, theirs, "a {joiner} container with {flag} {target}: {}", errors(&out));
    }
}

fn network_container(d: &Dockerd, rt: &str) {
    joins_a_container(d, rt, "net", "--network", &[]);
}

fn ipc_container(d: &Dockerd, rt: &str) {
    joins_a_container(d, rt, "ipc", "--ipc", &["--ipc", "shareable"]);
}

fn pid_host(d: &Dockerd, rt: &str) {
    let me = std::process::id();
    let script = format!("readlink /proc/self/ns/pid; tr '\\0' ' ' < /proc/{me}/cmdline");
    let out = d.run(rt, &["--rm", "--pid", "host", IMAGE, "sh", "-c", &script]);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap_or_default(), namespace("self", "pid"), "--pid host: {text}{}", errors(&out));
    assert_eq!(lines.next().unwrap_or_default(), cmdline(me as i32).unwrap_or_default(), "the test's own process");
}

fn pid_container(d: &Dockerd, rt: &str) {
    let name = format!("pid-joined-{rt}");
    let m = marker();
    d.detached(rt, &name, &[], &["sleep", &m]);
    let theirs = namespace(&host_pid(&m).to_string(), "pid");
    assert_ne!(theirs, namespace("self", "pid"), "the {rt} container is in the host's PID namespace");
    for joiner in joiners(rt) {
        let target = format!("container:{name}");
        let out =
            d.run(joiner, &["--rm", "--pid", &target, IMAGE, "sh", "-c", "readlink /proc/self/ns/pid; ps -o args"]);
        let text = stdout(&out);
        let joined = text.lines().next().unwrap_or_default();
        let why = format!("a {joiner} container with --pid {target} (the {rt} container's namespace)");
        assert_ne!(joined, namespace("self", "pid"), "{why} is in the HOST's PID namespace: {text}");
        if joiner != rt {
            // Another runtime opens /proc/<State.Pid>/ns/pid itself: a paddock monitor's own
            // namespace, empty but for it (as with runsc, whose pid names its sandbox). Only
            // paddock knows that a monitor stands for its container.
            assert!(out.status.success(), "{why}: {}", errors(&out));
            continue;
        }
        assert_eq!(joined, theirs, "{why}: {text}{}", errors(&out));
        assert!(text.contains(&format!("sleep {m}")), "{joiner} with --pid {target} does not see its process: {text}");
    }
}

fn init_is_tini_as_pid_1(d: &Dockerd, rt: &str) {
    let out = d.run(rt, &["--rm", "--init", IMAGE, "cat", "/proc/1/cmdline"]);
    let args: Vec<String> = stdout(&out).split('\0').map(str::to_string).collect();
    assert!(
        args[0].ends_with("docker-init") && args.contains(&"cat".to_string()),
        "PID 1 is {args:?}: {}",
        errors(&out)
    );
    assert!(!errors(&out).contains("WARN"), "tini warns: {}", errors(&out));
}

fn stop_waits_for_the_grace_period(d: &Dockerd, rt: &str) {
    let name = format!("stop-{rt}");
    d.detached(rt, &name, &[], &["sleep", &marker()]);
    let started = Instant::now();
    d.ok(&["stop", "-t", "3", &name]);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(10), "docker stop -t 3 took {took:?}");
    assert_eq!(d.inspect(&name, "{{.State.ExitCode}}"), "137");
}

fn update_memory(d: &Dockerd, rt: &str) {
    let name = format!("update-{rt}");
    let m = marker();
    d.detached(rt, &name, &[], &["sleep", &m]);
    let memory = cgroup_dir(host_pid(&m), "memory");
    d.ok(&["update", "--memory", "64m", "--memory-swap", "128m", &name]);
    assert_eq!(read_number(&memory.join("memory.limit_in_bytes")), 64 << 20, "{}", memory.display());
    assert_eq!(read_number(&memory.join("memory.memsw.limit_in_bytes")), 128 << 20, "{}", memory.display());
    assert_eq!(d.inspect(&name, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"), "67108864 134217728");
}

fn rm_leaves_nothing(d: &Dockerd, rt: &str) {
    let name = format!("rm-{rt}");
    let m = marker();
    d.detached(rt, &name, &[], &["sleep", &m]);
    let id = d.inspect(&name, "{{.Id}}");
    let pid = host_pid(&m);
    d.ok(&["rm", "-f", &name]);
    assert!(eventually(Duration::from_secs(20), || !process_alive(pid)), "the container's process outlived rm -f");
    let gone = eventually(Duration::from_secs(20), || harness::processes_mentioning(&id).is_empty());
    assert!(gone, "processes naming the container remain: {:?}", harness::processes_mentioning(&id));
    assert!(harness::mounts_mentioning(&id).is_empty(), "{:?}", harness::mounts_mentioning(&id));
    assert!(harness::cgroups_mentioning(&id).is_empty(), "{:?}", harness::cgroups_mentioning(&id));
}

type Check = fn(&Dockerd, &str);
/// Each runtime's result of one check.
type Results = BTreeMap<&'static str, Result<(), String>>;
/// A line of the table: the check, its results, how long each runtime took.
type Row = (String, Results, Vec<Duration>);

const CHECKS: &[(&str, Check)] = &[
    ("run, exit codes", run_and_exit_codes),
    ("run, not found: 127", run_command_not_found_is_127),
    ("logs", logs),
    ("run -it, size", run_it_with_size),
    ("exec -it -u -e -w -d", exec),
    ("top", top),
    ("pause, unpause", pause_unpause),
    ("cp", cp),
    ("kill -s", kill_with_a_signal),
    ("restart policies", restart_policies),
    ("--read-only", read_only),
    ("--tmpfs", tmpfs),
    ("-v", volumes),
    ("--cap-add, --cap-drop", capabilities),
    ("no-new-privileges", no_new_privileges),
    ("--user", user),
    ("--ulimit", ulimit),
    ("--pids-limit", pids_limit),
    ("bridge, published port", published_port),
    ("checkpoint create", checkpoint_create),
    ("start --checkpoint", start_from_checkpoint),
    ("stats = cgroup", stats_equal_the_cgroup),
    ("OOMKilled, oom event", oom_killed),
    ("--network container:", network_container),
    ("--ipc container:", ipc_container),
    ("--pid host", pid_host),
    ("--pid container:", pid_container),
    ("--init: tini is PID 1", init_is_tini_as_pid_1),
    ("stop -t 3: 3 s, 137", stop_waits_for_the_grace_period),
    ("update --memory", update_memory),
    ("rm -f leaves nothing", rm_leaves_nothing),
];

/// What the last panic said and where, kept by the panic hook.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
/// Whether a check is running: its panics are failures shown in the table, not printed.
static IN_CHECK: AtomicBool = AtomicBool::new(false);

/// Keeps every panic's message in [`LAST_PANIC`]; prints it only outside a check.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let place = info.location().map(|l| format!("docker.rs:{}", l.line())).unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = format!("{message} ({place})");
        if !IN_CHECK.load(Ordering::SeqCst) {
            default(info);
        }
    }));
}

/// Runs `check`, turning its panic into a failure that says why, with what the logs say.
fn attempt(d: &Dockerd, check: impl FnOnce()) -> Result<(), String> {
    let since = d.log_sizes();
    IN_CHECK.store(true, Ordering::SeqCst);
    let result = std::panic::catch_unwind(AssertUnwindSafe(check));
    IN_CHECK.store(false, Ordering::SeqCst);
    result.map_err(|_| {
        let why = LAST_PANIC.lock().map(|s| s.clone()).unwrap_or_default();
        format!("{why}\n{}", d.failure_context(since))
    })
}

/// The live-restore check, for both runtimes at once: dockerd is killed once.
fn live_restore(d: &mut Dockerd) -> Results {
    let mut running = BTreeMap::new();
    let mut results = BTreeMap::new();
    for rt in RUNTIMES {
        let mut prepared = None;
        let result = attempt(d, || {
            let name = format!("live-{rt}");
            let m = marker();
            d.detached(rt, &name, &[], &["sleep", &m]);
            prepared = Some((name.clone(), host_pid(&m), d.inspect(&name, "{{.State.Pid}}")));
        });
        match (result, prepared) {
            (Ok(()), Some(p)) => {
                running.insert(rt, p);
            }
            (result, _) => {
                results.insert(rt, result.and(Err("not started".to_string())));
            }
        }
    }
    d.kill_dockerd();
    d.launch();
    for (rt, (name, pid, state_pid)) in running {
        results.insert(
            rt,
            attempt(d, || {
                assert!(process_alive(pid), "the container's process died with dockerd");
                let format = "{{.State.Running}} {{.State.Pid}}";
                assert_eq!(d.inspect(&name, format), format!("true {state_pid}"), "docker's view after the restart");
                assert_eq!(d.ok(&["exec", &name, "echo", "alive"]), "alive\n");
                d.ok(&["rm", "-f", &name]);
                assert!(eventually(Duration::from_secs(20), || !process_alive(pid)), "rm -f left the process");
            }),
        );
    }
    results
}

#[test]
fn docker_runs_every_check_on_paddock_as_on_runc() {
    harness::require_root();
    let missing: Vec<&str> = ["dockerd", "docker", "containerd", "runc", "docker-init", "script", "criu"]
        .into_iter()
        .filter(|tool| !std::env::split_paths(PATH).any(|dir| dir.join(tool).is_file()))
        .collect();
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "the Docker test needs {missing:?}, missing under CI (.ci/run installs docker.io)");
        eprintln!("\n!!! SKIPPED: the Docker test needs {missing:?} (apt-get install docker.io; see .ci/run) !!!\n");
        return;
    }
    let started = Instant::now();
    let mut d = Dockerd::start();
    // The image: busybox, as the other tests' bundles have it.
    let bundle = Bundle::busybox(&["true"]);
    std::fs::write(bundle.rootfs().join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let tar = d.dir.join("busybox.tar");
    let out = capture_within(
        Command::new("tar").arg("-C").arg(bundle.rootfs()).arg("-cf").arg(&tar).arg("."),
        DOCKER_TIMEOUT,
    );
    assert!(out.status.success(), "tar: {}", stderr(&out));
    d.ok(&["import", tar.to_str().unwrap(), IMAGE]);

    install_panic_hook();
    let mut table: Vec<Row> = Vec::new();
    // PADDOCK_DOCKER_ONLY=WORD runs only the checks whose name contains WORD.
    let only = std::env::var("PADDOCK_DOCKER_ONLY").unwrap_or_default();
    for (name, check) in CHECKS.iter().filter(|(name, _)| name.contains(&only)) {
        let mut results = BTreeMap::new();
        let mut took = Vec::new();
        for rt in RUNTIMES {
            let begun = Instant::now();
            let mut result = attempt(&d, || check(&d, rt));
            took.push(begun.elapsed());
            if let Err(e) = attempt(&d, || {
                d.remove_all();
            }) {
                result = result.and(Err(format!("removing its containers failed: {e}")));
            }
            if let Err(why) = &result {
                eprintln!("{rt} fails \"{name}\": {why}");
            }
            results.insert(rt, result);
        }
        eprintln!("{name:<28} {}", RUNTIMES.map(|rt| if results[rt].is_ok() { "ok" } else { "FAIL" }).join(" "));
        table.push((name.to_string(), results, took));
    }
    let live = "dockerd --live-restore";
    if live.contains(&only) {
        let begun = Instant::now();
        let results = live_restore(&mut d);
        for (rt, result) in &results {
            if let Err(why) = result {
                eprintln!("{rt} fails \"{live}\": {why}");
            }
        }
        table.push((live.to_string(), results, vec![begun.elapsed()]));
    }

    let mut report = format!("\n{:<28} {:<8} {:<8} seconds (runc, paddock)\n", "check", RUNTIMES[0], RUNTIMES[1]);
    for (name, results, took) in &table {
        let cell = |rt: &str| if results[rt].is_ok() { "ok" } else { "FAIL" };
        let secs: Vec<String> = took.iter().map(|t| format!("{:.1}", t.as_secs_f64())).collect();
        report += &format!("{name:<28} {:<8} {:<8} {}\n", cell("runc"), cell("paddock"), secs.join(" "));
    }
    let mut regressions = Vec::new();
    for (name, results, _) in &table {
        for rt in RUNTIMES {
            if let Err(why) = &results[rt] {
                report += &format!("\n{rt} fails \"{name}\": {why}");
            }
        }
        if results["runc"].is_ok() && results["paddock"].is_err() {
            regressions.push(name.clone());
        }
    }
    report += &format!("\n{} checks in {:.0} s\n", table.len(), started.elapsed().as_secs_f64());
    eprintln!("{report}");
    drop(d);
    assert!(regressions.is_empty(), "paddock fails what runc passes: {regressions:?} (causes above)");
}
