//! `ctl cp`: files in and out of a container, through its gofer, as `docker cp` does.
//!
//! The container side is a tar stream that the gofer reads or writes through a pipe ctl
//! passes along; every container path is resolved beneath the container's root by the gofer.
//! The local side is packed or unpacked here.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wire::api::{CopyIn, CopyOut};
use wire::client::Client;
use wire::FdSlot;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine.
    Local(PathBuf),
    /// `-`: a tar stream on stdin or stdout.
    Stream,
    /// `ID:PATH`: a path in a container.
    Container {
        /// The container (id or prefix).
        id: String,
        /// The path inside it.
        path: PathBuf,
    },
}

/// Parses `-`, `ID:PATH` or a local path. A colon after a slash belongs to a local path
/// (`./a:b`), since ids contain no slash.
pub fn parse_location(text: &str) -> Location {
    if text == "-" {
        return Location::Stream;
    }
    match text.split_once(':') {
        Some((id, path)) if !id.is_empty() && !id.contains('/') => Location::Container {
            id: id.to_string(),
            path: if path.is_empty() { PathBuf::from("/") } else { Path::new("/").join(path) },
        },
        _ => Location::Local(PathBuf::from(text)),
    }
}

/// Whether a path asks for a directory's contents (`/.` at its end).
fn wants_contents(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().ends_with(b"/.")
}

/// Copies `src` to `dst`; exactly one of them is in a container.
pub fn copy(client: &mut Client, src: &str, dst: &str) -> anyhow::Result<()> {
    match (parse_location(src), parse_location(dst)) {
        (Location::Container { id, path }, local @ (Location::Local(_) | Location::Stream)) => {
            copy_out(client, &id, &path, local)
        }
        (local @ (Location::Local(_) | Location::Stream), Location::Container { id, path }) => {
            copy_in(client, local, &id, &path)
        }
        (Location::Container { .. }, Location::Container { .. }) => {
            anyhow::bail!("copying from one container to another is not supported; copy through the host")
        }
        _ => anyhow::bail!("one of the source and the destination must be a container path (ID:PATH)"),
    }
}

fn copy_out(client: &mut Client, id: &str, path: &Path, dst: Location) -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let contents = wants_contents(path);
    let local = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut reader = reader;
        match dst {
            Location::Stream => {
                std::io::copy(&mut reader, &mut std::io::stdout().lock()).context("writing the tar stream")?;
                Ok(())
            }
            Location::Local(path) => unpack_local(reader, &path, contents),
            Location::Container { .. } => unreachable!("checked by the caller"),
        }
    });
    let remote = client.copy_out(CopyOut {
        id: id.to_string(),
        path: path.to_path_buf(),
        sink: FdSlot::new(OwnedFd::from(writer)),
    });
    let local = local.join().map_err(|_| anyhow::anyhow!("the copy thread panicked"))?;
    // The container side's error says more (the local side then only sees a short stream).
    remote?;
    local
}

/// Unpacks a stream from a container at `dst`, as `docker cp`: into `dst` if it is a
/// directory (or the stream holds a directory's contents), else the stream's top entry
/// becomes `dst`.
fn unpack_local(reader: impl std::io::Read, dst: &Path, contents: bool) -> anyhow::Result<()> {
    let open = |r| {
        let mut a = tar::Archive::new(r);
        a.set_preserve_permissions(true);
        a.set_preserve_ownerships(true);
        a.set_preserve_mtime(true);
        a.set_overwrite(true);
        a
    };
    if dst.is_dir() || contents {
        std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
        return open(reader).unpack(dst).with_context(|| format!("unpacking into {}", dst.display()));
    }
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    anyhow::ensure!(parent.is_dir(), "{} is not a directory", parent.display());
    // Unpack beside the destination, then move the one top entry into place: tar's own
    // checks keep every entry inside the temporary directory.
    let staging = tempfile::Builder::new()
        .prefix(".ctl-cp-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    open(reader).unpack(staging.path()).context("unpacking the stream")?;
    let mut top = std::fs::read_dir(staging.path())?.collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(top.len() == 1, "the container sent {} top-level entries instead of one", top.len());
    let entry = top.remove(0).path();
    std::fs::rename(&entry, dst).with_context(|| format!("moving into {}", dst.display()))?;
    Ok(())
}

fn copy_in(client: &mut Client, src: Location, id: &str, path: &Path) -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let contents = match &src {
        Location::Stream => true,
        Location::Local(p) => wants_contents(p),
        Location::Container { .. } => unreachable!("checked by the caller"),
    };
    if let Location::Local(p) = &src {
        std::fs::symlink_metadata(p).with_context(|| format!("{}", p.display()))?;
    }
    let local = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut writer = writer;
        match src {
            Location::Stream => {
                std::io::copy(&mut std::io::stdin().lock(), &mut writer).context("reading the tar stream")?;
                Ok(())
            }
            Location::Local(p) => pack_local(writer, &p, contents),
            Location::Container { .. } => unreachable!("checked by the caller"),
        }
    });
    let remote = client.copy_in(CopyIn {
        id: id.to_string(),
        path: path.to_path_buf(),
        contents,
        source: FdSlot::new(OwnedFd::from(reader)),
    });
    let local = local.join().map_err(|_| anyhow::anyhow!("the copy thread panicked"))?;
    remote?;
    // The container's side stops reading at the archive's end-of-archive blocks and may hang
    // up before the rest of the padding is written: once it has unpacked everything, a broken
    // pipe on this side lost nothing.
    match local {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Packs a local path as a tar stream: its contents (for `DIR/.`), or the path under its own
/// name. Symlinks are archived as links, not followed; modes and owners are kept.
fn pack_local(writer: impl std::io::Write, path: &Path, contents: bool) -> anyhow::Result<()> {
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    if contents {
        builder.append_dir_all(".", path)?;
    } else {
        let name = path.file_name().ok_or_else(|| {
            anyhow::anyhow!("{}: give a named file or directory (or DIR/. for its contents)", path.display())
        })?;
        if meta.is_dir() {
            builder.append_dir_all(name, path)?;
        } else {
            builder.append_path_with_name(path, name)?;
        }
    }
    std::io::Write::flush(&mut builder.into_inner()?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(parse_location("-"), Location::Stream);
        assert_eq!(
            parse_location("web:/etc/hosts"),
            Location::Container { id: "web".into(), path: "/etc/hosts".into() }
        );
        assert_eq!(parse_location("web:etc"), Location::Container { id: "web".into(), path: "/etc".into() });
        assert_eq!(parse_location("web:"), Location::Container { id: "web".into(), path: "/".into() });
        assert_eq!(parse_location("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(parse_location("/tmp/x"), Location::Local("/tmp/x".into()));
        assert_eq!(parse_location(":x"), Location::Local(":x".into()));
    }
}
