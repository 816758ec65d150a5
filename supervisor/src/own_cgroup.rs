//! An autostarted paddockd's own cgroup.
//!
//! ctl starts paddockd on demand, from whatever called ctl: a shell, conmon, containerd's
//! shim. Left where it was born, paddockd and every sandbox it starts later would be charged to
//! that caller's cgroup and killed with it (a shim's cgroup is removed when its pod goes). So
//! an autostarted paddockd moves itself, first thing, into `paddock/paddockd` of every
//! cgroup hierarchy (each v1 controller's, and the v2 tree), beside the containers' own
//! `paddock/<sandbox>/…`. A paddockd started by systemd stays in its unit's cgroup.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The cgroup of an autostarted paddockd, relative to each hierarchy's root.
pub const DAEMON_CGROUP: &str = "paddock/paddockd";

/// Moves the calling process into [`DAEMON_CGROUP`] of every mounted hierarchy, creating it;
/// returns the directories it joined. A hierarchy that refuses is skipped (the others are
/// still left), and named in the error.
pub fn enter() -> anyhow::Result<Vec<PathBuf>> {
    let mounts = cgroup_mounts()?;
    anyhow::ensure!(!mounts.is_empty(), "no cgroup hierarchy is mounted");
    let mut joined = Vec::new();
    let mut failed = Vec::new();
    for mount in mounts {
        match join(&mount) {
            Ok(dir) => joined.push(dir),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if failed.is_empty() {
        Ok(joined)
    } else {
        anyhow::bail!("{} (joined {joined:?})", failed.join("; "))
    }
}

fn join(mount: &Path) -> anyhow::Result<PathBuf> {
    let mut dir = mount.to_path_buf();
    for part in DAEMON_CGROUP.split('/') {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
        inherit_cpuset(&parent, &dir)?;
    }
    // Writing 0 means "the writer": the whole process, every thread.
    std::fs::write(dir.join("cgroup.procs"), b"0").with_context(|| format!("joining {}", dir.display()))?;
    Ok(dir)
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and takes no process until
/// it has some: it gets its parent's.
fn inherit_cpuset(parent: &Path, dir: &Path) -> anyhow::Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Ok(value) = std::fs::read_to_string(parent.join(file)) else { continue };
        if std::fs::read_to_string(dir.join(file)).is_ok_and(|v| v.trim().is_empty()) {
            std::fs::write(dir.join(file), value.trim())
                .with_context(|| format!("writing {}", dir.join(file).display()))?;
        }
    }
    Ok(())
}

/// The mount points of the cgroup hierarchies (v1 and v2) in this mount namespace, each
/// hierarchy once, where its root is mounted (a mount of a subtree would not lead to the
/// hierarchy's `paddock`).
fn cgroup_mounts() -> anyhow::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_cgroup_mounts(&text))
}

fn parse_cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let mut seen_sources = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
        let mut tail = right.split(' ');
        let fstype = tail.next().unwrap_or_default();
        let _source = tail.next();
        let options = tail.next().unwrap_or_default();
        if !matches!(fstype, "cgroup" | "cgroup2") || *root != "/" {
            continue;
        }
        // A v1 hierarchy is named by its controllers (or name=); one mounted twice counts once.
        let key = if fstype == "cgroup2" {
            "cgroup2".to_string()
        } else {
            let mut parts: Vec<&str> = options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("nosuid") && !o.contains("relatime"))
                .collect();
            parts.sort();
            parts.join(",")
        };
        if seen_sources.insert(key) {
            out.push(Path::new(&unescape(point)).to_path_buf());
        }
    }
    out
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hierarchy_once_at_its_root() {
        let text = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
30 29 0:26 / /mnt/again rw,nosuid shared:13 - cgroup cgroup rw,cpuacct,cpu
31 25 0:25 /sub /mnt/sub rw,nosuid shared:12 - cgroup cgroup rw,memory
32 25 0:27 / /mnt/with\\040space rw shared:14 - cgroup cgroup rw,pids
";
        let got = parse_cgroup_mounts(text);
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/mnt/with space",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
    }
}
