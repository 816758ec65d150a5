//! A state root is never nested in (or around) another live one. (It is made private and
//! checked before anything is opened in it by `sys::trust::prepare_state_root`.)

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context as _;
use wire::stateroot::{LOCK_FILE, PID_FILE};

/// Refuses to serve `root` when it lies inside a live state root, or holds one directly
/// beneath it: each daemon would take the other's directories for something of its own (a
/// daemon on `/run/x` once deleted containerd's live `/run/x/k8s.io`).
pub fn refuse_nested(root: &Path) -> anyhow::Result<()> {
    for above in root.ancestors().skip(1) {
        if let Some(pid) = live_daemon(above) {
            anyhow::bail!(
                "state root {} is inside the state root {} (served by paddockd, pid {}): nested state roots \
                 are refused; choose a root outside it",
                root.display(),
                above.display(),
                pid.map_or("unknown".into(), |p| p.to_string())
            );
        }
    }
    let entries = std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let inner = entry.path();
        if let Some(pid) = live_daemon(&inner) {
            anyhow::bail!(
                "state root {} holds the live state root {} (served by paddockd, pid {}): nested state roots \
                 are refused; choose a root that does not contain it",
                root.display(),
                inner.display(),
                pid.map_or("unknown".into(), |p| p.to_string())
            );
        }
    }
    Ok(())
}

/// Whether a paddockd serves `dir` (it holds `dir/paddockd.lock` for its whole life), and
/// its pid if it wrote one. Opens nothing for writing and creates nothing.
fn live_daemon(dir: &Path) -> Option<Option<i32>> {
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    if !lock.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    let lock = fd_lock::RwLock::new(lock);
    if lock.try_read().is_ok() {
        return None;
    }
    let pid = std::fs::read_to_string(dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse().ok());
    Some(pid)
}
