//! containerd drives paddock through paddock's own shim, `containerd-shim-paddock-v1`
//! (`--runtime io.containerd.paddock.v1`): a containerd 1.6 of the test's own (config, state,
//! root and socket in a temporary directory) finds the shim on its `PATH`, and the shim finds
//! (starts) the paddockd of the state root `PADDOCK_ROOT` names. Installed by .ci/run; a
//! missing containerd fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use harness::{bin_dir, capture, eventually, processes_mentioning, stderr, stdout, unique, Bundle};

const RUNTIME: &str = "io.containerd.paddock.v1";
const SHIM: &str = "containerd-shim-paddock-v1";

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}{}", out.status, stderr(out), stdout(out));
    stdout(out)
}

/// A containerd of the test's own, whose shims run paddock in the state root `paddock/` of
/// its directory.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    bundle: Bundle,
}

impl Containerd {
    fn start() -> Self {
        let shim = bin_dir().join(SHIM);
        assert!(shim.is_file(), "{} is missing: cargo build --release --workspace", shim.display());
        let dir = tempfile::Builder::new().prefix("pdk-shim-").tempdir_in("/tmp").unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\", \
             \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.zfs\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
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
    fn restart(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(harness::wait_child(&mut self.child, Duration::from_secs(20)).is_some(), "containerd did not stop");
        self.child = Self::spawn(self.dir.path());
        let ready = eventually(Duration::from_secs(20), || self.ctr(&["version"]).status.success());
        assert!(ready, "containerd did not come back");
    }

    fn ctr(&self, args: &[&str]) -> Output {
        capture(Command::new("ctr").arg("--address").arg(self.dir.path().join("containerd.sock")).args(args))
    }

    /// `ctr run --runtime io.containerd.paddock.v1` on the busybox rootfs; `extra` flags come
    /// before the positionals.
    fn run(&self, extra: &[&str], id: &str, command: &[&str]) -> Output {
        let rootfs = self.bundle.rootfs().display().to_string();
        let mut args = vec!["run", "--runtime", RUNTIME, "--env", "PATH=/bin"];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, id]);
        args.extend(command);
        self.ctr(&args)
    }

    /// The shim servers of this containerd (their command line names its socket).
    fn shims(&self) -> Vec<i32> {
        let address = format!("-address {}", self.dir.path().join("containerd.sock").display());
        processes_mentioning(&address).into_iter().filter(|&pid| command_of(pid).contains(SHIM)).collect()
    }

    fn paddock_root(&self) -> PathBuf {
        self.dir.path().join("paddock")
    }
}

