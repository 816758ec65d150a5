//! containerd drives paddock through paddock's own shim, `containerd-shim-paddock-v1`
//! (`--runtime io.containerd.paddock.v1`): a containerd 1.6 of the test's own (config, state,
//! root and socket in a temporary directory) finds the shim on its `PATH`, and the shim finds
//! (starts) the paddockd of the state root `PADDOCK_ROOT` names. Installed by .ci/run; a
//! missing containerd fails the test.

use std::process::{Command, Output};
use std::time::Duration;

use harness::containerd::{daemon_pid, Containerd, RUNTIME};
use harness::{capture, eventually, stderr, stdout, unique};

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}{}", out.status, stderr(out), stdout(out));
    stdout(out)
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

#[test]
fn the_paddock_shim_serves_stdin_terminals_execs_pause_ps_and_kill_all() {
    let ctd = Containerd::start();
    let input = unique("shimin");
    let out = ctd.run_with_input("from stdin\\n", &input, &["sh", "-c", "read line; echo got $line"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stderr(&out), stdout(&out));
    assert_eq!(stdout(&out).trim(), "got from stdin");

    let tty_id = unique("shimtty");
    let rootfs = ctd.rootfs().display().to_string();
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
    // Stats: the cgroup metrics of the host's kind (v1 `cpuacct.usage`, v2 `cpu.usage_usec`,
    // as containerd's runc shim answers), counting the task's 2 processes (the two sleeps)
    // once the shell has started both.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let two =
        |metrics: &str| metrics.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pids.current", "2"]);
    assert!(eventually(Duration::from_secs(20), || two(&ok(&ctd.ctr(&["task", "metrics", &id]), "task metrics"))));
    let metrics = ok(&ctd.ctr(&["task", "metrics", &id]), "task metrics");
    assert!(metrics.contains(if v2 { "cpu.usage_usec" } else { "cpuacct.usage" }), "{metrics}");
    harness::containerd::exec_tty_ps_pause_kill_and_remove(&ctd, &id);
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    for id in [&input, &tty_id, &id] {
        harness::assert_nothing_left(id);
    }
}

/// `ctr` (on `ctd`) with `args`, its stdin, stdout and stderr a terminal of the test's own:
/// its exit status and everything it wrote there, read until the terminal closes (all of
/// it, unlike `script`, which may stop reading when its child exits).
fn ctr_on_a_pty(ctd: &Containerd, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::os::fd::AsFd as _;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = |fd: &std::os::fd::OwnedFd| std::process::Stdio::from(fd.try_clone().expect("dup"));
    let mut child = Command::new("ctr")
        .arg("--address")
        .arg(ctd.dir().join("containerd.sock"))
        .args(args)
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .expect("ctr");
    drop(pty.slave);
    let mut printed = Vec::new();
    let mut buf = [0u8; 4096];
    // EIO: ctr, the last holder of the terminal, is gone.
    while let Ok(n @ 1..) = rustix::io::read(pty.master.as_fd(), &mut buf) {
        printed.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait for ctr");
    (status, String::from_utf8_lossy(&printed).into_owned())
}

/// A short process on a terminal prints what it wrote, and its exit code is ctr's.
///
/// Known and not yet fixed: under load about one `task exec -t` in 100 still prints nothing
/// (its exit code right). In each lost case, the shim had written every byte into the FIFO
/// before it closed it, and runc's own shim loses output the same way under other timing
/// (docs/research/shim-status.md). The test allows that residual rate, no more: a copy that
/// loses output often, or an exit code that is wrong even once, fails it.
#[test]
fn short_execs_on_a_terminal_print_their_output() {
    let ctd = Containerd::start();
    let id = unique("shimtt");
    ok(&ctd.run(&["-d"], &id, &["sleep", "1000"]), "ctr run -d");
    let lost: Vec<String> = (0..100)
        .filter_map(|i| {
            let word = format!("word{i}");
            let exec_id = format!("t{i}");
            let (status, printed) =
                ctr_on_a_pty(&ctd, &["task", "exec", "-t", "--exec-id", &exec_id, &id, "echo", &word]);
            assert_eq!(status.code(), Some(0), "{word}: {printed:?}");
            (!printed.contains(&word)).then(|| format!("{word}: {printed:?}"))
        })
        .collect();
    assert!(lost.len() <= 5, "{} of 100 outputs lost: {lost:?}", lost.len());
    if !lost.is_empty() {
        println!("lost output (the known residual rate): {lost:?}");
    }
    kill_remove_and_check_nothing_left(&ctd, &id);
}

#[test]
fn an_exit_reaches_containerd_after_paddockd_was_killed_and_came_back() {
    use std::io::Write as _;
    let ctd = Containerd::start();
    let id = unique("shimlr");
    let rootfs = ctd.rootfs().display().to_string();
    // containerd's events: the shim publishes /tasks/start once paddockd's start has answered,
    // so that paddockd is killed with no call of the shim's in flight (one would fail, and
    // rightly so).
    let mut events = Command::new("ctr")
        .arg("--address")
        .arg(ctd.socket())
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ctr events");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let lines = events.stdout.take().expect("ctr events' stdout");
    let watched = id.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(lines)).map_while(Result::ok) {
            if line.contains("/tasks/start") && line.contains(&watched) {
                let _ = started_tx.send(());
            }
        }
    });
    // The container waits for a line on its stdin: the test decides when it exits.
    let mut run = Command::new("ctr")
        .arg("--address")
        .arg(ctd.socket())
        .args(["run", "--runtime", RUNTIME, "--rm", "--rootfs", &rootfs, &id, "sh", "-c", "read x; exit 9"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctr");
    let started = started_rx.recv_timeout(Duration::from_secs(30));
    let _ = events.kill();
    let _ = events.wait();
    assert!(started.is_ok(), "no /tasks/start event for {id}: {}", stdout(&ctd.ctr(&["task", "ls"])));
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
    let log = |name: &str| {
        let text = std::fs::read_to_string(name).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}{}\n--- containerd's log\n{}\n--- paddockd's log\n{}",
        stderr(&out),
        stdout(&out),
        log(&ctd.dir().join("containerd.log").display().to_string()),
        log(&ctd.paddock_root().join("paddockd.log").display().to_string())
    );
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    harness::assert_nothing_left(&id);
}

