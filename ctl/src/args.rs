//! ctl's command line, shaped like runc's.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// ctl: run and manage paddock containers. Speaks runc's command line.
#[derive(Debug, Parser)]
#[command(name = "ctl", about, disable_version_flag = true, args_override_self = true)]
pub struct CtlArgs {
    /// The state root; each root has its own paddockd (started on demand).
    #[arg(long, global = true, default_value = wire::stateroot::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also write errors (and with --debug, what ctl does) to this file, as runc does.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// The form of the --log file's lines: text (logfmt) or json (`{"level","msg","time"}`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log what ctl does, not only errors.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Read a cgroupsPath of the form slice:prefix:name as systemd would (accepted for runc
    /// compatibility: paddock recognises that form whether or not the flag is given).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// The CRIU binary for checkpoint and restore (`criu` from paddockd's PATH by default).
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
    /// runc's rootless mode: true, false or auto (paddock runs as root; accepted for
    /// compatibility).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Print the version (and the runtime-spec version).
    #[arg(long, short = 'v')]
    pub version: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The forms of the --log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time="…" level=error msg="…"`, as logrus writes.
    Text,
    /// One JSON object per line with `level`, `msg` and `time`.
    Json,
}

/// Output formats of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON array of states.
    Json,
}

/// ctl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create {
        /// The bundle directory (holding config.json).
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Write the container's pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// A Unix socket to send the terminal's pty master to (when process.terminal is set).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Restart policy: no, on-failure[:N], always, unless-stopped (sets the annotation
        /// dev.paddock.restart).
        #[arg(long)]
        restart: Option<String>,
        /// runc's create flags (bundle, console socket, pid file, …).
        #[command(flatten)]
        runc: RuncCreateFlags,
        /// The container's id.
        id: String,
    },
    /// Start a created container's program.
    Start {
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Print a container's state as JSON (with its gofer's and restart policy's record).
    #[command(alias = "inspect")]
    State {
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// List the containers.
    #[command(alias = "ps-all")]
    List {
        /// Print only the ids.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: Format,
    },
    /// Send a signal (default SIGTERM) to a container's init process.
    Kill {
        /// Signal every process of the container (with KILL: return once all are gone).
        #[arg(long, short = 'a')]
        all: bool,
        /// Signal this process (a pid in the container's PID namespace) instead of the init.
        #[arg(long, conflicts_with = "all")]
        pid: Option<i32>,
        /// The container's id (or an unambiguous prefix).
        id: String,
        /// The signal, by name (KILL, SIGKILL) or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Wait for a container (or one process) to exit and print the exit status as JSON.
    ///
    /// A container's status can be waited for as often as wanted; a process's is collected
    /// by the first wait that gets it.
    Wait {
        /// Wait for this process (a pid in the container's PID namespace) instead.
        #[arg(long, conflicts_with = "rootpid")]
        pid: Option<i32>,
        /// Wait for this process (a pid in the sandbox's PID namespace), of any container of
        /// the sandbox.
        #[arg(long)]
        rootpid: Option<i32>,
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Run another process in a created or running container.
    ///
    /// `ctl exec ID -- CMD ARGS...`, or runc's `ctl exec --process FILE ID`.
    Exec {
        /// Return once the process is started.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Write the process's host pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// A Unix socket to send the terminal's pty master to (with --tty).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// A JSON file with the whole OCI process to run.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        /// Add or replace an environment variable (KEY=VALUE).
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// The working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// UID[:GID] to run as.
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Allocate a terminal.
        #[arg(long, short = 't')]
        tty: bool,
        /// Additional groups (runc's flag; may repeat).
        #[arg(long = "additional-gids", short = 'g')]
        additional_gids: Vec<u32>,
        /// Set no_new_privileges for the process.
        #[arg(long)]
        no_new_privs: bool,
        /// Add a capability (runc's flag; may repeat).
        #[arg(long = "cap", short = 'c')]
        caps: Vec<String>,
        /// Pass ctl's descriptors 3 … 3+N-1 on to the process, as its 3, 4, ….
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Exec in a paused container too (runc's flag): the process is made frozen with the
        /// container and runs once it is resumed.
        #[arg(long)]
        ignore_paused: bool,
        /// The process's AppArmor profile (refused where AppArmor is not enabled).
        #[arg(long)]
        apparmor: Option<String>,
        /// The process's SELinux label (refused where SELinux is not enabled).
        #[arg(long)]
        process_label: Option<String>,
        /// Run the process in a sub-cgroup of the container's, which must exist: `PATH` for
        /// every hierarchy, or `CONTROLLER[,CONTROLLER]:PATH` (may repeat).
        #[arg(long)]
        cgroup: Vec<String>,
        /// The container's id (or an unambiguous prefix).
        id: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List a container's processes.
    ///
    /// `--format json` prints the host pids as a JSON array, as `runc ps` does.
    Ps {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: Format,
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Copy files between a container and the host, as `docker cp`.
    ///
    /// `ctl cp SRC ID:DST` and `ctl cp ID:SRC DST`; `-` as the local side is a tar stream on
    /// stdin or stdout. `DIR/.` copies a directory's contents. Modes and owners are kept;
    /// container paths never lead out of the container, whatever symlinks it holds.
    Cp {
        /// The source: a local path, `-`, or ID:PATH.
        src: String,
        /// The destination: a local path, `-`, or ID:PATH.
        dst: String,
    },
    /// Freeze every process of a running container.
    Pause {
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Change a container's cgroup limits.
    ///
    /// `--resources FILE` (or `-r FILE`, `-` for stdin) gives an OCI `linux.resources` JSON
    /// object; the other flags set one value each, as runc's.
    Update(UpdateArgs),
    /// Save a running container's processes to disk with CRIU.
    Checkpoint(CheckpointArgs),
    /// Create a container from its bundle with its processes restored from a checkpoint.
    Restore(RestoreArgs),
    /// Write a default config.json (runc's) into the bundle directory.
    Spec {
        /// The bundle directory (with the global --rootless: a spec for a rootless
        /// container, its user namespace mapping the caller's ids).
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// Print what this runtime supports, as the runtime-spec's features document (JSON).
    Features,
    /// Internal: the process a detached create's or exec's pid file names (see
    /// `cli::monitor`).
    #[command(hide = true, name = "monitor-process")]
    MonitorProcess {
        /// The process (a pid in the container's PID namespace) instead of the container.
        #[arg(long)]
        pid: Option<i32>,
        /// A descriptor to close once the wait is with paddockd (the spawning ctl waits for it).
        #[arg(long)]
        ready_fd: Option<i32>,
        /// The container's id.
        id: String,
    },
    /// Delete a container and everything it holds.
    Delete {
        /// Kill the container if it still runs; succeed if it does not exist.
        #[arg(long, short = 'f')]
        force: bool,
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Print events as JSON lines: created, started, exited, oom, paused, resumed, deleted,
    /// restart-scheduled, restart-gave-up, gofer-restarted, gofer-failed, sandbox-lost.
    ///
    /// Without --follow, the retained history (kept per container until it is deleted); with
    /// it, the history and then every new event until interrupted.
    ///
    /// runc's forms: `--stats ID` prints the container's resource usage once
    /// (`{"type":"stats","id":…,"data":{cpu,memory,pids,blkio,hugetlb}}`); `--interval D ID`
    /// prints it every D (`5s`, `500ms`) and an `{"type":"oom","id":…}` line whenever the
    /// kernel's OOM killer acts in the container, until the container stops.
    Events {
        /// Keep printing new events.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Print the resource usage of the containers once, as runc's `events --stats`.
        #[arg(long, conflicts_with_all = ["follow", "interval"])]
        stats: bool,
        /// Print the resource usage of the container every so often, and OOM kills as they
        /// happen, as runc's `events --interval`.
        #[arg(long, conflicts_with = "follow")]
        interval: Option<String>,
        /// Only these containers (ids or unambiguous prefixes); default: all.
        ids: Vec<String>,
    },
    /// Create and start a container, and (unless detached) wait for it.
    ///
    /// `ctl run --bundle DIR ID` runs a bundle as runc does. `ctl run -- CMD ARGS...` runs CMD
    /// sandboxed on the host's root filesystem under a private in-memory overlay: no bundle or
    /// image needed. With both, CMD replaces the bundle's process arguments.
    Run {
        /// Start the container and return at once.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Delete the container once it exits.
        #[arg(long)]
        rm: bool,
        /// Keep the container once it exits (runc's flag: in runc's form, `run --bundle DIR
        /// ID`, a foreground run deletes the container at exit unless given this).
        #[arg(long, conflicts_with = "rm")]
        keep: bool,
        /// The container's id (default: a random one).
        #[arg(long)]
        name: Option<String>,
        /// The bundle directory; without it, the host's root filesystem is used.
        #[arg(long, short = 'b')]
        bundle: Option<PathBuf>,
        /// Write the container's pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Give the process a terminal (sets process.terminal).
        #[arg(long, short = 't')]
        tty: bool,
        /// A Unix socket to send the terminal's pty master to.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Restart policy: no, on-failure[:N], always, unless-stopped. A foreground run
        /// returns once the container stopped for good.
        #[arg(long)]
        restart: Option<String>,
        /// runc's create flags (bundle, console socket, pid file, …).
        #[command(flatten)]
        runc: RuncCreateFlags,
        /// The container's id (runc's form: `run --bundle DIR ID`).
        id: Option<String>,
        /// The command to run, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// Flags of runc's `create` and `run` that paddock accepts for compatibility.
#[derive(Debug, clap::Args)]
pub struct RuncCreateFlags {
    /// Do not use pivot_root (runc's flag; the sandbox sets up the root its own way).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a session keyring (runc's flag; containers share the sandbox's keyring).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many more descriptors (3, 4, …) of ctl's to the container's process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

/// `ctl update`: runc's flags.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// An OCI linux.resources JSON file (`-` for stdin).
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted).
    #[arg(long, short = 'm')]
    pub memory: Option<String>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Kernel memory limit (ignored by current kernels; accepted).
    #[arg(long)]
    pub kernel_memory: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: none).
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPUs the container may use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// The container's id (or an unambiguous prefix).
    pub id: String,
}

