//! paddock's actors: the supervisor and its children, on actix.
//!
//! - [`Supervisor`]: the registry and router; resolves ids and serializes creation.
//! - [`container::ContainerActor`]: one container's status machine and metadata.
//! - [`sandbox::SandboxActor`]: one sandbox process and its control connection.
//! - [`gofer::GoferActor`]: one gofer process.
//! - [`events::EventBus`]: every change, with a bounded history per container, for
//!   subscribers (`ctl events`).
//!
//! The messages are the wire crate's API structs ([`wire::api`]), each wrapped in [`Api`]:
//! the same values `ctl` sends over the socket can be sent to the supervisor directly. This is
//! how a Rust program embeds paddock (see `examples/embedded.rs`):
//!
//! ```no_run
//! # async fn demo() -> Result<(), wire::ApiError> {
//! use actors::{Api, Supervisor, SupervisorConfig};
//! let supervisor = Supervisor::start(SupervisorConfig::new("/run/paddock-embedded"))?;
//! let state = supervisor
//!     .send(Api(wire::api::GetState { id: "web".into() }))
//!     .await
//!     .expect("supervisor running")?;
//! println!("{} is {}", state.id, state.status);
//! # Ok(()) }
//! ```

pub mod async_conn;
pub mod board;
pub mod cgroups;
pub mod config;
pub mod container;
pub mod criu;
pub mod deadline;
pub mod device_filter;
pub mod events;
pub mod gofer;
pub mod hooks;
pub mod launch;
pub mod meta;
pub mod monitors;
pub mod netdev;
pub mod oom;
pub mod pool;
pub mod process;
pub mod procfs;
pub mod resolve;
pub mod resources;
pub mod restart;
pub mod rpc;
pub mod sandbox;
pub mod seccomp_agent;
pub mod spec;
pub mod stats;
pub mod status;
pub mod supervisor;

pub use config::SupervisorConfig;
pub use supervisor::Supervisor;

/// A request of paddockd's API ([`wire::api`]) as a message to the actors: the supervisor
/// answers what the wire would, `Result<T::Reply, ApiError>`. (The wire crate defines the
/// requests without depending on actix, so that the sandbox and gofer, which share it, link
/// no actor runtime; this wrapper makes them actix messages here.)
#[derive(Debug)]
pub struct Api<T>(pub T);

impl<T: wire::api::ApiCall + 'static> actix::Message for Api<T>
where
    T::Reply: 'static,
{
    type Result = Result<T::Reply, wire::ApiError>;
}

/// Runs blocking work (disk, fork/exec) off the actors' thread.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, wire::ApiError>
where
    F: FnOnce() -> Result<T, wire::ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| wire::ApiError::internal(format!("blocking task failed: {e}")))?
}

/// Runs blocking work in the background at nice value `nice`, on a thread of its own (a
/// thread's nice value is its own on Linux, and this one ends with the work, so no pooled
/// thread is left slowed down): what it forks inherits the nice value.
pub(crate) async fn blocking_niced<T, F>(nice: i32, f: F) -> Result<T, wire::ApiError>
where
    F: FnOnce() -> Result<T, wire::ApiError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("paddockd-bg".into())
        .spawn(move || {
            // `PRIO_PROCESS` with 0: the calling thread. Raising needs no privilege; should it
            // fail, the work runs at the usual priority.
            let _ = rustix::process::setpriority_process(None, nice);
            let _ = tx.send(f());
        })
        .map_err(|e| wire::ApiError::io("starting a background thread", e))?;
    rx.await.map_err(|_| wire::ApiError::internal("a background thread ended without its result"))?
}
