//! The supervisor and container actors driven by their messages, in process and in
//! milliseconds: no sandbox, no gofer, no root. Each test writes the metadata a paddockd would
//! have left under a temporary state root, starts a [`Supervisor`] on it (which takes the
//! containers over as at any start) and checks what a client would see: states, statuses,
//! errors by kind, exit statuses, events, the directories left on disk.

use std::path::Path;

use actix::Addr;
use actors::meta::{Meta, MetaStore, ProcessRecord, FORMAT_VERSION};
use actors::supervisor::Subscribe;
use actors::{Api, Supervisor, SupervisorConfig};
use wire::api::{Delete, ExitStatus, GetState, Kill, List, Start, Wait};
use wire::events::EventKind;
use wire::{ApiError, ErrorKind, Status};

/// Metadata for container `id`, its own sandbox's root, in `status`; no process of it exists.
fn meta(id: &str, status: Status) -> Meta {
    Meta {
        format: FORMAT_VERSION,
        id: id.to_string(),
        sandbox_id: id.to_string(),
        bundle: "/nonexistent/bundle".into(),
        rootfs: "/nonexistent/bundle/rootfs".into(),
        spec: oci_spec::runtime::Spec::default(),
        status,
        created: "2026-12-07T00:00:00Z".into(),
        owner: "root".into(),
        sandbox: None,
        gofer: None,
        init: None,
        exit_status: None,
        sandbox_lost: false,
        gofer_restarts: 0,
        cgroup: None,
        monitor: None,
        host_root_mount: None,
        restart: Default::default(),
    }
}

/// A process record no live process matches: pid 1 exists, but not with this start time.
fn dead_process() -> ProcessRecord {
    ProcessRecord { pid: 1, start_time: u64::MAX }
}

fn seed(root: &Path, metas: &[Meta]) {
    let store = MetaStore::new(root);
    for m in metas {
        store.create(m).expect("writing seeded metadata");
    }
}

fn start(root: &Path) -> Addr<Supervisor> {
    Supervisor::start(SupervisorConfig::new(root)).expect("the supervisor starts")
}

fn kind<T: std::fmt::Debug>(result: Result<T, ApiError>) -> ErrorKind {
    result.expect_err("an error").kind
}

#[actix_rt::test]
async fn ids_resolve_by_unambiguous_prefix_through_the_supervisor() {
    let root = tempfile::tempdir().unwrap();
    seed(
        root.path(),
        &[meta("alpha-one", Status::Stopped), meta("alpha-two", Status::Stopped), meta("beta", Status::Stopped)],
    );
    let sup = start(root.path());
    let state = sup.send(Api(GetState { id: "be".into() })).await.unwrap().unwrap();
    assert_eq!(state.id, "beta");
    let state = sup.send(Api(GetState { id: "alpha-t".into() })).await.unwrap().unwrap();
    assert_eq!(state.id, "alpha-two");
    assert_eq!(kind(sup.send(Api(GetState { id: "alpha".into() })).await.unwrap()), ErrorKind::AmbiguousId);
    assert_eq!(kind(sup.send(Api(GetState { id: "gamma".into() })).await.unwrap()), ErrorKind::NotFound);
    let mut listed: Vec<String> = sup.send(Api(List)).await.unwrap().unwrap().into_iter().map(|s| s.id).collect();
    listed.sort();
    assert_eq!(listed, ["alpha-one", "alpha-two", "beta"]);
}

#[actix_rt::test]
async fn a_stopped_container_refuses_start_and_kill_and_gives_its_exit_status() {
    let root = tempfile::tempdir().unwrap();
    let mut stopped = meta("done", Status::Stopped);
    stopped.exit_status = Some(ExitStatus::Exited(7));
    seed(root.path(), &[stopped]);
    let sup = start(root.path());
    assert_eq!(kind(sup.send(Api(Start { id: "done".into() })).await.unwrap()), ErrorKind::InvalidStatus);
    let kill = Kill { id: "done".into(), signal: libc::SIGTERM, all: false, pid: None };
    assert!(sup.send(Api(kill)).await.unwrap().is_err(), "kill of a stopped container must fail");
    let status = sup.send(Api(Wait { id: "done".into(), kill_on_hangup: false })).await.unwrap().unwrap();
    assert_eq!(status, ExitStatus::Exited(7));
    let state = sup.send(Api(GetState { id: "done".into() })).await.unwrap().unwrap();
    assert_eq!((state.status, state.pid, state.exit_status), (Status::Stopped, None, Some(ExitStatus::Exited(7))));
}

