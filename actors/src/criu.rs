//! Checkpoint and restore through CRIU, as runc and crun do it, shaped by the sandbox.
//!
//! A container's init is not PID 1 of a namespace of its own: it is PID 2 of its sandbox's
//! PID namespace, whose PID 1 is the sandbox process. So a checkpoint dumps the container's
//! process tree with the sandbox's PID namespace marked external, and a restore runs CRIU
//! inside the (new) sandbox's PID namespace, where the restored init becomes the sandbox's
//! child again (see `RestoreInSandbox` of the sandbox protocol). The network, UTS and IPC
//! namespaces are the sandbox's: they are joined, not recreated, on restore.
//!
//! CRIU is run as a program (not through its RPC): its command line is stable, documented,
//! and what an administrator can rerun by hand from the log's first line.
//!
//! The standard descriptors of the dumped init usually lead out of the container (the
//! caller's pipes, files, `/dev/null` of the host): each is recorded in the checkpoint's
//! [`CHECKPOINT_FILE`] with the key CRIU knows it by, marked external when it is a file, and
//! replaced on restore by the restoring caller's descriptor (`--inherit-fd`), as runc's
//! `descriptors.json` does.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use wire::{ApiError, ErrorKind};

/// The file paddock adds to a checkpoint's image directory.
pub const CHECKPOINT_FILE: &str = "paddock-checkpoint.json";
/// CRIU's log of a dump, in the work directory.
pub const DUMP_LOG: &str = "dump.log";
/// CRIU's log of a restore, in the work directory.
pub const RESTORE_LOG: &str = "restore.log";
pub use wire::sandbox_proto::{NET_NS_KEY, PID_NS_KEY};
/// The CRIU program used when none is named.
pub const DEFAULT_CRIU: &str = "criu";

/// The CRIU program to run: `given` if it names a path, else the first `criu` on paddockd's
/// `PATH` or in the system's sbin directories (a service's `PATH` often lacks them).
pub fn program(given: Option<&Path>) -> Result<PathBuf, ApiError> {
    let name = given.unwrap_or(Path::new(DEFAULT_CRIU));
    if name.is_absolute() {
        return Ok(name.to_path_buf());
    }
    if name.components().count() > 1 {
        // Relative to which directory? paddockd's and the sandbox's differ from the caller's.
        return Err(ApiError::invalid_argument(format!("--criu {}: give an absolute path", name.display())));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "checkpoint and restore need CRIU 4.1 or later, and no {} was found in PATH or the sbin \
                     directories",
                    name.display()
                ),
            )
        })
}

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
fn cgroup_mounts_in(mountinfo: &str) -> Vec<CgroupMount> {
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
fn host_hierarchy(mount: &CgroupMount) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_mounts_in(&mountinfo).into_iter().find(|m| m.controllers == mount.controllers).map(|m| m.mountpoint.into())
}

/// A checkpoint to take.
#[derive(Debug, Clone)]
pub struct Dump {
    /// The CRIU program.
    pub criu: PathBuf,
    /// The container's id.
    pub id: String,
    /// Its init (host pid and start time).
    pub init: crate::meta::ProcessRecord,
    /// The image directory.
    pub image: PathBuf,
    /// The work directory (logs).
    pub work: PathBuf,
    /// Keep the processes running.
    pub leave_running: bool,
    /// The container's freezer directory, for a consistent snapshot of its processes.
    pub freezer: Option<PathBuf>,
    /// The destinations of the container's bind mounts (their sources are the host's).
    pub binds: Vec<PathBuf>,
    /// The container has a cgroup namespace of its own (else its cgroup mounts show host
    /// paths, which CRIU cannot restore by itself).
    pub cgroup_namespace: bool,
    /// The caller's extra CRIU options.
    pub options: Vec<String>,
}

fn io_err(what: impl std::fmt::Display, err: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Io, format!("{what}: {err}"))
}

/// Makes a directory for images or logs (mode 0700 if new).
fn make_dir(dir: &Path) -> Result<(), ApiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err(dir.display(), e))
}

/// The pid a process has in its innermost PID namespace (the last of `NSpid`).
fn inner_pid(pid: i32) -> Result<i32, ApiError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| io_err(format!("reading /proc/{pid}/status"), e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("/proc/{pid}/status has no NSpid")))
}

/// The inode of one of a process's namespaces.
fn namespace_inode(pid: i32, ns: &str) -> Result<u64, ApiError> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/ns/{ns}");
    std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| io_err(format!("stat {path}"), e))
}

