//! The envelope of paddockd's conversations with its helpers (sandboxes and gofers): requests
//! carry an id, answers carry it back, and a helper may also volunteer events. One connection
//! can so have several requests in flight.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A request and the id its reply will carry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the requester; echoed in the reply.
    pub id: u64,
    /// The request.
    pub request: T,
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

/// The event type of a helper that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoEvent {}
