//! What the spec's annotations ask of paddock: the overlay over the root filesystem, and where
//! a container goes (its own sandbox, or a pod's, from CRI's and containerd's keys).

use oci_spec::runtime::Spec;
use wire::gofer_proto::Overlay;
use wire::spec::OVERLAY_ANNOTATION;
use wire::ApiError;

/// Parses an overlay setting (the annotation's or the daemon configuration's value).
pub fn parse_overlay(value: &str) -> Result<Overlay, ApiError> {
    let bad = || {
        ApiError::invalid_spec(format!(
            "overlay {value:?}: expected none, root:memory or all:memory, optionally with :size=SIZE"
        ))
    };
    let (mode, size) = match value.split_once(":size=") {
        Some((mode, size)) => (mode, Some(parse_size(size).ok_or_else(bad)?)),
        None => (value, None),
    };
    match mode {
        "none" if size.is_none() => Ok(Overlay::None),
        "root:memory" => Ok(Overlay::RootMemory { size }),
        "all:memory" => Ok(Overlay::AllMemory { size }),
        _ => Err(bad()),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// The overlay a spec asks for, or `default` when it does not say.
pub fn overlay_of(spec: &Spec, default: Overlay) -> Result<Overlay, ApiError> {
    match spec.annotations().as_ref().and_then(|a| a.get(OVERLAY_ANNOTATION)) {
        Some(v) => parse_overlay(v).map_err(|e| e.context(format!("annotation {OVERLAY_ANNOTATION}"))),
        None => Ok(default),
    }
}

/// Where a container goes: into a sandbox of its own, or into an existing one (a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new sandbox, with this container as its root.
    NewSandbox,
    /// The sandbox whose root container has this id.
    Join(String),
}

/// containerd's CRI annotations, and CRI-O's.
const CONTAINER_TYPE_KEYS: [(&str, &str); 2] = [
    ("io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"),
    ("io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID"),
];

/// Reads the pod annotations: a container of type `container` joins the sandbox they name;
/// anything else (`sandbox`, or no annotation) is a root container with a sandbox of its own.
pub fn placement(spec: &Spec) -> Result<Placement, ApiError> {
    let Some(annotations) = spec.annotations().as_ref() else { return Ok(Placement::NewSandbox) };
    for (type_key, sandbox_key) in CONTAINER_TYPE_KEYS {
        if annotations.get(type_key).map(String::as_str) == Some("container") {
            return match annotations.get(sandbox_key).filter(|s| !s.is_empty()) {
                Some(sandbox) => Ok(Placement::Join(sandbox.clone())),
                None => Err(ApiError::invalid_spec(format!(
                    "annotation {type_key}=container, but {sandbox_key} does not name the sandbox to join"
                ))),
            };
        }
    }
    Ok(Placement::NewSandbox)
}
