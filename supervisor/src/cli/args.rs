//! ctl's command line, shaped like runc's.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// ctl: run and manage paddock containers. Speaks runc's command line.
#[derive(Debug, Parser)]
#[command(name = "ctl", version, about)]
pub struct CtlArgs {
    /// The state root; each root has its own paddockd (started on demand).
    #[arg(long, global = true, default_value = crate::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    /// Delete a container and everything it holds.
    Delete {
        /// Kill the container if it still runs; succeed if it does not exist.
        #[arg(long, short = 'f')]
        force: bool,
        /// The container's id (or an unambiguous prefix).
        id: String,
    },
    /// Create and start a container, and (unless detached) wait for it.
    ///
    /// `ctl run --bundle DIR ID` runs a bundle as runc does. `ctl run -- CMD ARGS...` runs CMD
    /// sandboxed on the host's root filesystem under a private in-memory overlay: no bundle or
    /// image needed. With both, CMD replaces the bundle's process arguments.
    /// Print events as JSON lines: created, started, exited, oom, paused, resumed, deleted,
    /// restart-scheduled, restart-gave-up, gofer-restarted, gofer-failed, sandbox-lost.
    ///
    /// Without --follow, the retained history (kept per container until it is deleted); with
    /// it, the history and then every new event until interrupted.
    Events {
        /// Keep printing new events.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only these containers (ids or unambiguous prefixes); default: all.
        ids: Vec<String>,
    },
    Run {
        /// Start the container and return at once.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Delete the container once it exits.
        #[arg(long)]
        rm: bool,
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
        /// The container's id (runc's form: `run --bundle DIR ID`).
        id: Option<String>,
        /// The command to run, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
}
