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

/// cgroups-rs errors say little by themselves ("invalid linux resource"): add the cause.
fn describe(e: cgroups_rs::manager::Error) -> String {
    match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

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

/// The cgroup a spec's `cgroupsPath` names, relative to the hierarchies' roots. systemd's
/// `slice:prefix:name` form (`--systemd-cgroup`, podman's default) is laid out where systemd
/// would put the unit (`machine.slice/libpod-<id>.scope`); paddock makes the directories
/// itself rather than asking systemd for a transient unit.
pub fn spec_path(cgroups_path: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::invalid_spec(format!("cgroupsPath {cgroups_path:?}: {why}"));
    let relative = if cgroups_path.contains(':') {
        let parts: Vec<&str> = cgroups_path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad("a systemd cgroupsPath has the form slice:prefix:name"));
        };
        if name.is_empty() || [slice, prefix, name].iter().any(|p| p.contains('/')) {
            return Err(bad("a systemd cgroupsPath has the form slice:prefix:name, without slashes"));
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        let parent = expand_slice(if slice.is_empty() { "system.slice" } else { slice }).map_err(|e| bad(&e))?;
        if parent.is_empty() {
            unit
        } else {
            format!("{parent}/{unit}")
        }
    } else {
        cgroups_path.trim_start_matches('/').to_string()
    };
    let parts: Vec<&str> = relative.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(bad("it must be a plain path: no empty, '.' or '..' components"));
    }
    Ok(relative)
}

/// systemd's slice nesting: `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> Result<String, String> {
    let stem = slice.strip_suffix(".slice").ok_or_else(|| format!("{slice:?} is not a slice name"))?;
    if stem == "-" {
        // The root slice.
        return Ok(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut path = Vec::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path.join("/"))
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

    /// The directory whose freezer controls the cgroup (v1's `freezer` hierarchy, or the v2
    /// cgroup), if there is one.
    pub fn freezer_dir(&self) -> Option<PathBuf> {
        self.dirs().into_iter().find(|d| d.join("freezer.state").exists() || d.join("cgroup.freeze").exists())
    }

    /// Freezes or thaws every process in it.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), ApiError> {
        let state = if frozen { cgroups_rs::FreezerState::Frozen } else { cgroups_rs::FreezerState::Thawed };
        self.manager.freeze(state).map_err(|e| cg_err(format!("freezer of {}", self.relative), e))
    }

    /// Applies the OCI `linux.resources`: memory, cpu (shares, quota, period, realtime, cpus,
    /// mems), pids, blockIO, hugepage limits and network classes through cgroups-rs; device
    /// rules by hand (see [`Cgroup::set_devices`]).
    pub fn apply(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ApiError> {
        let mut rest = resources.clone();
        rest.set_devices(None);
        let mut manager = FsManager::new(&self.relative).map_err(|e| cg_err(&self.relative, e))?;
        manager.set(&rest).map_err(|e| cg_err(format!("setting the resources of {}", self.relative), describe(e)))?;
        if let Some(rules) = resources.devices() {
            self.set_devices(rules)?;
        }
        Ok(())
    }

    /// Sets device rules, in order (runc's default devices are added by the caller): written
    /// to the v1 devices controller, or, on cgroup v2, compiled into an eBPF device filter
    /// attached to the container's cgroup ([`crate::device_filter`]).
    pub fn set_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<(), ApiError> {
        if self.manager.v2() {
            let dir = Path::new(cgroups_rs::fs::hierarchies::UNIFIED_MOUNTPOINT).join(&self.relative);
            let fd = std::fs::File::open(&dir).map_err(|e| cg_err(format!("opening {}", dir.display()), e))?;
            return crate::device_filter::apply(std::os::fd::AsFd::as_fd(&fd), rules)
                .map_err(|e| cg_err(format!("device rules of {}", dir.display()), e));
        }
        let dir = self.manager.mounts().get("devices").map(|m| Path::new(m).join(&self.relative));
        let Some(dir) = dir.filter(|d| d.is_dir()) else {
            if rules.iter().all(|r| r.allow()) {
                return Ok(());
            }
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                "device rules need the devices controller, which this host's cgroup v1 does not mount",
            ));
        };
        for rule in rules {
            let line = device_rule_line(rule);
            let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
            std::fs::write(dir.join(file), &line)
                .map_err(|e| cg_err(format!("writing {line:?} to {}", dir.join(file).display()), e))?;
        }
        Ok(())
    }

    /// Removes the cgroup, and then its parents up to `paddock/` as far as they are empty.
    /// Every hierarchy is tried; the first failure is returned.
    ///
    /// The cgroup is being removed because what it held is gone: a process still in it
    /// (exiting, as a sandbox's helpers do a moment after the sandbox, or left over) is killed
    /// and the removal waits, briefly, for it to be gone.
    pub fn remove(self) -> Result<(), ApiError> {
        let mut failure = None;
        for dir in &self.places() {
            match remove_leaf(dir) {
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
                if !p.components().any(|c| c.as_os_str() == BASE) {
                    break;
                }
                if let Err(e) = remove_dir_once_idle(p) {
                    if !has_child_cgroups(p) {
                        tracing::warn!(cgroup = %p.display(), "cannot remove the emptied parent: {e}");
                    }
                    break;
                }
                parent = p.parent();
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Removes a cgroup that nothing should be in any more; whatever still is gets SIGKILL, and
/// the removal is retried until it is gone (at most two seconds).
fn remove_leaf(dir: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// Removes a parent cgroup directory whose child was just removed. The kernel answers EBUSY
/// for a cgroup with children, and also, for a moment, for one whose last child was just
/// removed (the child goes offline asynchronously): only the latter (no child directory
/// left) is retried, for a short while.
fn remove_dir_once_idle(dir: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline
                    && !has_child_cgroups(dir) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// Whether a cgroup directory has child cgroups (an unreadable one is taken to have some).
fn has_child_cgroups(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |entries| entries.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir())))
}

/// A rule as the v1 devices controller reads it: `TYPE MAJOR:MINOR ACCESS`, `*` for "any".
/// cgroups-rs writes absent numbers as 0 instead of `*`, hence this by hand.
pub fn device_rule_line(rule: &oci_spec::runtime::LinuxDeviceCgroup) -> String {
    use oci_spec::runtime::LinuxDeviceType;
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => "p",
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
    let access = rule.access().clone().unwrap_or_else(|| "rwm".to_string());
    format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};

    #[test]
    fn cgroups_paths() {
        assert_eq!(spec_path("/default/web").unwrap(), "default/web");
        assert_eq!(spec_path("machine.slice:libpod:abc").unwrap(), "machine.slice/libpod-abc.scope");
        assert_eq!(spec_path("user-1000.slice:crio:x").unwrap(), "user.slice/user-1000.slice/crio-x.scope");
        assert_eq!(spec_path(":paddock:x").unwrap(), "system.slice/paddock-x.scope");
        assert!(spec_path("/a/../b").is_err());
        assert!(spec_path("a:b").is_err());
        assert!(spec_path("bad:p:x").is_err());
    }

    #[test]
    fn device_rules_use_stars_for_any() {
        let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap();
        assert_eq!(device_rule_line(&deny_all), "a *:* rwm");
        let pts = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(136)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule_line(&pts), "c 136:* rwm");
    }
}