/// Whether `ctr task ls` lists task `id` with `status`.
/// Kills task `id`, waits for containerd to see it stopped, and removes the task and the
/// container.
fn kill_and_remove(ctd: &Containerd, id: &str) {
    ok(&ctd.ctr(&["task", "kill", "-s", "KILL", id]), "task kill");
    assert!(eventually(Duration::from_secs(20), || task_is(ctd, id, "STOPPED")), "the task did not stop");
    ok(&ctd.ctr(&["task", "rm", id]), "task rm");
    ok(&ctd.ctr(&["container", "rm", id]), "container rm");
}

/// [`kill_and_remove`], then checks that no shim and nothing of `id` is left.
fn kill_remove_and_check_nothing_left(ctd: &Containerd, id: &str) {
    kill_and_remove(ctd, id);
    assert!(eventually(Duration::from_secs(20), || ctd.shims().is_empty()), "shims left: {:?}", ctd.shims());
    harness::assert_nothing_left(id);
}

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
    let address = std::fs::read_to_string(ctd.task_address_file(&lost)).expect("the task's address file");
    let socket = std::path::PathBuf::from(address.trim().trim_start_matches("unix://"));
    assert!(socket.exists(), "the shim's socket {} is not there", socket.display());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shims[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    let cleaned = eventually(Duration::from_secs(30), || !paddock_ids(&ctd).contains(&lost));
    assert!(cleaned, "paddockd still holds {lost}: {:?}", paddock_ids(&ctd));
    assert!(eventually(Duration::from_secs(20), || !task_is(&ctd, &lost, "")), "containerd still lists the task");
    // The dead shim's socket went with its cleanup (`shim delete`).
    assert!(!socket.exists(), "the dead shim's socket {} is left", socket.display());
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
    kill_remove_and_check_nothing_left(&ctd, &id);
}

