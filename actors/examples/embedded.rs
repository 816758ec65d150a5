//! Embedding paddock in a Rust program: start the actor system in-process and run a container
//! by sending the supervisor its messages directly. No daemon, no socket.
//!
//! Usage: `embedded [STATE_ROOT]` (default: a fresh directory under /tmp). Runs a shell on the
//! host's root filesystem under a private overlay, prints its output, deletes it, and exits
//! with its exit code.

use std::os::fd::AsFd;

use actors::{Api, Supervisor, SupervisorConfig};
use wire::api::{Create, Delete, Start, Wait};
use wire::{FdSlot, SpecJson, Stdio};

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| format!("/tmp/paddock-embedded-{}", std::process::id()));
    let code = actix::System::new().block_on(run(root.into()));
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("embedded: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(root: std::path::PathBuf) -> Result<i32, Box<dyn std::error::Error>> {
    // The helper binaries are found beside this executable or one directory up, which is
    // where cargo puts them relative to target/*/examples/.
    let supervisor = Supervisor::start(SupervisorConfig::new(root))?;

    let id = format!("embedded-{}", std::process::id());
    let spec = wire::spec::embedded_default(
        &id,
        vec!["/bin/sh".into(), "-c".into(), "echo hello from a sandbox inside an embedding program; exit 5".into()],
    )?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let created = supervisor
        .send(Api(Create {
            id: id.clone(),
            bundle: Default::default(),
            spec: SpecJson::from_spec(&spec)?,
            stdio: Stdio { stdout: FdSlot::new(stdout), stderr: FdSlot::new(stderr), ..Stdio::default() },
            restore: None,
        }))
        .await??;
    eprintln!("created {} (pid {:?})", created.id, created.pid);
    supervisor.send(Api(Start { id: id.clone() })).await??;
    let status = supervisor.send(Api(Wait { id: id.clone(), kill_on_hangup: false })).await??;
    supervisor.send(Api(Delete { id, force: false })).await??;
    Ok(status.code())
}