/// How CRIU will know descriptor `fd` of process `pid`, and whether it must be declared
/// external at dump: pipes by their inode (CRIU restores them by `--inherit-fd` alone), files
/// outside the container's mount namespace by mount id and inode.
fn descriptor_key(pid: i32, fd: i32, own_mounts: &[u64]) -> Result<Option<(String, bool)>, ApiError> {
    use std::os::unix::fs::MetadataExt;
    let link = match std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
        Ok(link) => link.to_string_lossy().into_owned(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(io_err(format!("reading descriptor {fd} of process {pid}"), e)),
    };
    if link.starts_with("pipe:") {
        return Ok(Some((link, false)));
    }
    if link.starts_with("socket:") || link.starts_with("anon_inode:") {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "descriptor {fd} of the container's init is {link}: only pipes and files can be checkpointed as \
                 its standard descriptors"
            ),
        ));
    }
    let stat = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map_err(|e| io_err(format!("stat of descriptor {fd} of process {pid}"), e))?;
    if is_pty_slave(&stat) {
        // The container's terminal: its master is the caller's. CRIU knows a tty by its device
        // numbers; the restore hands it the slave of a new pty whose master goes to the
        // restoring caller.
        return Ok(Some((format!("tty[{:x}:{:x}]", stat.rdev(), stat.dev()), true)));
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(|e| io_err(format!("reading /proc/{pid}/fdinfo/{fd}"), e))?;
    let mount: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(|| ApiError::internal(format!("/proc/{pid}/fdinfo/{fd} has no mnt_id")))?;
    if own_mounts.contains(&mount) {
        // Opened inside the container: CRIU dumps and reopens it by itself.
        return Ok(None);
    }
    // CRIU's format: hexadecimal mount id and inode.
    Ok(Some((format!("file[{mount:x}:{:x}]", stat.ino()), true)))
}

/// Whether a file is the slave side of a Unix 98 pty (device majors 136 to 143).
fn is_pty_slave(stat: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    stat.file_type().is_char_device() && (136..=143).contains(&libc::major(stat.rdev()))
}

/// Whether a checkpoint's descriptor key names a terminal.
pub fn is_tty_key(key: &str) -> bool {
    key.starts_with("tty[")
}

/// The mount ids of process `pid`'s mount namespace.
fn mount_ids(pid: i32) -> Result<Vec<u64>, ApiError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| io_err(format!("reading /proc/{pid}/mountinfo"), e))?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect())
}

/// Takes a checkpoint: CRIU dumps the container's process tree into `dump.image`, and paddock's
/// record goes beside it. Unless `leave_running`, CRIU kills the processes once they are
/// dumped.
pub fn dump(dump: &Dump) -> Result<CheckpointRecord, ApiError> {
    make_dir(&dump.image)?;
    make_dir(&dump.work)?;
    if dump.image.join("inventory.img").exists() || dump.image.join(CHECKPOINT_FILE).exists() {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("{} already holds a checkpoint; give an empty --image-path", dump.image.display()),
        ));
    }
    let pid = dump.init.pid;
    // The pid names the process tree CRIU dumps and, without --leave-running, kills: it must
    // still be the container's init, not a process that took its pid since.
    if crate::procfs::start_time(pid).ok() != Some(dump.init.start_time) {
        return Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {:?}: its process has ended", dump.id)));
    }
    let own_mounts = mount_ids(pid)?;
    let mut record = CheckpointRecord {
        id: dump.id.clone(),
        init_pid: inner_pid(pid)?,
        stdio: Vec::new(),
        cgroup_mounts: Vec::new(),
    };
    let mut args: Vec<String> = vec!["dump".into(), "--tree".into(), pid.to_string()];
    for fd in 0..3 {
        let key = descriptor_key(pid, fd, &own_mounts)?;
        if let Some((key, true)) = &key {
            // A terminal is usually all three: named once.
            if !record.stdio.contains(&Some(key.clone())) {
                args.extend(["--external".into(), key.clone()]);
            }
        }
        record.stdio.push(key.map(|(k, _)| k));
    }
    // The sandbox's namespaces are not the container's to save: marked external, they are
    // handed back on restore (UTS and IPC, which CRIU cannot mark so, are joined there).
    args.extend(["--external".into(), format!("pid[{}]:{PID_NS_KEY}", namespace_inode(pid, "pid")?)]);
    args.extend(["--external".into(), format!("net[{}]:{NET_NS_KEY}", namespace_inode(pid, "net")?)]);
    args.extend(["--manage-cgroups=soft".into()]);
    if !dump.cgroup_namespace {
        // Without a cgroup namespace the container's cgroup mounts are subdirectories of the
        // host's hierarchies: external, and bound again from the new container's cgroup on
        // restore (runc does the same).
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .map_err(|e| io_err(format!("reading /proc/{pid}/mountinfo"), e))?;
        record.cgroup_mounts = cgroup_mounts_in(&mountinfo);
        for mount in &record.cgroup_mounts {
            let key = bind_key(Path::new(&mount.mountpoint))?;
            args.extend(["--external".into(), format!("mnt[{key}]:{key}")]);
        }
    }
    for destination in &dump.binds {
        // Not the container's to save: CRIU records the mount point under a key (its path, as
        // runc does) and the restore names the host path to bind there again.
        let key = bind_key(destination)?;
        args.extend(["--external".into(), format!("mnt[{key}]:{key}")]);
    }
    if let Some(freezer) = &dump.freezer {
        args.extend(["--freeze-cgroup".into(), freezer.display().to_string()]);
    }
    if dump.leave_running {
        args.push("--leave-running".into());
    }
    args.extend(dump.options.iter().cloned());
    run(&dump.criu, &args, &dump.image, &dump.work, DUMP_LOG, "checkpoint")?;
    let json = serde_json::to_vec_pretty(&record).map_err(|e| ApiError::internal(e.to_string()))?;
    let path = dump.image.join(CHECKPOINT_FILE);
    std::fs::write(&path, json).map_err(|e| io_err(format!("writing {}", path.display()), e))?;
    Ok(record)
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

