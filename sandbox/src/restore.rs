//! Restoring a container's processes with CRIU, as children of this sandbox.
//!
//! The spawner forks CRIU's process as the sandbox's child. It stays in the sandbox's PID,
//! network, UTS and IPC namespaces but enters a private copy of the host's mount namespace
//! (where CRIU, its images and logs are) and the host's cgroup namespace, attaches a copy of
//! the container's staged root where CRIU expects it, mounts a procfs of the sandbox's PID
//! namespace, and executes CRIU. CRIU recreates the container's own PID namespace (the
//! checkpoint holds it whole, its init as PID 1) and, with `--restore-sibling`, makes the
//! restored init a sibling of itself: the sandbox's child, reaped as any container's init.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{Mount, Spec};
use rustix::fs::{Mode, OFlags};
use sys::Create;
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::spawner::jobs::{Done, Job, RestoreJob};
use crate::spawner::Spawner;

/// Where the restored processes' standard descriptors and the network namespace are placed
/// in CRIU's process (its own 0–2 stay the sandbox's).
const FIRST_PLACED_FD: RawFd = 3;

/// How long CRIU may take before it is killed.
pub const CRIU_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// CRIU at work: the sandbox's child, which the loop reaps like any other (and kills at
/// [`CRIU_TIMEOUT`]).
#[derive(Debug)]
pub struct Criu {
    /// CRIU's pid in the sandbox's PID namespace.
    pub pid: Pid,
    /// Where CRIU's process writes why it could not execute CRIU.
    report: OwnedFd,
    what: String,
}

/// Has the spawner fork CRIU's process; returns at once.
pub fn spawn(spawner: &mut Spawner, mut job: RestoreJob) -> Result<Criu, ApiError> {
    let what = format!("restore of container {:?}", job.id);
    let (report, report_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ApiError::io("pipe", e))?;
    job.report = FdSlot::new(report_write);
    match spawner.call(Job::Restore(Box::new(job)))? {
        Done::Spawned(pid) => Ok(Criu { pid: Pid::from_raw(pid), report, what }),
        other => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
    }
}

impl Criu {
    /// The restored init, once CRIU (reaped with `status`) has ended: the one child of the
    /// sandbox that CRIU left behind, among `children` (the sandbox's children that are no
    /// process it knows). `timed_out`: the loop killed CRIU at its deadline.
    pub fn outcome(self, status: ExitStatus, timed_out: bool, children: Vec<Pid>) -> Result<Pid, ApiError> {
        let what = &self.what;
        if timed_out {
            return Err(ApiError::new(
                ErrorKind::Timeout,
                format!("{what}: CRIU did not finish within {} s and was killed", CRIU_TIMEOUT.as_secs()),
            ));
        }
        let message = crate::sync::read_report(&self.report);
        if !message.is_empty() {
            return Err(ApiError::new(ErrorKind::Sandbox, format!("{what}: {message}")));
        }
        if status != ExitStatus::Exited(0) {
            return Err(ApiError::new(ErrorKind::Criu, format!("{what}: CRIU ended with {status:?}")));
        }
        match children[..] {
            [init] => Ok(init),
            _ => Err(ApiError::new(
                ErrorKind::Criu,
                format!(
                    "{what}: CRIU succeeded but left {} processes in the sandbox ({children:?}), not one",
                    children.len()
                ),
            )),
        }
    }
}

/// The children of `pid` (a single-threaded process), from its procfs; zombies included.
pub fn children_of(proc: &OwnedFd, pid: Pid) -> Vec<Pid> {
    let path = format!("{pid}/task/{pid}/children");
    let Ok(fd) = rustix::fs::openat(proc, path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return Vec::new();
    };
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text);
    text.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw).collect()
}

/// CRIU's process, forked by the spawner: prepares and executes CRIU; returns only on
/// failure, having written why to its report pipe.
pub fn child(mut job: RestoreJob, proc: &OwnedFd) -> i32 {
    let Some(report) = job.report.take() else { return 1 };
    let message = match run_criu(&mut job, proc, &report) {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    };
    let _ = rustix::io::write(&report, message.as_bytes());
    127
}

