//! A containerd of a test's own, with paddock's shim on its `PATH` (`tests/shim.rs`, and the
//! shim benchmark), or running runc's shim with ctl as its runc binary (`tests/clients.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::{bin_dir, capture, eventually, processes_mentioning, Bundle};

/// The runtime name of paddock's shim.
pub const RUNTIME: &str = "io.containerd.paddock.v1";
/// Its binary.
pub const SHIM: &str = "containerd-shim-paddock-v1";

/// Which shim a [`Containerd`]'s `run` gives its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shim {
    /// paddock's shim (`--runtime io.containerd.paddock.v1`), paddock's state root `paddock/`
    /// of the containerd's directory.
    Paddock,
    /// runc's v2 shim with ctl as its runc binary (`--runc-binary`, a wrapper in the
    /// containerd's directory): the shim calls ctl with `--root <runc-root>/<namespace>`, so
    /// paddock's state root is `runc/default/`.
    RuncWithCtl,
}

/// A containerd 1.6 of the test's own (config, state, root and socket in a temporary
/// directory, no CRI plugin), whose `PATH` starts with the build's binaries (paddock's shim
/// among them) and whose `run` goes through the [`Shim`] it was started with.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    bundle: Bundle,
    shim: Shim,
}

impl Containerd {
    /// Starts one running paddock's shim and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(Shim::Paddock)
    }

    /// Starts one whose `run` uses `shim` and waits until it answers.
    pub fn start_with(shim: Shim) -> Self {
        let binary = bin_dir().join(SHIM);
        assert!(binary.is_file(), "{} is missing: cargo build --release --workspace", binary.display());
        let dir = tempfile::Builder::new().prefix("pdk-ctd-").tempdir_in("/tmp").unwrap();
        let config = plain_config(dir.path());
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        if shim == Shim::RuncWithCtl {
            ctl_wrapper(&dir.path().join("ctl"), &dir.path().join("paddock"));
        }
        let child = Self::spawn(dir.path());
        let me = Self { dir, child, bundle: Bundle::busybox(&["true"]), shim };
        let ready = eventually(Duration::from_secs(20), || me.ctr(&["version"]).status.success());
        assert!(ready, "containerd did not come up");
        me
    }

    /// containerd on the config of `dir`, logging (appending) to `dir/containerd.log`.
    fn spawn(dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("containerd.log")).unwrap();
        // containerd looks for `containerd-shim-paddock-v1` on its PATH; its shims inherit its
        // environment, PADDOCK_ROOT among it.
        let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .env("PADDOCK_ROOT", dir.join("paddock"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is not installed (apt-get install containerd)")
    }

    /// Stops containerd (its shims stay, as they do on a real host) and starts it again.
    pub fn restart(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(crate::wait_child(&mut self.child, Duration::from_secs(20)).is_some(), "containerd did not stop");
        self.child = Self::spawn(self.dir.path());
        let ready = eventually(Duration::from_secs(20), || self.ctr(&["version"]).status.success());
        assert!(ready, "containerd did not come back");
    }

    /// The address file containerd keeps for task `id` (of the default namespace): its shim
    /// server's socket.
    pub fn task_address_file(&self, id: &str) -> PathBuf {
        self.dir.path().join("state/io.containerd.runtime.v2.task/default").join(id).join("address")
    }

    /// Runs `ctr` against it.
    pub fn ctr(&self, args: &[&str]) -> Output {
        capture(Command::new("ctr").arg("--address").arg(self.dir.path().join("containerd.sock")).args(args))
    }

    /// `ctr run`'s arguments (from `run` on) for a task through its shim on the busybox
    /// rootfs; `extra` flags come before the positionals.
    pub fn run_args(&self, extra: &[&str], id: &str, command: &[&str]) -> Vec<String> {
        let d = self.dir.path().display();
        let mut args: Vec<String> = match self.shim {
            // ctr's FIFOs in the test's directory, not ctr's default /run/containerd/fifo, where
            // those of a task deleted by containerd (its shim killed) would outlive the test.
            Shim::Paddock => ["run", "--runtime", RUNTIME, "--fifo-dir", &format!("{d}/fifo")]
                .into_iter()
                .map(String::from)
                .collect(),
            Shim::RuncWithCtl => ["run", "--runc-binary", &format!("{d}/ctl"), "--runc-root", &format!("{d}/runc")]
                .into_iter()
                .chain(["--fifo-dir", &format!("{d}/fifo")])
                .map(String::from)
                .collect(),
        };
        args.extend(["--env", "PATH=/bin"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(["--rootfs".to_string(), self.bundle.rootfs().display().to_string(), id.to_string()]);
        args.extend(command.iter().map(|a| a.to_string()));
        args
    }

    /// `ctr run` of [`Self::run_args`].
    pub fn run(&self, extra: &[&str], id: &str, command: &[&str]) -> Output {
        self.ctr(&self.run_args(extra, id, command).iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The shim servers of this containerd (their command line names its socket).
    pub fn shims(&self) -> Vec<i32> {
        let address = format!("-address {}", self.dir.path().join("containerd.sock").display());
        let binary = match self.shim {
            Shim::Paddock => SHIM,
            Shim::RuncWithCtl => "containerd-shim-runc-v2",
        };
        processes_mentioning(&address).into_iter().filter(|&pid| command_of(pid).contains(binary)).collect()
    }

    /// The paddock state root its shims use (`PADDOCK_ROOT`, or runc's shim's root for the
    /// `default` namespace).
    pub fn paddock_root(&self) -> PathBuf {
        match self.shim {
            Shim::Paddock => self.dir.path().join("paddock"),
            Shim::RuncWithCtl => self.dir.path().join("runc").join("default"),
        }
    }
}

/// Writes at `path` a script that runs ctl with the state root `root` (clients call the
/// runtime with flags of their own; a root of the test's keeps it apart from other tests).
pub fn ctl_wrapper(path: &Path, root: &Path) {
    let script = format!("#!/bin/sh\nexec {} --root {} \"$@\"\n", crate::ctl_path().display(), root.display());
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}{}", out.status, crate::stderr(out), crate::stdout(out));
    crate::stdout(out)
}

/// What a user does with a task running `sh -c "sleep 1000 & sleep 1000"` (`ctr run -d`), and
/// sees: an exec's output and exit code, one on a terminal, `task ps`, pause and resume, `kill
/// -a`, then the task and container removed.
pub fn exec_tty_ps_pause_kill_and_remove(ctd: &Containerd, id: &str) {
    let exec = ctd.ctr(&["task", "exec", "--exec-id", "x1", id, "sh", "-c", "echo in exec; exit 5"]);
    assert_eq!(exec.status.code(), Some(5), "{}", crate::stderr(&exec));
    assert_eq!(crate::stdout(&exec).trim(), "in exec");
    // With -t, the shim holds the pty master (with runc's shim, the one ctl sent over its
    // console socket).
    let tty = ctd.ctr_on_a_terminal(&["task", "exec", "-t", "--exec-id", "x2", id, "sh", "-c", "tty; exit 6"]);
    assert_eq!(tty.status.code(), Some(6), "{}{}", crate::stderr(&tty), crate::stdout(&tty));
    assert!(crate::stdout(&tty).contains("/dev/pts/"), "{}", crate::stdout(&tty));
    let ps = ok(&ctd.ctr(&["task", "ps", id]), "task ps");
    assert!(ps.lines().count() >= 3, "{ps}");
    ok(&ctd.ctr(&["task", "pause", id]), "pause");
    assert!(ok(&ctd.ctr(&["task", "ls"]), "ls").contains("PAUSED"));
    ok(&ctd.ctr(&["task", "resume", id]), "resume");
    assert!(ok(&ctd.ctr(&["task", "ls"]), "ls").contains("RUNNING"));
    ok(&ctd.ctr(&["task", "kill", "-a", "-s", "KILL", id]), "kill -a");
    assert!(eventually(Duration::from_secs(20), || ok(&ctd.ctr(&["task", "ls"]), "ls").contains("STOPPED")));
    ok(&ctd.ctr(&["task", "rm", id]), "task rm");
    ok(&ctd.ctr(&["container", "rm", id]), "container rm");
}

/// Process `pid`'s command line, arguments separated by spaces.
pub fn command_of(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// The pid of the paddockd serving `root`, if one runs.
pub fn daemon_pid(root: &Path) -> Option<i32> {
    std::fs::read_to_string(root.join("paddockd.pid")).ok()?.trim().parse().ok()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        // paddockd keeps its containers when the shims go (by design): a test that failed
        // half-way leaves some, which go here, before the daemon does. Never a panic, and
        // every step bounded: this may run while the test is failing.
        if let Some(pid) = daemon_pid(&self.paddock_root()) {
            let ctl = |args: &[&str]| {
                crate::output_within(
                    Command::new(crate::ctl_path()).arg("--root").arg(self.paddock_root()).args(args),
                    Duration::from_secs(30),
                )
            };
            for id in ctl(&["list", "-q"]).unwrap_or_default().lines() {
                let _ = ctl(&["delete", "--force", id]);
            }
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        // ctr's cgroupsPath is /default/<id>: the task's leaf goes with it, the namespace's
        // parent stays (as with runc) unless removed here, where it is ours.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join("default"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    /// `ctr` on a terminal of its own (`-t` needs one), through util-linux's `script`, which
    /// returns ctr's exit code.
    pub fn ctr_on_a_terminal(&self, args: &[&str]) -> Output {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = format!("ctr --address {}", quote(&self.dir.path().join("containerd.sock").to_string_lossy()));
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        capture(Command::new("script").args(["-qec", &line, "/dev/null"]))
    }

    /// `ctr run --rm` with `input` on ctr's stdin.
    pub fn run_with_input(&self, input: &str, id: &str, command: &[&str]) -> Output {
        let socket = self.dir.path().join("containerd.sock").display().to_string();
        let mut line = format!("printf '{input}' | ctr --address '{socket}'");
        for a in self.run_args(&["--rm"], id, command) {
            line.push_str(&format!(" '{a}'"));
        }
        capture(Command::new("sh").args(["-c", &line]))
    }
}

impl Containerd {
    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The busybox root filesystem its `run` uses.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs()
    }

    /// Its gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }
}

/// The configuration of a containerd of a test's own in `dir` (its root, state, sockets and
/// `opt` there; no CRI plugin, no snapshotters this host lacks).
pub fn plain_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\", \
         \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", \
         \"io.containerd.snapshotter.v1.zfs\"]\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
         [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
    )
}
