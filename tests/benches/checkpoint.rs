//! Checkpoint and restore cost: `ctl checkpoint` + `ctl restore -d` of a busybox process against
//! `runc checkpoint` + `runc restore -d` of the same bundle, alternating in one run (both drive
//! the same CRIU).
//!
//! Run: `cargo bench -p paddock-tests --bench checkpoint` (as root, with runc and CRIU 4.1
//! installed). Prints the medians and the ratios paddock / runc.

use std::process::Command;

use harness::bench::{median, ms, runc, time};
use harness::{Bundle, Paddock};

const ROUNDS: usize = 15;

fn main() {
    let runc = runc();
    let paddock = Paddock::new();
    // A process that keeps running, with a little state of its own.
    let bundle = Bundle::busybox(&["sh", "-c", "i=0; while :; do i=$((i+1)); usleep 100000; done"]);
    let images = tempfile::tempdir().unwrap();
    let runc_root = tempfile::tempdir().unwrap();
    let runc_cmd = || {
        let mut c = Command::new(runc);
        c.arg("--root").arg(runc_root.path());
        c
    };
    paddock.ctl_ok(&["list"]);

    let (mut pad_dump, mut pad_restore, mut runc_dump, mut runc_restore) = (vec![], vec![], vec![], vec![]);
    for i in 0..ROUNDS {
        let (pid, rid) = (format!("pc{i}"), format!("rc{i}"));
        let (pimg, rimg) = (images.path().join(&pid), images.path().join(&rid));
        let (pimg, rimg) = (pimg.to_str().unwrap(), rimg.to_str().unwrap());
        time(paddock.command().args(["run", "-d", "--bundle", &bundle.path_str(), &pid]));
        pad_dump.push(time(paddock.command().args(["checkpoint", "--image-path", pimg, &pid])));
        time(paddock.command().args(["delete", &pid]));
        pad_restore.push(time(paddock.command().args([
            "restore",
            "-d",
            "--bundle",
            &bundle.path_str(),
            "--image-path",
            pimg,
            &pid,
        ])));
        time(paddock.command().args(["delete", "--force", &pid]));

        time(runc_cmd().args(["run", "-d", "--bundle", &bundle.path_str(), &rid]));
        runc_dump.push(time(runc_cmd().args(["checkpoint", "--image-path", rimg, &rid])));
        runc_restore.push(time(runc_cmd().args([
            "restore",
            "-d",
            "--bundle",
            &bundle.path_str(),
            "--image-path",
            rimg,
            &rid,
        ])));
        time(runc_cmd().args(["delete", "--force", &rid]));
    }
    let (pd, pr, rd, rr) = (median(pad_dump), median(pad_restore), median(runc_dump), median(runc_restore));
    println!("rounds: {ROUNDS}, medians:");
    println!("  ctl checkpoint          {:8.2} ms", ms(pd));
    println!("  runc checkpoint         {:8.2} ms", ms(rd));
    println!("  ctl restore -d          {:8.2} ms", ms(pr));
    println!("  runc restore -d         {:8.2} ms", ms(rr));
    println!(
        "checkpoint ratio paddock/runc: {:.2}, restore ratio paddock/runc: {:.2}",
        ms(pd) / ms(rd),
        ms(pr) / ms(rr)
    );
}
