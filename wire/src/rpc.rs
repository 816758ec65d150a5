//! The envelope of paddockd's conversations with its helpers (sandboxes and gofers): requests
//! carry an id, answers carry it back, and a helper may also volunteer events. One connection
//! can so have several requests in flight.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fds::{CarriesFds, FdSlot};

/// A request and the id its reply will carry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the requester; echoed in the reply.
    pub id: u64,
    /// The request.
    pub request: T,
}

impl<T: CarriesFds> CarriesFds for Envelope<T> {
    fn fd_slots_mut(&mut self) -> Vec<&mut FdSlot> {
        self.request.fd_slots_mut()
    }
    fn fd_slots(&self) -> Vec<&FdSlot> {
        self.request.fd_slots()
    }
}

/// What a helper sends: a reply to a request, or an event.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer<R, E> {
    /// The outcome of request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<R, ApiError>,
    },
    /// Something that happened.
    Event(E),
}

impl<R: CarriesFds, E: CarriesFds> CarriesFds for Answer<R, E> {
    fn fd_slots_mut(&mut self) -> Vec<&mut FdSlot> {
        match self {
            Answer::Reply { result: Ok(r), .. } => r.fd_slots_mut(),
            Answer::Reply { .. } => Vec::new(),
            Answer::Event(e) => e.fd_slots_mut(),
        }
    }
    fn fd_slots(&self) -> Vec<&FdSlot> {
        match self {
            Answer::Reply { result: Ok(r), .. } => r.fd_slots(),
            Answer::Reply { .. } => Vec::new(),
            Answer::Event(e) => e.fd_slots(),
        }
    }
}

/// The event type of a helper that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoEvent {}

impl CarriesFds for NoEvent {}
