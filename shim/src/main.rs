//! `containerd-shim-paddock-v1`: containerd's shim for paddock, selected with
//! `runtime_type = "io.containerd.paddock.v1"` (or `ctr run --runtime io.containerd.paddock.v1`).
//!
//! containerd runs the binary three ways (its shim v2 protocol):
//!
//! - `start`: find or start the shim server of the container's group and print its ttrpc
//!   address. A Kubernetes pod is one group (the annotation `io.kubernetes.cri.sandbox-id`),
//!   so one shim serves every container of a pod; any other container is a group of its own.
//! - `delete`: containerd's cleanup after a shim died: the container goes from paddockd.
//! - no action: the server, serving containerd's task API (see [`task`]) on the socket it
//!   was given, until containerd shuts it down with no container left.
//!
//! The containers themselves belong to paddockd (started on demand, as ctl does): the shim
//! is a translator between containerd's task API and paddock's wire API, and holds no
//! container process.

mod bootstrap;
mod config;
mod paddock;
mod stats;
mod stdio;
mod task;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.paddock.v1";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = bootstrap::run().await {
        eprintln!("{RUNTIME_ID}: {e:#}");
        std::process::exit(1);
    }
}
