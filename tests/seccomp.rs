//! `linux.seccomp`: the container's processes (its init and the ones `ctl exec` starts) run
//! under the spec's seccomp profile, with runc's semantics, and a bad profile fails `create`.

use harness::{assert_nothing_left, stderr, stdout, unique, Bundle, Paddock};
use serde_json::{json, Value};

/// A bundle running `sh -c script` under `profile`.
fn bundle_with(script: &str, profile: Value) -> Bundle {
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.edit_config(|c| c["linux"]["seccomp"] = profile);
    bundle
}

/// Runs the bundle to its end (`run --rm`) and returns (exit code, stdout, stderr).
fn run(p: &Paddock, bundle: &Bundle) -> (Option<i32>, String, String) {
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("seccomp")]);
    (out.status.code(), stdout(&out), stderr(&out))
}

/// Allows everything but `mkdir`/`mkdirat`, which fail with EACCES.
fn mkdir_denied() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    })
}

#[test]
fn a_rule_makes_a_system_call_fail_with_its_errno_and_the_rest_works() {
    let p = Paddock::new();
    let script =
        "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touched; grep -E '^Seccomp(_filters)?:' /proc/self/status";
    let (code, out, err) = run(&p, &bundle_with(script, mkdir_denied()));
    assert_eq!(code, Some(0), "{err}");
    // The kernel reports seccomp mode 2 (filter) and exactly one filter: the profile's.
    assert_eq!(out, "mkdir=1\ntouched\nSeccomp:\t2\nSeccomp_filters:\t1\n", "{err}");
    assert!(err.contains("can't create directory '/tmp/x': Permission denied"), "{err}");

    // The same container without the profile: mkdir works, nothing is filtered.
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    let (code, out, err) = run(&p, &bundle);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "mkdir=0\ntouched\nSeccomp:\t0\nSeccomp_filters:\t0\n", "{err}");
}

#[test]
fn argument_conditions_select_the_calls_a_rule_applies_to() {
    let p = Paddock::new();
    // kill(pid, SIGUSR1) fails with EPERM; kill(pid, SIGUSR2) goes through. Both are trapped,
    // so a signal that got through shows.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": libc::SIGUSR1, "op": "SCMP_CMP_EQ"}]
        }]
    });
    let script = "trap 'echo got USR1' USR1; trap 'echo got USR2' USR2; \
                  kill -USR1 $$; echo usr1=$?; kill -USR2 $$; echo usr2=$?";
    let (code, out, err) = run(&p, &bundle_with(script, profile));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("usr1=1\n"), "{out}");
    assert!(!out.contains("got USR1"), "SIGUSR1 got through: {out}");
    assert!(out.contains("got USR2\n") && out.contains("usr2=0\n"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // Conditions on distinct arguments must all hold: SIGUSR1 to the shell's own process group
    // (pid 0) only. SIGUSR2 to the group, and SIGUSR1 to the shell's child by its pid, go
    // through; the child dies of it.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": libc::SIGUSR1, "op": "SCMP_CMP_EQ"}
            ]
        }]
    });
    let script = "trap 'echo got USR2' USR2; kill -USR1 0; echo group-usr1=$?; kill -USR2 0; echo group-usr2=$?; \
                  sleep 1000 & kill -USR1 $!; echo child-usr1=$?; wait $!; echo child-status=$?";
    let (code, out, err) = run(&p, &bundle_with(script, profile));
    assert_eq!(code, Some(0), "{out} {err}");
    for line in ["group-usr1=1", "got USR2", "group-usr2=0", "child-usr1=0", "child-status=138"] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing from {out:?} ({err})");
    }
}

