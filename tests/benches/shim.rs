//! containerd's cost of a task through each shim: `ctr run --rm` of `/bin/true` on one busybox
//! rootfs, alternating in one run between paddock's shim (`--runtime io.containerd.paddock.v1`),
//! runc's shim with ctl as its runtime binary, and runc's shim with runc (the reference).
//!
//! Run: `cargo bench -p paddock-tests --bench shim` (as root, with containerd and runc
//! installed; the workspace's release binaries built). Prints the medians and, last, the
//! headline ratio paddock's shim / runc's shim with runc.

use std::process::Command;
use std::time::Duration;

use harness::bench::{median, ms, runc, time};
use harness::containerd::{Containerd, RUNTIME};

const ROUNDS: usize = 20;

fn main() {
    let runc = runc();
    let ctd = Containerd::start();
    let rootfs = ctd.rootfs().display().to_string();
    let socket = ctd.socket();
    // ctl under runc's shim keeps its state in a root of the benchmark's own.
    let ctl_root = ctd.dir().join("ctl-root");
    let wrapper = ctd.dir().join("ctl");
    let script = format!("#!/bin/sh\nexec {} --root {} \"$@\"\n", harness::ctl_path().display(), ctl_root.display());
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runc_root = ctd.dir().join("runc-root");
    let (wrapper, runc_root_arg) = (wrapper.display().to_string(), runc_root.display().to_string());
    let run = |id: &str, runtime: &[&str]| -> Duration {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&socket).args(["run", "--rm", "--env", "PATH=/bin"]).args(runtime);
        cmd.args(["--rootfs", &rootfs, id, "/bin/true"]);
        time(&mut cmd)
    };
    let ctl_root_arg = ctl_root.display().to_string();
    let shim_flags: [&str; 2] = ["--runtime", RUNTIME];
    let ctl_flags: [&str; 4] = ["--runc-binary", &wrapper, "--runc-root", &ctl_root_arg];
    let runc_flags: [&str; 4] = ["--runc-binary", runc, "--runc-root", &runc_root_arg];
    // Warm up: paddockd started (by the shim, and by ctl), the page cache filled.
    run("warm-shim", &shim_flags);
    run("warm-ctl", &ctl_flags);
    run("warm-runc", &runc_flags);

    let (mut shim, mut ctl, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        shim.push(run(&format!("bs{i}"), &shim_flags));
        ctl.push(run(&format!("bc{i}"), &ctl_flags));
        reference.push(run(&format!("br{i}"), &runc_flags));
    }
    // ctl's paddockd (started by ctl under runc's shim) goes with the benchmark.
    if let Some(pid) = harness::containerd::daemon_pid(&ctl_root.join("default")) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let (s, c, r) = (median(shim), median(ctl), median(reference));
    println!("rounds: {ROUNDS}, medians of `ctr run --rm ... /bin/true`:");
    println!("  paddock's shim (io.containerd.paddock.v1)   {:8.2} ms", ms(s));
    println!("  runc's shim, ctl as its runtime binary      {:8.2} ms", ms(c));
    println!("  runc's shim, runc                           {:8.2} ms", ms(r));
    println!("  ctl under runc's shim / paddock's shim      {:7.2}", ms(c) / ms(s));
    println!("paddock's shim vs runc's shim with runc: {:.2}x ({:.2} ms vs {:.2} ms)", ms(s) / ms(r), ms(s), ms(r));
}
