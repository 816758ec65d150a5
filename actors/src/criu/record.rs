//! paddock's record beside CRIU's images: what the restore must know that the images do not
//! say in a form paddock reads (the init's pid, the keys of its standard descriptors, the
//! cgroup mounts marked external), checked before any of it reaches CRIU's command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wire::{ApiError, ErrorKind};

use super::{io_err, CHECKPOINT_FILE};

/// What paddock records beside CRIU's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    /// The checkpointed container's id.
    pub id: String,
    /// Its init's pid in the sandbox's PID namespace, which the restore gives it again.
    pub init_pid: i32,
    /// CRIU's key of each standard descriptor of the init (`None`: nothing to replace).
    pub stdio: Vec<Option<String>>,
    /// The container's cgroup v1 mounts, marked external (it has no cgroup namespace): where
    /// each is in the container, and its hierarchy's controllers.
    #[serde(default)]
    pub cgroup_mounts: Vec<CgroupMount>,
    /// CRIU's key of the init's terminal bound on `/dev/console`, marked external (its master
    /// is the caller's); `None` for a container without one (or a checkpoint of a paddock
    /// that did not bind it).
    #[serde(default)]
    pub console: Option<String>,
}

/// A cgroup v1 hierarchy mounted in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// Where it is mounted in the container.
    pub mountpoint: String,
    /// Its controllers (`cpu`, `name=systemd`, ...), as the mount's options name them.
    pub controllers: Vec<String>,
}

/// The cgroup v1 mounts in a `mountinfo` text.
pub(crate) fn cgroup_mounts_in(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mountpoint = before.split_whitespace().nth(4)?;
            let mut after = after.split_whitespace();
            if after.next()? != "cgroup" {
                return None;
            }
            let options = after.nth(1)?;
            let mut controllers: Vec<String> =
                options.split(',').filter(|o| !matches!(*o, "rw" | "ro")).map(String::from).collect();
            controllers.sort();
            Some(CgroupMount { mountpoint: mountpoint.to_string(), controllers })
        })
        .collect()
}

/// Where the host mounts the hierarchy of `mount`'s controllers.
pub(crate) fn host_hierarchy(mount: &CgroupMount) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_mounts_in(&mountinfo).into_iter().find(|m| m.controllers == mount.controllers).map(|m| m.mountpoint.into())
}

/// Reads paddock's record of the checkpoint in `image`.
pub fn read_record(image: &Path) -> Result<CheckpointRecord, ApiError> {
    let path = image.join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
        ApiError::new(kind, format!("{} holds no paddock checkpoint ({}: {e})", image.display(), path.display()))
    })?;
    let record: CheckpointRecord =
        serde_json::from_slice(&bytes).map_err(|e| io_err(format!("parsing {}", path.display()), e))?;
    // What the record says goes to CRIU's command line: only what paddock itself writes.
    let well_formed = |key: &str| {
        ["pipe:[", "file[", "tty["].iter().any(|p| key.starts_with(p))
            && key.ends_with(']')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || "[]:".contains(c))
    };
    let bad = if record.stdio.len() != 3 {
        Some(format!("{} standard descriptors instead of 3", record.stdio.len()))
    } else if let Some(key) = record.stdio.iter().flatten().find(|k| !well_formed(k)) {
        Some(format!("the descriptor key {key:?}"))
    } else if record.init_pid < 1 {
        Some(format!("the pid {}", record.init_pid))
    } else {
        None
    };
    match bad {
        Some(what) => {
            Err(ApiError::invalid_argument(format!("{}: not a paddock checkpoint record ({what})", path.display())))
        }
        None => Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_are_read_from_mountinfo() {
        let mountinfo = "60 57 0:48 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs rw,mode=755\n\
            62 60 0:37 /libpod/x /sys/fs/cgroup/systemd ro,nosuid - cgroup cgroup rw,name=systemd\n\
            73 60 0:29 /libpod/x /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpuacct,cpu\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let mounts = cgroup_mounts_in(mountinfo);
        assert_eq!(
            mounts,
            [
                CgroupMount { mountpoint: "/sys/fs/cgroup/systemd".into(), controllers: vec!["name=systemd".into()] },
                CgroupMount {
                    mountpoint: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()]
                },
            ]
        );
        // Each v1 hierarchy this host mounts is found again by its controllers (none on a host
        // with cgroup v2 only).
        let own = cgroup_mounts_in(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        for mount in own {
            let found = host_hierarchy(&CgroupMount { mountpoint: String::new(), ..mount.clone() });
            assert_eq!(found, Some(PathBuf::from(&mount.mountpoint)));
        }
        assert_eq!(host_hierarchy(&CgroupMount { mountpoint: String::new(), controllers: vec!["nope".into()] }), None);
    }

    #[test]
    fn a_record_that_paddock_did_not_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |json: &str| std::fs::write(dir.path().join(CHECKPOINT_FILE), json).unwrap();
        write(r#"{"id":"c","initPid":2,"stdio":["pipe:[12]",null,"file[1b:3]"]}"#);
        assert_eq!(read_record(dir.path()).unwrap().stdio.len(), 3);
        for bad in [
            r#"{"id":"c","initPid":2,"stdio":["pipe:[12]"]}"#,
            r#"{"id":"c","initPid":2,"stdio":["--action-script=/x",null,null]}"#,
            r#"{"id":"c","initPid":0,"stdio":[null,null,null]}"#,
            r#"{"id":"c""#,
        ] {
            write(bad);
            let err = read_record(dir.path()).unwrap_err();
            assert!(err.message.contains(CHECKPOINT_FILE), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_record_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_record(dir.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(err.message.contains(CHECKPOINT_FILE), "{err}");
    }
}