/// Why CRIU's process could not execute CRIU (written to its report pipe).
#[derive(Debug, thiserror::Error)]
enum CriuSetupError {
    /// The request lacks a descriptor it must carry.
    #[error("restore without {0}")]
    Missing(&'static str),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The staged bind mounts are not the checkpoint's.
    #[error("{staged} bind mounts staged, {expected} to restore")]
    Binds {
        /// How many the sandbox staged.
        staged: usize,
        /// How many the checkpoint has.
        expected: usize,
    },
    /// A path CRIU is given has a NUL byte.
    #[error("{0} has a NUL byte")]
    Nul(String),
    /// The request or the checkpoint cannot be restored as asked.
    #[error(transparent)]
    Refused(#[from] ApiError),
}

/// A failed system call, saying what was being done.
fn os(what: impl Into<String>, e: impl Into<std::io::Error>) -> CriuSetupError {
    CriuSetupError::Os { what: what.into(), source: e.into() }
}

/// The descriptors CRIU's process was given.
struct Given {
    stdio: [Option<OwnedFd>; 3],
    console: Option<OwnedFd>,
    host_mnt: OwnedFd,
    host_cgroup: OwnedFd,
    /// The sandbox's network namespace, which the restored processes are given (external in
    /// the checkpoint).
    net: OwnedFd,
}

fn run_criu(
    job: &mut RestoreJob,
    proc: &OwnedFd,
    report: &OwnedFd,
) -> Result<std::convert::Infallible, CriuSetupError> {
    let given = Given {
        stdio: [job.stdio.stdin.take(), job.stdio.stdout.take(), job.stdio.stderr.take()],
        console: job.stdio.console.take(),
        host_mnt: job.plan.host_mnt.take().ok_or(CriuSetupError::Missing("the host's mount namespace"))?,
        host_cgroup: job.plan.host_cgroup.take().ok_or(CriuSetupError::Missing("the host's cgroup namespace"))?,
        net: rustix::fs::openat(proc, "self/ns/net", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| os("the sandbox's network namespace", e))?,
    };
    let mut keep = vec![0, 1, 2, report.as_raw_fd(), given.host_mnt.as_raw_fd(), given.host_cgroup.as_raw_fd()];
    keep.push(given.net.as_raw_fd());
    keep.extend(given.stdio.iter().flatten().chain(given.console.iter()).map(|f| f.as_raw_fd()));
    sys::close_all_except(&keep).map_err(|e| os("closing descriptors", e))?;
    let copy = |place: &Path| -> Result<OwnedFd, CriuSetupError> {
        let fd = rustix::fs::open(place, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| os(format!("open {}", place.display()), e))?;
        sys::clone_tree(fd.as_fd(), true).map_err(|e| os(format!("copying {}", place.display()), e))
    };
    let root = copy(&job.rootfs)?;
    if job.binds.len() != job.plan.bind_keys.len() {
        return Err(CriuSetupError::Binds { staged: job.binds.len(), expected: job.plan.bind_keys.len() });
    }
    // The binds as the gofer opened them (beneath the bundle, symlinks resolved safely), not
    // their host paths again.
    let binds = job.binds.iter().map(|b| copy(b)).collect::<Result<Vec<_>, _>>()?;
    make_mount_points(&job.spec.parse()?, &root, &binds, job.plan.console_key.is_some())?;
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| CriuSetupError::Nul(path.display().to_string()))
    };
    let mountpoints = (c_path(&job.plan.root_mountpoint)?, c_path(&job.plan.binds_mountpoint)?);
    let trees = Trees { root: &root, binds: &binds };
    let terminal = prepare(job, &given, &trees, &mountpoints)?;
    // Made once the new terminal has its name (the console is bound from it).
    let argv = criu_argv(job, &given, terminal.as_deref())?;
    let Err(e) = nix::unistd::execv(&argv[0], &argv);
    Err(os(format!("executing {} (is CRIU 4.1 or later installed?)", argv[0].to_string_lossy()), e))
}

