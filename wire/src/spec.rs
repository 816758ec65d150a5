//! The OCI runtime spec on the wire.
//!
//! oci-spec's types leave out absent fields when serialized (`skip_serializing_if`), which a
//! non-self-describing format like bincode cannot decode. So a spec travels as its JSON text
//! inside the bincode frame, and is parsed where it is used, with an error that names the
//! problem instead of a broken frame.
//!
//! Beside the transport lives what ctl and paddockd both need to know of a spec: the
//! embedded default ([`embedded_default`]), Docker's default seccomp profile
//! ([`default_seccomp`]), the annotations paddock reads ([`OVERLAY_ANNOTATION`],
//! [`restart::RESTART_ANNOTATION`]) and [`console_size`]. ctl, which every shim runs for
//! every operation, links this crate and not the daemon's actors: this crate links no async
//! or actor runtime, and a spec is what ctl hands paddockd, so what ctl writes into one and
//! what paddockd reads back are described here, once.

pub mod default_seccomp;
mod embedded;
pub mod restart;

pub use embedded::{embedded_default, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};

use std::path::Path;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// An OCI runtime spec, carried as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecJson {
    json: String,
}

impl SpecJson {
    /// Encodes `spec`.
    pub fn from_spec(spec: &Spec) -> Result<Self, ApiError> {
        serde_json::to_string(spec)
            .map(|json| Self { json })
            .map_err(|e| ApiError::invalid_spec(format!("cannot encode the spec: {e}")))
    }

    /// Wraps JSON text as it is (it is checked by [`parse`](Self::parse)).
    pub fn from_json(json: impl Into<String>) -> Self {
        Self { json: json.into() }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Parses the spec.
    pub fn parse(&self) -> Result<Spec, ApiError> {
        serde_json::from_str(&self.json).map_err(|e| ApiError::invalid_spec(format!("invalid OCI runtime spec: {e}")))
    }
}

/// The annotation that selects the overlay of a container: `none`, `root:memory` or
/// `all:memory`, optionally followed by `:size=SIZE` (bytes, or with a k, m or g suffix).
pub const OVERLAY_ANNOTATION: &str = "dev.paddock.overlay";

/// A `process.consoleSize` of `(rows, columns)`.
pub fn console_size((rows, columns): (u32, u32)) -> oci_spec::runtime::Box {
    oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(rows))
        .width(u64::from(columns))
        .build()
        .unwrap_or_default()
}

/// The largest `config.json` read: a spec must fit in one frame anyway.
pub const MAX_CONFIG_SIZE: u64 = crate::frame::DEFAULT_MAX_FRAME as u64;

/// Reads and parses `<bundle>/config.json`, with errors that name the file.
///
/// Only a regular file of at most [`MAX_CONFIG_SIZE`] bytes is read: a FIFO (opened without
/// blocking, so it cannot hold the caller forever) or a device is refused at once, and a
/// file that grows while read is cut at the limit.
pub fn read_bundle_spec(bundle: &Path) -> Result<Spec, ApiError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("config.json");
    let cannot = |e: &dyn std::fmt::Display| ApiError::invalid_spec(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| cannot(&e))?;
    let meta = file.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(ApiError::invalid_spec(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(ApiError::invalid_spec(format!(
            "{} is {} bytes; a spec may have at most {MAX_CONFIG_SIZE}",
            path.display(),
            meta.len()
        )));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_SIZE + 1).read_to_string(&mut text).map_err(|e| cannot(&e))?;
    if text.len() as u64 > MAX_CONFIG_SIZE {
        return Err(ApiError::invalid_spec(format!(
            "{} grew beyond {MAX_CONFIG_SIZE} bytes while it was read",
            path.display()
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| ApiError::invalid_spec(format!("{}: invalid OCI runtime spec: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_roundtrips_through_bincode() {
        let spec = Spec::default();
        let wrapped = SpecJson::from_spec(&spec).unwrap();
        let frame = crate::frame::encode_frame(&wrapped, 1 << 20).unwrap();
        let back: SpecJson = crate::frame::decode_payload(&frame[4..]).unwrap();
        assert_eq!(back.parse().unwrap(), spec);
    }

    #[test]
    fn invalid_spec_is_a_clear_error() {
        let err = SpecJson::from_json("{\"process\": 5}").parse().unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidSpec);
        assert!(err.message.contains("invalid OCI runtime spec"), "{}", err.message);
        let dir = std::env::temp_dir().join(format!("paddock-wire-test-{}", std::process::id()));
        let err = read_bundle_spec(&dir).unwrap_err();
        assert!(err.message.contains("config.json"), "{}", err.message);
    }
}
