//! The state board: every container's public state, readable from any thread without a
//! message to an actor.
//!
//! `state` and `list` are the control plane's most frequent requests, and answering them
//! through the supervisor and the container's actor means waiting for the thread those actors
//! run on: during a burst of creates that thread is busy, or off the CPU, for tens of
//! milliseconds at a time (it wakes a blocking-pool thread for every file operation of a
//! create, and on a loaded machine each wake-up preempts it). The wire server reads this board
//! from a thread of its own instead.
//!
//! Each container's actor owns its entry: it puts it on the board when it starts and rewrites
//! it from its own current state (so a state read here is one the container had), after every
//! operation forwarded to it and before that operation's reply leaves the supervisor, and when
//! something happens to it on its own (its process exited, its gofer died or was restarted).
//! The supervisor takes the entry off before a delete's success is replied, and an actor only
//! ever rewrites an entry it put there itself, so a deleted container never comes back, even
//! when a new one of the same id follows at once.
//!
//! The board answers only once the supervisor has restored every container of an earlier
//! paddockd and each has taken in what happened to it meanwhile (an exit, a lost sandbox):
//! before that it would list some containers and not others, or a container as created whose
//! process is gone. Until then [`StateBoard::state`] and [`StateBoard::list`] answer `None`
//! and the request goes to the supervisor, which holds it until the restore is done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use wire::{ContainerState, Status};

use crate::meta::ProcessRecord;

/// One container on the board.
#[derive(Debug, Clone)]
struct Entry {
    /// Which actor put it there (see [`BoardKey`]).
    key: u64,
    /// Its state when its actor last wrote it.
    state: ContainerState,
    /// The process its pid file names, if any: whether it still runs is asked when the state is
    /// read, as the actor itself does (see [`crate::meta::Meta::state`]).
    monitor: Option<ProcessRecord>,
}

/// Every container's state, shared between the actors (writers) and the wire server (reader).
/// Cloning shares the board.
#[derive(Debug, Clone, Default)]
pub struct StateBoard {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
    /// Whether the restore at start-up is over (see the module's comment).
    open: Arc<AtomicBool>,
}

/// An actor's right to its entry: entries are written only by the holder of the key that put
/// them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardKey(u64);

impl BoardKey {
    /// A key no other actor holds.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        BoardKey(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for BoardKey {
    fn default() -> Self {
        Self::new()
    }
}

impl StateBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets the board answer: every container restored at start-up is on it, as it is now.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Puts `state` on the board for the actor holding `key`, replacing any entry of that id.
    pub(crate) fn put(&self, key: BoardKey, state: ContainerState, monitor: Option<ProcessRecord>) {
        let id = state.id.clone();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.insert(id, Entry { key: key.0, state, monitor });
    }

    /// Rewrites the entry of `state.id` if the actor holding `key` put it there (not when the
    /// container was deleted meanwhile, nor when another container of that id replaced it).
    pub(crate) fn update(&self, key: BoardKey, state: ContainerState, monitor: Option<ProcessRecord>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&state.id) {
            if entry.key == key.0 {
                *entry = Entry { key: key.0, state, monitor };
            }
        }
    }

    /// Takes container `id` off the board (its delete succeeded).
    pub(crate) fn remove(&self, id: &str) {
        self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// Takes the entry of `id` off the board if the actor holding `key` put it there (that
    /// actor stopped).
    pub(crate) fn remove_own(&self, key: BoardKey, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.get(id).is_some_and(|e| e.key == key.0) {
            entries.remove(id);
        }
    }

    /// The state of the container whose full id is `id`, if it is on the board. A prefix is
    /// not resolved here (a container still being created is not on the board, and could make
    /// it ambiguous): the supervisor answers those.
    pub fn state(&self, id: &str) -> Option<ContainerState> {
        if !self.open.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()?;
        Some(entry.current())
    }

    /// Every container on the board, by id; `None` until the restore at start-up is over.
    pub fn list(&self) -> Option<Vec<ContainerState>> {
        if !self.open.load(Ordering::Acquire) {
            return None;
        }
        let entries: Vec<Entry> =
            self.entries.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        Some(entries.into_iter().map(Entry::current).collect())
    }
}

impl Entry {
    /// The state as the container's actor would answer now: the pid is the pid file's
    /// process while that still runs (read outside the board's lock).
    fn current(self) -> ContainerState {
        let mut state = self.state;
        let live = matches!(state.status, Status::Created | Status::Running | Status::Paused);
        if let (Some(monitor), true) = (self.monitor, live) {
            state.pid = if crate::meta::alive(&monitor) { Some(monitor.pid) } else { state.init_pid };
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, status: Status) -> ContainerState {
        ContainerState {
            id: id.into(),
            status,
            pid: None,
            init_pid: None,
            bundle: Default::default(),
            rootfs: Default::default(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
            sandbox_id: id.into(),
            exit_status: None,
            gofer: wire::GoferStatus::Stopped,
            gofer_restarts: 0,
            restart: Default::default(),
        }
    }

    #[test]
    fn only_the_owner_rewrites_and_a_removed_entry_stays_removed() {
        let board = StateBoard::new();
        board.open();
        let (old, new) = (BoardKey::new(), BoardKey::new());
        board.put(old, state("a", Status::Created), None);
        board.update(old, state("a", Status::Running), None);
        assert_eq!(board.state("a").map(|s| s.status), Some(Status::Running));
        board.remove("a");
        board.update(old, state("a", Status::Stopped), None);
        assert!(board.state("a").is_none());
        // A new container of the same id: the old actor can neither rewrite nor remove it.
        board.put(new, state("a", Status::Created), None);
        board.update(old, state("a", Status::Stopped), None);
        board.remove_own(old, "a");
        assert_eq!(board.state("a").map(|s| s.status), Some(Status::Created));
        board.remove_own(new, "a");
        assert_eq!(board.list().map(|l| l.len()), Some(0));
    }

    #[test]
    fn prefixes_are_not_resolved_and_the_list_is_by_id() {
        let board = StateBoard::new();
        board.open();
        board.put(BoardKey::new(), state("bb", Status::Created), None);
        board.put(BoardKey::new(), state("ab", Status::Running), None);
        assert!(board.state("a").is_none());
        let ids: Vec<String> = board.list().unwrap_or_default().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["ab", "bb"]);
    }

    #[test]
    fn before_the_restore_is_over_the_board_answers_nothing() {
        let board = StateBoard::new();
        board.put(BoardKey::new(), state("a", Status::Created), None);
        assert!(board.state("a").is_none());
        assert!(board.list().is_none());
        board.open();
        assert_eq!(board.state("a").map(|s| s.status), Some(Status::Created));
        assert_eq!(board.list().map(|l| l.len()), Some(1));
    }
}
