//! Errors: [`ApiError`] is what an operation reports to its caller; [`WireError`] is what goes
//! wrong with the transport itself.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;

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
    /// CRIU ran and failed to checkpoint or restore; its log says why.
    Criu,
}

/// What an [`ApiError`] is about: the thing a user would look at to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Object {
    /// A container, by id.
    Container(String),
    /// A sandbox (a pod of containers), by id.
    Sandbox(String),
    /// A file or directory, on the host unless the message says otherwise.
    Path(PathBuf),
    /// A process, by pid (in the namespace the message says).
    Process(i32),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Container(id) => write!(f, "container {}", crate::ids::show_id(id)),
            Object::Sandbox(id) => write!(f, "sandbox {}", crate::ids::show_id(id)),
            Object::Path(path) => write!(f, "{}", path.display()),
            Object::Process(pid) => write!(f, "process {pid}"),
        }
    }
}

/// An error returned by an operation, as it crosses the wire: what kind of failure it is, the
/// errno where a system call failed, the object and the operation it concerns, and the cause.
///
/// Callers decide on [`kind`](Self::kind) and [`errno`](Self::errno), never on the text. It
/// prints as `OBJECT: OPERATION: CAUSE (ERRNO)`, each part only when known, such as
/// `container "web": mkdir /run/x: No such file or directory (ENOENT)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The `errno` of the system call that failed, where one did.
    pub errno: Option<i32>,
    /// What the error is about, when the message does not already say it.
    pub object: Option<Object>,
    /// What was being done, outermost first (`starting the gofer: binding /run/x.sock`).
    pub operation: Option<String>,
    /// The cause, for the user.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(operation) = &self.operation {
            write!(f, "{operation}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(errno) = self.errno {
            write!(f, " ({})", errno_name(errno))?;
        }
        Ok(())
    }
}

/// The symbolic name of `errno` (`ENOENT`), or its number when it has none.
pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("errno {errno}"),
        known => format!("{known:?}"),
    }
}

/// The errno inside `err`, when it is one of the error types that carry one.
fn errno_of(err: &dyn Any) -> Option<i32> {
    if let Some(e) = err.downcast_ref::<std::io::Error>() {
        e.raw_os_error()
    } else if let Some(e) = err.downcast_ref::<nix::errno::Errno>() {
        Some(*e as i32)
    } else if let Some(e) = err.downcast_ref::<rustix::io::Errno>() {
        Some(e.raw_os_error())
    } else if let Some(e) = err.downcast_ref::<ApiError>() {
        e.errno
    } else {
        None
    }
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, errno: None, object: None, operation: None, message: message.into() }
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

    /// An [`ErrorKind::Io`] error: `operation` failed because of `err`. The errno is kept
    /// when `err` is a [`std::io::Error`], a nix or rustix `Errno`, or an [`ApiError`].
    pub fn io(operation: impl fmt::Display, err: impl fmt::Display + 'static) -> Self {
        let errno = errno_of(&err);
        // The errno's own text, without the "(os error N)" that Display prints as its name.
        let message = match errno {
            Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
            None => err.to_string(),
        };
        Self { kind: ErrorKind::Io, errno, object: None, operation: Some(operation.to_string()), message }
    }

    /// An error of `kind` for a system call that failed with `errno`.
    pub fn from_errno(kind: ErrorKind, operation: impl fmt::Display, errno: i32) -> Self {
        let message = nix::errno::Errno::from_raw(errno).desc().to_string();
        Self { kind, errno: Some(errno), object: None, operation: Some(operation.to_string()), message }
    }

    /// The same error with `context` (what was being done around the failed operation) put in
    /// front of its operation.
    pub fn context(self, context: impl fmt::Display) -> Self {
        let operation = match self.operation {
            Some(inner) => format!("{context}: {inner}"),
            None => context.to_string(),
        };
        Self { operation: Some(operation), ..self }
    }

    /// The same error, about `object` (unless it names one already).
    pub fn on(self, object: Object) -> Self {
        Self { object: self.object.or(Some(object)), ..self }
    }

    /// The same error with `errno` as its errno (unless it has one already).
    pub fn with_errno(self, errno: i32) -> Self {
        Self { errno: self.errno.or(Some(errno)), ..self }
    }

    /// The same error of kind `kind`.
    pub fn with_kind(self, kind: ErrorKind) -> Self {
        Self { kind, ..self }
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
        match err {
            WireError::Io(io) => ApiError::io("socket", io),
            WireError::Closed => ApiError::new(ErrorKind::Io, err.to_string()),
            _ => ApiError::new(ErrorKind::Protocol, err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_keeps_its_errno_through_context_and_the_wire() {
        let err = ApiError::io("mkdir /run/x", std::io::Error::from_raw_os_error(libc::ENOENT))
            .context("preparing the bundle")
            .on(Object::Container("web".into()));
        assert_eq!((err.kind, err.errno), (ErrorKind::Io, Some(libc::ENOENT)));
        assert_eq!(
            err.to_string(),
            "container \"web\": preparing the bundle: mkdir /run/x: No such file or directory (ENOENT)"
        );
        let frame = crate::frame::encode_frame(&err, 1 << 16).unwrap();
        let back: ApiError = crate::frame::decode_payload(&frame[crate::frame::HEADER_LEN..]).unwrap();
        assert_eq!(back, err);
        assert_eq!(back.to_string(), err.to_string());
    }

    #[test]
    fn the_errno_is_taken_from_every_errno_type() {
        assert_eq!(ApiError::io("a", nix::errno::Errno::EPERM).errno, Some(libc::EPERM));
        assert_eq!(ApiError::io("a", rustix::io::Errno::BUSY).errno, Some(libc::EBUSY));
        assert_eq!(ApiError::io("a", ApiError::from_errno(ErrorKind::Io, "b", libc::EXDEV)).errno, Some(libc::EXDEV));
        // A cause without an errno is kept as text.
        let plain = ApiError::io("reading the spec", "unexpected end of file");
        assert_eq!((plain.errno, plain.to_string()), (None, "reading the spec: unexpected end of file".to_string()));
        assert_eq!(ApiError::from_errno(ErrorKind::Io, "x", 4242).to_string(), "x: Unknown errno (errno 4242)");
    }

    #[test]
    fn a_message_alone_prints_as_before() {
        let err = ApiError::new(ErrorKind::InvalidStatus, "container \"web\": cannot start in status running");
        assert_eq!(err.to_string(), "container \"web\": cannot start in status running");
        assert_eq!(err.context("start").to_string(), "start: container \"web\": cannot start in status running");
        let path = ApiError::not_found("does not exist").on(Object::Path("/b/config.json".into()));
        assert_eq!(path.to_string(), "/b/config.json: does not exist");
        // The first object named stays.
        assert_eq!(path.on(Object::Sandbox("s".into())).object, Some(Object::Path("/b/config.json".into())));
    }

    #[test]
    fn a_socket_failure_keeps_its_errno() {
        let err = ApiError::from(WireError::Io(std::io::Error::from_raw_os_error(libc::EPIPE)));
        assert_eq!((err.kind, err.errno), (ErrorKind::Io, Some(libc::EPIPE)));
        assert_eq!(ApiError::from(WireError::Closed).kind, ErrorKind::Io);
        assert_eq!(ApiError::from(WireError::Decode("x".into())).kind, ErrorKind::Protocol);
    }
}