#[test]
fn ctr_restores_a_checkpointed_task_through_the_paddock_shim() {
    const IMAGE: &str = "docker.io/library/pdk-busybox:shim";
    let ctd = Containerd::start();
    let archive = ctd.dir().join("image.tar");
    harness::images::write_oci_archive(&archive, &ctd.rootfs(), &[(IMAGE, vec!["/bin/sh"])]);
    ok(&ctd.ctr(&["images", "import", archive.to_str().unwrap()]), "images import");
    // With the rw layer, and without: then the restored task gets a fresh snapshot of the
    // image, which lacks the mount points (`/run`, ...) the create made in the old one, and
    // paddock's restore makes them before CRIU mounts there.
    for rw in [true, false] {
        checkpoint_and_restore(&ctd, IMAGE, rw);
    }
}

/// Runs a counter from `image`, checkpoints it with `ctr containers checkpoint --task` (with
/// its rw layer if `rw`), kills and removes it, restores it with `ctr containers restore
/// --live` (onto that layer, or a fresh snapshot), and checks that it goes on counting.
fn checkpoint_and_restore(ctd: &Containerd, image: &str, rw: bool) {
    let id = unique("shimrst");
    // From an image, so its rootfs comes as containerd's mounts (an overlay the shim mounts).
    // The count is kept in a tmpfs: what CRIU restores is all it needs, with or without the rw
    // layer.
    let counter = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/count; usleep 100000; done";
    ok(&ctd.ctr(&["run", "-d", "--null-io", "--runtime", RUNTIME, image, &id, "sh", "-c", counter]), "ctr run -d");
    // What the counter last wrote (0 while it rewrites the file), read by an exec.
    let execs = std::cell::Cell::new(0);
    let count = || -> u64 {
        execs.set(execs.get() + 1);
        let exec_id = format!("c{}", execs.get());
        stdout(&ctd.ctr(&["task", "exec", "--exec-id", &exec_id, &id, "cat", "/dev/shm/count"]))
            .trim()
            .parse()
            .unwrap_or(0)
    };
    assert!(eventually(Duration::from_secs(20), || count() >= 20), "the counter does not count");
    // Read before the checkpoint: the restored counter goes on from a count at least this.
    let before = count();
    let checkpoint = format!("{id}-checkpoint");
    let rw_flag: &[&str] = if rw { &["--rw"] } else { &[] };
    let args = [&["containers", "checkpoint", "--task"], rw_flag, &[id.as_str(), checkpoint.as_str()]].concat();
    ok(&ctd.ctr(&args), "containers checkpoint");
    kill_and_remove(ctd, &id);

    // The restored task goes on counting from its own memory: a fresh one would start at 1
    // again, and what the file shows would drop below what the checkpoint left there.
    let args = [&["containers", "restore", "--live"], rw_flag, &[id.as_str(), checkpoint.as_str()]].concat();
    ok(&ctd.ctr(&args), "containers restore --live");
    assert!(task_is(ctd, &id, "RUNNING"), "{}", stdout(&ctd.ctr(&["task", "ls"])));
    let mut seen = vec![before];
    let grew = eventually(Duration::from_secs(20), || {
        let now = count();
        if now > 0 {
            seen.push(now);
        }
        now > before + 3
    });
    assert!(grew, "the restored counter does not count: {seen:?}");
    assert!(seen.windows(2).all(|w| w[1] >= w[0]), "restarted instead of restored: {seen:?}");
    kill_remove_and_check_nothing_left(ctd, &id);
}
