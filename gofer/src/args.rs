//! The gofer's command line. It is an internal interface between paddockd and the gofer, so
//! it is parsed by hand rather than pulling an argument-parsing crate into a per-container
//! process.

use std::path::PathBuf;

/// What the gofer is asked to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoferArgs {
    /// The container's id, for messages.
    pub id: String,
    /// The descriptor of the io socket to the sandbox.
    pub io_fd: i32,
    /// The root filesystem on the host.
    pub rootfs: PathBuf,
    /// Put a tmpfs overlay over the root filesystem.
    pub overlay: bool,
    /// Size cap of the overlay's tmpfs, in bytes.
    pub overlay_size: Option<u64>,
}

impl GoferArgs {
    /// Parses the arguments after the program name.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut id = None;
        let mut io_fd = None;
        let mut rootfs = None;
        let mut overlay = false;
        let mut overlay_size = None;
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--id" => id = Some(value("--id")?),
                "--io-fd" => {
                    let v = value("--io-fd")?;
                    io_fd = Some(v.parse::<i32>().map_err(|_| format!("bad --io-fd {v:?}"))?);
                }
                "--rootfs" => rootfs = Some(PathBuf::from(value("--rootfs")?)),
                "--overlay" => match value("--overlay")?.as_str() {
                    "memory" => overlay = true,
                    "none" => overlay = false,
                    other => return Err(format!("unknown overlay medium {other:?}")),
                },
                "--overlay-size" => {
                    let v = value("--overlay-size")?;
                    overlay_size = Some(
                        v.parse::<u64>()
                            .map_err(|_| format!("bad --overlay-size {v:?}"))?,
                    );
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Self {
            id: id.ok_or("--id is required")?,
            io_fd: io_fd.ok_or("--io-fd is required")?,
            rootfs: rootfs.ok_or("--rootfs is required")?,
            overlay,
            overlay_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<GoferArgs, String> {
        GoferArgs::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_every_flag() {
        let a = parse("--id c --io-fd 3 --rootfs /r --overlay memory --overlay-size 1024").unwrap();
        assert_eq!(a.id, "c");
        assert_eq!(a.io_fd, 3);
        assert_eq!(a.rootfs, PathBuf::from("/r"));
        assert!(a.overlay);
        assert_eq!(a.overlay_size, Some(1024));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("--id c --io-fd x --rootfs /r").is_err());
        assert!(parse("--id c --rootfs /r").unwrap_err().contains("--io-fd"));
        assert!(parse("--id c --io-fd 3 --rootfs /r --bogus")
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse("--id c --io-fd 3 --rootfs /r --overlay disk").is_err());
        assert!(parse("--id").is_err());
    }
}