/// The flags runc's checkpoint and restore both pass on to CRIU.
#[derive(Debug, clap::Args)]
pub struct CriuFlags {
    /// Allow open TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long)]
    pub shell_job: bool,
    /// Checkpoint or restore file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// How to handle cgroups (soft, full, strict, ignore).
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
}

/// `ctl checkpoint`: runc's flags.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// Where to write the images.
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Where to write CRIU's logs and work files.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Images of a previous checkpoint to build on.
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint (podman may give it twice).
    #[arg(long, action = clap::ArgAction::Count)]
    pub leave_running: u8,
    /// The CRIU options of runc's checkpoint and restore.
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Only dump memory pages (pre-dump).
    #[arg(long)]
    pub pre_dump: bool,
    /// Handle namespaces that are not the container's own.
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Use the kernel's dirty-memory tracking.
    #[arg(long)]
    pub auto_dedup: bool,
    /// Use lazy migration.
    #[arg(long)]
    pub lazy_pages: bool,
    /// The status descriptor for lazy pages.
    #[arg(long)]
    pub status_fd: Option<i32>,
    /// The page server address.
    #[arg(long)]
    pub page_server: Option<String>,
    /// The container's id (or an unambiguous prefix).
    pub id: String,
}

/// `ctl restore`: runc's flags.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Where the images are.
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Where to write CRIU's logs and work files.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Write the container's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Return once restored.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// A socket to send the terminal to.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// The CRIU options of runc's checkpoint and restore.
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Do not use pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not make ctl a child subreaper (runc's flag).
    #[arg(long)]
    pub no_subreaper: bool,
    /// Handle namespaces that are not the container's own.
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Automatically deduplicate.
    #[arg(long)]
    pub auto_dedup: bool,
    /// Use lazy migration.
    #[arg(long)]
    pub lazy_pages: bool,
    /// The container's id.
    pub id: String,
}

impl CtlArgs {
    /// How many descriptors (3, 4, …) the command passes on to a container's process
    /// (`--preserve-fds`).
    pub fn preserved_fds(&self) -> u32 {
        match &self.command {
            Some(Command::Create { runc, .. }) | Some(Command::Run { runc, .. }) => runc.preserve_fds,
            Some(Command::Exec { preserve_fds, .. }) => *preserve_fds,
            _ => 0,
        }
    }
}
