//! Start-up cost: `ctl run --rm -- /bin/true` (the embedded default) and `ctl run --rm` of a
//! busybox bundle, against `runc run` of the same busybox bundle, alternating in one run.
//!
//! Run: `cargo bench -p paddock-tests --bench startup` (as root, with runc installed).
//! Prints the medians and, last, the headline ratio paddock / runc.

use std::process::Command;

use harness::bench::{median, ms, runc, time};
use harness::{Bundle, Paddock};

const ROUNDS: usize = 60;

fn main() {
    let runc = runc();
    let paddock = Paddock::new();
    let bundle = Bundle::busybox(&["/bin/true"]);
    let runc_root = tempfile::tempdir().unwrap();
    // Warm up: start the daemon, fill the page cache.
    paddock.ctl_ok(&["run", "--rm", "--", "/bin/true"]);

    let (mut embedded, mut pad_bundle, mut runc_bundle) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        embedded.push(time(paddock.command().args(["run", "--rm", "--", "/bin/true"])));
        pad_bundle.push(time(paddock.command().args([
            "run",
            "--rm",
            "--bundle",
            &bundle.path_str(),
            &format!("pb{i}"),
        ])));
        runc_bundle.push(time(Command::new(runc).arg("--root").arg(runc_root.path()).args([
            "run",
            "--bundle",
            &bundle.path_str(),
            &format!("rb{i}"),
        ])));
        let _ =
            Command::new(runc).arg("--root").arg(runc_root.path()).args(["delete", "-f", &format!("rb{i}")]).output();
    }
    let (e, pb, rb) = (median(embedded), median(pad_bundle), median(runc_bundle));
    println!("rounds: {ROUNDS}, medians:");
    println!("  ctl run --rm -- /bin/true          {:8.2} ms", ms(e));
    println!("  ctl run --rm --bundle busybox      {:8.2} ms", ms(pb));
    println!("  runc run --bundle busybox           {:8.2} ms", ms(rb));
    println!("  bundle ratio paddock/runc           {:7.2}", ms(pb) / ms(rb));
    println!("ctl run --rm -- /bin/true vs runc run: {:.2}x ({:.2} ms vs {:.2} ms)", ms(e) / ms(rb), ms(e), ms(rb));
}
