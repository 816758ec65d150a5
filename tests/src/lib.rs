//! Shared pieces of paddock's integration tests: find the built binaries, give each test its
//! own state root (and so its own paddockd), build busybox bundles, and check that nothing
//! was left behind.
//!
//! Tests run as root against the real kernel. Each [`Paddock`] cleans up through `Drop`, so
//! a failing test still deletes its containers and stops its daemon.

pub mod bench;
pub mod containerd;
pub mod cri;
pub mod gate;
pub mod images;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where the binaries under test are: `PADDOCK_BIN_DIR`, or the target directory this test
/// executable was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PADDOCK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let dir = exe.parent().and_then(Path::parent).expect("target directory").to_path_buf();
    for bin in ["ctl", "paddockd", "paddock-sandbox", "paddock-gofer"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (cargo build --release --workspace --all-targets)",
            dir.join(bin).display()
        );
    }
    dir
}

/// The `ctl` binary.
pub fn ctl_path() -> PathBuf {
    bin_dir().join("ctl")
}

/// Fails the test unless it runs as root: paddock needs it, and a skipped test proves nothing.
///
/// Under CI (`CI=true`) it also requires that `/` is a shared mount, as on every systemd host
/// (`.ci/run` runs the suite in such a mount namespace): a test machine whose `/` is private
/// once hid that no bundle could run on a real host.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "paddock's integration tests must run as root (they create namespaces, mounts and cgroups)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            root_is_shared(),
            "under CI the suite runs with / shared, as on a systemd host: \
             unshare -m --propagation shared sh -c 'mount --make-rshared / && cargo test ...' (see .ci/run)"
        );
    }
}

/// Whether `/` is a shared mount in this process's mount namespace (`shared:N` among its
/// optional fields in /proc/self/mountinfo).
pub fn root_is_shared() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4) == Some(&"/")
            && fields.iter().skip(6).take_while(|f| **f != "-").any(|f| f.starts_with("shared:"))
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// One state root and its daemon, cleaned up on drop.
pub struct Paddock {
    root: tempfile::TempDir,
}

impl Default for Paddock {
    fn default() -> Self {
        Self::new()
    }
}

impl Paddock {
    /// A fresh, empty state root. Its daemon starts on the first ctl call.
    pub fn new() -> Self {
        Self::new_in(Path::new("/tmp"))
    }

    /// A fresh, empty state root in directory `parent` (a tmpfs such as /dev/shm, where a
    /// host's /run/paddock would be, for the benchmarks).
    pub fn new_in(parent: &Path) -> Self {
        require_root();
        let root = tempfile::Builder::new().prefix("pdk-").tempdir_in(parent).expect("temp root");
        Self { root }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A `ctl --root <root>` command, ready for more arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(ctl_path());
        c.arg("--root").arg(self.root());
        c
    }

    /// Runs ctl with `args`, stdin closed, output captured.
    ///
    /// The output goes through files, not pipes: `create` and `run -d` hand ctl's stdio to
    /// the container (as runc does), and a pipe would stay open as long as the container runs.
    pub fn ctl(&self, args: &[&str]) -> Output {
        capture(self.command().args(args))
    }

