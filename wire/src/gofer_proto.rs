//! A gofer's two conversations: with paddockd over its control socket (setup, then confined
//! file access), and with its sandbox over one io socket per mount (the mount itself).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fds::FdSlot;
use crate::rpc::{Answer, Envelope, NoEvent};

/// What a gofer sends to the sandbox on an io socket.
#[derive(Debug, Serialize, Deserialize)]
pub enum GoferMessage {
    /// The mount this socket stands for, detached (from `open_tree` or `fsmount`); the
    /// sandbox attaches it with `move_mount`.
    Mount {
        /// The detached mount.
        mount: FdSlot,
    },
}

/// Where a container's writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Overlay {
    /// To the host's files.
    #[default]
    None,
    /// The root filesystem under a tmpfs overlay; bind mounts write through.
    RootMemory {
        /// Size cap of the tmpfs in bytes.
        size: Option<u64>,
    },
    /// The root filesystem and every bind mount under tmpfs overlays.
    AllMemory {
        /// Size cap of the tmpfs in bytes.
        size: Option<u64>,
    },
}

/// One bind mount of the spec, as the gofer opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// The host path (absolute, or relative to the bundle).
    pub source: PathBuf,
    /// Where it appears in the container.
    pub destination: PathBuf,
    /// `rbind`: with the mounts below the source.
    pub recursive: bool,
    /// `MOUNT_ATTR_*` bits to set on the mount itself (`ro`, `nosuid`, …, an atime mode).
    pub attrs: u64,
    /// `MOUNT_ATTR_*` bits to clear on the mount itself (`rw`, `suid`, …, `MOUNT_ATTR__ATIME`
    /// with an atime mode).
    pub clear: u64,
    /// `MOUNT_ATTR_*` bits to set on every mount of the tree (`rro`, `rnosuid`, …).
    pub rec_attrs: u64,
    /// `MOUNT_ATTR_*` bits to clear on every mount of the tree.
    pub rec_clear: u64,
    /// `slave` or `rslave`: the copy stays a slave of its source's peer group, so that what
    /// the host mounts beneath the source later shows in the container (and nothing goes back).
    pub slave: bool,
    /// An idmapped mount (runtime-spec 1.2): the ids the files have on the source's filesystem
    /// are shown (and written) as the ids these maps give them.
    pub idmap: Option<IdMapping>,
}

/// The id maps of an idmapped bind mount: a mount's own `uidMappings`/`gidMappings`, or the
/// container's user namespace's for a bare `idmap`/`ridmap` (as runc does).
///
/// Each range maps `size` ids from `container_id` onwards, the ids files have on the source's
/// filesystem, onto those from `host_id` onwards, the ids they show through the mount. (The
/// kernel reads a mount's idmap as the maps of a user namespace, whose inside is the
/// filesystem's and whose outside the mount's.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMapping {
    /// The uid ranges.
    pub uids: Vec<IdRange>,
    /// The gid ranges.
    pub gids: Vec<IdRange>,
    /// `ridmap`: every mount of the tree is idmapped (an `rbind`'s submounts too); otherwise
    /// the top mount alone.
    pub recursive: bool,
}

/// One range of an [`IdMapping`], as a line of `/proc/PID/uid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// The first id on the source's filesystem.
    pub container_id: u32,
    /// The id it shows as through the mount.
    pub host_id: u32,
    /// How many consecutive ids.
    pub size: u32,
}

impl IdMapping {
    /// `ranges` as `/proc/PID/uid_map` (or `gid_map`) takes them: `container host size` lines.
    pub fn map_text(ranges: &[IdRange]) -> String {
        ranges.iter().map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size)).collect()
    }
}

/// Everything a gofer needs to prepare a container's filesystem.
#[derive(Debug, Serialize, Deserialize)]
pub struct GoferSetup {
    /// The container's id, for messages.
    pub id: String,
    /// The bundle (relative bind sources resolve beneath it).
    pub bundle: PathBuf,
    /// The root filesystem on the host.
    pub rootfs: PathBuf,
    /// `root.readonly`: the gofer's own view is read-only too.
    pub readonly_root: bool,
    /// Where writes go.
    pub overlay: Overlay,
    /// The spec's bind mounts, in spec order.
    pub binds: Vec<BindMount>,
    /// Where the container mounts its own filesystems (tmpfs, proc, ...), which the gofer
    /// cannot reach: copies at or below them are refused.
    pub unreachable: Vec<PathBuf>,
    /// The io sockets to the sandbox: the rootfs first, then one per bind mount.
    pub io: Vec<FdSlot>,
    /// For a restarted gofer: the container's mounts as the sandbox holds them (rootfs first,
    /// then one per bind mount), instead of opening the host paths again. The io sockets are
    /// then empty: the container has its mounts already.
    pub adopted: Vec<FdSlot>,
}

