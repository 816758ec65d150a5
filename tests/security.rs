//! paddock under attack: what a hostile client of paddockd's socket, or a hostile container,
//! can get out of it. Nothing: no descriptor, no unbounded memory, no root.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use harness::{assert_nothing_left, eventually, stderr, unique, Bundle, Paddock};
use wire::api::{Request, RequestFrame};
use wire::frame::encode_frame;
use wire::handshake::Hello;

/// Descriptors paddockd has open.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// paddockd's resident memory, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A raw connection that has said hello.
fn greeted(p: &Paddock) -> UnixStream {
    let s = UnixStream::connect(p.root().join("paddockd.sock")).expect("connect");
    let hello = encode_frame(&Hello::new("attacker"), 1 << 20).unwrap();
    (&s).write_all(&hello).unwrap();
    let mut conn = wire::conn::Connection::new(s.try_clone().unwrap(), 1 << 20);
    let welcome: wire::handshake::Welcome = conn.recv().expect("welcome");
    assert!(matches!(welcome, wire::handshake::Welcome::Accepted { .. }), "{welcome:?}");
    s
}

#[test]
fn ids_that_would_leave_the_process_root_are_refused() {
    let p = Paddock::new();
    for (field, value) in [("uid", u32::MAX as u64), ("gid", 2_147_483_648)] {
        let bundle = Bundle::busybox(&["id"]);
        bundle.edit_config(|c| c["process"]["user"][field] = value.into());
        let id = unique("badid");
        let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &id]);
        assert!(!out.status.success(), "{field} {value} ran");
        assert!(stderr(&out).contains("uids and gids must be in range 0-2147483647"), "{}", stderr(&out));
        assert!(p.ids().is_empty());
        assert_nothing_left(&id);
    }
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit_config(|c| c["process"]["user"]["additionalGids"] = serde_json::json!([4294967295u64]));
    let id = unique("badgroups");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(stderr(&out).contains("must be in range"), "{}", stderr(&out));
    assert_nothing_left(&id);

    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("execid");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let out = p.ctl(&["exec", "-u", "4294967295", &id, "--", "id", "-u"]);
    assert!(!out.status.success(), "exec as uid -1 ran: {}", harness::stdout(&out));
    assert!(stderr(&out).contains("must be in range"), "{}", stderr(&out));
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// More descriptors than a frame may carry, on requests that take none: the kernel installs
/// what fits, and paddockd must own (and close) every one of them.
#[test]
fn descriptors_sent_to_paddockd_are_never_kept() {
    let p = Paddock::new();
    // No helper pool: its first fill, in the background after start-up, would add
    // descriptors while they are being counted.
    let pid = p.start_daemon_with_config("pool_size = 0\n");
    p.ctl_ok(&["list"]);
    let before = open_fds(pid);
    let (_keep, spare) = std::io::pipe().unwrap();
    let many: Vec<i32> = vec![spare.as_raw_fd(); 200];
    let list = encode_frame(&RequestFrame { id: 1, request: Request::List(wire::api::List) }, 1 << 20).unwrap();
    for round in 0..300 {
        let s = greeted(&p);
        let sent = wire::fds::send_with_fds(s.as_fd(), &list, &many);
        assert!(sent.is_ok(), "round {round}: {sent:?}");
        // Whatever paddockd answers, it answers and hangs up or not; we go.
    }
    // Every connection is gone (they hung up), and with them whatever they sent.
    assert!(
        eventually(Duration::from_secs(20), || open_fds(pid) <= before),
        "paddockd holds {} descriptors, {} before",
        open_fds(pid),
        before
    );
    p.ctl_ok(&["list"]);
}

