//! Real clients drive paddock as their OCI runtime: podman (through conmon) and containerd 1.6
//! (through its runc v2 shim and `ctr`), each in directories of the test's own. Installed by
//! .ci/run; a missing client fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::containerd::{Containerd, Shim};
use harness::{capture, eventually, stderr, stdout, unique, Bundle};

/// Stops the paddockd of state root `root` (auto-started by the first ctl call, it was adopted
/// by the client's subreaper — conmon, the shim — which it would otherwise keep alive).
fn stop_daemon(root: &Path) {
    if let Some(pid) = std::fs::read_to_string(root.join("paddockd.pid")).ok().and_then(|s| s.trim().parse().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}{}", out.status, stderr(out), stdout(out));
    stdout(out)
}

struct Podman {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    _bundle: Bundle,
}

impl Podman {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("pdk-podman-").tempdir_in("/tmp").unwrap();
        let bundle = Bundle::busybox(&["true"]);
        let ctl = dir.path().join("ctl");
        harness::containerd::ctl_wrapper(&ctl, &dir.path().join("state"));
        // containers.conf: no CAP_SYS_RESOURCE here (ulimits), no systemd (cgroupfs), and
        // ctl listed in runtime_supports_json so podman passes --log-format=json --log.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\nnetns = \"none\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{tmp}\"\n\
             runtime = \"ctl\"\nruntime_supports_json = [\"crun\", \"runc\", \"ctl\"]\n\
             [engine.runtimes]\nctl = [\"{ctl}\"]\n",
            tmp = dir.path().join("tmp").display(),
            ctl = ctl.display()
        );
        std::fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Self { rootfs: bundle.rootfs(), dir, _bundle: bundle }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        capture(
            Command::new("podman")
                // conmon writes its `oom` marker into its working directory: not the source tree.
                .current_dir(self.dir.path())
                .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
                .arg("--root")
                .arg(self.dir.path().join("root"))
                .arg("--runroot")
                .arg(self.dir.path().join("runroot"))
                .args(args),
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        stop_daemon(&self.dir.path().join("state"));
        // conmon runs `podman container cleanup` after a container exits, which mounts the
        // storage's overlay home again: wait for those to finish, then unmount it.
        let dir = self.dir.path().display().to_string();
        eventually(Duration::from_secs(20), || harness::processes_mentioning(&dir).is_empty());
        let _ = nix::mount::umount2(&self.dir.path().join("root/overlay"), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn podman_runs_execs_signals_pauses_updates_and_removes_through_ctl() {
    let pm = Podman::new();
    let rootfs = pm.rootfs.to_str().unwrap().to_string();
    let run = pm.cmd(&["run", "--rm", "--rootfs", &rootfs, "sh", "-c", "echo hello from podman; exit 3"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert_eq!(stdout(&run).trim(), "hello from podman");
    // With -t the container's stdio is a terminal (conmon holds the pty master ctl sent).
    let tty = pm.cmd(&["run", "--rm", "-t", "--rootfs", &rootfs, "sh", "-c", "tty; stty size; exit 4"]);
    assert_eq!(tty.status.code(), Some(4), "{}", stderr(&tty));
    assert!(stdout(&tty).starts_with("/dev/pts/"), "{}", stdout(&tty));

    let name = unique("pm");
    let script = "trap 'echo usr1 >> /tmp/signals' USR1; while :; do sleep 0.1; done";
    ok(&pm.cmd(&["run", "-d", "--name", &name, "--rootfs", &rootfs, "sh", "-c", script]), "podman run -d");
    assert_eq!(ok(&pm.cmd(&["exec", &name, "echo", "in exec"]), "exec").trim(), "in exec");
    assert_eq!(pm.cmd(&["exec", &name, "sh", "-c", "exit 5"]).status.code(), Some(5));
    let tty = pm.cmd(&["exec", "-t", &name, "sh", "-c", "tty; exit 6"]);
    assert_eq!(tty.status.code(), Some(6), "{}", stderr(&tty));
    assert!(stdout(&tty).starts_with("/dev/pts/"), "{}", stdout(&tty));
    ok(&pm.cmd(&["kill", "-s", "USR1", &name]), "kill");
    assert!(eventually(Duration::from_secs(10), || {
        stdout(&pm.cmd(&["exec", &name, "cat", "/tmp/signals"])).contains("usr1")
    }));
    ok(&pm.cmd(&["pause", &name]), "pause");
    let inspect = ok(&pm.cmd(&["inspect", "--format", "{{.State.Status}}", &name]), "inspect");
    assert_eq!(inspect.trim(), "paused");
    ok(&pm.cmd(&["unpause", &name]), "unpause");
    ok(&pm.cmd(&["update", "--memory", "100m", &name]), "update");
    let limit = ok(&pm.cmd(&["exec", &name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]), "exec cat");
    assert_eq!(limit.trim(), (100 << 20).to_string());
    // The shell is PID 1 of its container and has no TERM handler: as under runc, stop's
    // TERM does nothing and the KILL after the grace period ends it.
    let stopping = std::time::Instant::now();
    ok(&pm.cmd(&["stop", "-t", "2", &name]), "stop");
    assert!(stopping.elapsed() >= Duration::from_secs(2), "stop did not wait for the grace period");
    assert_eq!(ok(&pm.cmd(&["wait", &name]), "wait").trim(), "137");
    ok(&pm.cmd(&["rm", "-f", &name]), "rm -f");
    let left = ok(&pm.cmd(&["ps", "-a", "-q"]), "ps");
    assert!(left.trim().is_empty(), "{left}");
    // A runtime error reaches the user through the JSON log.
    let bad = pm.cmd(&["run", "--rm", "--rootfs", &rootfs, "/no/such/program"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("/no/such/program"), "{}", stderr(&bad));
}

/// What podman reads through conmon's pid (the pid file's process): the container is PID 1 of
/// its own namespace, `podman stats` is the container's cgroup, and an OOM kill is
/// `State.OOMKilled`.
#[test]
fn podman_sees_pid_1_the_containers_own_stats_and_oom_kills() {
    let pm = Podman::new();
    let rootfs = pm.rootfs.to_str().unwrap().to_string();
    let pid1 = pm.cmd(&["run", "--rm", "--rootfs", &rootfs, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo $$"]);
    assert_eq!(ok(&pid1, "run").trim(), "sh -c cat /proc/1/cmdline | tr '\\0' ' '; echo $$ 1");

    let name = unique("pm-stats");
    let busy = "sleep 1000 & sleep 1000 & wait";
    ok(&pm.cmd(&["run", "-d", "--name", &name, "--memory", "64m", "--rootfs", &rootfs, "sh", "-c", busy]), "run -d");
    let pid: i32 = ok(&pm.cmd(&["inspect", "--format", "{{.State.Pid}}", &name]), "inspect").trim().parse().unwrap();
    let cgroup_of = |controller: &str| -> PathBuf {
        let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = lines
            .lines()
            .find_map(|l| {
                let mut fields = l.splitn(3, ':').skip(1);
                let (controllers, path) = (fields.next()?, fields.next()?);
                controllers.split(',').any(|c| c == controller).then(|| path.to_string())
            })
            .unwrap();
        PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}"))
    };
    let read = |path: PathBuf| std::fs::read_to_string(&path).unwrap().trim().parse::<u64>().unwrap();
    assert_eq!(
        read(cgroup_of("memory").join("memory.limit_in_bytes")),
        64 << 20,
        "State.Pid is not in the container's memory cgroup"
    );
    // Three processes of the container's own (sh and two sleeps), and conmon's pid, which
    // stands in it.
    assert!(eventually(Duration::from_secs(10), || read(cgroup_of("pids").join("pids.current")) == 4));
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&pm.cmd(&["stats", "--no-stream", "--format", "json", &name]), "stats")).unwrap();
    let stats = &stats[0];
    assert_eq!(stats["pids"], "4", "{stats}");
    assert!(stats["mem_usage"].as_str().unwrap().ends_with("/ 67.11MB"), "{stats}");
    ok(&pm.cmd(&["rm", "-f", &name]), "rm -f");

    // An OOM kill: podman says what runc's run says (this podman and conmon, on a hybrid
    // cgroup host, report OOMKilled false even for runc: conmon's notice does not reach it).
    let oom_killed = |runtime: Option<&str>| -> String {
        let name = unique("pm-oom");
        let mut args = vec!["run", "--name", &name, "--memory", "32m", "--memory-swap", "32m"];
        if let Some(runtime) = runtime {
            args.splice(0..0, ["--runtime", runtime]);
        }
        args.extend(["--rootfs", &rootfs, "tail", "/dev/zero"]);
        let oom = pm.cmd(&args);
        assert_eq!(oom.status.code(), Some(137), "{runtime:?}: {}", stderr(&oom));
        let killed = ok(&pm.cmd(&["inspect", "--format", "{{.State.OOMKilled}}", &name]), "inspect");
        ok(&pm.cmd(&["rm", "-f", &name]), "rm -f");
        killed.trim().to_string()
    };
    assert_eq!(oom_killed(None), oom_killed(Some("runc")));
}

#[test]
fn podman_checkpoints_and_restores_a_container_through_ctl() {
    let pm = Podman::new();
    let rootfs = pm.rootfs.to_str().unwrap().to_string();
    let name = unique("pm-ckpt");
    let counter = "i=0; while :; do i=$((i+1)); echo $i; usleep 100000; done";
    ok(&pm.cmd(&["run", "-d", "--name", &name, "--rootfs", &rootfs, "sh", "-c", counter]), "podman run -d");
    let logged =
        || -> Vec<u64> { stdout(&pm.cmd(&["logs", &name])).lines().filter_map(|l| l.trim().parse().ok()).collect() };
    assert!(eventually(Duration::from_secs(10), || logged().len() >= 5), "the counter does not count");

    // podman calls `ctl checkpoint --image-path … --work-path … ID`, then `ctl delete`.
    ok(&pm.cmd(&["container", "checkpoint", &name]), "podman container checkpoint");
    let status = ok(&pm.cmd(&["inspect", "--format", "{{.State.Status}}", &name]), "inspect");
    assert_eq!(status.trim(), "exited");
    let at_checkpoint = logged().len();

    // And conmon calls `ctl restore --bundle … --pid-file … --detach --image-path … ID`.
    ok(&pm.cmd(&["container", "restore", &name]), "podman container restore");
    let status = ok(&pm.cmd(&["inspect", "--format", "{{.State.Status}}", &name]), "inspect");
    assert_eq!(status.trim(), "running");
    assert!(eventually(Duration::from_secs(10), || logged().len() >= at_checkpoint + 5), "no output after restore");
    // One count after the other: the restored process went on from its memory.
    let counts = logged();
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "{counts:?}");
    assert_eq!(ok(&pm.cmd(&["exec", &name, "echo", "in exec"]), "exec").trim(), "in exec");
    ok(&pm.cmd(&["rm", "-f", &name]), "rm -f");
    let left = ok(&pm.cmd(&["ps", "-a", "-q"]), "ps");
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn containerd_runs_tasks_with_exit_codes_exec_pause_and_kill_all_through_ctl() {
    let ctd = Containerd::start_with(Shim::RuncWithCtl);
    let out = ctd.run(&["--rm"], &unique("ctd"), &["sh", "-c", "echo hello from containerd; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "hello from containerd");
    let tty_id = unique("ctdtty");
    let args = ctd.run_args(&["-t", "--rm"], &tty_id, &["sh", "-c", "tty; exit 4"]);
    let tty = ctd.ctr_on_a_terminal(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(tty.status.code(), Some(4), "{}{}", stderr(&tty), stdout(&tty));
    assert!(stdout(&tty).contains("/dev/pts/"), "{}", stdout(&tty));

    let id = unique("ctd");
    ok(&ctd.run(&["-d"], &id, &["sh", "-c", "sleep 1000 & sleep 1000"]), "ctr run -d");
    harness::containerd::exec_tty_ps_pause_kill_and_remove(&ctd, &id);
    harness::assert_nothing_left(&id);
}