    /// Runs ctl and requires success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "ctl {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs ctl with all stdio on /dev/null (for `run -d`, whose container keeps ctl's
    /// stdio: captured pipes would stay open as long as the container runs) and requires
    /// success.
    pub fn ctl_detached(&self, args: &[&str]) {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running ctl");
        let status = wait_child(&mut child, command_timeout()).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctl {args:?} did not finish within {:?}", command_timeout())
        });
        assert!(status.success(), "ctl {args:?} failed: {status}");
    }

    /// `ctl state ID` parsed.
    pub fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ctl_ok(&["state", id])).expect("state is JSON")
    }

    /// The daemon's pid, if its pid file exists.
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root().join("paddockd.pid")).ok()?.trim().parse().ok()
    }

    /// Ids of every container, from `ctl list -q`.
    pub fn ids(&self) -> Vec<String> {
        self.ctl_ok(&["list", "-q"]).lines().map(str::to_string).collect()
    }

    /// Starts the root's paddockd by hand with `config` (TOML) as its configuration file, and
    /// returns its pid once it accepts connections (it says so on a readiness pipe, as it does
    /// for ctl). Its log goes to `<root>/paddockd.log`.
    pub fn start_daemon_with_config(&self, config: &str) -> i32 {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let path = self.root().join("test-paddockd.toml");
        std::fs::write(&path, config).expect("writing the configuration");
        let log = std::fs::File::create(self.root().join("paddockd.log")).expect("log");
        let (mut ready_read, ready_write) = std::io::pipe().expect("pipe");
        let raw = ready_write.as_raw_fd();
        let mut cmd = Command::new(bin_dir().join("paddockd"));
        cmd.arg("--root").arg(self.root()).arg("--config").arg(&path).args(["--ready-fd", "3"]);
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup")).stderr(log);
        // SAFETY: only dup2 and setsid (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting paddockd");
        drop(ready_write);
        drop(cmd);
        let mut answer = String::new();
        let _ = ready_read.read_to_string(&mut answer);
        assert!(
            answer.starts_with("ready"),
            "paddockd did not start: {}",
            std::fs::read_to_string(self.root().join("paddockd.log")).unwrap_or_default()
        );
        // It runs on its own; reaped by whoever adopts it when this test process ends.
        let pid = child.id() as i32;
        std::mem::forget(child);
        pid
    }

    /// Stops the daemon with SIGTERM and waits for it to exit.
    pub fn stop_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            if let Ok(fd) = pidfd(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                wait_pidfd(&fd, Duration::from_secs(10));
            }
        }
    }
}

impl Drop for Paddock {
    fn drop(&mut self) {
        if self.daemon_pid().is_some() {
            // Bounded, and never a panic: this may run while a test is already failing.
            let quietly = |cmd: &mut Command| -> Option<Vec<u8>> {
                let out = tempfile::tempfile().ok()?;
                let mut child =
                    cmd.stdin(Stdio::null()).stdout(out.try_clone().ok()?).stderr(Stdio::null()).spawn().ok()?;
                if wait_child(&mut child, Duration::from_secs(30)).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                use std::io::{Read, Seek};
                let mut out = out;
                let mut v = Vec::new();
                out.rewind().ok()?;
                out.read_to_end(&mut v).ok()?;
                Some(v)
            };
            if let Some(out) = quietly(self.command().args(["list", "-q"])) {
                for id in String::from_utf8_lossy(&out).lines() {
                    let _ = quietly(self.command().args(["delete", "--force", id]));
                }
            }
            self.stop_daemon();
        }
    }
}

/// How long one command of a test may run before the test fails: long enough for anything a
/// test legitimately waits for, short enough that a hung `ctl` fails its test instead of
/// stalling the whole run until CI's limit. `PADDOCK_TEST_TIMEOUT` (seconds) overrides it.
pub fn command_timeout() -> Duration {
    std::env::var("PADDOCK_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(120), Duration::from_secs)
}

/// Runs `cmd` with stdin closed and its stdout and stderr captured through temporary files;
/// returns when the command itself exits, whoever else holds its stdio. A command still
/// running after [`command_timeout`] is killed and fails the test, naming it and showing what
/// it printed.
pub fn capture(cmd: &mut Command) -> Output {
    capture_within(cmd, command_timeout())
}

/// [`capture`] with its own time limit.
pub fn capture_within(cmd: &mut Command, timeout: Duration) -> Output {
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    cmd.stdin(Stdio::null()).stdout(out.try_clone().expect("dup")).stderr(err.try_clone().expect("dup"));
    let read = |f: &std::fs::File| {
        use std::io::{Read, Seek};
        let mut f = f.try_clone().expect("dup");
        let mut v = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut v).expect("read");
        v
    };
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let Some(status) = wait_child(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} did not finish within {timeout:?}; it printed:\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&read(&out)),
            String::from_utf8_lossy(&read(&err))
        );
    };
    Output { status, stdout: read(&out), stderr: read(&err) }
}