/// A request from paddockd.
#[derive(Debug, Serialize, Deserialize)]
pub enum GoferRequest {
    /// Prepare the filesystem (once).
    Setup(GoferSetup),
    /// Write a tar stream of `path` (resolved beneath the container's root) to `sink`.
    CopyOut {
        /// The path inside the container.
        path: PathBuf,
        /// Where the tar stream goes.
        sink: FdSlot,
    },
    /// Read a tar stream from `source` and unpack it at `path` inside the container.
    CopyIn {
        /// The destination inside the container.
        path: PathBuf,
        /// `true`: the entries go into `path` as a directory (created if missing). `false`:
        /// as `docker cp` — into `path` if it is a directory, else the stream's top entry
        /// becomes `path`.
        contents: bool,
        /// Where the tar stream comes from.
        source: FdSlot,
    },
}

/// A successful answer from a gofer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoferReply {
    /// The filesystem is ready and the mounts are on their way to the sandbox.
    Ready,
    /// Done.
    Done,
}

/// A request to a gofer with its id.
pub type GoferRequestFrame = Envelope<GoferRequest>;
/// What a gofer sends back.
pub type GoferFrame = Answer<GoferReply, NoEvent>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Connection;
    use crate::error::ApiError;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn setup_and_copies_roundtrip_with_their_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Connection::new(a, 1 << 20);
        let mut rx = Connection::new(b, 1 << 20);
        let (s1, _s2) = UnixStream::pair().unwrap();
        let (s3, _s4) = UnixStream::pair().unwrap();
        let setup = GoferRequestFrame {
            id: 1,
            request: GoferRequest::Setup(GoferSetup {
                id: "c".into(),
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                readonly_root: true,
                overlay: Overlay::AllMemory { size: Some(1 << 20) },
                binds: vec![BindMount {
                    source: "data".into(),
                    destination: "/data".into(),
                    recursive: true,
                    attrs: 3,
                    clear: 0x70,
                    rec_attrs: 1,
                    rec_clear: 0,
                    slave: true,
                    idmap: Some(IdMapping {
                        uids: vec![IdRange { container_id: 0, host_id: 1000, size: 1 }],
                        gids: vec![IdRange { container_id: 0, host_id: 1000, size: 1 }],
                        recursive: true,
                    }),
                }],
                unreachable: vec!["/tmp".into()],
                io: vec![FdSlot::new(OwnedFd::from(s1)), FdSlot::new(OwnedFd::from(s3))],
                adopted: vec![],
            }),
        };
        tx.send(&setup).unwrap();
        let got: GoferRequestFrame = rx.recv().unwrap();
        let GoferRequest::Setup(s) = got.request else { panic!() };
        assert_eq!(s.io.len(), 2);
        assert!(s.io.iter().all(|f| matches!(f, FdSlot::Present(_))));
        assert_eq!(s.overlay, Overlay::AllMemory { size: Some(1 << 20) });
        assert_eq!(s.binds[0].destination, PathBuf::from("/data"));
        let idmap = s.binds[0].idmap.as_ref().unwrap();
        assert!(idmap.recursive);
        assert_eq!(IdMapping::map_text(&idmap.uids), "0 1000 1\n");

        let (_r, w) = std::io::pipe().unwrap();
        tx.send(&GoferRequestFrame {
            id: 2,
            request: GoferRequest::CopyOut { path: "/etc".into(), sink: FdSlot::new(OwnedFd::from(w)) },
        })
        .unwrap();
        let got: GoferRequestFrame = rx.recv().unwrap();
        assert!(matches!(got.request, GoferRequest::CopyOut { sink: FdSlot::Present(_), .. }));

        for frame in [
            GoferFrame::Reply { id: 1, result: Ok(GoferReply::Ready) },
            GoferFrame::Reply { id: 2, result: Err(ApiError::not_found("x")) },
        ] {
            tx.send(&frame).unwrap();
            let back: GoferFrame = rx.recv().unwrap();
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
    }
}
