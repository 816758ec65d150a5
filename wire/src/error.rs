//! Errors: [`ApiError`] is what an operation reports to its caller; [`WireError`] is what goes
//! wrong with the transport itself.

use serde::{Deserialize, Serialize};

/// What kind of failure an [`ApiError`] reports, so that callers can branch on it without
/// parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No container (or process) answers to the given id.
    NotFound,
    /// A container with this id exists already.
    AlreadyExists,
    /// The id is not a valid container id.
    InvalidId,
    /// The id is a prefix of several container ids.
    AmbiguousId,
    /// The operation is not allowed in the container's current status.
    InvalidStatus,
    /// The OCI runtime spec is malformed or asks for something impossible.
    InvalidSpec,
    /// Some other argument of the request is wrong.
    InvalidArgument,
    /// The request asks for something this host or this version of paddock cannot do.
    Unsupported,
    /// The caller is not allowed to talk to the daemon.
    PermissionDenied,
    /// A system call or a file operation failed.
    Io,
    /// The peer broke the wire protocol.
    Protocol,
    /// A sandbox or gofer process failed or disappeared.
    Sandbox,
    /// A bug or an unexpected condition inside paddock.
    Internal,
    /// paddockd is shutting down and no longer serves this request (the containers are
    /// not affected; ask again once it is back).
    Unavailable,
    /// A sandbox or gofer did not answer within the operation's deadline (it may be stuck or
    /// stopped); the operation may still take effect once it answers.
    Timeout,
}

/// An error returned by an operation, with a message meant for the user that names the object
/// and the cause, such as `container "web": cannot start in status running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::InvalidSpec`].
    pub fn invalid_spec(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidSpec, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An [`ErrorKind::Io`] error that says what was being done (`context`) and why it failed.
    pub fn io(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }

    /// The same error with `context` put in front of the message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self { kind: self.kind, message: format!("{context}: {}", self.message) }
    }
}

/// A failure of the transport: the socket, the framing, the encoding or the handshake.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("socket i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced or sent a frame above the maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The announced size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes of it arrived)")]
    Truncated {
        /// How many bytes of the unfinished frame were received.
        buffered: usize,
    },
    /// The peer closed the connection between frames.
    #[error("connection closed by the peer")]
    Closed,
    /// A frame's payload is not a valid message.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A frame announced file descriptors that did not arrive with it.
    #[error("frame announces {expected} file descriptors but only {received} arrived")]
    MissingFds {
        /// How many the frame announced.
        expected: usize,
        /// How many were available.
        received: usize,
    },
    /// More descriptors than one frame may carry.
    #[error("{count} file descriptors in one frame; at most {max} are allowed")]
    TooManyFds {
        /// How many were offered or received.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The handshake failed: wrong magic, incompatible version, or refused.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer answered something that does not fit the request.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// The peer took too long: to send the rest of a frame it began, or anything at all.
    #[error("timed out: {0}")]
    TimedOut(String),
}

impl From<WireError> for ApiError {
    fn from(err: WireError) -> Self {
        let kind = match &err {
            WireError::Io(_) | WireError::Closed => ErrorKind::Io,
            _ => ErrorKind::Protocol,
        };
        ApiError::new(kind, err.to_string())
    }
}