#[test]
fn exec_d_processes_run_under_the_containers_profile() {
    let p = Paddock::new();
    let bundle = bundle_with("exec sleep 1000", mkdir_denied());
    let id = unique("seccomp-exec");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);

    let out = p.ctl(&["exec", &id, "--", "mkdir", "/tmp/y"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("can't create directory '/tmp/y': Permission denied"), "{}", stderr(&out));
    assert_eq!(p.ctl_ok(&["exec", &id, "--", "sh", "-c", "touch /tmp/z && echo touched"]), "touched\n");

    // A whole process without noNewPrivileges or capabilities: the filter is installed
    // before the capabilities go, and holds all the same.
    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["sh", "-c", "grep NoNewPrivs /proc/self/status; mkdir /tmp/w"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    let out = p.ctl(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "NoNewPrivs:\t0\n");
    assert!(stderr(&out).contains("can't create directory '/tmp/w': Permission denied"), "{}", stderr(&out));

    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn a_bad_profile_fails_create_naming_the_fault_and_leaves_nothing() {
    let p = Paddock::new();
    let cases = [
        // Caught where the spec is parsed.
        (json!({"defaultAction": "SCMP_ACT_NOPE"}), "SCMP_ACT_NOPE"),
        (json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]}), "SCMP_ARCH_NOPE"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_NOPE"}]}
            ]}),
            "SCMP_CMP_NOPE",
        ),
        // Caught where the profile is compiled.
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]}),
            "linux.seccomp.syscalls[1].args[0]: index 6 is out of range",
        ),
        // (SCMP_ACT_NOTIFY's own refusals: tests/spec_seccomp_notify.rs.)
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}
            ]}),
            "linux.seccomp.listenerPath: the profile uses SCMP_ACT_NOTIFY",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 100000}),
            "linux.seccomp.defaultAction: errnoRet 100000 is out of range",
        ),
    ];
    for (profile, named) in cases {
        let bundle = bundle_with("echo should not run", profile.clone());
        let id = unique("seccomp-bad");
        let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
        assert!(!out.status.success(), "create succeeded with {profile}");
        assert!(stderr(&out).contains(named), "{profile}: {}", stderr(&out));
        assert!(!p.ctl(&["state", &id]).status.success(), "{id} exists after a failed create");
        assert_nothing_left(&id);
    }
}

/// The system calls of Docker's default profile, less `mkdir`/`mkdirat` (to see the default
/// action at work) and the conditional ones (`clone`, `personality`, `clone3`), below.
#[rustfmt::skip]
const DOCKER_LIKE_ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod", "chown",
    "chown32", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
    "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
    "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid",
    "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "ioctl", "ioprio_get",
    "ioprio_set", "kill", "lchown", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create", "mincore", "mknod", "mknodat", "mlock",
    "mlockall", "mmap", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat",
    "open", "openat", "openat2", "pause", "pipe", "pipe2", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recvfrom", "recvmmsg", "recvmsg", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir",
    "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "select", "sendfile", "sendmmsg", "sendmsg", "sendto",
    "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid",
    "setresuid", "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_tid_address", "setuid",
    "setxattr", "shutdown", "sigaltstack", "signalfd", "signalfd4", "socket", "socketcall", "socketpair", "splice",
    "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
    "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime",
    "utimensat", "utimes", "vfork", "wait4", "waitid", "write", "writev", "arch_prctl", "modify_ldt",
    // Unknown to libseccomp: skipped, as runc skips them.
    "paddock_no_such_syscall",
];

fn docker_like_profile() -> Value {
    let mut profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "syscalls": [
            {"names": DOCKER_LIKE_ALLOWED, "action": "SCMP_ACT_ALLOW"},
            // clone without any namespace flag, as Docker allows it.
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            // So that a libc falls back to clone.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}
        ]
    });
    if cfg!(target_arch = "x86_64") {
        profile["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    }
    profile
}

#[test]
fn a_docker_like_allow_list_lets_the_container_start_and_work() {
    let p = Paddock::new();
    let script = "echo hello $(echo from a subshell); mkdir /tmp/x || echo mkdir refused; \
                  grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status";
    // With noNewPrivileges (the filter is installed right before execve) and without (before
    // the capabilities are dropped, so the rest of the set-up runs under it too).
    for (no_new_privs, nnp_line) in [(true, "NoNewPrivs:\t1"), (false, "NoNewPrivs:\t0")] {
        let bundle = bundle_with(script, docker_like_profile());
        bundle.edit_config(|c| c["process"]["noNewPrivileges"] = json!(no_new_privs));
        let (code, out, err) = run(&p, &bundle);
        assert_eq!(code, Some(0), "noNewPrivileges {no_new_privs}: {err}");
        assert_eq!(out, format!("hello from a subshell\nmkdir refused\n{nnp_line}\nSeccomp:\t2\n"), "{err}");
        assert!(err.contains("can't create directory '/tmp/x': Operation not permitted"), "{err}");
    }
}
