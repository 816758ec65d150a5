//! paddockd's configuration: one TOML file, every key optional.
//!
//! ```toml
//! # The state root: container directories and paddockd's socket. Default: /run/paddock.
//! root = "/run/paddock"
//! # Where paddock-sandbox and paddock-gofer are. Default: beside paddockd.
//! helper_dir = "/usr/libexec/paddock"
//! # The largest frame accepted on the socket, in bytes. Default: 16 MiB.
//! max_frame = 16777216
//! # Log filter (tracing's env-filter syntax); RUST_LOG overrides it. Default: info.
//! log = "info"
//! # Where containers write when their spec does not say (annotation dev.paddock.overlay):
//! # "none" (to the host's files), "root:memory" (the rootfs under a tmpfs overlay) or
//! # "all:memory" (the rootfs and every bind mount), optionally ":size=SIZE". Default: none.
//! overlay = "none"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The state root.
    pub root: Option<PathBuf>,
    /// Where the helper binaries are.
    pub helper_dir: Option<PathBuf>,
    /// The largest frame accepted.
    pub max_frame: Option<usize>,
    /// The log filter.
    pub log: Option<String>,
    /// The default overlay.
    pub overlay: Option<String>,
}

impl DaemonConfig {
    /// Reads a configuration file; a clear error names the file and the problem.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Some(max) = config.max_frame {
            if !(4096..=wire::frame::HARD_MAX_FRAME).contains(&max) {
                anyhow::bail!("{}: max_frame {max} is outside 4096..={}", path.display(), wire::frame::HARD_MAX_FRAME);
            }
        }
        if let Some(overlay) = &config.overlay {
            actors::spec::parse_overlay(overlay).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(config)
    }

    /// The default overlay (checked at load).
    pub fn default_overlay(&self) -> wire::gofer_proto::Overlay {
        self.overlay.as_deref().and_then(|o| actors::spec::parse_overlay(o).ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(toml::from_str::<DaemonConfig>("").unwrap(), DaemonConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "rooot = \"/x\"\n").unwrap();
        assert!(DaemonConfig::load(&p).unwrap_err().to_string().contains("rooot"));
        std::fs::write(&p, "max_frame = 10\n").unwrap();
        assert!(DaemonConfig::load(&p).unwrap_err().to_string().contains("max_frame"));
        std::fs::write(&p, "overlay = \"root:disk\"\n").unwrap();
        assert!(DaemonConfig::load(&p).unwrap_err().to_string().contains("overlay"));
        std::fs::write(&p, "root = \"/x\"\nlog = \"debug\"\noverlay = \"all:memory:size=1g\"\n").unwrap();
        let c = DaemonConfig::load(&p).unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/x")));
        assert_eq!(c.default_overlay(), wire::gofer_proto::Overlay::AllMemory { size: Some(1 << 30) });
    }
}