/// Runs `cmd` with the stdio it was given and returns its status; a command still running after
/// [`command_timeout`] is killed and fails the test.
pub fn status_of(cmd: &mut Command) -> std::process::ExitStatus {
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_child(&mut child, command_timeout()).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {:?}", command_timeout())
    })
}

/// Waits for a spawned `child` and collects what it wrote to its piped stdout and stderr, as
/// `wait_with_output` does, but within [`command_timeout`]: a child still running then, or a
/// pipe someone else (a container) still holds open, fails the test instead of hanging it.
pub fn finish(mut child: std::process::Child) -> Output {
    use std::io::Read;
    let timeout = command_timeout();
    let deadline = std::time::Instant::now() + timeout;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut readers = 0;
    for (which, pipe) in [
        (1, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        (2, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
    ] {
        if let Some(mut pipe) = pipe {
            readers += 1;
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = pipe.read_to_end(&mut v);
                let _ = tx.send((which, v));
            });
        }
    }
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{child:?} did not finish within {timeout:?}")
    });
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((1, v)) => stdout = v,
            Ok((_, v)) => stderr = v,
            Err(_) => {
                panic!("the output of {child:?} stayed open {timeout:?} after it exited (held by another process)")
            }
        }
    }
    Output { status, stdout, stderr }
}

/// Waits for `child` to exit, at most `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let fd = pidfd(child.id() as i32).expect("pidfd of a child");
    if !wait_pidfd(&fd, timeout) {
        return None;
    }
    Some(child.wait().expect("wait"))
}

/// A pidfd for `pid`.
pub fn pidfd(pid: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?)
}

/// Waits until the process behind `fd` exits, at most `timeout`. Returns whether it did.
pub fn wait_pidfd(fd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    let t = nix::poll::PollTimeout::try_from(timeout).unwrap_or(nix::poll::PollTimeout::MAX);
    matches!(nix::poll::poll(&mut fds, t), Ok(n) if n > 0)
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// The pid of container `id`'s gofer, if one runs.
pub fn gofer_pid(id: &str) -> Option<i32> {
    processes_mentioning(&format!("paddock-gofer --id {id} --control-fd")).first().copied()
}

/// The kernel's count of shared memory (tmpfs pages among it), in KiB.
pub fn shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Shmem in /proc/meminfo")
}

/// Host mounts whose line in /proc/self/mountinfo contains `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Cgroup directories anywhere under /sys/fs/cgroup whose name contains `needle`.
pub fn cgroups_mentioning(needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth > 6 {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let p = entry.path();
                if entry.file_name().to_string_lossy().contains(needle) {
                    out.push(p.clone());
                }
                walk(&p, needle, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), needle, 0, &mut out);
    out
}

/// Asserts that nothing of container `id` is left: no process, no mount, no cgroup.
pub fn assert_nothing_left(id: &str) {
    let procs = processes_mentioning(&format!("--id {id}"));
    assert!(procs.is_empty(), "processes of {id} are still alive: {procs:?}");
    let mounts = mounts_mentioning(id);
    assert!(mounts.is_empty(), "mounts of {id} remain: {mounts:?}");
    let cgroups = cgroups_mentioning(id);
    assert!(cgroups.is_empty(), "cgroups of {id} remain: {cgroups:?}");
}

