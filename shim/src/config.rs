//! Which paddockd the shim talks to: the state root, from containerd's runtime options, else
//! the environment, else paddock's default.
//!
//! containerd hands the runtime's `options` table to the shim with every `Create`. For a
//! runtime type it does not know, containerd 1.6's CRI plugin reads that table as
//! `runtimeoptions.v1.Options`, whose `ConfigPath` names a file: the shim's TOML
//! configuration, whose `root` is the state root:
//!
//! ```toml
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock]
//!   runtime_type = "io.containerd.paddock.v1"
//!   [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock.options]
//!     ConfigPath = "/etc/paddock/shim.toml"   # root = "/run/paddock"
//! ```
//!
//! runc's options type (`containerd.runc.v1.Options`, what a client that sets runc options
//! sends) is read too: its `root` names the state root. Without either, `PADDOCK_ROOT` (in
//! containerd's environment, which its shims inherit) decides, else paddock's default.
//!
//! A container's root is remembered in its bundle, so that `shim delete` — containerd's
//! cleanup after a shim died, run by a new process that has nothing but the bundle — reaches
//! the same paddockd.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, UnknownValueRef};
use containerd_shim_protos::shim::oci::Options;

/// The environment variable naming the state root when the runtime options do not.
pub const ROOT_ENV: &str = "PADDOCK_ROOT";

/// The file in a bundle that remembers the container's state root.
const REMEMBERED: &str = "paddock-root";

/// The shim's configuration file (`ConfigPath` of the runtime options).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// paddockd's state root.
    pub root: Option<PathBuf>,
}

/// Why the runtime options could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read or parsed.
    #[error("the paddock shim's configuration {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The `ConfigPath` of containerd's `runtimeoptions.v1.Options` (field 2, a string), read
/// without its generated type, which containerd-shim-protos does not carry.
fn config_path(any: &Any) -> Option<PathBuf> {
    if any.type_url.rsplit('/').next() != Some("runtimeoptions.v1.Options") {
        return None;
    }
    let fields = Empty::parse_from_bytes(&any.value).ok()?;
    match fields.special_fields.unknown_fields().get(2)? {
        UnknownValueRef::LengthDelimited(bytes) if !bytes.is_empty() => {
            Some(PathBuf::from(std::ffi::OsString::from_vec(bytes.to_vec())))
        }
        _ => None,
    }
}

/// The state root for a container created with runtime options `options`.
pub fn state_root(options: Option<&Any>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = options.and_then(config_path) {
        let file_error = |reason: String| ConfigError::File { path: path.clone(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(e.to_string()))?;
        let config: ShimConfig = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        if let Some(root) = config.root {
            return Ok(root);
        }
    }
    let from_runc_options = options
        .filter(|any| any.type_url.rsplit('/').next() == Some("containerd.runc.v1.Options"))
        .and_then(|any| Options::parse_from_bytes(&any.value).ok())
        .map(|o| o.root)
        .filter(|root| !root.is_empty());
    if let Some(root) = from_runc_options {
        return Ok(PathBuf::from(root));
    }
    Ok(default_root())
}

/// The state root without runtime options: `PADDOCK_ROOT`, else paddock's default.
fn default_root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from(wire::stateroot::DEFAULT_ROOT),
    }
}

/// Writes `root` into `bundle` for [`recall`].
pub fn remember(bundle: &Path, root: &Path) -> std::io::Result<()> {
    std::fs::write(bundle.join(REMEMBERED), root.as_os_str().as_encoded_bytes())
}

/// The state root remembered in `bundle`, else the one the environment names.
pub fn recall(bundle: &Path) -> PathBuf {
    match std::fs::read(bundle.join(REMEMBERED)) {
        Ok(bytes) if !bytes.is_empty() => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        _ => default_root(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_name_the_root() {
        let options = Options { root: "/run/elsewhere".into(), ..Default::default() };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes().unwrap(),
            ..Default::default()
        };
        assert_eq!(state_root(Some(&any)).unwrap(), PathBuf::from("/run/elsewhere"));
        let other = Any { type_url: "something.Else".into(), ..Default::default() };
        assert_ne!(state_root(Some(&other)).unwrap(), PathBuf::from("/run/elsewhere"));
    }

    /// `runtimeoptions.v1.Options { type_url = 1, config_path = 2 }`, encoded by hand.
    fn runtime_options(config_path: &str) -> Any {
        let mut value = vec![0x0a, 3, b'a', b'b', b'c', 0x12, u8::try_from(config_path.len()).unwrap()];
        value.extend_from_slice(config_path.as_bytes());
        Any { type_url: "runtimeoptions.v1.Options".into(), value, ..Default::default() }
    }

    #[test]
    fn the_config_path_of_cri_options_names_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.toml");
        std::fs::write(&path, "root = \"/run/from-config\"\n").unwrap();
        let any = runtime_options(path.to_str().unwrap());
        assert_eq!(state_root(Some(&any)).unwrap(), PathBuf::from("/run/from-config"));
        std::fs::write(&path, "rot = \"/typo\"\n").unwrap();
        let err = state_root(Some(&any)).unwrap_err().to_string();
        assert!(err.contains("shim.toml"), "{err}");
        let missing = runtime_options("/nonexistent/shim.toml");
        assert!(state_root(Some(&missing)).is_err());
    }

    #[test]
    fn a_bundle_remembers_its_root() {
        let dir = tempfile::tempdir().unwrap();
        remember(dir.path(), Path::new("/run/some root")).unwrap();
        assert_eq!(recall(dir.path()), PathBuf::from("/run/some root"));
    }
}
