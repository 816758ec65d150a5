//! ctl: paddock's command-line client, which speaks runc's command line. See `ctl --help`.
//!
//! containerd's shim, podman and Docker run it for every operation on a container, so it is
//! a crate of its own that links the wire protocol (`wire`) and the system calls it needs
//! (`sys`), and neither the daemon's actors nor an async or actor runtime: `.ci/run` checks
//! that `cargo tree -p paddock-ctl` holds no tokio and no actix.
//!
//! - [`wire::autostart`]: how ctl starts a paddockd when none answers.
//! - [`signals`]: signal names and numbers as users type them.

mod args;
mod checkpoint;
mod copy;
mod events;
mod features;
mod log;
mod monitor;
mod output;
mod run;
mod runc_argv;
mod signals;
mod terminal;
mod update;

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;
use wire::client::Client;

pub use args::{Command, CtlArgs, Format, LogFormat};

use wire::autostart::connect_or_start;

fn main() {
    std::process::exit(run_ctl());
}

/// The command line, in runc's forms or clap's. clap's tree of every subcommand and flag is
/// built once, for both the normalizing and the parse: building it is a good part of what a
/// ctl call costs before it connects (its allocations alone touch about a hundred pages).
fn parse_args() -> CtlArgs {
    use clap::FromArgMatches as _;
    let command = CtlArgs::command();
    let argv = runc_argv::normalize(&command, std::env::args_os().collect());
    let mut matches = command.get_matches_from(argv);
    CtlArgs::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut CtlArgs::command()).exit())
}

/// Runs ctl; returns the process exit code.
fn run_ctl() -> i32 {
    // runc's forms of ctl's flags (`-no-subreaper`, `--systemd-cgroup=false`) as clap's.
    let args = parse_args();
    // Before ctl opens anything of its own (the log, the connection) on those numbers.
    let preserved = run::preserve_fds(args.preserved_fds());
    let log = log::Log::new(args.log.clone(), args.log_format, args.debug);
    log.debug(&format!("ctl {}", std::env::args().skip(1).collect::<Vec<_>>().join(" ")));
    match preserved.and_then(|()| execute(args)) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log.error(&msg);
            eprintln!("ctl: {msg}");
            1
        }
    }
}

/// Checks that `id` is a container's whole id, as runc names containers, before a kill or a
/// delete: an id that is only a prefix of another's does not exist. (containerd's shim deletes
/// with --force an id it deleted already; a prefix match would take another container.)
fn exactly(client: &mut Client, id: &str) -> Result<(), wire::ApiError> {
    let state = client.state(id)?;
    if state.id != id {
        return Err(wire::ApiError::not_found(format!("container {} does not exist", wire::ids::show_id(id))));
    }
    Ok(())
}

fn connect(root: &Path) -> anyhow::Result<Client> {
    Ok(connect_or_start(root)?)
}