/// Where a mount point of the checkpoint's mount tree is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beneath {
    /// In the root filesystem.
    Root,
    /// In the tree of the spec's bind mount of this index (among the bind mounts).
    Bind(usize),
}

/// A mount point the restore makes before CRIU runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountPoint {
    /// In which tree.
    beneath: Beneath,
    /// Its path in that tree.
    path: PathBuf,
    /// A directory, or a file (a bind mount of a file).
    what: Create,
}

/// The mount points of the container's mount tree that live in a tree the restore brings
/// (the root filesystem, or a bind mount's source), in spec order: those CRIU needs and does
/// not make. A fresh root filesystem (containerd's new snapshot of the image, a new overlay)
/// lacks the mount points the container's create made in the old one (`/run`, `/proc`, a file
/// bound on `/etc/resolv.conf`, ...), and CRIU cannot mount there; runc's restore makes them
/// too. A mount point beneath a kernel filesystem mounted earlier (`/dev/pts` in `/dev`'s
/// tmpfs) is left alone: CRIU restores a tmpfs with what it held, and the others' contents
/// are the kernel's. `bind_is_dir`: whether each bind mount (in spec order) is a directory;
/// `console`: a terminal is bound on `/dev/console`.
fn mount_points(mounts: &[Mount], bind_is_dir: &[bool], console: bool) -> Vec<MountPoint> {
    // Lexically, `..` stopping at the root, as the paths are resolved beneath it.
    let normal = |path: &Path| -> PathBuf { sys::path::lexical_parts(path).iter().collect() };
    // The mounts so far: where each is, and which tree it brings (`None`: the kernel's).
    let mut made: Vec<(PathBuf, Option<usize>)> = Vec::new();
    let mut points = Vec::new();
    let mut place = |made: &[(PathBuf, Option<usize>)], dest: PathBuf, what: Create| {
        if dest.as_os_str().is_empty() {
            return;
        }
        // The innermost mount so far that holds it: the latest whose path is a prefix.
        let holder = made.iter().rev().find(|(at, _)| dest.starts_with(at) && dest != *at);
        let point = match holder {
            None => MountPoint { beneath: Beneath::Root, path: Path::new("/").join(&dest), what },
            Some((at, Some(bind))) => MountPoint {
                beneath: Beneath::Bind(*bind),
                path: Path::new("/").join(dest.strip_prefix(at).unwrap_or(&dest)),
                what,
            },
            Some((_, None)) => return,
        };
        points.push(point);
    };
    let mut binds = bind_is_dir.iter().enumerate();
    for m in mounts {
        let dest = normal(m.destination());
        if wire::mounts::is_bind(m) {
            let Some((index, is_dir)) = binds.next() else { continue };
            place(&made, dest.clone(), if *is_dir { Create::Dir } else { Create::File });
            made.push((dest, Some(index)));
        } else {
            place(&made, dest.clone(), Create::Dir);
            made.push((dest, None));
        }
    }
    if console {
        place(&made, normal(Path::new(crate::console::CONSOLE)), Create::File);
    }
    points
}

