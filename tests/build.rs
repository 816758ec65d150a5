//! Builds the probe programs the tests put into containers (tests/probes/*.c), statically,
//! since a test's root filesystem is busybox and nothing else.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("probes");
    println!("cargo:rerun-if-changed=probes");
    println!("cargo:rustc-env=PADDOCK_PROBES={}", out.display());
    for entry in std::fs::read_dir(&dir).expect("tests/probes") {
        let path = entry.expect("a probe").path();
        if path.extension().is_none_or(|e| e != "c") {
            continue;
        }
        let name = path.file_stem().expect("a name").to_owned();
        let binary = out.join(&name);
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&binary)
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => println!(
                "cargo:warning=cannot build the probe {} ({other:?}): the tests that use it will fail (install gcc and \
                 the C library's static archive, libc6-dev)",
                path.display()
            ),
        }
    }
}
