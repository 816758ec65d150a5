//! Taking a checkpoint: the container's process tree, its standard descriptors and the
//! mounts that are not its own to save, named to CRIU.

use std::path::{Path, PathBuf};

use wire::{ApiError, ErrorKind};

use super::record::cgroup_mounts_in;
use super::{bind_key, io_err, make_dir, run, CheckpointRecord, CHECKPOINT_FILE, DUMP_LOG, NET_NS_KEY};

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

/// The mount ids of a mount namespace, from its `mountinfo`.
fn mount_ids(mountinfo: &str) -> Vec<u64> {
    mountinfo.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

/// The mount points of a `mountinfo` (as its process sees them; octal escapes left as they are).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = &str> {
    mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4))
}

/// Where the runtime-spec has a container's terminal bound.
const CONSOLE: &str = "/dev/console";

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
    // CRIU saves a PID namespace whole, from its init: the container's own. A container that
    // shares one (a pod's, the host's) is not a tree CRIU can cut out of it.
    let init_pid = inner_pid(pid)?;
    if init_pid != 1 {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "container {:?} shares a PID namespace (its init is pid {init_pid} there): only a container with a \
                 PID namespace of its own can be checkpointed",
                dump.id
            ),
        ));
    }
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| io_err(format!("reading /proc/{pid}/mountinfo"), e))?;
    let own_mounts = mount_ids(&mountinfo);
    let mut record =
        CheckpointRecord { id: dump.id.clone(), init_pid, stdio: Vec::new(), cgroup_mounts: Vec::new(), console: None };
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
    // The sandbox's network namespace is not the container's to save: marked external, it is
    // handed back on restore (UTS and IPC, which CRIU cannot mark so, are joined there). The
    // container's own PID namespace is saved whole and made anew.
    args.extend(["--external".into(), format!("net[{}]:{NET_NS_KEY}", namespace_inode(pid, "net")?)]);
    args.extend(["--manage-cgroups=soft".into()]);
    if !dump.cgroup_namespace {
        // Without a cgroup namespace the container's cgroup mounts are subdirectories of the
        // host's hierarchies: external, and bound again from the new container's cgroup on
        // restore (runc does the same).
        record.cgroup_mounts = cgroup_mounts_in(&mountinfo);
        for mount in &record.cgroup_mounts {
            let key = bind_key(Path::new(&mount.mountpoint))?;
            args.extend(["--external".into(), format!("mnt[{key}]:{key}")]);
        }
    }
    if mount_points(&mountinfo).any(|m| m == CONSOLE) {
        // The terminal bound on /dev/console is a pty of the container's devpts whose master is
        // the caller's, which CRIU cannot dump ("unable to find a master"): external, as the
        // terminal itself is, and bound again from the restore's new terminal.
        let key = bind_key(Path::new(CONSOLE))?;
        args.extend(["--external".into(), format!("mnt[{key}]:{key}")]);
        record.console = Some(key);
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
    // Read before CRIU runs: without --leave-running the process is gone after.
    let descriptors = standard_descriptors(pid);
    run(&dump.criu, &args, &dump.image, &dump.work, DUMP_LOG, "checkpoint")?;
    let path = dump.image.join(DESCRIPTORS_FILE);
    let json = serde_json::to_vec(&descriptors).map_err(|e| ApiError::internal(e.to_string()))?;
    write_private(&path, &json).map_err(|e| io_err(format!("writing {}", path.display()), e))?;
    let json = serde_json::to_vec_pretty(&record).map_err(|e| ApiError::internal(e.to_string()))?;
    let path = dump.image.join(CHECKPOINT_FILE);
    std::fs::write(&path, json).map_err(|e| io_err(format!("writing {}", path.display()), e))?;
    Ok(record)
}

/// runc's record of the init's standard descriptors in a checkpoint image, which clients and
/// tools read (what each of 0, 1 and 2 linked to; a pipe's `pipe:[inode]` is the key a restore
/// passes to CRIU's `--inherit-fd`).
pub const DESCRIPTORS_FILE: &str = "descriptors.json";

/// What `/proc/<pid>/fd/0`, `1` and `2` link to, as runc records them: an empty string for a
/// descriptor that is closed or cannot be read.
fn standard_descriptors(pid: i32) -> [String; 3] {
    std::array::from_fn(|fd| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
    })
}

/// Writes a file only its owner can read (as runc writes `descriptors.json`: mode 0600).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
