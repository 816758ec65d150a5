//! Containers' cgroups: every mounted v1 hierarchy (and a hybrid host's cgroup2 tree), or the
//! v2 tree. The hierarchies are found once per process ([`Layout`]).
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

use std::io::{self, Read, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

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

/// Where the hierarchies are mounted on a host whose controllers are all in the v2 tree.
const UNIFIED_ROOT: &str = "/sys/fs/cgroup";

/// `statfs`'s `f_type` of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The v1 hierarchies paddock makes its cgroups in: those of the controllers cgroups-rs (which
/// paddock used before) knew, and systemd's named one. A hierarchy of other controllers only
/// (`misc`), or another named one, is left alone, as it was.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "memory",
    "pids",
    "cpuset",
    "cpuacct",
    "cpu",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "rdma",
    "name=systemd",
];

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    /// Its mount point.
    mount: PathBuf,
    /// v1: the mount's super options, which name its controllers (`cpu`, `name=systemd`) and
    /// flags such as `noprefix`. v2: the controllers of the root (`cgroup.controllers`).
    options: Vec<String>,
    /// A cgroup2 mount (the v2 tree, or a hybrid host's controller-less one).
    cgroup2: bool,
    /// This process itself is in paddock's base directory here (an autostarted paddockd is in
    /// `paddock/paddockd`, see the supervisor's `own_cgroup`): the base cannot be removed while
    /// it runs, so a removal does not try (it would fail EBUSY, once per hierarchy and delete).
    holds_base: bool,
}

impl Hierarchy {
    fn has(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// How the host's cgroup hierarchies are mounted: on cgroup v1 (and the hybrid layout) one
/// hierarchy per controller group, plus the controller-less cgroup2 mount a hybrid host has; on
/// v2 the one tree. Read once per process and kept ([`Layout::current`]): every container
/// operation used to parse `/proc/self/mountinfo` again (17 times per `run`, cgroups-rs's
/// `FsManager::new` twice per cgroup handle). It is read again ([`Layout::refresh`]) when a
/// lookup fails in a way a changed mount table explains: a hierarchy's mount point is gone, or
/// a controller is asked for that the layout does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    v2: bool,
    /// v1: sorted by mount point, the hybrid cgroup2 mount last; v2: the one tree.
    hierarchies: Vec<Hierarchy>,
}

/// The layout every cgroup handle of this process starts from.
static LAYOUT: RwLock<Option<Arc<Layout>>> = RwLock::new(None);

/// Set when a removal took paddock's base directory away (the last container of the host
/// went), so that the next creation makes it first instead of failing ENOENT below it.
static BASE_MAYBE_GONE: AtomicBool = AtomicBool::new(false);

/// Why a creation failed.
enum MakeError {
    /// A hierarchy's mount point is gone: the layout is stale.
    Stale(PathBuf),
    /// The kernel refused.
    Io(ApiError),
}

impl Layout {
    /// The layout, read on first use.
    pub fn current() -> Result<Arc<Layout>, ApiError> {
        if let Some(layout) = LAYOUT.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(layout.clone());
        }
        Self::refresh()
    }

    /// Reads the layout again and keeps it for every later lookup.
    pub fn refresh() -> Result<Arc<Layout>, ApiError> {
        let fresh = Arc::new(Self::read()?);
        *LAYOUT.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
        Ok(fresh)
    }