/// The CRIU options the API lets a caller add (runc's flags that map to them); anything else
/// (another `--tree`, action scripts) is refused.
pub fn check_options(options: &[String]) -> Result<(), ApiError> {
    const ALLOWED: [&str; 8] = [
        "--tcp-established",
        "--ext-unix-sk",
        "--shell-job",
        "--file-locks",
        "--manage-cgroups=soft",
        "--manage-cgroups=full",
        "--manage-cgroups=strict",
        "--manage-cgroups=ignore",
    ];
    match options.iter().find(|o| !ALLOWED.contains(&o.as_str())) {
        Some(o) => Err(ApiError::invalid_argument(format!("CRIU option {o:?} is not one paddock passes on"))),
        None => Ok(()),
    }
}

/// The key a bind mount at `destination` has in a checkpoint: its path, which CRIU's option
/// syntax must be able to carry.
pub fn bind_key(destination: &Path) -> Result<String, ApiError> {
    let key = destination.display().to_string();
    if key.contains([']', ':', '[']) || !destination.is_absolute() {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!("the bind mount at {key:?} cannot be named to CRIU (an absolute path without ':', '[' or ']')"),
        ));
    }
    Ok(key)
}

/// CRIU's arguments for a restore, up to what only the sandbox knows (root, namespaces,
/// descriptors, bind mounts).
pub fn restore_args(
    image: &Path,
    work: &Path,
    cgroup: Option<&str>,
    record: &CheckpointRecord,
    options: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--images-dir".into(),
        image.display().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--log-file".into(),
        RESTORE_LOG.into(),
        "-v4".into(),
        "--restore-detached".into(),
        "--restore-sibling".into(),
        "--manage-cgroups=soft".into(),
    ];
    if let Some(cgroup) = cgroup {
        let hierarchies = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for root in cgroup_roots(&hierarchies, cgroup) {
            args.extend(["--cgroup-root".into(), root]);
        }
    }
    for mount in &record.cgroup_mounts {
        let hierarchy = host_hierarchy(mount).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "the checkpoint's cgroup hierarchy {} is not mounted on this host",
                    mount.controllers.join(",")
                ),
            )
        })?;
        let source = hierarchy.join(cgroup.unwrap_or_default().trim_start_matches('/'));
        let key = bind_key(Path::new(&mount.mountpoint))?;
        args.extend(["--external".into(), format!("mnt[{key}]:{}", source.display())]);
    }
    args.extend(options.iter().cloned());
    Ok(args)
}

/// CRIU's `--cgroup-root` values that put the restored processes in the container's cgroup:
/// one per v1 hierarchy (as paddock places containers there; a hybrid host's cgroup2 keeps
/// the checkpoint's own place, as paddock never moves a container there), or one for all on a
/// host with cgroup v2 only. `hierarchies` is `/proc/self/cgroup`.
fn cgroup_roots(hierarchies: &str, cgroup: &str) -> Vec<String> {
    let path = format!("/{}", cgroup.trim_start_matches('/'));
    let v1: Vec<String> = hierarchies
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (id, controllers) = (fields.next()?, fields.next()?);
            (id != "0" && !controllers.is_empty()).then(|| format!("{controllers}:{path}"))
        })
        .collect();
    if v1.is_empty() {
        vec![path]
    } else {
        v1
    }
}