/// A bundle with a busybox root filesystem, in a temporary directory.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle whose process runs `args` (as `sh -c` would not be implied: pass it yourself).
    /// The config mirrors `runc spec` (read-only root, default mounts, masked paths), less the
    /// cgroup mount and the terminal.
    pub fn busybox(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("pdk-bundle-").tempdir_in("/tmp").expect("bundle dir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("busybox is not installed (apt-get install busybox-static)");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        // The host's busybox lists the applets: executing the fresh copy could fail with ETXTBSY
        // while another test thread forks with the copy's write descriptor open.
        let out = Command::new(busybox).arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        let bundle = Self { dir };
        bundle.write_config(&bundle.default_config(args));
        bundle
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle directory as a string.
    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// Writes `config.json`.
    pub fn write_config(&self, config: &serde_json::Value) {
        std::fs::write(self.path().join("config.json"), serde_json::to_vec_pretty(config).unwrap())
            .expect("config.json");
    }

    /// Changes `config.json` with `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).unwrap();
        edit(&mut config);
        self.write_config(&config);
    }

    /// Adds a bind mount of `source` at `destination` with `options`.
    pub fn add_bind(&self, source: &str, destination: &str, options: &[&str]) {
        self.edit_config(|c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": destination, "type": "bind", "source": source, "options": options
            }))
        });
    }

    /// Adds the annotation `key`=`value`.
    pub fn annotate(&self, key: &str, value: &str) {
        self.edit_config(|c| {
            if c.get("annotations").is_none() {
                c["annotations"] = serde_json::json!({});
            }
            c["annotations"][key] = serde_json::Value::from(value);
        });
    }

    /// The root filesystem directory.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// runc's default spec, adjusted as described in [`Bundle::busybox`].
    pub fn default_config(&self, args: &[&str]) -> serde_json::Value {
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "bbox",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        })
    }
}

/// A probe program (tests/probes/NAME.c, built statically by the test crate's build script),
/// copied into `rootfs`'s `/bin`.
pub fn install_probe(rootfs: &Path, name: &str) -> PathBuf {
    let built = Path::new(env!("PADDOCK_PROBES")).join(name);
    assert!(built.is_file(), "probe {} was not built (needs gcc and libc6-dev, see tests/build.rs)", built.display());
    let target = rootfs.join("bin").join(name);
    std::fs::copy(&built, &target).expect("copying the probe");
    target
}

/// Stdout of `out` as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of `out` as a string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The parent pid of process `pid`, from /proc.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

/// Host pids of the zombies whose parent is `parent`.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command: state, ppid, ...
        let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        if rest.next() == Some("Z") && rest.next().and_then(|p| p.parse().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// The pids of host process `pid` in each PID namespace it is in, from the host's down to its
/// own (`NSpid:` of its status).
pub fn namespace_pids(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The pid of host process `pid` in its own (innermost) PID namespace.
pub fn namespace_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|v| v.split_whitespace().last()?.parse().ok())
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. For states
/// the kernel reaches asynchronously (a zombie reaped by another process), where there is
/// nothing to wait on.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` without input, its stderr dropped, and returns its stdout if it ended within
/// `timeout` (it is killed otherwise). Never panics: for clean-ups that may run while a test
/// is failing.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Option<String> {
    use std::io::{Read, Seek};
    let mut out = tempfile::tempfile().ok()?;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().ok()?)
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    if wait_child(&mut child, timeout).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let mut text = String::new();
    out.rewind().ok()?;
    out.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Runs `bundle` under paddock (`ctl run`, runc's form) as a container whose id starts with
/// `prefix`, optionally through a wrapper command (`unshare …`), then deletes it and checks
/// that nothing of it is left, whatever the outcome.
pub fn run_leaving_nothing(p: &Paddock, bundle: &Bundle, wrap: &[&str], prefix: &str) -> Output {
    let id = unique(prefix);
    let out = match wrap.split_first() {
        None => p.ctl(&["run", "--bundle", &bundle.path_str(), &id]),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(ctl_path()).arg("--root").arg(p.root());
            capture(cmd.args(["run", "--bundle", &bundle.path_str(), &id]))
        }
    };
    let _ = p.ctl(&["delete", "--force", &id]);
    assert_nothing_left(&id);
    out
}