fn execute(args: CtlArgs) -> anyhow::Result<i32> {
    if args.version {
        print!("{}", features::version_text());
        return Ok(0);
    }
    let root = std::path::absolute(&args.root)?;
    let rootless = args.rootless.as_deref() == Some("true");
    let Some(command) = args.command else {
        use clap::CommandFactory;
        CtlArgs::command().print_help()?;
        return Ok(2);
    };
    match command {
        Command::Create { bundle, pid_file, console_socket, restart, runc: _, id } => {
            let mut client = connect(&root)?;
            let how = run::CreateOptions {
                pid_file: pid_file.as_deref(),
                console_socket: console_socket.as_deref(),
                detach: true,
                tty: false,
                restart: restart.as_deref(),
                root: &root,
                restore: None,
            };
            run::create(&mut client, &id, Some(&bundle), Vec::new(), how)?;
            Ok(0)
        }
        Command::Start { id } => {
            connect(&root)?.start(&id)?;
            Ok(0)
        }
        Command::State { id } => {
            let state = connect(&root)?.state(&id)?;
            println!("{}", output::state_json(&state));
            Ok(0)
        }
        Command::List { quiet, format } => {
            let mut states = connect(&root)?.list()?;
            states.sort_by(|a, b| a.id.cmp(&b.id));
            if quiet {
                for s in &states {
                    println!("{}", s.id);
                }
            } else {
                match format {
                    Format::Json => println!("{}", output::list_json(&states)),
                    Format::Table => print!("{}", output::list_table(&states)),
                }
            }
            Ok(0)
        }
        Command::Kill { all, pid, id, signal } => {
            let signal = crate::signals::parse_signal(&signal).map_err(anyhow::Error::msg)?;
            let mut client = connect(&root)?;
            exactly(&mut client, &id)?;
            client.kill(&id, signal, all, pid)?;
            Ok(0)
        }
        Command::Wait { pid, rootpid, id } => {
            let mut client = connect(&root)?;
            let full_id = client.state(&id)?.id;
            let status = match (pid, rootpid) {
                (Some(pid), _) => client.wait_process(&full_id, pid, false)?,
                (None, Some(pid)) => client.wait_process(&full_id, pid, true)?,
                (None, None) => client.wait(&full_id)?,
            };
            println!("{}", output::wait_json(&full_id, status));
            Ok(0)
        }
        Command::Exec {
            detach,
            pid_file,
            console_socket,
            process,
            env,
            cwd,
            user,
            tty,
            additional_gids,
            no_new_privs,
            caps,
            preserve_fds: _,
            ignore_paused,
            apparmor,
            process_label,
            cgroup,
            id,
            command,
        } => {
            let process = match process {
                Some(path) => {
                    Some(std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
                }
                None => None,
            };
            // A terminal ctl serves itself starts at ctl's own size.
            let console_size = (console_socket.is_none() && !detach).then(terminal::own_window_size).flatten();
            let spec = wire::api::ExecSpec {
                process,
                args: command,
                env,
                cwd,
                user,
                tty,
                console_size,
                add_caps: caps,
                additional_gids,
                no_new_privs,
                apparmor_profile: apparmor,
                selinux_label: process_label,
                ignore_paused,
                sub_cgroups: cgroup,
            };
            run::exec(&root, &id, spec, detach, pid_file.as_deref(), console_socket.as_deref())
        }
        Command::Ps { format, id } => {
            let procs = connect(&root)?.ps(&id)?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string(&procs.iter().map(|p| p.pid).collect::<Vec<_>>())?)
                }
                Format::Table => print!("{}", output::ps_table(&procs)),
            }
            Ok(0)
        }
        Command::Cp { src, dst } => {
            copy::copy(&mut connect(&root)?, &src, &dst)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            let mut client = connect(&root)?;
            match exactly(&mut client, &id).and_then(|()| client.delete(&id, force)) {
                // runc: deleting with --force what is not there (any more) succeeds.
                Err(e) if force && e.kind == wire::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(e.into()),
                Ok(()) => Ok(0),
            }
        }
        Command::Pause { id } => {
            connect(&root)?.pause(&id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            connect(&root)?.resume(&id)?;
            Ok(0)
        }
        Command::Update(update) => {
            let resources = update::resources_json(&update)?;
            connect(&root)?.update(&update.id, resources)?;
            Ok(0)
        }
        Command::Checkpoint(c) => checkpoint::checkpoint(&root, args.criu.as_deref(), c),
        Command::Restore(r) => checkpoint::restore(&root, args.criu.as_deref(), r),
        Command::Spec { bundle } => {
            features::write_default_spec(&bundle, rootless)?;
            Ok(0)
        }
        Command::MonitorProcess { pid, ready_fd, id } => Ok(monitor::run(&root, &id, pid, ready_fd)),
        Command::Features => {
            println!("{}", features::features_json());
            Ok(0)
        }
        Command::Events { stats: true, ids, .. } => events::print_stats(&mut connect(&root)?, &ids),
        Command::Events { interval: Some(every), ids, .. } => events::stream_stats(&root, &ids, &every),
        Command::Events { follow, ids, .. } => events::print(&mut connect(&root)?, ids, follow),
        Command::Run {
            detach,
            rm,
            keep,
            name,
            bundle,
            pid_file,
            tty,
            console_socket,
            restart,
            runc: _,
            id,
            command,
        } => {
            // runc's `run ID` in the foreground destroys the container when it exits unless
            // --keep; paddock's own form (--name, or none) keeps it unless --rm.
            let rm = rm || (id.is_some() && !detach && !keep);
            let id = match (name, id) {
                (Some(_), Some(_)) => {
                    anyhow::bail!("give the id either with --name or as an argument, not both")
                }
                (Some(n), None) | (None, Some(n)) => n,
                (None, None) => run::random_id()?,
            };
            run::run(
                &root,
                run::RunOptions {
                    id,
                    bundle,
                    command,
                    detach,
                    remove: rm,
                    pid_file,
                    tty,
                    console_socket,
                    restart,
                    restore: None,
                },
            )
        }
    }
}