/// Makes the mount points of [`mount_points`] in the copies of the container's trees CRIU
/// restores on, each resolved beneath its tree (no symlink of the image leads out of it).
fn make_mount_points(spec: &Spec, root: &OwnedFd, binds: &[OwnedFd], console: bool) -> Result<(), CriuSetupError> {
    let bind_is_dir = binds
        .iter()
        .enumerate()
        .map(|(i, bind)| {
            rustix::fs::fstat(bind)
                .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
                .map_err(|e| os(format!("fstat of bind {i}"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for point in mount_points(spec.mounts().as_deref().unwrap_or_default(), &bind_is_dir, console) {
        let (tree, within) = match point.beneath {
            Beneath::Root => (root, "the root filesystem".to_string()),
            Beneath::Bind(i) => match binds.get(i) {
                Some(bind) => (bind, format!("bind {i}")),
                None => continue,
            },
        };
        sys::make_beneath(tree.as_fd(), &point.path, point.what)
            .map_err(|e| os(format!("making the mount point {} in {within}", point.path.display()), e))?;
    }
    Ok(())
}

/// The detached copies of the container's mounts CRIU restores on.
struct Trees<'a> {
    root: &'a OwnedFd,
    binds: &'a [OwnedFd],
}

/// CRIU's full command line: paddockd's part, then the root, the namespaces the restored
/// processes share with the sandbox, the descriptors that replace the checkpoint's, and the
/// new terminal (`terminal`: its slave's path) bound where the checkpoint's console was.
fn criu_argv(job: &RestoreJob, given: &Given, terminal: Option<&[u8]>) -> Result<Vec<CString>, ApiError> {
    let plan = &job.plan;
    let mut args: Vec<String> = vec![plan.criu.display().to_string()];
    args.extend(plan.args.iter().cloned());
    args.extend(["--root".into(), plan.root_mountpoint.display().to_string()]);
    for ns in ["uts", "ipc"] {
        args.extend(["--join-ns".into(), format!("{ns}:/proc/self/ns/{ns}")]);
    }
    let mut next = FIRST_PLACED_FD;
    for (i, mountpoint) in plan.bind_keys.iter().enumerate() {
        let place = plan.binds_mountpoint.join(i.to_string());
        args.extend(["--external".into(), format!("mnt[{mountpoint}]:{}", place.display())]);
    }
    for (i, source) in descriptor_plan(job, given)?.iter().enumerate() {
        if let Placed::Caller(_) | Placed::Terminal = source {
            let key = plan.stdio_keys.get(i).and_then(|k| k.as_deref()).unwrap_or_default();
            args.extend(["--inherit-fd".into(), format!("fd[{next}]:{key}")]);
        }
        next += 1;
    }
    args.extend(["--inherit-fd".into(), format!("fd[{next}]:{}", wire::sandbox_proto::NET_NS_KEY)]);
    if let Some(key) = &plan.console_key {
        // The runtime-spec's console is the process's terminal: the new one, from the host's
        // devpts where it was opened (a path in CRIU's mount namespace).
        let source = terminal.filter(|t| !t.is_empty()).map(String::from_utf8_lossy).ok_or_else(|| {
            ApiError::invalid_argument(
                "the checkpoint's container had a terminal bound on /dev/console, but its process has none to \
                 restore",
            )
        })?;
        args.extend(["--external".into(), format!("mnt[{key}]:{source}")]);
    }
    args.into_iter()
        .map(|a| CString::new(a).map_err(|_| ApiError::invalid_argument("a CRIU argument has a NUL byte")))
        .collect()
}

/// What CRIU's process gets at 3, 4 and 5, for each of the checkpoint's stdin, stdout and
/// stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// The caller's descriptor of that number.
    Caller(usize),
    /// The slave of the new terminal (once, for the first descriptor that was the terminal).
    Terminal,
    /// Nothing: the checkpoint had nothing to replace there, or the caller gave nothing.
    Nothing,
}

/// Which descriptor replaces each of the checkpoint's standard descriptors.
fn descriptor_plan(job: &RestoreJob, given: &Given) -> Result<[Placed; 3], ApiError> {
    let keys = &job.plan.stdio_keys;
    let mut plan = [Placed::Nothing; 3];
    for (i, place) in plan.iter_mut().enumerate() {
        let Some(key) = keys.get(i).and_then(|k| k.as_deref()) else { continue };
        if key.starts_with("tty[") {
            if given.console.is_none() {
                return Err(ApiError::invalid_argument(
                    "the checkpoint's process had a terminal: restore it with process.terminal and a console socket (or \
                     in the foreground)",
                ));
            }
            // One key, one inherited descriptor: CRIU gives it to every descriptor of that tty.
            if !keys[..i].iter().any(|k| k.as_deref() == Some(key)) {
                *place = Placed::Terminal;
            }
        } else if given.stdio[i].is_some() {
            *place = Placed::Caller(i);
        }
    }
    if given.console.is_some() && !keys.iter().flatten().any(|k| k.starts_with("tty[")) {
        // The caller waits for a terminal that would never come.
        return Err(ApiError::invalid_spec(
            "process.terminal asks for a terminal, but the checkpoint's process had none",
        ));
    }
    Ok(plan)
}

/// Attaches the bind mounts' copies at `<place>/0`, `<place>/1`, ... on a private tmpfs.
fn attach_binds(binds: &[OwnedFd], place: &CString) -> Result<(), CriuSetupError> {
    if binds.is_empty() {
        return Ok(());
    }
    let tmpfs = sys::new_mount("tmpfs", Some("paddock-criu-binds"), &["mode=0700".to_string()], 0)
        .map_err(|e| os("a tmpfs for the bind mounts", e))?;
    let dir = rustix::fs::open(place.as_c_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| os(format!("open {}", place.to_string_lossy()), e))?;
    sys::attach(tmpfs.as_fd(), dir.as_fd()).map_err(|e| os("attaching the binds' tmpfs", e))?;
    let dir = rustix::fs::open(place.as_c_str(), OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| os(format!("open {}", place.to_string_lossy()), e))?;
    for (i, bind) in binds.iter().enumerate() {
        let name = i.to_string();
        let is_dir = rustix::fs::fstat(bind)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
            .map_err(|e| os(format!("fstat of bind {i}"), e))?;
        let made = if is_dir {
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o700))
        } else {
            rustix::fs::openat(
                &dir,
                name.as_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map(drop)
        };
        made.map_err(|e| os(format!("a mount point for bind {i}"), e))?;
        let target = rustix::fs::openat(&dir, name.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| os(format!("open the mount point of bind {i}"), e))?;
        sys::attach(bind.as_fd(), target.as_fd()).map_err(|e| os(format!("attaching bind {i}"), e))?;
    }
    Ok(())
}

/// Everything of the child before CRIU executes: a clean signal state and session, the
/// host's cgroup and (a private copy of its) mount namespace, the container's trees attached
/// where CRIU is told to find them, a procfs of the sandbox's PID namespace, and the
/// descriptors placed. Returns the path of the new terminal's slave, if one was opened.
#[expect(clippy::cast_possible_truncation, reason = "at most a pty pair and the three stdio sources are placed")]
fn prepare(
    job: &RestoreJob,
    given: &Given,
    trees: &Trees<'_>,
    mountpoints: &(CString, CString),
) -> Result<Option<Vec<u8>>, CriuSetupError> {
    crate::sync::reset_process_state()?;
    // CRIU itself stays in the sandbox's cgroup (its memory is not the container's to pay
    // for); it puts the restored processes into the container's (`--cgroup-root`).
    nix::sched::setns(&given.host_cgroup, CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| os("entering the host's cgroup namespace", e))?;
    nix::sched::setns(&given.host_mnt, CloneFlags::CLONE_NEWNS).map_err(|e| os("entering the host's mounts", e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| os("unshare mount namespace", e))?;
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .map_err(|e| os("making the mounts private", e))?;
    let (root_place, binds_place) = mountpoints;
    {
        // Closed before the descriptors are placed: it may hold one of their numbers.
        let place = rustix::fs::open(root_place.as_c_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| os(format!("open {}", root_place.to_string_lossy()), e))?;
        sys::attach(trees.root.as_fd(), place.as_fd()).map_err(|e| os("attaching the container's root", e))?;
    }
    attach_binds(trees.binds, binds_place)?;
    let hidden = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
    nix::mount::mount(Some("proc"), "/proc", Some("proc"), hidden, None::<&str>)
        .map_err(|e| os("mounting the sandbox's procfs", e))?;
    nix::unistd::chdir("/").map_err(|e| os("chdir /", e))?;
    let placed = descriptor_plan(job, given)?;
    // A terminal for the restored process: opened here, in the host's devpts (the container's
    // is CRIU's to restore), its master sent to the caller.
    let terminal = match (placed.contains(&Placed::Terminal), given.console.as_ref()) {
        (true, Some(console)) => {
            let pty = crate::console::open()?;
            pty.send_master(console.as_fd())?;
            Some(pty)
        }
        _ => None,
    };
    // From here on nothing may be closed but the copies made below: any descriptor held now
    // may sit on a number a placed one takes, and closing it would close that one.
    let stdio_sources = placed.map(|p| match p {
        Placed::Caller(i) => given.stdio[i].as_ref().map(|f| f.as_fd()),
        Placed::Terminal => terminal.as_ref().map(|t| t.slave()),
        Placed::Nothing => None,
    });
    // Out of the way first (a source may sit where another is to go), then into place.
    let mut sources: Vec<Option<OwnedFd>> = Vec::new();
    for fd in stdio_sources.into_iter().chain([Some(given.net.as_fd())]) {
        sources.push(
            fd.map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 1000))
                .transpose()
                .map_err(|e| os("duplicating a descriptor", e))?,
        );
    }
    for (i, fd) in sources.iter().enumerate() {
        let target = FIRST_PLACED_FD + i as RawFd;
        match fd {
            // SAFETY: dup2 onto a number this process means to replace.
            Some(fd) if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 => {
                return Err(os("placing a descriptor", std::io::Error::last_os_error()));
            }
            Some(_) => {}
            // SAFETY: whatever the sandbox had there is not for CRIU.
            None => unsafe {
                libc::close(target);
            },
        }
    }
    let name = terminal.as_ref().map(|t| t.name().to_vec());
    // The pty's own descriptors may sit on placed numbers: not closed (CRIU runs next).
    std::mem::forget(terminal);
    sys::cloexec_from(FIRST_PLACED_FD + sources.len() as RawFd).map_err(|e| os("close_range", e))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::MountBuilder;

    use super::*;

    fn mount(destination: &str, typ: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(destination)
            .typ(typ)
            .source("src")
            .options(options.iter().map(|o| (*o).to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    fn point(beneath: Beneath, path: &str, what: Create) -> MountPoint {
        MountPoint { beneath, path: PathBuf::from(path), what }
    }

    #[test]
    fn mount_points_are_made_where_no_kernel_filesystem_holds_them() {
        let mounts = [
            mount("/proc", "proc", &[]),
            mount("/dev", "tmpfs", &[]),
            mount("/dev/pts", "devpts", &[]),
            mount("/run/../run", "tmpfs", &[]),
            mount("/etc/resolv.conf", "bind", &["ro"]),
            mount("/data", "none", &["rbind"]),
            mount("/data/inner", "tmpfs", &[]),
            mount("/run/secrets", "bind", &[]),
            mount("/sys", "sysfs", &[]),
            mount("/sys/fs/cgroup", "cgroup", &[]),
            mount("/deep/er", "mqueue", &[]),
        ];
        let points = mount_points(&mounts, &[false, true, true], false);
        assert_eq!(
            points,
            [
                point(Beneath::Root, "/proc", Create::Dir),
                point(Beneath::Root, "/dev", Create::Dir),
                point(Beneath::Root, "/run", Create::Dir),
                point(Beneath::Root, "/etc/resolv.conf", Create::File),
                point(Beneath::Root, "/data", Create::Dir),
                // Beneath the bind mount: in the bind's own tree.
                point(Beneath::Bind(1), "/inner", Create::Dir),
                point(Beneath::Root, "/sys", Create::Dir),
                point(Beneath::Root, "/deep/er", Create::Dir),
            ]
        );
        // The console: in the root filesystem only when no tmpfs is on /dev.
        assert!(!mount_points(&mounts, &[false, true, true], true).iter().any(|p| p.path.ends_with("console")));
        assert_eq!(
            mount_points(&[mount("/proc", "proc", &[])], &[], true),
            [point(Beneath::Root, "/proc", Create::Dir), point(Beneath::Root, "/dev/console", Create::File)]
        );
    }
}
