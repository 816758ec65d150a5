//! Which paddockd the shim talks to: the state root, from containerd's runtime options, else
//! the environment, else paddock's default.
//!
//! containerd hands the runtime's `options` table to the shim with every `Create`. The shim
//! reads runc's options type (`containerd.runc.v1.Options`), whose `root` names the state
//! root, as containerd's config writes it for `runtime_type = "io.containerd.paddock.v1"`
//! with `options = { Root = "/run/paddock" }`. Without one, `PADDOCK_ROOT` (in containerd's
//! environment, which its shims inherit) decides.
//!
//! A container's root is remembered in its bundle, so that `shim delete` — containerd's
//! cleanup after a shim died, run by a new process that has nothing but the bundle — reaches
//! the same paddockd.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

/// The environment variable naming the state root when the runtime options do not.
pub const ROOT_ENV: &str = "PADDOCK_ROOT";

/// The file in a bundle that remembers the container's state root.
const REMEMBERED: &str = "paddock-root";

/// The state root for a container created with runtime options `options`.
pub fn state_root(options: Option<&Any>) -> PathBuf {
    let from_options = options
        .filter(|any| any.type_url.rsplit('/').next() == Some("containerd.runc.v1.Options"))
        .and_then(|any| Options::parse_from_bytes(&any.value).ok())
        .map(|o| o.root)
        .filter(|root| !root.is_empty());
    if let Some(root) = from_options {
        return PathBuf::from(root);
    }
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
        _ => state_root(None),
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
        assert_eq!(state_root(Some(&any)), PathBuf::from("/run/elsewhere"));
        let other = Any { type_url: "something.Else".into(), ..Default::default() };
        assert_ne!(state_root(Some(&other)), PathBuf::from("/run/elsewhere"));
    }

    #[test]
    fn a_bundle_remembers_its_root() {
        let dir = tempfile::tempdir().unwrap();
        remember(dir.path(), Path::new("/run/some root")).unwrap();
        assert_eq!(recall(dir.path()), PathBuf::from("/run/some root"));
    }
}