/// Connections that say hello and then nothing are closed after the idle timeout; repeating
/// the attack does not grow paddockd.
#[test]
fn idle_connections_are_closed_and_memory_stays_bounded() {
    let p = Paddock::new();
    // No helper pool: its members' descriptors (filled in the background after start-up)
    // would be counted as the connections'.
    let pid = p.start_daemon_with_config("connection_idle_timeout = 2\nmax_connections = 4096\npool_size = 0\n");
    let fds_before = open_fds(pid);
    // The first rounds warm the allocator's arenas and the runtime's pools, and how far each
    // round gets depends on which worker threads the connections land on (under load the
    // plateau is reached later); the highest of them is the baseline. A leak of even 512 bytes
    // a connection would then add 4 MiB over the rounds that follow.
    const WARM_UP: usize = 4;
    const MEASURED: usize = 4;
    let mut warm_peak = 0;
    for round in 0..WARM_UP + MEASURED {
        let conns: Vec<UnixStream> = (0..2000).map(|_| greeted(&p)).collect();
        assert!(open_fds(pid) >= fds_before + 2000, "round {round}: the connections are open");
        // Each is hung up on by paddockd once idle: a read sees end-of-file.
        for mut c in conns {
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut sink = Vec::new();
            let read = std::io::Read::read_to_end(&mut c, &mut sink);
            assert!(read.is_ok(), "round {round}: paddockd did not close an idle connection: {read:?}");
        }
        assert!(eventually(Duration::from_secs(10), || open_fds(pid) <= fds_before), "descriptors remain");
        if round < WARM_UP {
            warm_peak = warm_peak.max(rss_kib(pid));
        }
    }
    let rss = rss_kib(pid);
    assert!(rss <= warm_peak + 4096, "paddockd grew from {warm_peak} KiB (warmed up) to {rss} KiB");
    p.ctl_ok(&["list"]);
    p.stop_daemon();
}

/// Over max_connections, a client is told why and let go at once.
#[test]
fn connections_beyond_the_limit_are_refused_with_a_reason() {
    let p = Paddock::new();
    p.start_daemon_with_config("max_connections = 8\n");
    let held: Vec<UnixStream> = (0..8).map(|_| greeted(&p)).collect();
    let out = p.ctl(&["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max_connections"), "{}", stderr(&out));
    drop(held);
    assert!(eventually(Duration::from_secs(10), || p.ctl(&["list"]).status.success()));
    p.stop_daemon();
}

/// A frame that begins and never ends is cut off, and a client's waits end when it hangs up:
/// thousands of them, over and over, leave paddockd as it was.
#[test]
fn half_frames_time_out_and_waits_end_with_their_client() {
    let p = Paddock::new();
    // No helper pool: its refill after the create below would add descriptors while they
    // are being counted.
    let pid = p.start_daemon_with_config("frame_timeout = 2\nmax_requests = 128\npool_size = 0\n");
    // Half a frame: the length of a big one, and a few bytes of it.
    let s = greeted(&p);
    (&s).write_all(&(1u32 << 20).to_le_bytes()).unwrap();
    (&s).write_all(&[1, 2, 3]).unwrap();
    let mut conn = wire::conn::Connection::new(s, 1 << 20);
    match conn.recv::<wire::api::ServerFrame>() {
        Ok(wire::api::ServerFrame::Fatal(e)) => assert!(e.message.contains("in time"), "{e}"),
        other => panic!("expected the frame to time out, got {other:?}"),
    }

    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("waited");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let fds_before = open_fds(pid);
    // The first two rounds warm the allocator and the runtime up (their peak is the
    // baseline); three more may not grow paddockd by more than 4 MiB.
    let mut rss_after_first = 0;
    for round in 0..5 {
        for _ in 0..40 {
            let s = greeted(&p);
            for n in 0..128u64 {
                let wait = RequestFrame {
                    id: n,
                    request: Request::Wait(wire::api::Wait { id: id.clone(), kill_on_hangup: false }),
                };
                (&s).write_all(&encode_frame(&wait, 1 << 20).unwrap()).unwrap();
            }
            drop(s);
        }
        assert!(eventually(Duration::from_secs(20), || open_fds(pid) <= fds_before), "descriptors remain");
        if round < 2 {
            rss_after_first = rss_after_first.max(rss_kib(pid));
        }
    }
    let rss = rss_kib(pid);
    assert!(rss <= rss_after_first + 4096, "paddockd grew from {rss_after_first} KiB to {rss} KiB");
    // The container was never touched by any of it.
    assert_eq!(p.state(&id)["status"], "running");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
    p.stop_daemon();
}