fn command_of(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// The pid of the paddockd serving `root`, if one runs.
fn daemon_pid(root: &Path) -> Option<i32> {
    std::fs::read_to_string(root.join("paddockd.pid")).ok()?.trim().parse().ok()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(pid) = daemon_pid(&self.paddock_root()) {
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

#[test]
fn ctr_runs_a_task_through_the_paddock_shim_and_nothing_is_left() {
    let ctd = Containerd::start();
    let id = unique("shim");
    let out = ctd.run(&["--rm"], &id, &["echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stderr(&out), stdout(&out));
    assert_eq!(stdout(&out).trim(), "hi");

    let failing = unique("shim");
    let out = ctd.run(&["--rm"], &failing, &["sh", "-c", "echo to stderr >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}{}", stderr(&out), stdout(&out));
    assert!(stderr(&out).contains("to stderr"), "{}", stderr(&out));

    // The shim served containerd, paddockd ran the containers: both are the shim's doing.
    let daemon = daemon_pid(&ctd.paddock_root()).expect("the shim started a paddockd for PADDOCK_ROOT");
    assert!(ok(&ctd.ctr(&["task", "ls"]), "task ls").lines().count() <= 1, "tasks are left");
    assert!(ok(&ctd.ctr(&["container", "ls", "-q"]), "container ls").trim().is_empty(), "containers are left");
    // Each shim leaves once containerd has deleted its task and shut it down.
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGTERM);
    assert!(
        eventually(Duration::from_secs(20), || !harness::process_alive(daemon)),
        "paddockd {daemon} is still alive"
    );
    harness::assert_nothing_left(&id);
    harness::assert_nothing_left(&failing);
}

impl Containerd {
    /// `ctr` on a terminal of its own (`-t` needs one), through util-linux's `script`, which
    /// returns ctr's exit code.
    fn ctr_on_a_terminal(&self, args: &[&str]) -> Output {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = format!("ctr --address {}", quote(&self.dir.path().join("containerd.sock").to_string_lossy()));
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        capture(Command::new("script").args(["-qec", &line, "/dev/null"]))
    }

    /// `ctr run` with `input` on ctr's stdin.
    fn run_with_input(&self, input: &str, id: &str, command: &[&str]) -> Output {
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

#[test]
fn the_paddock_shim_serves_stdin_terminals_execs_pause_ps_and_kill_all() {
    let ctd = Containerd::start();
    let input = unique("shimin");
    let out = ctd.run_with_input("from stdin\\n", &input, &["sh", "-c", "read line; echo got $line"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stderr(&out), stdout(&out));
    assert_eq!(stdout(&out).trim(), "got from stdin");

    let tty_id = unique("shimtty");
    let rootfs = ctd.bundle.rootfs().display().to_string();
    let tty = ctd.ctr_on_a_terminal(&[
        "run",
        "--runtime",
        RUNTIME,
        "-t",
        "--rm",
        "--rootfs",
        &rootfs,
        &tty_id,
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    assert_eq!(tty.status.code(), Some(4), "{}{}", stderr(&tty), stdout(&tty));
    assert!(stdout(&tty).contains("/dev/pts/"), "{}", stdout(&tty));

    let id = unique("shimd");
    ok(&ctd.run(&["-d"], &id, &["sh", "-c", "sleep 1000 & sleep 1000"]), "ctr run -d");
    // One shim serves the task, and the container is paddockd's.
    assert_eq!(ctd.shims().len(), 1, "shims: {:?}", ctd.shims());
    let listed = capture(Command::new(harness::ctl_path()).arg("--root").arg(ctd.paddock_root()).args(["list", "-q"]));
    assert!(ok(&listed, "ctl list").lines().any(|l| l == id), "{}", stdout(&listed));
    let exec = ctd.ctr(&["task", "exec", "--exec-id", "x1", &id, "sh", "-c", "echo in exec; exit 5"]);
    assert_eq!(exec.status.code(), Some(5), "{}", stderr(&exec));
    assert_eq!(stdout(&exec).trim(), "in exec");
    let tty = ctd.ctr_on_a_terminal(&["task", "exec", "-t", "--exec-id", "x2", &id, "sh", "-c", "tty; exit 6"]);
    assert_eq!(tty.status.code(), Some(6), "{}{}", stderr(&tty), stdout(&tty));
    assert!(stdout(&tty).contains("/dev/pts/"), "{}", stdout(&tty));
    let ps = ok(&ctd.ctr(&["task", "ps", &id]), "task ps");
    assert!(ps.lines().count() >= 3, "{ps}");
    ok(&ctd.ctr(&["task", "pause", &id]), "pause");
    assert!(ok(&ctd.ctr(&["task", "ls"]), "ls").contains("PAUSED"));
    ok(&ctd.ctr(&["task", "resume", &id]), "resume");
    assert!(ok(&ctd.ctr(&["task", "ls"]), "ls").contains("RUNNING"));
    ok(&ctd.ctr(&["task", "kill", "-a", "-s", "KILL", &id]), "kill -a");
    assert!(eventually(Duration::from_secs(20), || ok(&ctd.ctr(&["task", "ls"]), "ls").contains("STOPPED")));
    ok(&ctd.ctr(&["task", "rm", &id]), "task rm");
    ok(&ctd.ctr(&["container", "rm", &id]), "container rm");
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    for id in [&input, &tty_id, &id] {
        harness::assert_nothing_left(id);
    }
}

#[test]
fn an_exit_reaches_containerd_after_paddockd_was_killed_and_came_back() {
    use std::io::Write as _;
    let ctd = Containerd::start();
    let id = unique("shimlr");
    let rootfs = ctd.bundle.rootfs().display().to_string();
    // The container waits for a line on its stdin: the test decides when it exits.
    let mut run = Command::new("ctr")
        .arg("--address")
        .arg(ctd.dir.path().join("containerd.sock"))
        .args(["run", "--runtime", RUNTIME, "--rm", "--rootfs", &rootfs, &id, "sh", "-c", "read x; exit 9"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctr");
    let running = eventually(Duration::from_secs(20), || {
        stdout(&ctd.ctr(&["task", "ls"])).lines().any(|l| l.starts_with(&id) && l.contains("RUNNING"))
    });
    assert!(running, "the task did not run: {}", stdout(&ctd.ctr(&["task", "ls"])));
    let killed = daemon_pid(&ctd.paddock_root()).expect("paddockd's pid file");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The shim finds its event stream gone and subscribes again: a new paddockd, which
    // live-restores the container.
    let back = eventually(Duration::from_secs(30), || {
        daemon_pid(&ctd.paddock_root()).is_some_and(|pid| pid != killed && harness::process_alive(pid))
    });
    assert!(back, "no paddockd came back");
    let mut stdin = run.stdin.take().expect("ctr's stdin");
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let out = harness::finish(run);
    assert_eq!(out.status.code(), Some(9), "{}{}", stderr(&out), stdout(&out));
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    harness::assert_nothing_left(&id);
}

/// Whether `ctr task ls` lists task `id` with `status`.
fn task_is(ctd: &Containerd, id: &str, status: &str) -> bool {
    stdout(&ctd.ctr(&["task", "ls"])).lines().any(|l| l.starts_with(id) && l.contains(status))
}

/// The ids of the containers paddockd holds in the test's state root.
fn paddock_ids(ctd: &Containerd) -> Vec<String> {
    let listed = capture(Command::new(harness::ctl_path()).arg("--root").arg(ctd.paddock_root()).args(["list", "-q"]));
    ok(&listed, "ctl list").lines().map(str::to_string).collect()
}

#[test]
fn containerd_restarted_finds_its_shim_and_a_killed_shim_is_cleaned_up() {
    let mut ctd = Containerd::start();
    let id = unique("shimrs");
    ok(&ctd.run(&["-d"], &id, &["sleep", "1000"]), "ctr run -d");
    let shims = ctd.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    ctd.restart();
    // containerd found the task through the shim it left running, and its events again.
    assert!(task_is(&ctd, &id, "RUNNING"), "{}", stdout(&ctd.ctr(&["task", "ls"])));
    assert_eq!(ctd.shims(), shims);
    ok(&ctd.ctr(&["task", "kill", "-s", "KILL", &id]), "task kill");
    assert!(eventually(Duration::from_secs(20), || task_is(&ctd, &id, "STOPPED")), "the exit did not reach containerd");
    ok(&ctd.ctr(&["task", "rm", &id]), "task rm");
    ok(&ctd.ctr(&["container", "rm", &id]), "container rm");
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());

    // A shim killed: containerd runs `shim delete`, which removes the container from paddockd.
    let lost = unique("shimk");
    ok(&ctd.run(&["-d"], &lost, &["sleep", "1000"]), "ctr run -d");
    assert!(paddock_ids(&ctd).contains(&lost));
    let shims = ctd.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shims[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    let cleaned = eventually(Duration::from_secs(30), || !paddock_ids(&ctd).contains(&lost));
    assert!(cleaned, "paddockd still holds {lost}: {:?}", paddock_ids(&ctd));
    assert!(eventually(Duration::from_secs(20), || !task_is(&ctd, &lost, "")), "containerd still lists the task");
    ok(&ctd.ctr(&["container", "rm", &lost]), "container rm");
    harness::assert_nothing_left(&id);
    harness::assert_nothing_left(&lost);
}

#[test]
fn ctr_checkpoints_a_task_through_the_paddock_shim_with_criu() {
    let ctd = Containerd::start();
    let id = unique("shimck");
    let counter = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 100000; done";
    ok(&ctd.run(&["-d", "--null-io"], &id, &["sh", "-c", counter]), "ctr run -d");
    let count = |exec_id: &str| -> u64 {
        stdout(&ctd.ctr(&["task", "exec", "--exec-id", exec_id, &id, "cat", "/tmp/count"])).trim().parse().unwrap_or(0)
    };
    assert!(eventually(Duration::from_secs(10), || count("c0") >= 3), "the counter does not count");
    // ctr passes checkpoint options (image path, --exit) to runc's shims alone: for others
    // containerd dumps into a directory of its own and stores the image as a checkpoint
    // image in its content store; the task goes on running.
    let out = ok(&ctd.ctr(&["task", "checkpoint", &id]), "task checkpoint");
    let name = out.trim().to_string();
    assert!(!name.is_empty(), "ctr named no checkpoint");
    assert!(task_is(&ctd, &id, "RUNNING"), "{}", stdout(&ctd.ctr(&["task", "ls"])));
    let before = count("c1");
    assert!(eventually(Duration::from_secs(10), || count("c2") > before), "the counter stopped counting");
    let images = ok(&ctd.ctr(&["images", "ls", "-q"]), "images ls");
    assert!(images.lines().any(|l| l == name), "{name} is not among the images: {images}");
    println!("{}", ok(&ctd.ctr(&["images", "ls"]), "images ls"));
    ok(&ctd.ctr(&["task", "kill", "-s", "KILL", &id]), "task kill");
    assert!(eventually(Duration::from_secs(20), || task_is(&ctd, &id, "STOPPED")), "the task did not stop");
    ok(&ctd.ctr(&["task", "rm", &id]), "task rm");
    ok(&ctd.ctr(&["container", "rm", &id]), "container rm");
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    harness::assert_nothing_left(&id);
}
