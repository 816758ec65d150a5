//! The event bus: every change to a container is published here, kept in a bounded history
//! per container (until the container is deleted), and delivered to subscribers.
//!
//! Publishing never blocks and never waits for a subscriber: each subscriber has a bounded
//! queue, and when it is full the event is dropped for that subscriber alone and counted; the
//! next time there is room, it first receives a `lagged` event with the count. Taking the
//! history and joining the live stream happen under one lock, so a subscriber sees every
//! event exactly once, in order.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use wire::events::{Event, EventKind};

/// Sizes of the bus's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Events kept per container.
    pub history: usize,
    /// Events queued per subscriber before it starts losing them.
    pub queue: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self { history: 256, queue: 1024 }
    }
}

/// A handle on the bus; clones share it.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
}

struct Subscriber {
    /// Only these containers; `None`: all.
    filter: Option<BTreeSet<String>>,
    tx: mpsc::Sender<Event>,
    /// Events this subscriber lost since it last received one.
    dropped: u64,
    /// The seq of the last event it lost.
    last_dropped: u64,
}

struct Inner {
    limits: EventLimits,
    seq: u64,
    history: HashMap<String, VecDeque<Event>>,
    subscribers: Vec<Subscriber>,
    closed: bool,
}

/// What a subscriber gets: the history, then (when following) the live stream.
pub struct Subscription {
    /// The retained events of the chosen containers, oldest first.
    pub history: Vec<Event>,
    /// Every later event, until the bus closes; `None` when not following.
    pub live: Option<mpsc::Receiver<Event>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("history", &self.history.len()).finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(EventLimits::default())
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new(limits: EventLimits) -> Self {
        let limits = EventLimits { history: limits.history.max(1), queue: limits.queue.max(1) };
        Self {
            inner: Arc::new(Mutex::new(Inner {
                limits,
                seq: 0,
                history: HashMap::new(),
                subscribers: Vec::new(),
                closed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the bus inconsistent in a way that
        // matters more than losing events, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event about container `id` of sandbox `sandbox_id`.
    pub fn publish(&self, id: &str, sandbox_id: &str, kind: EventKind) {
        let mut inner = self.lock();
        inner.seq += 1;
        let event = Event {
            seq: inner.seq,
            time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            id: id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            kind,
        };
        tracing::debug!(container = id, event = event.kind.name(), seq = event.seq, "event");
        let limit = inner.limits.history;
        let ring = inner.history.entry(id.to_string()).or_default();
        if ring.len() == limit {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        inner.subscribers.retain_mut(|s| deliver(s, &event));
    }

    /// Forgets the history of a deleted container.
    pub fn forget(&self, id: &str) {
        self.lock().history.remove(id);
    }

    /// The history of `ids` (all containers when `None`), and with `follow` a stream of what
    /// comes next. After [`EventBus::close`], following streams end at once.
    pub fn subscribe(&self, ids: Option<BTreeSet<String>>, follow: bool) -> Subscription {
        let mut inner = self.lock();
        let mut history: Vec<Event> = inner
            .history
            .iter()
            .filter(|(id, _)| ids.as_ref().is_none_or(|f| f.contains(*id)))
            .flat_map(|(_, ring)| ring.iter().cloned())
            .collect();
        history.sort_by_key(|e| e.seq);
        let live = (follow && !inner.closed).then(|| {
            let (tx, rx) = mpsc::channel(inner.limits.queue);
            inner.subscribers.push(Subscriber { filter: ids, tx, dropped: 0, last_dropped: 0 });
            rx
        });
        Subscription { history, live }
    }

    /// Whether any container has history under this id.
    pub fn knows(&self, id: &str) -> bool {
        self.lock().history.contains_key(id)
    }

    /// Ends every following subscription (paddockd is stopping).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.subscribers.clear();
    }

    /// How many subscribers follow the bus now.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// Offers `event` to one subscriber; returns whether the subscriber is still there.
fn deliver(s: &mut Subscriber, event: &Event) -> bool {
    if s.filter.as_ref().is_some_and(|f| !f.contains(&event.id)) {
        return !s.tx.is_closed();
    }
    if s.dropped > 0 {
        let lagged = Event {
            seq: s.last_dropped,
            time: event.time.clone(),
            id: String::new(),
            sandbox_id: String::new(),
            kind: EventKind::Lagged { dropped: s.dropped },
        };
        match s.tx.try_send(lagged) {
            Ok(()) => s.dropped = 0,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.dropped += 1;
                s.last_dropped = event.seq;
                return true;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
    }
    match s.tx.try_send(event.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            s.dropped += 1;
            s.last_dropped = event.seq;
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.name()).collect()
    }

    #[test]
    fn history_is_bounded_per_container_and_ordered_across_them() {
        let bus = EventBus::new(EventLimits { history: 2, queue: 8 });
        bus.publish("a", "a", EventKind::Created);
        bus.publish("b", "b", EventKind::Created);
        bus.publish("a", "a", EventKind::Started { pid: 1, restarts: 0 });
        bus.publish("a", "a", EventKind::Exited { exit_status: 0 });
        let all = bus.subscribe(None, false);
        assert!(all.live.is_none());
        assert_eq!(all.history.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let only_b = bus.subscribe(Some(BTreeSet::from(["b".to_string()])), false);
        assert_eq!(kinds(&only_b.history), vec!["created"]);
        bus.forget("a");
        assert_eq!(bus.subscribe(None, false).history.len(), 1);
    }

    #[test]
    fn a_slow_subscriber_loses_events_and_is_told_how_many() {
        let bus = EventBus::new(EventLimits { history: 8, queue: 2 });
        let mut slow = bus.subscribe(None, true).live.unwrap();
        for _ in 0..5 {
            bus.publish("a", "a", EventKind::Oom);
        }
        // Room again: the next event is preceded by the count of the lost ones.
        assert_eq!(slow.try_recv().unwrap().seq, 1);
        assert_eq!(slow.try_recv().unwrap().seq, 2);
        bus.publish("a", "a", EventKind::Deleted);
        let lagged = slow.try_recv().unwrap();
        assert_eq!((lagged.kind, lagged.seq), (EventKind::Lagged { dropped: 3 }, 5));
        assert_eq!(slow.try_recv().unwrap().kind, EventKind::Deleted);
        assert!(slow.try_recv().is_err());
    }

    #[test]
    fn followers_are_filtered_dropped_when_gone_and_ended_by_close() {
        let bus = EventBus::default();
        let mut only_b = bus.subscribe(Some(BTreeSet::from(["b".to_string()])), true).live.unwrap();
        let gone = bus.subscribe(None, true).live.unwrap();
        drop(gone);
        bus.publish("a", "a", EventKind::Created);
        bus.publish("b", "b", EventKind::Created);
        assert_eq!(bus.subscribers(), 1);
        assert_eq!(only_b.try_recv().unwrap().id, "b");
        bus.close();
        assert!(matches!(only_b.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert!(bus.subscribe(None, true).live.is_none());
    }
}
