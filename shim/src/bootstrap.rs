//! The shim's three lives: `start`, `delete`, and the server.
//!
//! containerd 1.6 and 1.7 read `start`'s output as a bare ttrpc address and speak the task API
//! as `containerd.task.v2.Task`; containerd 2.x accepts that too, and 2.3 and later pass
//! [`BootstrapParams`] on stdin and read a [`BootstrapResult`]. The server registers the task
//! service under both the v2 and the v3 name (the messages are the same), so every one of
//! them finds it. This is why the shim has its own bootstrap rather than the
//! `containerd-shim` crate's `run`, which answers only the v3 way.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::bootstrap::{BootstrapParams, BootstrapResult};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::{create_task, Task};
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use containerd_shim_protos::ttrpc::r#async::Server;

use crate::task::Service;

/// The environment variable carrying containerd's ttrpc address to its shims.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// The annotation that names a Kubernetes container's pod (its sandbox container's id).
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// The task service's names: containerd before 2.0 asks for v2, 2.x for v3.
const TASK_SERVICE_V3: &str = "containerd.task.v3.Task";
const TASK_SERVICE_V2: &str = "containerd.task.v2.Task";

/// Runs the action containerd asked for.
pub async fn run() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(args.get(1..).unwrap_or_default())?;
    if flags.version {
        println!("containerd-shim-paddock-v1 {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if flags.info {
        let info = containerd_shim_protos::types::introspection::RuntimeInfo {
            name: crate::RUNTIME_ID.to_string(),
            ..Default::default()
        };
        std::io::stdout().write_all(&info.write_to_bytes()?)?;
        return Ok(());
    }
    match flags.action.as_str() {
        "start" => start(&flags).await,
        "delete" => delete(&flags).await,
        "" => serve(&flags).await,
        other => anyhow::bail!("unknown action {other:?}"),
    }
}

/// What containerd piped to `start` (its bootstrap parameters or runtime options).
fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().take(10 << 20).read_to_end(&mut input)?;
    }
    Ok(input)
}

/// The group a container's shim serves: its pod, else the container alone. containerd runs
/// `start` in the container's bundle.
fn grouping(id: &str) -> String {
    let pod = std::fs::read("config.json")
        .ok()
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .and_then(|spec| spec["annotations"][SANDBOX_ID_ANNOTATION].as_str().map(str::to_string))
        .filter(|pod| !pod.is_empty());
    pod.unwrap_or_else(|| id.to_string())
}

/// The path of a `unix://` address.
fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Whether a shim server answers on `address`.
fn answers(address: &str) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(address)).is_ok()
}

/// `start`: the address of the group's server, started here if none answers.
async fn start(flags: &Flags) -> anyhow::Result<()> {
    let input = read_stdin()?;
    let bootstrap = BootstrapParams::parse_from_bytes(&input)
        .ok()
        .filter(|p| !input.is_empty() && p.instance_id == flags.id && p.namespace == flags.namespace);
    let new_protocol = bootstrap.is_some();
    let opts = match bootstrap {
        Some(params) => StartOpts::from(params),
        None => StartOpts {
            id: flags.id.clone(),
            publish_binary: flags.publish_binary.clone(),
            address: flags.address.clone(),
            ttrpc_address: std::env::var(TTRPC_ADDRESS).unwrap_or_default(),
            namespace: flags.namespace.clone(),
            debug: flags.debug,
            ..Default::default()
        },
    };
    let group = grouping(&opts.id);
    let address = opts.socket_address(&group);
    if !answers(&address) {
        // The new server says it listens by closing its stdout, which spawn waits for; one
        // that finds another server of the group already listening says so the same way.
        containerd_shim::spawn(opts, &group, Vec::new()).await?;
    }
    std::fs::write("address", &address).context("writing the address file")?;
    let mut out = std::io::stdout();
    if new_protocol {
        let result = BootstrapResult {
            version: containerd_shim_protos::TASK_API_VERSION,
            address,
            protocol: "ttrpc".to_string(),
            ..Default::default()
        };
        out.write_all(&result.write_to_bytes()?)?;
    } else {
        out.write_all(address.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `delete`: containerd's cleanup after the shim of a container died. paddockd still holds
/// the container: it goes, and so does the rootfs the shim mounted.
async fn delete(flags: &Flags) -> anyhow::Result<()> {
    let bundle = if flags.bundle.is_empty() { std::env::current_dir()? } else { PathBuf::from(&flags.bundle) };
    let daemon = crate::paddock::Daemon::new(crate::config::recall(&bundle));
    let id = flags.id.clone();
    let deleted = daemon.call(move |c| c.delete(&id, true)).await;
    match deleted {
        Ok(()) => {}
        Err(crate::paddock::DaemonError::Api(e)) if e.kind == wire::ErrorKind::NotFound => {}
        Err(e) => log::warn!("container {:?}: deleting it in paddockd: {e}", flags.id),
    }
    let rootfs = bundle.join("rootfs");
    while nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    // The dead server's socket, unless a server of the group answers there again: a killed
    // shim cannot remove its own, and containerd leaves it (under /run/containerd/s).
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let address = address.trim();
        if !address.is_empty() && !answers(address) {
            let _ = std::fs::remove_file(socket_path(address));
        }
    }
    let response = DeleteResponse {
        pid: 0,
        // As runc's shim reports a task it lost: killed (128 + SIGKILL).
        exit_status: 128 + 9,
        exited_at: MessageField::some(Timestamp::now()),
        ..Default::default()
    };
    std::io::stdout().write_all(&response.write_to_bytes()?)?;
    Ok(())
}

/// Binds the server's socket; `None` when another server of the group already listens there.
fn listen(address: &str) -> anyhow::Result<Option<std::os::unix::net::UnixListener>> {
    let path = socket_path(address);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::os::unix::net::UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if answers(address) {
                return Ok(None);
            }
            // A dead server's socket.
            if std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false) {
                std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            }
            Ok(Some(std::os::unix::net::UnixListener::bind(path).with_context(|| format!("binding {address}"))?))
        }
        Err(e) => Err(e).with_context(|| format!("binding {address}")),
    }
}

/// Tells `start` that the server is up: its stdout (the pipe `start` reads) closes.
fn signal_started() {
    // SAFETY: dup2 on the process's own standard descriptors; stderr stays open.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}

/// The server.
async fn serve(flags: &Flags) -> anyhow::Result<()> {
    anyhow::ensure!(!flags.socket.is_empty(), "the server needs -socket");
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id) {
        eprintln!("containerd-shim-paddock-v1: no log: {e}");
    }
    let Some(listener) = listen(&flags.socket)? else {
        std::fs::write("address", &flags.socket).context("writing the address file")?;
        signal_started();
        return Ok(());
    };
    let ttrpc_address = std::env::var(TTRPC_ADDRESS).context("TTRPC_ADDRESS is not set")?;
    let publisher = RemotePublisher::new(&ttrpc_address).await?;
    let exit = Arc::new(ExitSignal::default());
    let service = Service::new(flags.namespace.clone(), publisher, exit.clone());
    let task: Arc<dyn Task + Send + Sync> = Arc::new(service);
    let mut services = create_task(task.clone());
    if let Some(v2) = create_task(task).remove(TASK_SERVICE_V3) {
        services.insert(TASK_SERVICE_V2.to_string(), v2);
    }
    let listener = Listener::try_from(listener).context("ttrpc listener")?;
    let mut server = Server::new().add_listener(listener).register_service(services);
    server.start().await?;
    signal_started();
    log::info!("serving on {}", flags.socket);
    exit.wait().await;
    log::info!("shutting down");
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}
