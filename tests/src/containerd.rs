//! A containerd of a test's own, with paddock's shim on its `PATH` (`tests/shim.rs`, and the
//! shim benchmark).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::{bin_dir, capture, eventually, processes_mentioning, Bundle};

/// The runtime name of paddock's shim.
pub const RUNTIME: &str = "io.containerd.paddock.v1";
/// Its binary.
pub const SHIM: &str = "containerd-shim-paddock-v1";

/// A containerd 1.6 of the test's own (config, state, root and socket in a temporary
/// directory, no CRI plugin), whose `PATH` starts with the build's binaries (paddock's shim
/// among them) and whose shims run paddock in the state root `paddock/` of its directory.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    bundle: Bundle,
}

impl Containerd {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        let shim = bin_dir().join(SHIM);
        assert!(shim.is_file(), "{} is missing: cargo build --release --workspace", shim.display());
        let dir = tempfile::Builder::new().prefix("pdk-shim-").tempdir_in("/tmp").unwrap();
        let config = plain_config(dir.path());
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let child = Self::spawn(dir.path());
        let me = Self { dir, child, bundle: Bundle::busybox(&["true"]) };
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

    /// Runs `ctr` against it.
    pub fn ctr(&self, args: &[&str]) -> Output {
        capture(Command::new("ctr").arg("--address").arg(self.dir.path().join("containerd.sock")).args(args))
    }

    /// `ctr run --runtime io.containerd.paddock.v1` on the busybox rootfs; `extra` flags come
    /// before the positionals.
    pub fn run(&self, extra: &[&str], id: &str, command: &[&str]) -> Output {
        let rootfs = self.bundle.rootfs().display().to_string();
        let mut args = vec!["run", "--runtime", RUNTIME, "--env", "PATH=/bin"];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, id]);
        args.extend(command);
        self.ctr(&args)
    }

    /// The shim servers of this containerd (their command line names its socket).
    pub fn shims(&self) -> Vec<i32> {
        let address = format!("-address {}", self.dir.path().join("containerd.sock").display());
        processes_mentioning(&address).into_iter().filter(|&pid| command_of(pid).contains(SHIM)).collect()
    }

    /// The paddock state root its shims use (`PADDOCK_ROOT`).
    pub fn paddock_root(&self) -> PathBuf {
        self.dir.path().join("paddock")
    }
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

    /// `ctr run` with `input` on ctr's stdin.
    pub fn run_with_input(&self, input: &str, id: &str, command: &[&str]) -> Output {
        let rootfs = self.bundle.rootfs().display().to_string();
        let socket = self.dir.path().join("containerd.sock").display().to_string();
        let mut line = format!(
            "printf '{input}' | ctr --address '{socket}' run --runtime {RUNTIME} --rm --rootfs '{rootfs}' {id}"
        );
        for a in command {
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
