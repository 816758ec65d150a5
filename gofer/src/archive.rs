//! Confined file access: tar streams out of and into the container's tree.
//!
//! Every path is resolved beneath the container's root with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, and every step below it goes through directory descriptors with
//! `O_NOFOLLOW`: absolute symlinks, `..` chains and symlinks swapped in during the copy all
//! stay inside the container.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use wire::{ApiError, ErrorKind};

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display + 'static) -> ApiError {
    ApiError::io(what, e)
}

/// Cleans a container path lexically, as `docker cp` does: no `.` or `..` left, never above
/// the root.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Whether `path` asks for a directory's contents (`/.` at its end, or `/` itself).
fn wants_contents(path: &Path) -> bool {
    path.as_os_str().as_bytes().ends_with(b"/.") || clean(path) == Path::new("/")
}

/// Writes a tar stream of `path` to `sink`.
pub fn copy_out(root: BorrowedFd<'_>, path: &Path, sink: OwnedFd) -> Result<(), ApiError> {
    let mut builder = tar::Builder::new(BufWriter::new(std::fs::File::from(sink)));
    let mut links = HashMap::new();
    let cleaned = clean(path);
    let shown = path.display();
    if wants_contents(path) {
        let dir = sys::open_beneath(root, &cleaned, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| not_found_or(e, &shown))?;
        append_children(&mut builder, dir.as_fd(), Path::new(""), &mut links)?;
    } else {
        let parent = cleaned.parent().unwrap_or(Path::new("/"));
        let name = cleaned.file_name().unwrap_or(OsStr::new("."));
        let dir =
            sys::open_beneath(root, parent, OFlags::PATH | OFlags::DIRECTORY).map_err(|e| not_found_or(e, &shown))?;
        append(&mut builder, dir.as_fd(), name, Path::new(name), &mut links).map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                ApiError::not_found(format!("{shown}: no such file or directory in the container"))
            } else {
                e
            }
        })?;
    }
    builder.into_inner().and_then(|mut w| w.flush()).map_err(|e| io_err("writing the tar stream", e))
}

fn not_found_or(e: std::io::Error, shown: &impl std::fmt::Display) -> ApiError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => ApiError::not_found(format!("{shown}: no such file or directory in the container")),
        Some(libc::ENOTDIR) => ApiError::invalid_argument(format!("{shown}: not a directory in the container")),
        _ => io_err(shown, e),
    }
}

fn header_for(st: &rustix::fs::Stat, typ: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(typ);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

type Links = HashMap<(u64, u64), PathBuf>;

/// Adds `name` (in the directory `dir`) to the archive as `archive_path`, and, for a
/// directory, everything below it.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    archive_path: &Path,
    links: &mut Links,
) -> Result<(), ApiError> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| match e {
        rustix::io::Errno::NOENT => ApiError::not_found(format!("{}: gone", archive_path.display())),
        other => io_err(archive_path.display(), other),
    })?;
    let ft = FileType::from_raw_mode(st.st_mode);
    let shown = archive_path.display();
    match ft {
        FileType::Directory => {
            let child = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(&shown, e))?;
            let mut h = header_for(&st, tar::EntryType::Directory);
            builder.append_data(&mut h, archive_path, std::io::empty()).map_err(|e| io_err(&shown, e))?;
            append_children(builder, child.as_fd(), archive_path, links)
        }
        FileType::RegularFile => {
            if st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = links.get(&key) {
                    let mut h = header_for(&st, tar::EntryType::Link);
                    return builder.append_link(&mut h, archive_path, first).map_err(|e| io_err(&shown, e));
                }
                links.insert(key, archive_path.to_path_buf());
            }
            let file =
                rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io_err(&shown, e))?;
            // What was opened must be what was examined; a swap in between is refused.
            let opened = rustix::fs::fstat(&file).map_err(|e| io_err(&shown, e))?;
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
                return Err(ApiError::io(&shown, "changed while being copied"));
            }
            let mut h = header_for(&opened, tar::EntryType::Regular);
            let size = opened.st_size.max(0) as u64;
            h.set_size(size);
            builder
                .append_data(&mut h, archive_path, ExactSize::new(std::fs::File::from(file), size))
                .map_err(|e| io_err(&shown, e))
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io_err(&shown, e))?;
            let mut h = header_for(&st, tar::EntryType::Symlink);
            builder
                .append_link(&mut h, archive_path, OsStr::from_bytes(target.as_bytes()))
                .map_err(|e| io_err(&shown, e))
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            let typ = match ft {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header_for(&st, typ);
            if typ != tar::EntryType::Fifo {
                let _ = h.set_device_major(rustix::fs::major(st.st_rdev));
                let _ = h.set_device_minor(rustix::fs::minor(st.st_rdev));
            }
            builder.append_data(&mut h, archive_path, std::io::empty()).map_err(|e| io_err(&shown, e))
        }
        // Sockets cannot be archived; tar skips them too.
        _ => Ok(()),
    }
}

