//! `ctl checkpoint` and `ctl restore`: runc's flags, carried out by paddockd with CRIU.

use std::path::{Path, PathBuf};

use wire::api::{Checkpoint, RestoreFrom};

use super::args::{CheckpointArgs, CriuFlags, RestoreArgs};
use super::run;

/// runc's default image directory: `checkpoint` in the current directory.
const DEFAULT_IMAGE_DIR: &str = "checkpoint";

fn absolute(path: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    Ok(path.map(std::path::absolute).transpose()?)
}

/// The CRIU options that the flags turn on (after checking them); the rest CRIU does by
/// paddock's rules.
fn criu_options(flags: &CriuFlags) -> anyhow::Result<Vec<String>> {
    let mut options: Vec<String> = [
        (flags.tcp_established, "--tcp-established"),
        (flags.ext_unix_sk, "--ext-unix-sk"),
        (flags.shell_job, "--shell-job"),
        (flags.file_locks, "--file-locks"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| flag.to_string())
    .collect();
    match flags.manage_cgroups_mode.as_deref() {
        None => {}
        Some(mode @ ("soft" | "full" | "strict" | "ignore")) => options.push(format!("--manage-cgroups={mode}")),
        Some(other) => anyhow::bail!("--manage-cgroups-mode {other:?}: expected soft, full, strict or ignore"),
    }
    Ok(options)
}

/// `ctl checkpoint`.
pub fn checkpoint(root: &Path, criu: Option<&Path>, args: CheckpointArgs) -> anyhow::Result<i32> {
    for (given, flag) in [
        (args.pre_dump, "--pre-dump"),
        (args.lazy_pages, "--lazy-pages"),
        (args.page_server.is_some(), "--page-server"),
        (args.parent_path.is_some(), "--parent-path"),
        (args.status_fd.is_some(), "--status-fd"),
    ] {
        anyhow::ensure!(!given, "checkpoint {flag}: incremental and lazy checkpoints are not supported");
    }
    let image_path = std::path::absolute(args.image_path.as_deref().unwrap_or(Path::new(DEFAULT_IMAGE_DIR)))?;
    let request = Checkpoint {
        id: args.id,
        image_path,
        work_path: absolute(args.work_path.as_deref())?,
        // podman may give the flag twice; any count means yes.
        leave_running: args.leave_running > 0,
        criu_options: criu_options(&args.criu)?,
        criu: absolute(criu)?,
    };
    super::connect(root)?.checkpoint(request)?;
    Ok(0)
}

/// `ctl restore`: creates the container from its bundle with its processes restored, and
/// unless detached waits for it as `ctl run` does.
pub fn restore(root: &Path, criu: Option<&Path>, args: RestoreArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(!args.lazy_pages, "restore --lazy-pages: lazy restores are not supported");
    let image_path = std::path::absolute(args.image_path.as_deref().unwrap_or(Path::new(DEFAULT_IMAGE_DIR)))?;
    let from = RestoreFrom {
        image_path,
        work_path: absolute(args.work_path.as_deref())?,
        criu_options: criu_options(&args.criu)?,
        criu: absolute(criu)?,
    };
    run::run(
        root,
        run::RunOptions {
            id: args.id,
            bundle: Some(args.bundle),
            command: Vec::new(),
            detach: args.detach,
            remove: false,
            pid_file: args.pid_file,
            tty: false,
            console_socket: args.console_socket,
            restart: None,
            restore: Some(from),
        },
    )
}
