//! The OCI runtime spec on the wire.
//!
//! oci-spec's types leave out absent fields when serialized (`skip_serializing_if`), which a
//! non-self-describing format like bincode cannot decode. So a spec travels as its JSON text
//! inside the bincode frame, and is parsed where it is used, with an error that names the
//! problem instead of a broken frame.

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

/// Reads and parses `<bundle>/config.json`, with errors that name the file.
pub fn read_bundle_spec(bundle: &Path) -> Result<Spec, ApiError> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ApiError::invalid_spec(format!("cannot read {}: {e}", path.display())))?;
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
