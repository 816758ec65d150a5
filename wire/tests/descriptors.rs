//! Every descriptor a message holds arrives with it.
//!
//! Each message variant that carries descriptors is built with a distinct descriptor (a memfd)
//! in every slot, sent over a real socket pair through the wire's own send path, received, and
//! the descriptors of the received message are compared with those put in, by inode: one left
//! behind, duplicated or swapped fails the test. The `carries_fds` matches have no catch-all
//! arm, so a new variant does not compile until it is classified here (and built below when it
//! carries descriptors).

use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use wire::api::{CopyIn, CopyOut, Create, Exec, ExecSpec, Request, RequestFrame, RestoreFrom};
use wire::conn::Connection;
use wire::events::Events;
use wire::gofer_proto::{GoferMessage, GoferRequest, GoferSetup, Overlay};
use wire::sandbox_proto::{CreateContainer, ExecProcess, HookCall, RestoreInSandbox, SandboxReply, SandboxRequest};
use wire::{FdSlot, SpecJson, Stdio};

/// Makes descriptors, each a new memfd, and remembers their inodes in the order made.
#[derive(Default)]
struct Fds {
    made: Vec<u64>,
}

impl Fds {
    fn slot(&mut self) -> FdSlot {
        let fd = rustix::fs::memfd_create("paddock-slot", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        self.made.push(rustix::fs::fstat(&fd).unwrap().st_ino);
        FdSlot::new(fd)
    }

    fn slots(&mut self, n: usize) -> Vec<FdSlot> {
        (0..n).map(|_| self.slot()).collect()
    }

    fn stdio(&mut self) -> Stdio {
        Stdio {
            stdin: self.slot(),
            stdout: self.slot(),
            stderr: self.slot(),
            console: self.slot(),
            extra: self.slots(3),
        }
    }
}

/// The inodes of the descriptors `msg` holds, in the order it sends them (encoded again: the
/// received message's slots are what is inspected).
fn inodes_held<T: Serialize>(msg: &T) -> Vec<u64> {
    let (_, fds) = wire::frame::encode_message(msg, 1 << 20).unwrap();
    fds.into_iter()
        .map(|fd| {
            // SAFETY: `fd` belongs to a slot of `msg`, which outlives this borrow.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            rustix::fs::fstat(fd).unwrap().st_ino
        })
        .collect()
}

/// A variant's name and how to build it with its slots filled.
type Build<T> = (&'static str, fn(&mut Fds) -> T);

/// Sends each message through a real socket pair and checks its descriptors all arrive.
fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(what: &str, made: Vec<u64>, msg: T) {
    assert!(!made.is_empty(), "{what}: built without descriptors");
    let (a, b) = UnixStream::pair().unwrap();
    let (mut tx, mut rx) = (Connection::new(a, 1 << 20), Connection::new(b, 1 << 20));
    tx.send(&msg).unwrap();
    drop(msg);
    let got: T = rx.recv().unwrap();
    let arrived = inodes_held(&got);
    assert_eq!(arrived, made, "{what}: the descriptors that arrived are not those sent, in order: {got:?}");
}

fn request_carries_fds(r: &Request) -> bool {
    match r {
        Request::Create(_) | Request::CopyOut(_) | Request::CopyIn(_) | Request::Exec(_) | Request::Events(_) => true,
        Request::Start(_)
        | Request::State(_)
        | Request::List(_)
        | Request::Kill(_)
        | Request::Wait(_)
        | Request::Delete(_)
        | Request::WaitProcess(_)
        | Request::Ps(_)
        | Request::Pause(_)
        | Request::Resume(_)
        | Request::Update(_)
        | Request::Checkpoint(_)
        | Request::Monitor(_)
        | Request::Stats(_) => false,
    }
}

fn sandbox_request_carries_fds(r: &SandboxRequest) -> bool {
    match r {
        SandboxRequest::Create(_) | SandboxRequest::Exec(_) | SandboxRequest::RunHooks { .. } => true,
        SandboxRequest::Attach
        | SandboxRequest::FinishCreate { .. }
        | SandboxRequest::Start { .. }
        | SandboxRequest::Signal { .. }
        | SandboxRequest::WaitPid { .. }
        | SandboxRequest::Destroy { .. }
        | SandboxRequest::Release { .. }
        | SandboxRequest::CloneMounts { .. } => false,
    }
}

fn sandbox_reply_carries_fds(r: &SandboxReply) -> bool {
    match r {
        SandboxReply::Created { .. } | SandboxReply::Mounts(_) | SandboxReply::Executed { .. } => true,
        SandboxReply::Attached(_) | SandboxReply::ProcessExited(_) | SandboxReply::Done => false,
    }
}

fn gofer_request_carries_fds(r: &GoferRequest) -> bool {
    match r {
        GoferRequest::Setup(_) | GoferRequest::CopyOut { .. } | GoferRequest::CopyIn { .. } => true,
    }
}

fn gofer_message_carries_fds(m: &GoferMessage) -> bool {
    match m {
        GoferMessage::Mount { .. } => true,
    }
}

/// Builds, for each variant that carries descriptors, one message with all its slots filled,
/// and sends it; `carries` is the variant's classification, `expected` how many variants it
/// classifies as carrying descriptors.
fn every<T: Serialize + DeserializeOwned + std::fmt::Debug>(
    build: Vec<Build<T>>,
    carries: fn(&T) -> bool,
    expected: usize,
) {
    assert_eq!(build.len(), expected, "a variant that carries descriptors is not built here");
    for (what, make) in build {
        let mut fds = Fds::default();
        let msg = make(&mut fds);
        assert!(carries(&msg), "{what} is classified as carrying no descriptor");
        round_trip(what, fds.made, msg);
    }
}

#[test]
fn every_api_request_sends_all_its_descriptors() {
    let builds: Vec<Build<RequestFrame>> = vec![
        ("create", |f| {
            let request = Request::Create(Create {
                id: "c".into(),
                bundle: "/b".into(),
                spec: SpecJson::from_json("{}"),
                stdio: f.stdio(),
                restore: Some(RestoreFrom::default()),
            });
            RequestFrame { id: 1, request }
        }),
        ("copy-out", |f| RequestFrame {
            id: 2,
            request: Request::CopyOut(CopyOut { id: "c".into(), path: "/x".into(), sink: f.slot() }),
        }),
        ("copy-in", |f| {
            let request =
                Request::CopyIn(CopyIn { id: "c".into(), path: "/x".into(), contents: true, source: f.slot() });
            RequestFrame { id: 3, request }
        }),
        ("exec", |f| {
            let request = Request::Exec(Exec { id: "c".into(), spec: ExecSpec::default(), stdio: f.stdio() });
            RequestFrame { id: 4, request }
        }),
        ("events", |f| RequestFrame {
            id: 5,
            request: Request::Events(Events { ids: vec![], follow: true, sink: f.slot() }),
        }),
    ];
    every(builds, |r| request_carries_fds(&r.request), 5);
}

fn create_container(f: &mut Fds) -> CreateContainer {
    CreateContainer {
        id: "c".into(),
        bundle: "/b".into(),
        spec: SpecJson::from_json("{}"),
        root: true,
        stdio: f.stdio(),
        mounts: f.slots(2),
        cgroups: f.slots(3),
        pid_ns: f.slot(),
        mount_ns: f.slot(),
        cgroup_ns: f.slot(),
        user_ns: f.slot(),
        time_ns: f.slot(),
        again: false,
        restore: Some(Box::new(RestoreInSandbox {
            criu: "/criu".into(),
            args: vec![],
            root_mountpoint: "/r".into(),
            binds_mountpoint: "/m".into(),
            bind_keys: vec![],
            stdio_keys: vec![],
            console_key: None,
            host_mnt: f.slot(),
            host_cgroup: f.slot(),
        })),
        stop_before_pivot: true,
        seccomp_relay: f.slot(),
    }
}

fn hook(f: &mut Fds) -> HookCall {
    HookCall { path: PathBuf::from("/hook"), exe: f.slot(), args: vec![], env: vec![], timeout: Some(1) }
}

#[test]
fn every_sandbox_message_sends_all_its_descriptors() {
    let requests: Vec<Build<SandboxRequest>> = vec![
        ("create", |f| SandboxRequest::Create(create_container(f))),
        ("exec", |f| {
            SandboxRequest::Exec(ExecProcess {
                id: "c".into(),
                process: "{}".into(),
                stdio: f.stdio(),
                cgroups: f.slots(2),
                seccomp_relay: f.slot(),
                frozen: false,
            })
        }),
        ("run-hooks", |f| SandboxRequest::RunHooks {
            id: "c".into(),
            stage: "createContainer".into(),
            hooks: vec![hook(f), hook(f)],
            state: "{}".into(),
        }),
    ];
    every(requests, sandbox_request_carries_fds, 3);

    let replies: Vec<Build<wire::sandbox_proto::SandboxFrame>> = vec![
        ("created", |f| wire::rpc::Answer::Reply {
            id: 1,
            result: Ok(SandboxReply::Created { pid: 2, pidfd: f.slot() }),
        }),
        ("mounts", |f| wire::rpc::Answer::Reply { id: 2, result: Ok(SandboxReply::Mounts(f.slots(3))) }),
        ("executed", |f| wire::rpc::Answer::Reply {
            id: 3,
            result: Ok(SandboxReply::Executed { pid: 2, container_pid: 1, pidfd: f.slot() }),
        }),
    ];
    every(replies, |a| matches!(a, wire::rpc::Answer::Reply { result: Ok(r), .. } if sandbox_reply_carries_fds(r)), 3);
}

#[test]
fn every_gofer_message_sends_all_its_descriptors() {
    let requests: Vec<Build<GoferRequest>> = vec![
        ("setup", |f| {
            GoferRequest::Setup(GoferSetup {
                id: "c".into(),
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                readonly_root: false,
                overlay: Overlay::None,
                binds: vec![],
                unreachable: vec![],
                io: f.slots(3),
                adopted: f.slots(2),
            })
        }),
        ("copy-out", |f| GoferRequest::CopyOut { path: "/x".into(), sink: f.slot() }),
        ("copy-in", |f| GoferRequest::CopyIn { path: "/x".into(), contents: false, source: f.slot() }),
    ];
    every(requests, gofer_request_carries_fds, 3);
    let messages: Vec<Build<GoferMessage>> = vec![("mount", |f| GoferMessage::Mount { mount: f.slot() })];
    every(messages, gofer_message_carries_fds, 1);
}

#[test]
fn a_slot_left_out_of_the_encoding_is_caught() {
    // The check itself: a message type whose slot is skipped by its encoding loses the
    // descriptor, and the comparison says so.
    #[derive(Debug, Serialize, serde::Deserialize)]
    // `lost` is only there to be left out.
    #[allow(dead_code)]
    struct Leaky {
        kept: FdSlot,
        #[serde(skip)]
        lost: FdSlot,
    }
    let mut fds = Fds::default();
    let msg = Leaky { kept: fds.slot(), lost: fds.slot() };
    let made = fds.made.clone();
    let outcome = std::panic::catch_unwind(move || round_trip("leaky", made, msg));
    assert!(outcome.is_err(), "a descriptor that did not arrive went unnoticed");
}