fn append_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    archive_path: &Path,
    links: &mut Links,
) -> Result<(), ApiError> {
    let mut names: Vec<OsString> = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir).map_err(|e| io_err(archive_path.display(), e))?;
    for entry in entries.by_ref() {
        let entry = entry.map_err(|e| io_err(archive_path.display(), e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort();
    for name in names {
        append(builder, dir, &name, &archive_path.join(&name), links)?;
    }
    Ok(())
}

/// Yields exactly `size` bytes of `inner`: zeros if it shrank meanwhile, a cut if it grew.
/// A tar entry's header states its size before the data is read.
struct ExactSize<R> {
    inner: R,
    left: u64,
    exhausted: bool,
}

impl<R> ExactSize<R> {
    fn new(inner: R, size: u64) -> Self {
        Self { inner, left: size, exhausted: false }
    }
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left).map_or(buf.len(), |left| buf.len().min(left));
        let n = if self.exhausted { 0 } else { self.inner.read(&mut buf[..want])? };
        let n = if n == 0 {
            self.exhausted = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Where the entries of an incoming stream go.
struct Destination {
    /// The directory entries are unpacked into.
    base: PathBuf,
    /// The new name of the stream's top entry, when it becomes the destination itself.
    rename_top: Option<OsString>,
}

fn destination(root: BorrowedFd<'_>, path: &Path, contents: bool) -> Result<Destination, ApiError> {
    let cleaned = clean(path);
    let shown = path.display();
    if contents {
        let dir = sys::make_beneath(root, &cleaned, sys::Create::Dir).map_err(|e| io_err(&shown, e))?;
        let st = rustix::fs::fstat(&dir).map_err(|e| io_err(&shown, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(ApiError::invalid_argument(format!("{shown} is not a directory in the container")));
        }
        return Ok(Destination { base: cleaned, rename_top: None });
    }
    match sys::open_beneath(root, &cleaned, OFlags::PATH) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd).map_err(|e| io_err(&shown, e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Ok(Destination { base: cleaned, rename_top: None });
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if path.as_os_str().as_bytes().ends_with(b"/") {
                return Err(ApiError::not_found(format!("{shown}: no such directory in the container")));
            }
        }
        Err(e) => return Err(io_err(&shown, e)),
    }
    let parent = cleaned.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = cleaned
        .file_name()
        .ok_or_else(|| ApiError::invalid_argument(format!("{shown}: cannot replace the root")))?
        .to_os_string();
    sys::open_beneath(root, &parent, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|_| ApiError::not_found(format!("{}: no such directory in the container", parent.display())))?;
    Ok(Destination { base: parent, rename_top: Some(name) })
}

/// The container path of an archive entry, or `None` for the archive's root (`.`).
fn entry_path(dest: &Destination, raw: &Path) -> Result<Option<PathBuf>, ApiError> {
    let mut parts: Vec<OsString> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ApiError::invalid_argument(format!(
                    "archive entry {} leaves the destination",
                    raw.display()
                )));
            }
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    if let Some(name) = &dest.rename_top {
        parts[0] = name.clone();
    }
    let mut p = dest.base.clone();
    for part in parts {
        p.push(part);
    }
    Ok(Some(p))
}

/// Reads a tar stream from `source` and unpacks it at `path` in the container. `allowed` may
/// refuse an entry's container path.
pub fn copy_in(
    root: BorrowedFd<'_>,
    path: &Path,
    contents: bool,
    source: OwnedFd,
    allowed: impl Fn(&Path) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let dest = destination(root, path, contents)?;
    // The destination itself is found as the container would find it (symlinks resolved
    // inside its root); beneath it, nothing is ever written through a symlink, whether the
    // archive or the container made it.
    let dest_dir = sys::open_beneath(root, &dest.base, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| io_err(dest.base.display(), e))?;
    let mut archive = tar::Archive::new(BufReader::new(std::fs::File::from(source)));
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive.entries().map_err(|e| io_err("reading the tar stream", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err("reading the tar stream", e))?;
        let raw = entry.path().map_err(|e| io_err("reading the tar stream", e))?.into_owned();
        let Some(target) = entry_path(&dest, &raw)? else { continue };
        allowed(&target)?;
        let header = entry.header().clone();
        let typ = header.entry_type();
        if typ == tar::EntryType::Directory {
            if let Ok(t) = header.mtime() {
                dir_times.push((target.clone(), t));
            }
        }
        unpack_one(dest_dir.as_fd(), &dest, &target, &mut entry, &header).map_err(|e| e.context(target.display()))?;
    }
    // Directory times last: creating their entries changed them.
    for (dir, mtime) in dir_times.into_iter().rev() {
        if let Ok(fd) = sys::open_beneath(root, &dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            let _ = set_mtime(fd.as_fd(), mtime);
        }
    }
    Ok(())
}

fn set_mtime(fd: BorrowedFd<'_>, mtime: u64) -> rustix::io::Result<()> {
    let t = rustix::fs::Timespec { tv_sec: mtime as i64, tv_nsec: 0 };
    rustix::fs::futimens(fd, &rustix::fs::Timestamps { last_access: t, last_modification: t })
}

/// `target` (a path of `entry_path`) relative to the destination.
fn beneath_destination<'a>(dest: &Destination, target: &'a Path) -> Result<&'a Path, ApiError> {
    target
        .strip_prefix(&dest.base)
        .map_err(|_| ApiError::invalid_argument(format!("archive entry {} leaves the destination", target.display())))
}