    /// Whether the host's controllers are in the v2 tree.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn read() -> Result<Self, ApiError> {
        // As cgroups-rs decided: the controllers are in the v2 tree when /sys/fs/cgroup is a
        // cgroup2 mount. Then nothing else needs reading.
        // `f_type` is an i64 here, a u32 or i32 on other architectures.
        #[allow(clippy::useless_conversion)]
        let v2 = rustix::fs::statfs(UNIFIED_ROOT).is_ok_and(|s| i64::from(s.f_type) == CGROUP2_SUPER_MAGIC);
        let mut layout = if v2 {
            let root = Path::new(UNIFIED_ROOT);
            let controllers = read_file(&root.join("cgroup.controllers")).unwrap_or_default();
            Self::unified(root, &controllers)
        } else {
            let mountinfo =
                read_file(Path::new("/proc/self/mountinfo")).map_err(|e| cg_err("/proc/self/mountinfo", e))?;
            Self::from_mountinfo(&mountinfo)
        };
        // Unreadable: taken as holding nothing, and the base's removal is tried as before.
        layout.mark_held_bases(&read_file(Path::new("/proc/self/cgroup")).unwrap_or_default());
        Ok(layout)
    }

    /// Marks the hierarchies in which this process's own cgroup (`/proc/self/cgroup`,
    /// `ID:CONTROLLERS:PATH` lines; `0::PATH` for the cgroup2 tree) is inside paddock's base.
    /// The daemon moves itself there, if it does, before anything reads the layout.
    fn mark_held_bases(&mut self, proc_self_cgroup: &str) {
        for line in proc_self_cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let in_base = path.strip_prefix('/').and_then(|p| p.strip_prefix(BASE)).is_some_and(|rest| {
                // `paddock` itself or below it, not `paddock-other`.
                rest.is_empty() || rest.starts_with('/')
            });
            if !in_base {
                continue;
            }
            for h in &mut self.hierarchies {
                let here = if controllers.is_empty() {
                    h.cgroup2
                } else {
                    !h.cgroup2 && controllers.split(',').all(|c| h.has(c))
                };
                if here {
                    h.holds_base = true;
                }
            }
        }
    }

    /// A pure v2 layout rooted at `root`, whose root cgroup has `controllers`.
    fn unified(root: &Path, controllers: &str) -> Self {
        let options = controllers.split_whitespace().map(String::from).collect();
        let tree = Hierarchy { mount: root.to_path_buf(), options, cgroup2: true, holds_base: false };
        Self { v2: true, hierarchies: vec![tree] }
    }

    /// The v1 (or hybrid) layout `mountinfo` describes: each hierarchy once (its first mount
    /// of the hierarchy's root, else its first mount), and the first cgroup2 mount of a
    /// tree's root.
    fn from_mountinfo(mountinfo: &str) -> Self {
        // (device, mount root is "/", hierarchy)
        let mut v1: Vec<(String, bool, Hierarchy)> = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(dev), Some(root), Some(point), Some(fstype)) =
                (fields.get(2), fields.get(3), fields.get(4), right.first())
            else {
                continue;
            };
            match *fstype {
                "cgroup" => {
                    let options: Vec<String> =
                        right.get(2).map(|o| o.split(',').map(String::from).collect()).unwrap_or_default();
                    if !options.iter().any(|o| V1_CONTROLLERS.contains(&o.as_str())) {
                        continue;
                    }
                    let at_root = *root == "/";
                    let hierarchy =
                        Hierarchy { mount: PathBuf::from(point), options, cgroup2: false, holds_base: false };
                    match v1.iter_mut().find(|(d, _, _)| d == dev) {
                        Some(seen) if !seen.1 && at_root => *seen = (dev.to_string(), at_root, hierarchy),
                        Some(_) => {}
                        None => v1.push((dev.to_string(), at_root, hierarchy)),
                    }
                }
                // systemd tracks its units' processes in a hybrid host's cgroup2 tree: a
                // container's processes must leave paddockd's cgroup there too, as runc's do.
                "cgroup2" if *root == "/" && unified.is_none() => {
                    unified = Some(Hierarchy {
                        mount: PathBuf::from(point),
                        options: Vec::new(),
                        cgroup2: true,
                        holds_base: false,
                    });
                }
                _ => {}
            }
        }
        let mut hierarchies: Vec<Hierarchy> = v1.into_iter().map(|(_, _, h)| h).collect();
        hierarchies.sort_by(|a, b| a.mount.cmp(&b.mount));
        hierarchies.extend(unified);
        Self { v2: false, hierarchies }
    }

    /// The hierarchy whose files a controller's are (v2: the tree).
    fn controller(&self, name: &str) -> Option<&Hierarchy> {
        if self.v2 {
            return self.hierarchies.first();
        }
        self.hierarchies.iter().find(|h| !h.cgroup2 && h.has(name))
    }

    /// Makes `parents_first` (in this order) and then `leaves` in every hierarchy. A parent is
    /// made before its children, so that no mkdir fails ENOENT first; what exists already is
    /// taken as it is (a cgroup is created or opened).
    fn make(&self, parents_first: &[&str], leaves: &[&str]) -> Result<(), MakeError> {
        for h in &self.hierarchies {
            let cpuset = !h.cgroup2 && h.has("cpuset");
            let mut created = Vec::new();
            let mut existing_leaves = Vec::new();
            for parent in parents_first {
                ensure(&h.mount, &h.mount.join(parent), &mut created)?;
            }
            // The parents' cpusets are settled before their children are made, so that the
            // children get theirs from the kernel.
            let mut cloning = Vec::new();
            if cpuset {
                fill_cpusets(h, &created, &mut cloning);
            }
            let parents_made = created.len();
            for leaf in leaves {
                let dir = h.mount.join(leaf);
                match std::fs::create_dir(&dir) {
                    Ok(()) => created.push(dir),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => existing_leaves.push(dir),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Its parents are missing (a spec's slice not made yet): they first.
                        let parent = dir.parent().filter(|p| p.starts_with(&h.mount) && *p != h.mount);
                        let Some(parent) = parent else { return Err(MakeError::Stale(h.mount.clone())) };
                        ensure(&h.mount, parent, &mut created)?;
                        match std::fs::create_dir(&dir) {
                            Ok(()) => created.push(dir),
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => existing_leaves.push(dir),
                            Err(e) => return Err(MakeError::Io(cg_err(format!("creating {}", dir.display()), e))),
                        }
                    }
                    Err(e) => return Err(MakeError::Io(cg_err(format!("creating {}", dir.display()), e))),
                }
            }
            if h.cgroup2 && self.v2 {
                enable_controllers(h, leaves, &created);
            }
            if cpuset {
                fill_cpusets(h, created.get(parents_made..).unwrap_or_default(), &mut cloning);
                let files = cpuset_files(h);
                for leaf in &existing_leaves {
                    for file in files {
                        copy_from_ancestor(&h.mount, leaf, file, false);
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Layout::make`] with the current layout, and once more with a fresh one if a
    /// hierarchy's mount point was gone.
    fn make_current(parents_first: &[&str], leaves: &[&str]) -> Result<Arc<Layout>, ApiError> {
        let layout = Self::current()?;
        match layout.make(parents_first, leaves) {
            Ok(()) => Ok(layout),
            Err(MakeError::Io(e)) => Err(e),
            Err(MakeError::Stale(mount)) => {
                tracing::info!(mount = %mount.display(), "a cgroup hierarchy is gone: reading the mount table again");
                let layout = Self::refresh()?;
                match layout.make(parents_first, leaves) {
                    Ok(()) => Ok(layout),
                    Err(MakeError::Io(e)) => Err(e),
                    Err(MakeError::Stale(mount)) => {
                        Err(cg_err(mount.display(), "no cgroup hierarchy is mounted there"))
                    }
                }
            }
        }
    }
}

/// Makes `dir` (below `mount`), and the parents it lacks, top-down: each mkdir is tried where
/// the directory is expected to be missing, and only an ENOENT sends it one level up.
fn ensure(mount: &Path, dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), MakeError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            created.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir.parent().filter(|p| p.starts_with(mount) && *p != mount);
            let Some(parent) = parent else { return Err(MakeError::Stale(mount.to_path_buf())) };
            ensure(mount, parent, created)?;
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    created.push(dir.to_path_buf());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(MakeError::Io(cg_err(format!("creating {}", dir.display()), e))),
            }
        }
        Err(e) => Err(MakeError::Io(cg_err(format!("creating {}", dir.display()), e))),
    }
}

/// v2: makes the root's controllers available down to the leaves' parents, as cgroups-rs did
/// (which wrote each controller to every parent's `cgroup.subtree_control`, every time): a
/// directory just made gets them all in one write; an existing one only those it lacks.
fn enable_controllers(h: &Hierarchy, leaves: &[&str], created: &[PathBuf]) {
    if h.options.is_empty() {
        return;
    }
    let mut chain: Vec<PathBuf> = Vec::new();
    for leaf in leaves {
        for dir in h.mount.join(leaf).ancestors().skip(1) {
            if !dir.starts_with(&h.mount) {
                break;
            }
            if !chain.iter().any(|d| d == dir) {
                chain.push(dir.to_path_buf());
            }
        }
    }
    chain.sort_by_key(|d| d.components().count());
    for dir in chain {
        let file = dir.join("cgroup.subtree_control");
        let missing: Vec<&String> = if created.contains(&dir) {
            h.options.iter().collect()
        } else {
            let enabled = read_file(&file).unwrap_or_default();
            h.options.iter().filter(|c| !enabled.split_whitespace().any(|e| e == c.as_str())).collect()
        };
        if missing.is_empty() {
            continue;
        }
        let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
        if write_file(&file, all.join(" ").as_bytes()).is_err() {
            // One the kernel refuses fails the whole line: then each on its own, and what
            // cannot be enabled is left, as before.
            for c in &all {
                let _ = write_file(&file, c.as_bytes());
            }
        }
    }
}

/// v1 cpuset: a new cpuset cgroup has empty `cpuset.cpus` and `cpuset.mems` (and no process
/// can join it) unless its parent has `cgroup.clone_children` set, in which case the kernel
/// copies them at mkdir and the child inherits the flag. paddock sets the flag on its base
/// directory when it makes it, so its sandboxes' and containers' cgroups need nothing; a
/// directory made where the flag was off (another tree's, a base made by an older paddockd)
/// gets the values copied from its nearest non-empty ancestor, as cgroups-rs did, and, in
/// paddock's tree, the flag, for the children made after it.
///
/// `created`: directories just made, top-down. `cloning`: directories known to have had the
/// flag when their children among `created` were made; grows with what this call confirms or
/// sets (the latter only counts for children made after this call).
fn fill_cpusets(h: &Hierarchy, created: &[PathBuf], cloning: &mut Vec<PathBuf>) {
    let files = cpuset_files(h);
    let base = h.mount.join(BASE);
    let set_clone_children = |dir: &Path| {
        if let Err(e) = write_file(&dir.join("cgroup.clone_children"), b"1") {
            tracing::warn!(cgroup = %dir.display(), "cannot set cgroup.clone_children: {e}");
        }
    };
    let mut flagged_now = Vec::new();
    for dir in created {
        // The flag is inherited at mkdir, and the values copied with it.
        let inherited = dir.parent().is_some_and(|p| cloning.iter().any(|c| c == p))
            || (dir != &base && read_file(&dir.join("cgroup.clone_children")).is_ok_and(|v| v.trim() == "1"));
        if inherited {
            cloning.push(dir.clone());
            continue;
        }
        for file in files {
            copy_from_ancestor(&h.mount, dir, file, true);
        }
        // paddock's own tree passes the values on from here (the base's parent is not ours).
        if dir.starts_with(&base) {
            set_clone_children(dir);
            if dir.parent() == Some(base.as_path()) {
                set_clone_children(&base);
            }
            flagged_now.push(dir.clone());
        }
    }
    cloning.extend(flagged_now);
}

/// The cpuset files' names (without the prefix on a hierarchy mounted `noprefix`).
fn cpuset_files(h: &Hierarchy) -> [&'static str; 2] {
    if h.has("noprefix") {
        ["cpus", "mems"]
    } else {
        ["cpuset.cpus", "cpuset.mems"]
    }
}

/// Writes the nearest non-empty ancestor's value of `file` into `dir` and the empty
/// directories between (top-down); `dir` is known to be empty when `known_empty`.
fn copy_from_ancestor(mount: &Path, dir: &Path, file: &str, known_empty: bool) {
    let mut empty: Vec<&Path> = Vec::new();
    let mut current = Some(dir);
    if known_empty {
        empty.push(dir);
        current = dir.parent();
    }
    let value = loop {
        let Some(here) = current.filter(|c| c.starts_with(mount)) else { return };
        match read_file(&here.join(file)) {
            Ok(v) if !v.trim().is_empty() => break v.trim().to_string(),
            Ok(_) => empty.push(here),
            Err(e) => {
                tracing::warn!(cgroup = %here.display(), "cannot read {file}: {e}");
                return;
            }
        }
        current = here.parent();
    };
    for d in empty.iter().rev() {
        if let Err(e) = write_file(&d.join(file), value.as_bytes()) {
            tracing::warn!(cgroup = %d.display(), "cannot copy {file} down: {e}");
        }
    }
}

/// A small kernel file's content, read without the `statx` and `lseek` that
/// `std::fs::read_to_string` spends on a size hint.
fn read_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes a kernel file that exists (no `O_CREAT`, no `O_TRUNC`), in one `write(2)`.
fn write_file(path: &Path, value: &[u8]) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(value)
}

/// One cgroup, in every hierarchy.
///
/// paddock does the few cgroup operations it needs itself, from the [`Layout`] read once:
/// mkdir, `cgroup.procs`, the freezer, and the resource files ([`crate::resources`], which
/// already wrote them itself because cgroups-rs's translation differs from runc's). cgroups-rs
/// could do each of these only through an `FsManager`, whose construction parses
/// `/proc/self/cgroup` and twice `/proc/self/mountinfo`: that was most of the CPU the cgroup
/// bookkeeping took, and most of the time a delete spent before its first kill.
#[derive(Clone)]
pub struct Cgroup {
    relative: String,
    layout: Arc<Layout>,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("relative", &self.relative).finish()
    }
}

impl Cgroup {
    /// Creates (or opens) the cgroup at `relative` (relative to every hierarchy's root). Its
    /// parents are expected to exist (a subcontainer's sandbox, a spec's parent slice): the
    /// leaf is made first, and only what is missing above it after.
    pub fn create(relative: &str) -> Result<Self, ApiError> {
        let relative = relative.trim_start_matches('/').to_string();
        let layout = Layout::make_current(&[], &[relative.as_str()])?;
        Ok(Self { relative, layout })
    }

    /// Creates the cgroups of a new sandbox's root container: the sandbox's directory first
    /// (new by construction), then its own processes' cgroup ([`sandbox_path`]) and the
    /// container's (`container`, in the sandbox's directory unless the spec names a path).
    /// Returns (the container's, the sandbox's).
    pub fn create_for_sandbox(sandbox_id: &str, container: &str) -> Result<(Self, Self), ApiError> {
        let container = container.trim_start_matches('/').to_string();
        let sandbox_dir = format!("{BASE}/{}", wire::ids::dir_name(sandbox_id));
        let sandbox = sandbox_path(sandbox_id);
        let mut parents = Vec::with_capacity(2);
        let base_maybe_gone = BASE_MAYBE_GONE.swap(false, Ordering::Relaxed);
        if base_maybe_gone {
            parents.push(BASE);
        }
        parents.push(sandbox_dir.as_str());
        let layout = Layout::make_current(&parents, &[sandbox.as_str(), container.as_str()])?;
        Ok((Self { relative: container, layout: layout.clone() }, Self { relative: sandbox, layout }))
    }

    /// Opens the cgroup at `relative`, which may or may not exist (no system call: the
    /// hierarchies are known).
    pub fn open(relative: &str) -> Result<Self, ApiError> {
        let relative = relative.trim_start_matches('/').to_string();
        Ok(Self { relative, layout: Layout::current()? })
    }

    /// Whether the host's controllers are in the v2 tree.
    pub fn is_v2(&self) -> bool {
        self.layout.v2
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
        self.layout.hierarchies.iter().map(|h| h.mount.join(&self.relative)).collect()
    }

    /// A descriptor of each directory, for the sandbox.
    pub fn open_dirs(&self) -> Result<Vec<OwnedFd>, ApiError> {
        let mut fds = Vec::with_capacity(self.layout.hierarchies.len());
        for dir in self.places() {
            match open_path(&dir) {
                Ok(fd) => fds.push(fd),
                // Not in this hierarchy (as `dirs` would have left it out).
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(cg_err(dir.display(), e)),
            }
        }
        Ok(fds)
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
        self.add_all(&[pid])
    }

    /// Moves processes (host pids) into the cgroup, in every hierarchy: one `cgroup.procs`
    /// descriptor per hierarchy, one write per process (the kernel takes one pid a write).
    pub fn add_all(&self, pids: &[i32]) -> Result<(), ApiError> {
        self.move_in(pids, false).map(drop)
    }

    /// Moves the processes `pids` (host pids) that still exist into the cgroup, in every
    /// hierarchy, and returns those moved: a process already gone at its first move is left
    /// out; one that exits midway is an error (it would be in some hierarchies only).
    pub fn add_running(&self, pids: &[i32]) -> Result<Vec<i32>, ApiError> {
        self.move_in(pids, true)
    }

    /// [`Cgroup::add_all`], or with `skip_gone` [`Cgroup::add_running`].
    fn move_in(&self, pids: &[i32], skip_gone: bool) -> Result<Vec<i32>, ApiError> {
        let mut moving = pids.to_vec();
        let mut first = true;
        for dir in self.places() {
            let file = dir.join("cgroup.procs");
            let mut procs = match std::fs::OpenOptions::new().write(true).open(&file) {
                Ok(f) => f,
                // Not in this hierarchy (as `dirs` would have left it out).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(cg_err(format!("opening {}", file.display()), e)),
            };
            let mut kept = Vec::with_capacity(moving.len());
            for pid in moving {
                match procs.write_all(pid.to_string().as_bytes()) {
                    Ok(()) => kept.push(pid),
                    Err(e) if skip_gone && first && e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(cg_err(format!("adding {pid} to {}", dir.display()), e)),
                }
            }
            moving = kept;
            first = false;
        }
        Ok(moving)
    }

    /// The host pids of its processes.
    pub fn procs(&self) -> Vec<i32> {
        let text = self.places().iter().find_map(|d| read_file(&d.join("cgroup.procs")).ok()).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Its directory in the memory controller's hierarchy (v2: its directory), if it exists
    /// (none or one): all the OOM watch ([`crate::oom::watch`]) needs to look at.
    pub fn memory_dirs(&self) -> Vec<PathBuf> {
        let dir = self.layout.controller("memory").map(|h| h.mount.join(&self.relative));
        dir.into_iter().filter(|d| d.is_dir()).collect()
    }

    /// How many processes of it the kernel's OOM killer has killed: `oom_kill` in the v1
    /// memory controller's `memory.oom_control`, or in v2's `memory.events`.
    pub fn oom_kills(&self) -> u64 {
        let Some(h) = self.layout.controller("memory") else { return 0 };
        let file = if self.layout.v2 { "memory.events" } else { "memory.oom_control" };
        read_file(&h.mount.join(&self.relative).join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()))
            .max()
            .unwrap_or(0)
    }

    /// The directory whose freezer controls the cgroup (v1's `freezer` hierarchy, or the v2
    /// cgroup), if there is one.
    pub fn freezer_dir(&self) -> Option<PathBuf> {
        let v1 = self.layout.controller("freezer").filter(|_| !self.layout.v2);
        let v1 = v1.map(|h| h.mount.join(&self.relative)).filter(|d| d.join("freezer.state").exists());
        v1.or_else(|| {
            let v2 = self.layout.hierarchies.iter().filter(|h| h.cgroup2);
            v2.map(|h| h.mount.join(&self.relative)).find(|d| d.join("cgroup.freeze").exists())
        })
    }

    /// Freezes or thaws every process in it: v1's `freezer.state`, or v2's `cgroup.freeze`
    /// (as cgroups-rs did; the state is not waited for).
    pub fn set_frozen(&self, frozen: bool) -> Result<(), ApiError> {
        let (file, value) = match (self.layout.v2, frozen) {
            (true, true) => ("cgroup.freeze", "1"),
            (true, false) => ("cgroup.freeze", "0"),
            (false, true) => ("freezer.state", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED"),
        };
        let dir =
            self.controller_dir_named("freezer").map_err(|e| cg_err(format!("freezer of {}", self.relative), e))?;
        write_file(&dir.join(file), value.as_bytes()).map_err(|e| {
            cg_err(format!("freezer of {}: writing {value} to {}", self.relative, dir.join(file).display()), e)
        })
    }

    /// Applies the OCI `linux.resources` as runc does ([`crate::resources`]): every file a
    /// given, non-zero field stands for is written; a zero or absent field leaves its file as it
    /// is, so a partial object (`update`) changes only what it names. Device rules are set by
    /// hand (see [`Cgroup::set_devices`]).
    pub fn apply(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ApiError> {
        let version = if self.layout.v2 { Version::V2 } else { Version::V1 };
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
        self.controller_dir_named(controller.name())
    }

    /// The cgroup's directory in the hierarchy of controller `name`. A controller the layout
    /// does not have may have been mounted since it was read: the layout is read again then.
    fn controller_dir_named(&self, name: &'static str) -> Result<PathBuf, ResourceError> {
        if let Some(h) = self.layout.controller(name) {
            return Ok(h.mount.join(&self.relative));
        }
        let fresh = Layout::refresh().map_err(|_| ResourceError::NoController { controller: name })?;
        match fresh.controller(name) {
            Some(h) => Ok(h.mount.join(&self.relative)),
            None => Err(ResourceError::NoController { controller: name }),
        }
    }

    /// Sets device rules, in order (runc's default devices are added by the caller): written
    /// to the v1 devices controller, or, on cgroup v2, compiled into an eBPF device filter
    /// attached to the container's cgroup ([`crate::device_filter`]).
    pub fn set_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<(), ApiError> {
        if self.layout.v2 {
            let dir = self.places().into_iter().next().unwrap_or_else(|| Path::new(UNIFIED_ROOT).join(&self.relative));
            let fd = std::fs::File::open(&dir).map_err(|e| cg_err(format!("opening {}", dir.display()), e))?;
            return crate::device_filter::apply(std::os::fd::AsFd::as_fd(&fd), rules)
                .map_err(|e| cg_err(format!("device rules of {}", dir.display()), e));
        }
        let dir = self.layout.controller("devices").map(|h| h.mount.join(&self.relative));
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
            write_file(&dir.join(file), line.as_bytes())
                .map_err(|e| cg_err(format!("writing {line:?} to {}", dir.join(file).display()), e))?;
        }
        Ok(())
    }

    /// Removes the cgroup, and then its parents up to `paddock/` as far as they are empty.
    /// Every hierarchy is tried; the first failure is returned.
    pub fn remove(self) -> Result<(), ApiError> {
        Self::remove_all(vec![self]).into_iter().next().map_or(Ok(()), |(_, e)| Err(e))
    }

    /// Removes cgroups (a container's and its sandbox's), and then their parents up to
    /// `paddock/` as far as they are empty: every leaf first, then each parent once, deepest
    /// first, so that no parent is tried while a sibling leaf is still there. Every hierarchy is
    /// tried; returns each cgroup's first failure, with its relative path.
    ///
    /// The cgroups are being removed because what they held is gone: a process still in one
    /// (exiting, as a sandbox's helpers do a moment after the sandbox, or left over) is killed
    /// and the removal waits, briefly, for it to be gone.
    pub fn remove_all(cgroups: Vec<Cgroup>) -> Vec<(String, ApiError)> {
        let mut failures: Vec<(String, ApiError)> = Vec::new();
        let mut parents: Vec<PathBuf> = Vec::new();
        // Parents above a directory that stays: not worth a try. The base of a hierarchy this
        // process is in stays too.
        let mut kept: Vec<PathBuf> = Vec::new();
        for cg in &cgroups {
            let held = cg.layout.hierarchies.iter().filter(|h| h.holds_base).map(|h| h.mount.join(BASE));
            for base in held {
                if !kept.contains(&base) {
                    kept.push(base);
                }
            }
        }
        for cg in &cgroups {
            for dir in cg.places() {
                match remove_leaf(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        if !failures.iter().any(|(r, _)| *r == cg.relative) {
                            failures.push((cg.relative.clone(), cg_err(format!("removing {}", dir.display()), e)));
                        }
                        kept.push(dir);
                        continue;
                    }
                }
                // Parents may be shared with other containers: only paddock's own are removed.
                for p in dir.ancestors().skip(1) {
                    if !p.components().any(|c| c.as_os_str() == BASE) {
                        break;
                    }
                    if !parents.iter().any(|q| q == p) {
                        parents.push(p.to_path_buf());
                    }
                }
            }
        }
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in parents {
            if kept.iter().any(|k| k.starts_with(&p)) {
                continue;
            }
            match remove_dir_once_idle(&p) {
                ParentRemoval::Removed => {
                    if p.file_name().is_some_and(|n| n == BASE) {
                        BASE_MAYBE_GONE.store(true, Ordering::Relaxed);
                    }
                }
                ParentRemoval::InUse => kept.push(p),
                ParentRemoval::Failed(e) => {
                    tracing::warn!(cgroup = %p.display(), "cannot remove the emptied parent: {e}");
                    kept.push(p);
                }
            }
        }
        failures
    }
}

/// Removes a cgroup that nothing should be in any more. What still is gets a moment to leave
/// by itself (a pid file's monitor that was just told of the exit, a helper exiting), then
/// SIGKILL; the removal is retried until it is gone (at most two seconds). The wait is for
/// the processes' exits (their pidfds), not a sleep: a process that has exited no longer
/// populates the cgroup.
fn remove_leaf(dir: &Path) -> io::Result<()> {
    let start = Instant::now();
    let (grace, deadline) = (Duration::from_millis(500), Duration::from_secs(2));
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < deadline => {
                let procs = read_file(&dir.join("cgroup.procs")).unwrap_or_default();
                let pidfds: Vec<OwnedFd> = procs
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .filter_map(rustix::process::Pid::from_raw)
                    .filter_map(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok())
                    .collect();
                let past_grace = start.elapsed() >= grace;
                if past_grace {
                    for fd in &pidfds {
                        let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
                    }
                }
                if pidfds.is_empty() {
                    // Nothing listed, yet busy: the last process is between leaving the list
                    // and leaving the cgroup, which no descriptor signals. A moment.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let until = if past_grace { deadline } else { grace };
                let wait = until.saturating_sub(start.elapsed());
                let timeout = rustix::event::Timespec {
                    tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(wait.subsec_nanos()),
                };
                let mut polled: Vec<rustix::event::PollFd<'_>> =
                    pidfds.iter().map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)).collect();
                // Returns when one of them has exited, or at the grace's (deadline's) end.
                let _ = rustix::event::poll(&mut polled, Some(&timeout));
            }
            other => return other,
        }
    }
}

/// Removes a parent cgroup directory whose children were just removed. The kernel answers
/// EBUSY for a cgroup with children, and also, for a moment, for one whose last child was
/// just removed (the child goes offline asynchronously, and nothing signals when): only the
/// latter (no child directory left) is retried, for a short while.
fn remove_dir_once_idle(dir: &Path) -> ParentRemoval {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return ParentRemoval::Removed,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // The base is shared by every sandbox of the host: busy means another one, and
                // one left empty by a race is used again by the next creation.
                if dir.file_name().is_some_and(|n| n == BASE) || has_child_cgroups(dir) {
                    return ParentRemoval::InUse;
                }
                if Instant::now() >= deadline {
                    return ParentRemoval::Failed(e);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return ParentRemoval::Failed(e),
        }
    }
}

/// What became of a parent directory.
enum ParentRemoval {
    Removed,
    /// It has other children (other containers'): it stays.
    InUse,
    Failed(io::Error),
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
    dirs.into_iter().map(|d| open_path(&d).map_err(|e| cg_err(d.display(), e))).collect()
}

/// An `O_PATH` descriptor of one directory.
fn open_path(dir: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
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

    /// A move of running processes (a pooled helper's) into a real cgroup: the living one is
    /// in it in every hierarchy, one that is gone is left out, and a plain `add_all` of a gone
    /// one is an error.
    #[test]
    fn add_running_moves_the_living_and_leaves_out_the_gone() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "this test needs root");
            eprintln!("SKIPPED add_running_moves_the_living_and_leaves_out_the_gone: it needs root");
            return;
        }
        let test = TestCgroup::create();
        let mut living = std::process::Command::new("sleep").arg("100").spawn().expect("sleep");
        let mut gone = std::process::Command::new("true").spawn().expect("true");
        gone.wait().expect("reaping true");
        let (living_pid, gone_pid) = (living.id() as i32, gone.id() as i32);
        let moved = test.cgroup.add_running(&[gone_pid, living_pid]);
        let procs = test.cgroup.procs();
        let every_hierarchy = test.cgroup.dirs().iter().all(|d| {
            read_file(&d.join("cgroup.procs")).unwrap_or_default().lines().any(|l| l == living_pid.to_string())
        });
        let plain = test.cgroup.add_all(&[gone_pid]);
        let _ = living.kill();
        let _ = living.wait();
        assert_eq!(moved.expect("add_running"), vec![living_pid]);
        assert_eq!(procs, vec![living_pid]);
        assert!(every_hierarchy, "the living process is not in every hierarchy");
        assert!(plain.is_err(), "add_all of a gone process succeeded");
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

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:39 / /sys/fs/cgroup/misc rw,relatime - cgroup cgroup rw,misc
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 23 0:32 /docker /mnt/memory rw,relatime - cgroup cgroup rw,memory
91 23 0:40 /sub /mnt/pids rw,relatime - cgroup cgroup rw,pids
92 23 0:40 / /mnt/pids2 rw,relatime - cgroup cgroup rw,pids
93 23 0:38 /x /mnt/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_layout_has_each_hierarchy_once_and_the_hybrid_tree_last() {
        let layout = Layout::from_mountinfo(HYBRID);
        assert!(!layout.is_v2());
        let mounts: Vec<&Path> = layout.hierarchies.iter().map(|h| h.mount.as_path()).collect();
        // misc is not one paddock makes cgroups in; a second mount of a hierarchy is not
        // another one (its mount of the root is preferred); the cgroup2 tree comes last.
        assert_eq!(
            mounts,
            [
                "/mnt/pids2",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
            .map(Path::new)
        );
        assert_eq!(
            layout.controller("cpuacct").map(|h| h.mount.as_path()),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(layout.controller("freezer"), None);
        assert!(layout.controller("name=systemd").is_some());
        let cg = Cgroup { relative: "paddock/s/c".into(), layout: Arc::new(layout) };
        assert_eq!(cg.places().last(), Some(&PathBuf::from("/sys/fs/cgroup/unified/paddock/s/c")));

        let v2 = Layout::unified(Path::new("/sys/fs/cgroup"), "cpuset cpu io memory pids\n");
        assert!(v2.is_v2());
        assert_eq!(v2.controller("memory").map(|h| h.mount.as_path()), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(v2.hierarchies.len(), 1);
    }

    /// An autostarted paddockd is in `paddock/paddockd` of every hierarchy: each is marked,
    /// by its controllers (v1) or as the cgroup2 tree (`0::`); a cgroup merely named like the
    /// base, or outside it, is not.
    #[test]
    fn the_bases_this_process_is_in_are_marked_held() {
        let held = |proc_self_cgroup: &str| {
            let mut layout = Layout::from_mountinfo(HYBRID);
            layout.mark_held_bases(proc_self_cgroup);
            let marked = layout.hierarchies.iter().filter(|h| h.holds_base).map(|h| h.mount.clone());
            marked.collect::<Vec<PathBuf>>()
        };
        let daemon = "\
12:pids:/paddock/paddockd
5:cpu,cpuacct:/paddock/paddockd
4:memory:/user.slice
3:cpuset:/paddock
1:name=systemd:/paddock/paddockd
0::/paddock/paddockd
";
        assert_eq!(
            held(daemon),
            [
                "/mnt/pids2",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
            .map(PathBuf::from)
        );
        assert!(held("0::/paddock-other/x\n4:memory:/paddockd\n3:cpuset:/\n").is_empty());
        let mut v2 = Layout::unified(Path::new("/sys/fs/cgroup"), "memory pids");
        v2.mark_held_bases("0::/paddock/paddockd\n");
        assert!(v2.hierarchies[0].holds_base);
    }

    fn unique(what: &str) -> String {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        format!("{what}-{}-{nanos}", std::process::id())
    }

    fn needs_root(test: &str) -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} needs root");
        eprintln!("SKIPPED {test}: it needs root");
        false
    }

    /// A process to place in cgroups; killed when dropped.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start() -> Self {
            Self(std::process::Command::new("sleep").arg("60").spawn().expect("sleep"))
        }

        fn pid(&self) -> i32 {
            i32::try_from(self.0.id()).expect("a pid")
        }

        fn cgroups(&self) -> String {
            std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid())).unwrap_or_default()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A root container's cgroups as paddockd makes them on this host (v1, hybrid or v2): in
    /// every hierarchy, with a cpuset a process can join; a process added is in all of them;
    /// removal takes the leaves and the sandbox's directory, killing what is left inside.
    #[test]
    fn a_sandboxs_cgroups_are_made_joined_and_removed_in_every_hierarchy() {
        if !needs_root("a_sandboxs_cgroups_are_made_joined_and_removed_in_every_hierarchy") {
            return;
        }
        let sandbox = unique("cgtest");
        let (container, sandbox_cg) =
            Cgroup::create_for_sandbox(&sandbox, &container_path(&sandbox, "c")).expect("the sandbox's cgroups");
        let places = [container.places(), sandbox_cg.places()].concat();
        assert!(places.iter().all(|p| p.is_dir()), "{places:?}");
        if let Some(cpuset) = container.layout.controller("cpuset").filter(|_| !container.is_v2()) {
            for cg in [&container, &sandbox_cg] {
                let cpus = std::fs::read_to_string(cpuset.mount.join(cg.relative()).join("cpuset.cpus"));
                assert!(cpus.is_ok_and(|c| !c.trim().is_empty()), "{}: empty cpuset", cg.relative());
            }
        }
        // A second creation is an open: nothing fails on what exists.
        Cgroup::create(container.relative()).expect("creating an existing cgroup");

        let (helper, left_over) = (Sleeper::start(), Sleeper::start());
        sandbox_cg.add_all(&[helper.pid()]).expect("joining the sandbox's cgroup");
        container.add(left_over.pid()).expect("joining the container's cgroup");
        assert_eq!(sandbox_cg.procs(), [helper.pid()]);
        let lines = left_over.cgroups();
        assert_eq!(lines.lines().filter(|l| l.ends_with(container.relative())).count(), places.len() / 2, "{lines}");

        drop(helper);
        // The container's process is still there: it is killed, and the removal waits for it.
        let failures = Cgroup::remove_all(vec![container, sandbox_cg]);
        assert!(failures.is_empty(), "{:?}", failures.iter().map(|(r, e)| format!("{r}: {e}")).collect::<Vec<_>>());
        assert!(places.iter().all(|p| !p.exists()), "{places:?}");
        let sandbox_dirs: Vec<PathBuf> = places.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        assert!(sandbox_dirs.iter().all(|p| !p.exists()), "{sandbox_dirs:?}");
        let mut left_over = left_over;
        let status = left_over.0.wait().expect("the left-over process");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    }

    /// A spec's cgroupsPath whose parent does not exist yet: both are made (parent first
    /// after the leaf's ENOENT), with cpusets a process can join; the parent, not paddock's,
    /// stays after the removal, as before.
    #[test]
    fn a_spec_path_gets_its_missing_parents() {
        if !needs_root("a_spec_path_gets_its_missing_parents") {
            return;
        }
        let slice = unique("cgtest-slice");
        let cg = Cgroup::create(&format!("{slice}/leaf")).expect("creating");
        let parents: Vec<PathBuf> = cg.places().iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        assert!(cg.places().iter().all(|p| p.is_dir()), "{:?}", cg.places());
        if let Some(cpuset) = cg.layout.controller("cpuset").filter(|_| !cg.is_v2()) {
            let cpus = std::fs::read_to_string(cpuset.mount.join(cg.relative()).join("cpuset.cpus"));
            assert!(cpus.is_ok_and(|c| !c.trim().is_empty()), "empty cpuset");
        }
        let sleeper = Sleeper::start();
        cg.add(sleeper.pid()).expect("joining");
        drop(sleeper);
        assert!(cg.remove().is_ok());
        for p in &parents {
            assert!(p.is_dir(), "{}", p.display());
            std::fs::remove_dir(p).expect("removing the test's parent cgroup");
        }
    }

    /// The v2 code path, on a real cgroup2 tree: this host's if it is v2, else a hybrid host's
    /// controller-less one (taken as a v2 layout). Directories top-down, a process joins,
    /// `cgroup.freeze` freezes it, and everything goes.
    #[test]
    fn the_v2_path_makes_freezes_and_removes_on_a_real_cgroup2_tree() {
        if !needs_root("the_v2_path_makes_freezes_and_removes_on_a_real_cgroup2_tree") {
            return;
        }
        let current = Layout::current().expect("the layout");
        let layout = if current.is_v2() {
            current
        } else {
            let Some(tree) = current.hierarchies.iter().find(|h| h.cgroup2) else {
                eprintln!("SKIPPED the_v2_path_makes_freezes_and_removes_on_a_real_cgroup2_tree: no cgroup2 mount");
                return;
            };
            // A controller the hybrid tree does not have: enabling it fails, and is skipped.
            Arc::new(Layout::unified(&tree.mount, "pids"))
        };
        let sandbox = unique("cgtest2");
        let dir = format!("{BASE}/{sandbox}");
        let (leaf, other) = (format!("{dir}/c"), format!("{dir}/{SANDBOX_LEAF}"));
        assert!(layout.make(&[&dir], &[&leaf, &other]).is_ok());
        let cg = Cgroup { relative: leaf, layout: layout.clone() };
        let sibling = Cgroup { relative: other, layout };
        let sleeper = Sleeper::start();
        cg.add(sleeper.pid()).expect("joining");
        assert_eq!(cg.procs(), [sleeper.pid()]);
        let mut events = std::fs::File::open(cg.places()[0].join("cgroup.events")).expect("cgroup.events");
        cg.set_frozen(true).expect("freezing");
        assert_eq!(cg.freezer_dir(), Some(cg.places()[0].clone()));
        // Freezing completes asynchronously: cgroup.events says when (POLLPRI on a change).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut text = String::new();
        while Instant::now() < deadline {
            text.clear();
            std::io::Seek::seek(&mut events, std::io::SeekFrom::Start(0)).expect("seek");
            events.read_to_string(&mut text).expect("reading cgroup.events");
            if text.contains("frozen 1") {
                break;
            }
            let mut fds = [rustix::event::PollFd::new(&events, rustix::event::PollFlags::PRI)];
            let _ = rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 }));
        }
        assert!(text.contains("frozen 1"), "{text}");
        cg.set_frozen(false).expect("thawing");
        drop(sleeper);
        let places = [cg.places(), sibling.places()].concat();
        assert!(Cgroup::remove_all(vec![cg, sibling]).is_empty());
        assert!(places.iter().all(|p| !p.exists()) && !places[0].parent().is_some_and(Path::exists), "{places:?}");
    }
}
