//! Lets the linker find libseccomp on a machine that has only its runtime library.
//!
//! `libseccomp-sys` links with `-lseccomp`, which the linker resolves through the development
//! symlink `libseccomp.so` (Debian's `libseccomp-dev`). Every systemd host has the runtime
//! library `libseccomp.so.2` (systemd, apt and util-linux need it), but a fresh machine lacks
//! the `-dev` package, and the build failed there. The ABI of `.so.2` is what the symlink
//! points at anyway, so a private `libseccomp.so` in `OUT_DIR` that links to it serves the
//! linker just as well, and the binaries record `libseccomp.so.2` as their dependency either
//! way. No crate does this: it is a fact of how Debian splits its packages.
//!
//! `-L` paths from a build script reach every binary that depends on this crate, which is
//! every binary that links libseccomp.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LIB_PATH");
    if std::env::var_os("LIBSECCOMP_LIB_PATH").is_some() {
        // The user pointed libseccomp-sys at a library of their choosing.
        return;
    }
    let Some(runtime) = find_runtime_library() else {
        println!(
            "cargo:warning=libseccomp.so.2 was not found (ldconfig -p, /usr/lib, /lib): install libseccomp2 \
             (Debian, Ubuntu) or libseccomp (Fedora, Arch, Alpine)"
        );
        return;
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let link = out.join("libseccomp.so");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(&runtime, &link) {
        println!("cargo:warning=cannot link {} to {}: {e}", link.display(), runtime.display());
        return;
    }
    println!("cargo:rustc-link-search=native={}", out.display());
}

/// `libseccomp.so.2` as the dynamic loader finds it, else in the usual library directories.
fn find_runtime_library() -> Option<PathBuf> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let from_cache = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| std::process::Command::new("/sbin/ldconfig").arg("-p").output())
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .filter(|l| l.trim_start().starts_with("libseccomp.so.2 "))
                // On a multi-arch host, the library of the architecture being built.
                .filter(|l| arch != "x86_64" || l.contains("x86-64"))
                .find_map(|l| l.split("=>").nth(1).map(|p| PathBuf::from(p.trim())))
        });
    from_cache.filter(|p| p.exists()).or_else(|| {
        let triplet = format!("{arch}-linux-gnu");
        ["/usr/lib", "/lib", "/usr/lib64", "/lib64"]
            .iter()
            .flat_map(|base| [Path::new(base).join(&triplet), PathBuf::from(base)])
            .map(|dir| dir.join("libseccomp.so.2"))
            .find(|p| p.exists())
    })
}
