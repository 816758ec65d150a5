//! The server side of a helper's control socket, for single-threaded helpers (the sandbox and
//! the gofer) that drive everything from one `poll` loop.
//!
//! [`Peers`] accepts connections (root or our own user only), performs the handshake, and
//! hands out whole request envelopes; the helper answers them with [`Peers::reply`] and may
//! push events to the peers that asked for them with [`Peers::broadcast`].

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::conn::Connection;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::handshake::{check_hello, Hello, Welcome};
use crate::rpc::{Answer, Envelope};

/// A peer's identity, stable for as long as it is connected (so a reply can be sent long
/// after the request, when whatever it waited for has happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(u64);

struct Peer {
    id: PeerId,
    conn: Connection,
    greeted: bool,
    subscribed: bool,
    closed: bool,
}

/// The connections of a helper's control socket.
pub struct Peers {
    listener: UnixListener,
    peers: Vec<Peer>,
    server: String,
    refusal: Option<String>,
    next_id: u64,
}

impl Peers {
    /// Serves `listener` as `server` (a name for the handshake). With a `refusal`, every
    /// handshake is refused with that reason (a helper whose start-up failed says so).
    pub fn new(listener: UnixListener, server: impl Into<String>, refusal: Option<String>) -> Self {
        Self { listener, peers: Vec::new(), server: server.into(), refusal, next_id: 1 }
    }

    /// The descriptors to poll: the listener first, then each peer.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd()).chain(self.peers.iter().map(|p| p.conn.as_fd())).collect()
    }

    /// Accepts one pending connection, if its peer may talk to us: root or our own user.
    pub fn accept(&mut self) {
        let Ok((stream, _)) = self.listener.accept() else { return };
        let allowed = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .map(|cred| cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw())
            .unwrap_or(false);
        if allowed {
            self.next_id += 1;
            self.peers.push(Peer {
                id: PeerId(self.next_id),
                conn: Connection::new(stream, DEFAULT_MAX_FRAME),
                greeted: false,
                subscribed: false,
                closed: false,
            });
        }
    }

    /// The id of the peer at `index` (its position in [`Peers::fds`], less one).
    pub fn id_at(&self, index: usize) -> Option<PeerId> {
        self.peers.get(index).map(|p| p.id)
    }

    /// Reads from peer `index` (which poll found readable) and returns the complete requests.
    /// A peer that closed, broke the protocol or was refused is dropped by [`Peers::prune`].
    /// Returns `true` in the second field when a refusal was delivered.
    pub fn read<T: DeserializeOwned>(&mut self, index: usize) -> (Vec<Envelope<T>>, bool) {
        let mut out = Vec::new();
        let Some(peer) = self.peers.get_mut(index) else { return (out, false) };
        match peer.conn.fill() {
            Ok(0) | Err(_) => {
                peer.closed = true;
                return (out, false);
            }
            Ok(_) => {}
        }
        loop {
            if peer.closed {
                return (out, false);
            }
            if !peer.greeted {
                match peer.conn.try_next::<Hello>() {
                    Ok(Some(hello)) => {
                        let mut welcome = check_hello(&hello, &self.server);
                        if let Some(reason) = &self.refusal {
                            welcome = Welcome::Refused { reason: reason.clone() };
                        }
                        let refused = matches!(welcome, Welcome::Refused { .. });
                        let _ = peer.conn.send(&welcome);
                        peer.greeted = !refused;
                        peer.closed = refused;
                        if refused {
                            return (out, self.refusal.is_some());
                        }
                        continue;
                    }
                    Ok(None) => return (out, false),
                    Err(_) => {
                        peer.closed = true;
                        return (out, false);
                    }
                }
            }
            match peer.conn.try_next::<Envelope<T>>() {
                Ok(Some(envelope)) => out.push(envelope),
                Ok(None) => return (out, false),
                Err(_) => {
                    peer.closed = true;
                    return (out, false);
                }
            }
        }
    }

    /// Sends an answer to peer `id`, if it is still connected.
    pub fn reply<R: Serialize, E: Serialize>(&mut self, id: PeerId, answer: &Answer<R, E>) {
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == id && !p.closed) {
            if peer.conn.send(answer).is_err() {
                peer.closed = true;
            }
        }
    }

    /// Marks peer `id` as wanting events.
    pub fn subscribe(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.iter_mut().find(|p| p.id == id) {
            peer.subscribed = true;
        }
    }

    /// Sends an event to every subscribed peer.
    pub fn broadcast<R: Serialize, E: Serialize>(&mut self, event: &Answer<R, E>) {
        for peer in self.peers.iter_mut().filter(|p| p.subscribed && !p.closed) {
            if peer.conn.send(event).is_err() {
                peer.closed = true;
            }
        }
    }

    /// Drops the peers that are gone.
    pub fn prune(&mut self) {
        self.peers.retain(|p| !p.closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::NoEvent;
    use std::os::unix::net::UnixStream;

    #[test]
    fn handshake_requests_and_replies() {
        let dir = tempfile_dir();
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut peers = Peers::new(listener, "test", None);
        let mut client = Connection::new(UnixStream::connect(&path).unwrap(), 1 << 20);
        peers.accept();
        client.send(&Hello::new("t")).unwrap();
        client.send(&Envelope { id: 7, request: 42u32 }).unwrap();
        let (reqs, refused) = peers.read::<u32>(0);
        assert!(!refused);
        assert_eq!(reqs.len(), 1);
        assert_eq!((reqs[0].id, reqs[0].request), (7, 42));
        assert!(matches!(client.recv::<Welcome>().unwrap(), Welcome::Accepted { .. }));
        let peer = peers.id_at(0).unwrap();
        peers.reply(peer, &Answer::<u32, NoEvent>::Reply { id: 7, result: Ok(43) });
        match client.recv::<Answer<u32, NoEvent>>().unwrap() {
            Answer::Reply { id: 7, result: Ok(43) } => {}
            other => panic!("{other:?}"),
        }
        drop(client);
        let _ = peers.read::<u32>(0);
        peers.prune();
        assert_eq!(peers.fds().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refusal_is_delivered() {
        let dir = tempfile_dir();
        let path = dir.join("s.sock");
        let mut peers = Peers::new(UnixListener::bind(&path).unwrap(), "test", Some("broken".into()));
        let mut client = Connection::new(UnixStream::connect(&path).unwrap(), 1 << 20);
        peers.accept();
        client.send(&Hello::new("t")).unwrap();
        let (reqs, refused) = peers.read::<u32>(0);
        assert!(reqs.is_empty() && refused);
        assert_eq!(client.recv::<Welcome>().unwrap(), Welcome::Refused { reason: "broken".into() });
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "paddock-peers-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