/// Runs CRIU with `args` (the images and work directories and the log added) and turns a
/// failure into an error carrying the log's errors.
fn run(criu: &Path, args: &[String], image: &Path, work: &Path, log: &str, what: &str) -> Result<(), ApiError> {
    let mut command = Command::new(criu);
    command.args(&args[..1]);
    command.arg("--images-dir").arg(image).arg("--work-dir").arg(work).args(["--log-file", log, "-v4"]);
    command.args(&args[1..]);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // Registered while the watch list is held, so paddockd's orphan reaper never takes CRIU's
    // exit status.
    let child = {
        let mut watched = crate::process::WATCHED.lock().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn().map_err(|e| {
            ApiError::new(
                ErrorKind::Unsupported,
                format!("{what} needs CRIU, and {} could not be run: {e} (install criu 4.1 or later)", criu.display()),
            )
        })?;
        watched.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let output = child.wait_with_output();
    crate::process::forget(pid);
    crate::process::reap_orphans_if_on();
    let output = output.map_err(|e| ApiError::io(format!("waiting for {}", criu.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(failure(what, &work.join(log), &String::from_utf8_lossy(&output.stderr)))
}

/// An error for a failed CRIU run: the log's error lines (the last few), or CRIU's output.
pub fn failure(what: &str, log: &Path, output: &str) -> ApiError {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error (") && !l.contains("RLIMIT_NOFILE"))
        .map(|l| l.split_once(") ").map_or(l, |(_, rest)| rest).trim())
        .collect();
    let detail = if errors.is_empty() {
        output.trim().lines().last().unwrap_or("no error message").to_string()
    } else {
        errors[errors.len().saturating_sub(3)..].join("; ")
    };
    let hint = if text.contains("has bad size") {
        " (CRIU hands back a regular file only at the size it had at the checkpoint, unless it was opened for \
         appending: give the container's output to a pipe or a file opened with >>)"
    } else {
        ""
    };
    ApiError::new(ErrorKind::Sandbox, format!("{what} failed: CRIU: {detail}{hint} (log: {})", log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_logs_last_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        std::fs::write(
            &log,
            "(00.01) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.02) Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0 path=/dev/null\n\
             (00.03) Error (criu/cr-dump.c:2111): Dumping FAILED.\n",
        )
        .unwrap();
        let err = failure("checkpoint", &log, "");
        assert!(err.message.contains("Can't lookup mount=24") && err.message.contains("Dumping FAILED"), "{err}");
        assert!(!err.message.contains("RLIMIT"), "{err}");
        assert!(err.message.contains(&log.display().to_string()));
    }

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
    fn cgroup_roots_follow_the_hosts_hierarchies() {
        let hybrid = "9:name=systemd:/\n4:memory:/user.slice\n2:cpu,cpuacct:/\n0::/init.scope\n";
        assert_eq!(
            cgroup_roots(hybrid, "paddock/c/c"),
            ["name=systemd:/paddock/c/c", "memory:/paddock/c/c", "cpu,cpuacct:/paddock/c/c"]
        );
        assert_eq!(cgroup_roots("0::/init.scope\n", "/paddock/c/c"), ["/paddock/c/c"]);
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
    fn only_runcs_options_reach_criu() {
        assert!(check_options(&["--file-locks".into(), "--manage-cgroups=soft".into()]).is_ok());
        let err = check_options(&["--tree".into()]).unwrap_err();
        assert!(err.message.contains("--tree"), "{err}");
    }

    #[test]
    fn a_missing_record_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_record(dir.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(err.message.contains(CHECKPOINT_FILE), "{err}");
    }

    #[test]
    fn descriptors_of_this_process_get_criu_keys() {
        let me = std::process::id() as i32;
        let (reader, _writer) = std::io::pipe().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&reader);
        let (key, external) = descriptor_key(me, fd, &[]).unwrap().unwrap();
        assert!(key.starts_with("pipe:[") && !external, "{key}");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let (key, external) = descriptor_key(me, fd, &[]).unwrap().unwrap();
        assert!(key.starts_with("file[") && external, "{key}");
        assert_eq!(descriptor_key(me, 999_999, &[]).unwrap(), None);
    }
}