#[actix_rt::test]
async fn delete_removes_the_metadata_and_followers_see_it() {
    let root = tempfile::tempdir().unwrap();
    seed(root.path(), &[meta("gone-soon", Status::Stopped)]);
    let dir = MetaStore::new(root.path()).dir("gone-soon");
    assert!(dir.is_dir());
    let sup = start(root.path());
    let mut events = sup.send(Subscribe { ids: vec!["gone".into()], follow: true }).await.unwrap().unwrap();
    sup.send(Api(Delete { id: "gone-soon".into(), force: false })).await.unwrap().unwrap();
    assert!(!dir.exists(), "the container's directory outlived its delete");
    assert_eq!(kind(sup.send(Api(GetState { id: "gone-soon".into() })).await.unwrap()), ErrorKind::NotFound);
    // runc's rules for what is already gone: an error, except with --force.
    assert_eq!(
        kind(sup.send(Api(Delete { id: "gone-soon".into(), force: false })).await.unwrap()),
        ErrorKind::NotFound
    );
    sup.send(Api(Delete { id: "gone-soon".into(), force: true })).await.unwrap().unwrap();
    // A follower sees the delete; the history goes with the container.
    let live = events.live.as_mut().expect("following");
    let deleted = live.recv().await.expect("an event");
    assert_eq!((deleted.id.as_str(), &deleted.kind), ("gone-soon", &EventKind::Deleted));
    assert_eq!(
        kind(sup.send(Subscribe { ids: vec!["gone-soon".into()], follow: false }).await.unwrap()),
        ErrorKind::NotFound
    );
}

#[actix_rt::test]
async fn a_creation_that_never_finished_is_cleaned_away_at_start() {
    let root = tempfile::tempdir().unwrap();
    seed(root.path(), &[meta("half-made", Status::Creating), meta("kept", Status::Stopped)]);
    let sup = start(root.path());
    let listed: Vec<String> = sup.send(Api(List)).await.unwrap().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, ["kept"]);
    assert!(!MetaStore::new(root.path()).dir("half-made").exists(), "the half-made container's directory remains");
}

#[actix_rt::test]
async fn a_running_container_whose_sandbox_died_meanwhile_is_stopped_and_lost() {
    let root = tempfile::tempdir().unwrap();
    let mut running = meta("orphan", Status::Running);
    running.sandbox = Some(dead_process());
    running.init = Some(dead_process());
    seed(root.path(), &[running]);
    let sup = start(root.path());
    let state = sup.send(Api(GetState { id: "orphan".into() })).await.unwrap().unwrap();
    assert_eq!((state.status, state.pid), (Status::Stopped, None));
    // What a waiter collects, and what is on disk for the next paddockd: the same.
    let status = sup.send(Api(Wait { id: "orphan".into(), kill_on_hangup: false })).await.unwrap().unwrap();
    let saved = MetaStore::new(root.path()).load_dir(&MetaStore::new(root.path()).dir("orphan")).unwrap();
    assert_eq!(saved.status, Status::Stopped);
    assert!(saved.sandbox_lost);
    assert_eq!(saved.exit_status, Some(status));
    let events = sup.send(Subscribe { ids: vec!["orphan".into()], follow: false }).await.unwrap().unwrap();
    assert!(
        events.history.iter().any(|e| matches!(e.kind, EventKind::SandboxLost)),
        "no sandbox-lost event: {:?}",
        events.history
    );
}

#[actix_rt::test]
async fn an_empty_or_malformed_id_is_refused_by_kind() {
    let root = tempfile::tempdir().unwrap();
    let sup = start(root.path());
    assert_ne!(kind(sup.send(Api(GetState { id: String::new() })).await.unwrap()), ErrorKind::Internal);
    let err = sup.send(Api(Delete { id: "../etc".into(), force: false })).await.unwrap().unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidId | ErrorKind::NotFound), "{err:?}");
}
