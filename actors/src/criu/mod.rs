//! Checkpoint and restore through CRIU, as runc and crun do it, shaped by the sandbox.
//!
//! A container's init is PID 1 of its own PID namespace, nested in its sandbox's, and a child
//! of the sandbox. So a checkpoint dumps that PID namespace whole, as runc's does, and a
//! restore runs CRIU as a child of the (new) sandbox, which recreates the namespace and, with
//! `--restore-sibling`, makes the restored init the sandbox's child again (see
//! `RestoreInSandbox` of the sandbox protocol). The network namespace is the sandbox's,
//! marked external; UTS and IPC (which CRIU cannot mark external) are joined, not recreated,
//! on restore.
//!
//! Modules: `dump` takes a checkpoint, `record` is paddock's file beside the images,
//! `restore` makes paddockd's part of CRIU's restore command line.
//!
//! CRIU is run as a program (not through its RPC): its command line is stable, documented,
//! and what an administrator can rerun by hand from the log's first line.
//!
//! The standard descriptors of the dumped init usually lead out of the container (the
//! caller's pipes, files, `/dev/null` of the host): each is recorded in the checkpoint's
//! [`CHECKPOINT_FILE`] with the key CRIU knows it by, marked external when it is a file, and
//! replaced on restore by the restoring caller's descriptor (`--inherit-fd`), as runc's
//! `descriptors.json` does.

mod dump;
mod record;
mod restore;

use std::path::{Path, PathBuf};

use wire::{ApiError, ErrorKind};

use crate::process::WatchedPid;

pub use dump::{dump, Dump};
pub use record::{read_record, CgroupMount, CheckpointRecord};
pub use restore::restore_args;

/// The file paddock adds to a checkpoint's image directory.
pub const CHECKPOINT_FILE: &str = "paddock-checkpoint.json";
/// CRIU's log of a dump, in the work directory.
pub const DUMP_LOG: &str = "dump.log";
/// CRIU's log of a restore, in the work directory.
pub const RESTORE_LOG: &str = "restore.log";
pub use wire::sandbox_proto::NET_NS_KEY;
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

pub(crate) fn io_err(what: impl std::fmt::Display, err: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Io, format!("{what}: {err}"))
}

/// Makes a directory for images or logs (mode 0700 if new).
pub(crate) fn make_dir(dir: &Path) -> Result<(), ApiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err(dir.display(), e))
}

/// Refuses to `operation` (checkpoint or restore) container `id` when its seccomp filter
/// notifies an agent (`SCMP_ACT_NOTIFY` with `linux.seccomp.listenerPath`). CRIU dumps a
/// filter's program but not its listener (the kernel reports no `NEW_LISTENER` flag, and the
/// notification descriptor is the agent's, not the container's), and the kernel cannot give
/// a restored filter a listener: the restored processes' notified system calls would fail
/// with ENOSYS and the agent would never hear of them again.
pub fn refuse_seccomp_listener(id: &str, spec: &oci_spec::runtime::Spec, operation: &str) -> Result<(), ApiError> {
    match crate::seccomp_agent::Listener::of(spec) {
        Some(listener) => Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "{operation} of {id:?}: its seccomp filter notifies the agent at linux.seccomp.listenerPath {}, which \
                 CRIU cannot carry over (a restored filter has no listener, and the agent would get no new \
                 descriptor)",
                listener.path.display()
            ),
        )),
        None => Ok(()),
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

/// Runs CRIU with `args` (the images and work directories and the log added) and turns a
/// failure into an error carrying the log's errors.
pub(crate) fn run(
    criu: &Path,
    args: &[String],
    image: &Path,
    work: &Path,
    log: &str,
    what: &str,
) -> Result<(), ApiError> {
    let (action, rest) =
        args.split_first().ok_or_else(|| ApiError::internal(format!("{what}: no CRIU action to run")))?;
    let mut argv: Vec<std::ffi::OsString> = vec![criu.into(), action.into()];
    argv.extend(["--images-dir".into(), image.into(), "--work-dir".into(), work.into()]);
    argv.extend(["--log-file", log, "-v4"].map(Into::into));
    argv.extend(rest.iter().map(Into::into));
    let not_run = |e: std::io::Error| {
        ApiError::new(
            ErrorKind::Unsupported,
            format!("{what} needs CRIU, and {} could not be run: {e} (install criu 4.1 or later)", criu.display()),
        )
    };
    // Its errors go to a memory file, read once it ended: nothing it leaves behind holding
    // its output can keep us waiting.
    let stderr = rustix::fs::memfd_create("paddock-criu-stderr", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| ApiError::io("creating CRIU's output file", e))?;
    let io = |what: &str, e: std::io::Error| ApiError::io(what.to_string(), e);
    let command = sys::spawn::Command::new(criu)
        .argv(argv)
        .environment(crate::launch::inherited_environment())
        .fd(std::fs::File::open("/dev/null").map_err(|e| io("opening /dev/null", e))?, 0)
        .fd(std::fs::File::options().write(true).open("/dev/null").map_err(|e| io("opening /dev/null", e))?, 1)
        .fd(stderr.try_clone().map_err(|e| io("duplicating CRIU's output file", e))?, 2);
    // On the watch list from its first instant, so paddockd's orphan reaper never takes CRIU's
    // exit status.
    let (spawned, _watched) = WatchedPid::spawn(|| command.spawn(), |s| s.pid()).map_err(|e| not_run(e.into()))?;
    let child = spawned.executed().map_err(|e| not_run(e.into()))?;
    let status = child.wait().map_err(|e| ApiError::io(format!("waiting for {}", criu.display()), e))?;
    if status.is_some_and(|s| s.exited() && s.exit_status() == Some(0)) {
        return Ok(());
    }
    // CRIU's writes moved the offset the copy shares with `stderr`.
    let _ = rustix::fs::seek(&stderr, rustix::fs::SeekFrom::Start(0));
    let mut output = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(stderr), &mut output);
    Err(failure(what, &work.join(log), &String::from_utf8_lossy(&output)))
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
    ApiError::new(ErrorKind::Criu, format!("{what} failed: CRIU: {detail}{hint} (log: {})", log.display()))
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
    fn only_runcs_options_reach_criu() {
        assert!(check_options(&["--file-locks".into(), "--manage-cgroups=soft".into()]).is_ok());
        let err = check_options(&["--tree".into()]).unwrap_err();
        assert!(err.message.contains("--tree"), "{err}");
    }
}