/// The directory `rel` beneath the destination `dest_dir`, made where missing; every component
/// must be a real directory: a symlink on the way is refused, never followed.
fn directory_beneath(dest_dir: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, ApiError> {
    let mut current = rustix::io::fcntl_dupfd_cloexec(dest_dir, 0).map_err(|e| io_err("dup", e))?;
    let mut walked = PathBuf::new();
    for part in rel.components() {
        let Component::Normal(name) = part else { continue };
        walked.push(name);
        let open = |at: &OwnedFd| {
            rustix::fs::openat(
                at,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let next = match open(&current) {
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io_err(format!("mkdir {}", walked.display()), e)),
                }
                open(&current)
            }
            other => other,
        };
        current = next.map_err(|e| match e {
            rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => ApiError::invalid_argument(format!(
                "{} is a symlink or not a directory: nothing is written through it",
                walked.display()
            )),
            other => io_err(walked.display(), other),
        })?;
    }
    Ok(current)
}

fn unpack_one<R: Read>(
    dest_dir: BorrowedFd<'_>,
    dest: &Destination,
    target: &Path,
    entry: &mut R,
    header: &tar::Header,
) -> Result<(), ApiError> {
    let relative = beneath_destination(dest, target)?;
    let name = relative.file_name().ok_or_else(|| ApiError::invalid_argument("an entry has no name"))?;
    let parent = directory_beneath(dest_dir, relative.parent().unwrap_or(Path::new("")))?;
    let parent = parent.as_fd();
    let mode = Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
    // A tar header holds up to 64 bits; an id beyond 32 would wrap to another user.
    let owner_id = |id: u64, what: &str| {
        u32::try_from(id)
            .map_err(|_| ApiError::invalid_argument(format!("entry {}: {what} {id} out of range", relative.display())))
    };
    let uid = header.uid().ok().map(|u| owner_id(u, "uid")).transpose()?.map(rustix::fs::Uid::from_raw);
    let gid = header.gid().ok().map(|g| owner_id(g, "gid")).transpose()?.map(rustix::fs::Gid::from_raw);
    let typ = header.entry_type();
    match typ {
        tar::EntryType::Directory => {
            match rustix::fs::mkdirat(parent, name, mode) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_err("mkdir", e)),
            }
            let dir = rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("open directory", e))?;
            rustix::fs::fchown(&dir, uid, gid).map_err(|e| io_err("chown", e))?;
            rustix::fs::fchmod(&dir, mode).map_err(|e| io_err("chmod", e))
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let file = match rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600)) {
                // A symlink (or anything else) in the way is replaced, never followed.
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::TXTBSY) => {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(|e| io_err("replace", e))?;
                    rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
                }
                other => other,
            }
            .map_err(|e| io_err("create", e))?;
            let mut file = std::fs::File::from(file);
            std::io::copy(entry, &mut file).map_err(|e| io_err("write", e))?;
            rustix::fs::fchown(&file, uid, gid).map_err(|e| io_err("chown", e))?;
            rustix::fs::fchmod(&file, mode).map_err(|e| io_err("chmod", e))?;
            if let Ok(mtime) = header.mtime() {
                let _ = set_mtime(file.as_fd(), mtime);
            }
            Ok(())
        }
        tar::EntryType::Symlink => {
            let link = header
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| ApiError::invalid_argument("a symlink without a target"))?;
            remove_existing(parent, name)?;
            rustix::fs::symlinkat(link.as_ref(), parent, name).map_err(|e| io_err("symlink", e))?;
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io_err("chown", e))
        }
        tar::EntryType::Link => {
            let link = header
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| ApiError::invalid_argument("a hard link without a target"))?;
            let Some(existing) = entry_path(dest, &link)? else {
                return Err(ApiError::invalid_argument("a hard link to the destination itself"));
            };
            let existing = beneath_destination(dest, &existing)?;
            let source = rustix::fs::openat2(
                dest_dir,
                existing,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
            )
            .map_err(|e| io_err(format!("hard link target {}", existing.display()), e))?;
            remove_existing(parent, name)?;
            rustix::fs::linkat(&source, "", parent, name, AtFlags::EMPTY_PATH).map_err(|e| io_err("link", e))
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (ft, dev) = match typ {
                tar::EntryType::Char => (FileType::CharacterDevice, dev_of(header)),
                tar::EntryType::Block => (FileType::BlockDevice, dev_of(header)),
                _ => (FileType::Fifo, 0),
            };
            remove_existing(parent, name)?;
            rustix::fs::mknodat(parent, name, ft, mode, dev).map_err(|e| io_err("mknod", e))?;
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io_err("chown", e))
        }
        // Extended headers and the like carry no file of their own.
        _ => Ok(()),
    }
}

