//! Containers' cgroups, through cgroups-rs: every mounted v1 hierarchy, or the v2 tree.
//!
//! paddockd creates them; the sandbox receives a descriptor of each of a container's cgroup
//! directories, through which the container's processes join (they write to `cgroup.procs`
//! before they run anything of the user's) and the sandbox finds them again. Layout, relative
//! to each hierarchy's root:
//!
//! ```text
//! paddock/<sandbox>/paddockd.sandbox   the sandbox process and the gofers
//! paddock/<sandbox>/<container>        each container (unless its spec names a cgroupsPath)
//! ```

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cgroups_rs::manager::{FsManager, Manager};
use wire::{ApiError, ErrorKind};

/// The directory under every hierarchy's root that holds paddock's cgroups.
pub const BASE: &str = "paddock";
/// The name of the cgroup of a sandbox's own processes (a reserved id, so never a container's).
pub const SANDBOX_LEAF: &str = "paddockd.sandbox";

fn cg_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Io, format!("cgroup {what}: {e}"))
}

/// The default cgroup of a container: `paddock/<sandbox>/<container>`.
pub fn container_path(sandbox_id: &str, container_id: &str) -> String {
    format!("{BASE}/{}/{}", wire::ids::dir_name(sandbox_id), wire::ids::dir_name(container_id))
}

/// The cgroup of a sandbox's own processes.
pub fn sandbox_path(sandbox_id: &str) -> String {
    format!("{BASE}/{}/{SANDBOX_LEAF}", wire::ids::dir_name(sandbox_id))
}

/// One cgroup, in every hierarchy.
pub struct Cgroup {
    relative: String,
    manager: FsManager,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("relative", &self.relative).finish()
    }
}

impl Cgroup {
    /// Creates (or opens) the cgroup at `relative` (relative to every hierarchy's root).
    pub fn create(relative: &str) -> Result<Self, ApiError> {
        let relative = relative.trim_start_matches('/').to_string();
        cgroups_rs::fs::Cgroup::new(cgroups_rs::fs::hierarchies::auto(), relative.as_str())
            .map_err(|e| cg_err(format!("creating {relative}"), e))?;
        Self::open(&relative)
    }

    /// Opens the cgroup at `relative`, which may or may not exist.
    pub fn open(relative: &str) -> Result<Self, ApiError> {
        let relative = relative.trim_start_matches('/').to_string();
        let manager = FsManager::new(&relative).map_err(|e| cg_err(&relative, e))?;
        Ok(Self { relative, manager })
    }

    /// The path relative to the hierarchies' roots.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// The cgroup's directory in each hierarchy (each mount once).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.places().into_iter().filter(|d| d.is_dir()).collect()
    }

    /// Where the cgroup's directory is or would be in each hierarchy, whether it exists or
    /// not (a creation cut short leaves it in some hierarchies only, or only its parents).
    fn places(&self) -> Vec<PathBuf> {
        let mut mounts: Vec<&String> = self.manager.mounts().values().collect();
        if mounts.is_empty() || self.manager.v2() {
            return vec![Path::new(cgroups_rs::fs::hierarchies::UNIFIED_MOUNTPOINT).join(&self.relative)];
        }
        mounts.sort();
        mounts.dedup();
        mounts.into_iter().map(|m| Path::new(m).join(&self.relative)).collect()
    }

    /// A descriptor of each directory, for the sandbox.
    pub fn open_dirs(&self) -> Result<Vec<OwnedFd>, ApiError> {
        self.dirs()
            .into_iter()
            .map(|d| {
                rustix::fs::open(
                    &d,
                    rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| cg_err(d.display(), e))
            })
            .collect()
    }

    /// Moves process `pid` (host pid) into the cgroup, in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<(), ApiError> {
        for dir in self.dirs() {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| cg_err(format!("adding {pid} to {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// The host pids of its processes.
    pub fn procs(&self) -> Vec<i32> {
        let Some(dir) = self.dirs().into_iter().next() else { return Vec::new() };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many processes of it the kernel's OOM killer has killed: `oom_kill` in the v1
    /// memory controller's `memory.oom_control`, or in v2's `memory.events`.
    pub fn oom_kills(&self) -> u64 {
        self.dirs()
            .iter()
            .flat_map(|dir| ["memory.oom_control", "memory.events"].map(|f| dir.join(f)))
            .filter_map(|file| std::fs::read_to_string(file).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()))
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Freezes or thaws every process in it.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), ApiError> {
        let state = if frozen { cgroups_rs::FreezerState::Frozen } else { cgroups_rs::FreezerState::Thawed };
        self.manager.freeze(state).map_err(|e| cg_err(format!("freezer of {}", self.relative), e))
    }

    /// Removes the cgroup (it must be empty), and then its parents up to `paddock/` as far
    /// as they are empty. Every hierarchy is tried; the first failure is returned.
    pub fn remove(self) -> Result<(), ApiError> {
        let mut failure = None;
        for dir in &self.places() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failure.get_or_insert(cg_err(format!("removing {}", dir.display()), e));
                    continue;
                }
            }
            // Parents may be shared with other containers: stop at the first that is not empty.
            let mut parent = dir.parent();
            while let Some(p) = parent {
                if !p.components().any(|c| c.as_os_str() == BASE) || std::fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