/// `config.json` is read only as a regular file of bounded size: a FIFO would block ctl
/// forever, a huge file would exhaust it.
#[test]
fn a_config_that_is_not_a_plain_file_or_is_huge_is_refused_at_once() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    let config = bundle.path().join("config.json");
    std::fs::remove_file(&config).unwrap();
    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let id = unique("fifo");
    let out = harness::capture_within(
        p.command().args(["run", "--bundle", &bundle.path_str(), &id]),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));
    std::fs::remove_file(&config).unwrap();
    let huge = std::fs::File::create(&config).unwrap();
    huge.set_len(wire::spec::MAX_CONFIG_SIZE + 1).unwrap();
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a spec may have at most"), "{}", stderr(&out));
    assert_nothing_left(&id);
}

/// runc refuses a `root.path` that is a symlink; a bundle whose rootfs links to `/` would
/// otherwise give the container the host's root.
#[test]
fn a_root_path_that_is_a_symlink_is_refused() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    let real = bundle.path().join("real-rootfs");
    std::fs::rename(bundle.rootfs(), &real).unwrap();
    std::os::unix::fs::symlink("/", bundle.rootfs()).unwrap();
    let id = unique("rootlink");
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success(), "a container ran on the host's /");
    assert!(stderr(&out).contains("is a symlink (to /)"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    assert_nothing_left(&id);
}

/// Docker's default capabilities: what root in most containers has.
const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// runc's CVE-2019-5736 and CVE-2024-21626 ("leaky vessels"), in paddock's shape: a process
/// the sandbox forks into a container is visible there before it executes. Root in the
/// container, with Docker's capabilities, takes whatever it can from every process it can
/// name while processes are exec'd into the container one after the other: it must get
/// nothing but the exec'd programs' own stdio, and never reach a file of the host.
#[test]
fn a_container_takes_nothing_of_paddocks_from_the_processes_it_can_name() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    harness::install_probe(&bundle.rootfs(), "steal");
    let marker = tempfile::Builder::new().prefix("pdk-marker-").tempfile_in("/tmp").unwrap();
    std::fs::write(marker.path(), "the host\n").unwrap();
    let marker_path = marker.path().display().to_string();
    bundle.edit_config(|c| {
        c["process"]["args"] = serde_json::json!(["/bin/steal", marker_path, "/tmp/stop"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = serde_json::json!(DOCKER_CAPS);
        }
        c["process"]["noNewPrivileges"] = false.into();
    });
    let id = unique("steal");
    let output = bundle.path().join("steal.out");
    let out_file = std::fs::File::create(&output).unwrap();
    let status = harness::status_of(
        p.command()
            .args(["run", "-d", "--bundle", &bundle.path_str(), &id])
            .stdin(std::process::Stdio::null())
            .stdout(out_file)
            .stderr(std::process::Stdio::null()),
    );
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || std::fs::read_to_string(&output)
        .unwrap_or_default()
        .contains("STARTED")));
    // Processes in transit, over and over: plain, with a terminal-less shell, as other users.
    for n in 0..60 {
        let args: Vec<&str> = match n % 3 {
            0 => vec!["exec", &id, "--", "true"],
            1 => vec!["exec", &id, "--", "sh", "-c", "exit 0"],
            _ => vec!["exec", "-u", "1000:1000", &id, "--", "true"],
        };
        p.ctl_ok(&args);
    }
    p.ctl_ok(&["exec", &id, "--", "touch", "/tmp/stop"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 0);
    let report = std::fs::read_to_string(&output).unwrap();
    assert!(report.contains("DONE rounds="), "{report}");
    eprintln!(
        "the attacker went through /proc {} times and took {} descriptors",
        report.lines().find_map(|l| l.strip_prefix("DONE rounds=")).unwrap_or("?"),
        report.lines().filter(|l| l.starts_with("GOT")).count()
    );
    let escapes: Vec<&str> = report.lines().filter(|l| l.starts_with("ESCAPE")).collect();
    assert!(escapes.is_empty(), "the container reached the host:\n{}", escapes.join("\n"));
    // What it got can only be the exec'd programs' own stdio, after their execve.
    let stolen: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("GOT") && !["fd=0 ", "fd=1 ", "fd=2 "].iter().any(|s| l.contains(s)))
        .collect();
    assert!(stolen.is_empty(), "the container took descriptors of paddock's:\n{}", stolen.join("\n"));
    for line in report.lines().filter(|l| l.starts_with("GOT")) {
        for paddocks in ["paddock", "sandbox", "cgroup", "/containers/", &p.root().display().to_string()] {
            assert!(!line.contains(paddocks), "the container took something of paddock's: {line}");
        }
    }
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

