//! The first exchange on every connection.
//!
//! The client sends a [`Hello`]; the server answers with a [`Welcome`]. Both are small structs
//! whose encoding never changes between versions, so a client and a server of different
//! versions always understand each other well enough to say that they differ.

use serde::{Deserialize, Serialize};

/// Marks a paddock peer: the first bytes of every hello.
pub const MAGIC: [u8; 8] = *b"PADDOCK\0";

/// The protocol version spoken by this build. Raised whenever a message changes.
pub const PROTOCOL_VERSION: u32 = 4;

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The protocol version the client speaks.
    pub version: u32,
    /// Who is calling, for the server's log (`ctl 0.1.0`, `paddockd 0.1.0`).
    pub peer: String,
}

impl Hello {
    /// A hello for this build's protocol version.
    pub fn new(peer: impl Into<String>) -> Self {
        Self { magic: MAGIC, version: PROTOCOL_VERSION, peer: peer.into() }
    }
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// The connection may carry requests of `version`.
    Accepted {
        /// The protocol version both sides will speak.
        version: u32,
        /// Who answers (`paddockd 0.1.0`).
        server: String,
    },
    /// The server refuses the connection, and says why.
    Refused {
        /// The reason, for the user.
        reason: String,
    },
}

/// The server's verdict on a client's hello.
pub fn check_hello(hello: &Hello, server: &str) -> Welcome {
    if hello.magic != MAGIC {
        return Welcome::Refused { reason: "not a paddock client (bad magic)".into() };
    }
    if hello.version != PROTOCOL_VERSION {
        return Welcome::Refused {
            reason: format!(
                "{} speaks protocol version {}, {server} speaks {PROTOCOL_VERSION}",
                hello.peer, hello.version
            ),
        };
    }
    Welcome::Accepted { version: PROTOCOL_VERSION, server: server.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_match() {
        assert!(matches!(check_hello(&Hello::new("t"), "s"), Welcome::Accepted { version: PROTOCOL_VERSION, .. }));
        let mut old = Hello::new("old ctl");
        old.version = 0;
        match check_hello(&old, "paddockd") {
            Welcome::Refused { reason } => assert!(reason.contains("version 0"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut alien = Hello::new("x");
        alien.magic = *b"GARBAGE!";
        assert!(matches!(check_hello(&alien, "s"), Welcome::Refused { .. }));
    }

    #[test]
    fn hello_encoding_is_stable() {
        // The hello's layout is part of the protocol: this must never change (only the version
        // byte does, with the protocol).
        let frame = crate::frame::encode_frame(&Hello::new("ab"), 100).unwrap();
        let expected: &[u8] = &[
            12,
            0,
            0,
            0,
            b'P',
            b'A',
            b'D',
            b'D',
            b'O',
            b'C',
            b'K',
            0,
            PROTOCOL_VERSION.to_le_bytes()[0],
            2,
            b'a',
            b'b',
        ];
        assert_eq!(frame, expected);
    }
}
