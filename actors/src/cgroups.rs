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

use crate::resources::{Cgroupfs, Controller, ResourceError, Version};

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
        let parent =
            expand_slice(if slice.is_empty() { "system.slice" } else { slice }).map_err(|e| bad(&e.to_string()))?;
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

/// Why a systemd slice name cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SliceError {
    /// It does not end in `.slice`.
    #[error("{0:?} is not a slice name")]
    NotASlice(String),
    /// Its dashes do not separate non-empty parts.
    #[error("{0:?} is not a valid slice name")]
    Malformed(String),
}

/// systemd's slice nesting: `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> Result<String, SliceError> {
    let stem = slice.strip_suffix(".slice").ok_or_else(|| SliceError::NotASlice(slice.to_string()))?;
    if stem == "-" {
        // The root slice.
        return Ok(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(SliceError::Malformed(slice.to_string()));
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
        let cgroup = Self::open(&relative)?;
        if let Some(unified) = cgroup.hybrid_unified() {
            let dir = unified.join(&cgroup.relative);
            std::fs::create_dir_all(&dir).map_err(|e| cg_err(format!("creating {}", dir.display()), e))?;
        }
        Ok(cgroup)
    }

    /// On a hybrid host (v1 controllers, and a cgroup2 hierarchy without controllers beside
    /// them, as systemd mounts at `/sys/fs/cgroup/unified`), the v2 hierarchy's mount point.
    /// systemd tracks its units' processes there: a container's processes must leave paddockd's
    /// cgroup in it too, as runc's do. cgroups-rs, in v1 mode, knows only the v1 hierarchies.
    fn hybrid_unified(&self) -> Option<PathBuf> {
        if self.manager.v2() {
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let point = fields.get(4)?;
            (right.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| PathBuf::from(point))
        })
    }

    /// Opens the cgroup at `relative`, which may or may not exist.
    pub fn open(relative: &str) -> Result<Self, ApiError> {
        let relative = relative.trim_start_matches('/').to_string();
        let manager = FsManager::new(&relative).map_err(|e| cg_err(&relative, e))?;
        Ok(Self { relative, manager })
    }

    /// Whether the host's controllers are in the v2 tree.
    pub fn is_v2(&self) -> bool {
        self.manager.v2()
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
        let mut places: Vec<PathBuf> = mounts.into_iter().map(|m| Path::new(m).join(&self.relative)).collect();
        places.extend(self.hybrid_unified().map(|u| u.join(&self.relative)));
        places
    }

    /// A descriptor of each directory, for the sandbox.
    pub fn open_dirs(&self) -> Result<Vec<OwnedFd>, ApiError> {
        open_paths(self.dirs())
    }

    /// A descriptor of each directory with runc's `exec --cgroup` applied: `PATH` (every
    /// hierarchy) or `CONTROLLER[,CONTROLLER]:PATH` (the hierarchies of those controllers)
    /// names an existing sub-cgroup of this one; the other hierarchies keep this one.
    pub fn open_sub_dirs(&self, specs: &[String]) -> Result<Vec<OwnedFd>, ApiError> {
        let dirs = self.dirs();
        let mut chosen = dirs.clone();
        for spec in specs {
            let (controllers, sub) = match spec.split_once(':') {
                Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
                None => (None, spec.as_str()),
            };
            let bad = |why: String| ApiError::invalid_argument(format!("--cgroup {spec:?}: {why}"));
            let sub = Path::new(sub.trim_start_matches('/'));
            if sub.as_os_str().is_empty() || sub.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(bad("not a path beneath the container's cgroup".into()));
            }
            let mut matched = vec![false; controllers.as_ref().map_or(0, Vec::len)];
            for (i, dir) in dirs.iter().enumerate() {
                // A v1 hierarchy is named by its controllers (cpu,cpuacct); the v2 tree by none.
                let here: Vec<String> = dir
                    .strip_prefix("/sys/fs/cgroup")
                    .ok()
                    .and_then(|d| d.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().split(',').map(String::from).collect())
                    .unwrap_or_default();
                let applies = match &controllers {
                    None => true,
                    Some(list) => {
                        let mut any = false;
                        for (j, c) in list.iter().enumerate() {
                            if here.iter().any(|h| h == c) || (self.is_v2() && dirs.len() == 1) {
                                matched[j] = true;
                                any = true;
                            }
                        }
                        any
                    }
                };
                if applies {
                    let target = dir.join(sub);
                    if !target.is_dir() {
                        return Err(bad(format!("{} does not exist", target.display())));
                    }
                    chosen[i] = target;
                }
            }
            if let Some(list) = &controllers {
                if let Some(j) = matched.iter().position(|m| !m) {
                    return Err(bad(format!("controller {:?} is not mounted here", list[j])));
                }
            }
        }
        open_paths(chosen)
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

    /// Applies the OCI `linux.resources` as runc does ([`crate::resources`]): every file a
    /// given, non-zero field stands for is written; a zero or absent field leaves its file as it
    /// is, so a partial object (`update`) changes only what it names. Device rules are set by
    /// hand (see [`Cgroup::set_devices`]).
    pub fn apply(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ApiError> {
        let version = if self.manager.v2() { Version::V2 } else { Version::V1 };
        let plan = crate::resources::plan(resources, version)
            .map_err(|e| ApiError::invalid_argument(format!("cgroup {}: {e}", self.relative)))?;
        if !plan.ignored.is_empty() {
            tracing::warn!(cgroup = %self.relative, ignored = ?plan.ignored, "resources runc ignores on this cgroup version are ignored");
        }
        crate::resources::execute(&plan.steps, &Cgroupfs, &|controller| self.controller_dir(controller))
            .map_err(|e| cg_err(format!("setting the resources of {}", self.relative), e))?;
        if let Some(rules) = resources.devices() {
            self.set_devices(rules)?;
        }
        Ok(())
    }

    /// The cgroup's directory for a controller's files: its v1 hierarchy's, or the v2 one.
    fn controller_dir(&self, controller: Controller) -> Result<PathBuf, ResourceError> {
        if self.manager.v2() {
            return Ok(Path::new(cgroups_rs::fs::hierarchies::UNIFIED_MOUNTPOINT).join(&self.relative));
        }
        match self.manager.mounts().get(controller.name()) {
            Some(mount) => Ok(Path::new(mount).join(&self.relative)),
            None => Err(ResourceError::NoController { controller: controller.name() }),
        }
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
        // The kernel never asks the controller about FIFOs, and refuses rules of type `p`.
        for rule in rules.iter().filter(|r| r.typ() != Some(oci_spec::runtime::LinuxDeviceType::P)) {
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

/// Removes a cgroup that nothing should be in any more. What still is gets a moment to leave
/// by itself (a pid file's monitor that was just told of the exit, a helper exiting), then
/// SIGKILL; the removal is retried until it is gone (at most two seconds).
fn remove_leaf(dir: &Path) -> std::io::Result<()> {
    let start = std::time::Instant::now();
    let (grace, deadline) = (std::time::Duration::from_millis(500), std::time::Duration::from_secs(2));
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < deadline => {
                if start.elapsed() >= grace {
                    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
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

/// An `O_PATH` descriptor of each cgroup directory, for the sandbox (which places processes
/// through them and never holds them in a container's process).
fn open_paths(dirs: Vec<PathBuf>) -> Result<Vec<OwnedFd>, ApiError> {
    dirs.into_iter()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Controller;
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

    /// A cgroup made by a test at the top of every hierarchy; removed (rmdir only) when dropped.
    struct TestCgroup {
        cgroup: Cgroup,
        places: Vec<PathBuf>,
    }

    impl TestCgroup {
        fn create() -> Self {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let name = format!("paddock-test-{}-{nanos}", std::process::id());
            let cgroup = Cgroup::create(&name).expect("creating a test cgroup");
            let places = cgroup.places();
            Self { cgroup, places }
        }

        fn apply(&self, json: serde_json::Value) -> Result<(), ApiError> {
            self.cgroup.apply(&serde_json::from_value(json).expect("valid linux.resources"))
        }

        fn read(&self, controller: Controller, file: &str) -> String {
            let dir = self.cgroup.controller_dir(controller).expect("a mounted controller");
            std::fs::read_to_string(dir.join(file)).map(|s| s.trim().to_string()).unwrap_or_else(|e| format!("<{e}>"))
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            for dir in &self.places {
                if let Err(e) = std::fs::remove_dir(dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
                    }
                }
            }
        }
    }

    /// Docker's `run` and `update` on a real cgroup v1 (this needs root and a v1 or hybrid host):
    /// the zeros they send leave the files alone; what is given is written; an update of one
    /// field leaves the others.
    #[test]
    fn dockers_zeros_leave_a_real_v1_cgroup_untouched() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "this test needs root");
            eprintln!("SKIPPED dockers_zeros_leave_a_real_v1_cgroup_untouched: it needs root");
            return;
        }
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            eprintln!("SKIPPED dockers_zeros_leave_a_real_v1_cgroup_untouched: this host has cgroup v2, not v1");
            return;
        }
        let cg = TestCgroup::create();
        let (cpu, memory, pids, cpuset) = (Controller::Cpu, Controller::Memory, Controller::Pids, Controller::Cpuset);
        let untouched = [
            (cpu, "cpu.shares"),
            (cpu, "cpu.cfs_quota_us"),
            (cpu, "cpu.cfs_period_us"),
            (cpu, "cpu.rt_runtime_us"),
            (cpuset, "cpuset.cpus"),
            (memory, "memory.soft_limit_in_bytes"),
            (memory, "memory.swappiness"),
            (memory, "memory.oom_control"),
            (memory, "memory.kmem.limit_in_bytes"),
            (pids, "pids.max"),
        ];
        let before: Vec<String> = untouched.iter().map(|&(c, f)| cg.read(c, f)).collect();

        // `docker run -m 64m --memory-swap 128m`, with the zeros Docker sends along.
        cg.apply(serde_json::json!({
            "blockIO": {"weight": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""},
            "memory": {"limit": 67108864, "swap": 134217728, "reservation": 0, "kernel": 0, "kernelTCP": 0, "disableOOMKiller": false},
            "pids": {"limit": 0}
        }))
        .expect("docker run's resources");
        let after: Vec<String> = untouched.iter().map(|&(c, f)| cg.read(c, f)).collect();
        assert_eq!(after, before, "{untouched:?}");
        assert_eq!(cg.read(memory, "memory.limit_in_bytes"), "67108864");
        let swap_accounted = !cg.read(memory, "memory.memsw.limit_in_bytes").starts_with('<');
        if swap_accounted {
            assert_eq!(cg.read(memory, "memory.memsw.limit_in_bytes"), "134217728");
        }

        // `docker update --memory 128m --memory-swap 256m`: swap is raised first.
        cg.apply(serde_json::json!({
            "blockIO": {"weight": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
            "memory": {"limit": 134217728, "swap": if swap_accounted { 268435456 } else { 0 }},
            "pids": {"limit": 0}
        }))
        .expect("docker update's resources");
        assert_eq!(cg.read(memory, "memory.limit_in_bytes"), "134217728");
        if swap_accounted {
            assert_eq!(cg.read(memory, "memory.memsw.limit_in_bytes"), "268435456");
        }
        let after: Vec<String> = untouched.iter().map(|&(c, f)| cg.read(c, f)).collect();
        assert_eq!(after, before, "{untouched:?}");

        // What is given is written; an update of the quota alone leaves period and shares.
        cg.apply(serde_json::json!({"cpu": {"shares": 512, "quota": 50000, "period": 200000}, "pids": {"limit": 10}}))
            .expect("cpu and pids limits");
        cg.apply(serde_json::json!({"cpu": {"quota": 20000}})).expect("a quota alone");
        assert_eq!(cg.read(cpu, "cpu.cfs_quota_us"), "20000");
        assert_eq!(cg.read(cpu, "cpu.cfs_period_us"), "200000");
        assert_eq!(cg.read(cpu, "cpu.shares"), "512");
        assert_eq!(cg.read(pids, "pids.max"), "10");

        // -1 is "unlimited": quota, pids, and memory (with swap, where it is accounted).
        cg.apply(serde_json::json!({"cpu": {"quota": -1}, "pids": {"limit": -1}, "memory": {"limit": -1}}))
            .expect("unlimited");
        assert_eq!(cg.read(cpu, "cpu.cfs_quota_us"), "-1");
        assert_eq!(cg.read(pids, "pids.max"), "max");
        let unlimited = cg.read(memory, "memory.limit_in_bytes");
        assert!(unlimited.parse::<u64>().is_ok_and(|n| n > 1 << 60), "{unlimited}");
        if swap_accounted {
            assert_eq!(cg.read(memory, "memory.memsw.limit_in_bytes"), unlimited);
        }

        // A non-zero blkio weight is written: where the kernel has neither blkio.weight nor
        // blkio.bfq.weight (no CFQ, no BFQ), that fails, as it does with runc.
        let weight = cg.apply(serde_json::json!({"blockIO": {"weight": 500}}));
        let blkio = cg.cgroup.controller_dir(Controller::Blkio).expect("the blkio controller");
        if blkio.join("blkio.weight").exists() || blkio.join("blkio.bfq.weight").exists() {
            weight.expect("a blkio weight");
        } else {
            let err = weight.expect_err("no file for a blkio weight");
            assert!(err.to_string().contains("blkio.bfq.weight"), "{err}");
        }
    }
}