/// The value of `field` (`CapEff`, `NoNewPrivs`, `Seccomp`, ...) in process `pid`'s status.
fn status_field(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Capability bits as `/proc/PID/status` shows them.
fn capability_mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |mask, bit| mask | 1 << bit))
}

/// Once set up, the sandbox and the gofer drop what they no longer need: the sandbox keeps
/// CAP_KILL alone (its spawner, which the container cannot see, keeps the rest for the
/// container's processes to start from), the gofer the file capabilities of copying; both set
/// no_new_privs and run under a seccomp filter of their own. The sandbox's root is empty, and
/// the container sees neither.
#[test]
fn the_sandbox_and_the_gofer_confine_themselves() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("confined");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let init = p.state(&id)["pid"].as_i64().unwrap() as i32;
    let sandbox = harness::parent_pid(init).unwrap();
    let gofer = harness::gofer_pid(&id).expect("a gofer");
    for (who, pid, caps) in [
        // CAP_KILL is bit 5; the gofer's are CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID and MKNOD.
        ("sandbox", sandbox, capability_mask(&[5])),
        ("gofer", gofer, capability_mask(&[0, 1, 2, 3, 4, 27])),
    ] {
        assert_eq!(status_field(pid, "NoNewPrivs"), "1", "{who}");
        assert_eq!(status_field(pid, "Seccomp"), "2", "{who}");
        assert_eq!(status_field(pid, "CapEff"), caps, "{who}");
        assert_eq!(status_field(pid, "CapBnd"), caps, "{who}");
        assert_eq!(status_field(pid, "CapPrm"), caps, "{who}");
    }
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{sandbox}/root")).unwrap().collect();
    assert!(root.is_empty(), "the sandbox's root holds {root:?}");
    let ps = p.ctl_ok(&["exec", &id, "--", "ps", "-o", "args"]);
    assert!(!ps.contains("paddock"), "the container sees paddock's processes:\n{ps}");
    assert_eq!(p.ctl_ok(&["exec", &id, "--", "cat", "/proc/1/cmdline"]), "sleep\u{0}1000\u{0}");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// The embedded default and `ctl spec` carry Docker's default seccomp profile: what a
/// container does normally works, and it cannot make itself a user namespace to mount in.
#[test]
fn the_default_specs_refuse_what_dockers_default_profile_refuses() {
    let p = Paddock::new();
    let script = "echo works; unshare -Ur true 2>&1; echo unshare=$?; unshare -m true 2>&1; echo mountns=$?";
    let out = p.ctl(&["run", "--rm", "--", "/bin/sh", "-c", script]);
    let seen = harness::stdout(&out);
    assert!(seen.contains("works"), "{seen}");
    assert!(seen.contains("unshare=1") && seen.contains("mountns=1"), "{seen}");
    assert!(seen.contains("Operation not permitted"), "{seen}");

    let bundle = Bundle::busybox(&["true"]);
    std::fs::remove_file(bundle.path().join("config.json")).unwrap();
    p.ctl_ok(&["spec", "--bundle", &bundle.path_str()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    bundle.edit_config(|c| {
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    });
    let id = unique("specseccomp");
    let out = p.ctl(&["run", "--keep", "--bundle", &bundle.path_str(), &id]);
    let seen = harness::stdout(&out);
    assert!(seen.contains("works") && seen.contains("unshare=1") && seen.contains("mountns=1"), "{seen}");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}