fn dev_of(header: &tar::Header) -> rustix::fs::Dev {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    rustix::fs::makedev(major, minor)
}

/// Removes whatever non-directory is at `name`, so a new entry can take its place.
fn remove_existing(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), ApiError> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::ISDIR) => Err(ApiError::invalid_argument("a directory is in the way")),
        Err(e) => Err(io_err("replace", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), PathBuf::from("/b/c"));
        assert_eq!(clean(Path::new("x/y")), PathBuf::from("/x/y"));
        assert!(wants_contents(Path::new("/etc/.")));
        assert!(wants_contents(Path::new("/")));
        assert!(!wants_contents(Path::new("/etc")));
    }

    #[test]
    fn exact_size_pads_and_cuts() {
        let mut out = Vec::new();
        ExactSize::new(&b"abc"[..], 5).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        let mut out = Vec::new();
        ExactSize::new(&b"abcdef"[..], 2).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn entries_cannot_leave_the_destination() {
        let dest = Destination { base: "/d".into(), rename_top: None };
        assert!(entry_path(&dest, Path::new("../x")).is_err());
        assert!(entry_path(&dest, Path::new("a/../../x")).is_err());
        assert_eq!(entry_path(&dest, Path::new("/a/b")).unwrap(), Some(PathBuf::from("/d/a/b")));
        assert_eq!(entry_path(&dest, Path::new("./")).unwrap(), None);
        let renamed = Destination { base: "/d".into(), rename_top: Some("new".into()) };
        assert_eq!(entry_path(&renamed, Path::new("old/f")).unwrap(), Some(PathBuf::from("/d/new/f")));
    }
}
