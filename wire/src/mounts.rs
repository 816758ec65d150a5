//! Reading the spec's mounts: which are bind mounts (and so come through the gofer), and
//! what their options mean. Shared by paddockd (which tells the gofer what to open) and the
//! sandbox (which attaches what the gofer sends, in the same order).

use oci_spec::runtime::Mount;

use crate::gofer_proto::BindMount;

/// A mount's options, sorted into what the new mount API wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// `MOUNT_ATTR_*` bits (read-only, nosuid, ...).
    pub attrs: u64,
    /// Filesystem parameters for `fsconfig` (`mode=755`, `newinstance`, ...).
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// A propagation type (`MS_PRIVATE`, `MS_SHARED`, ...), if given.
    pub propagation: Option<u64>,
}

const ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;

/// The propagation type a name stands for (`shared`, `rslave`, …) and whether it applies
/// recursively (the `r` forms), as in `linux.rootfsPropagation`.
pub fn propagation_of(name: &str) -> Option<(u64, bool)> {
    let recursive = name.starts_with('r');
    let flag = match name.strip_prefix('r').unwrap_or(name) {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some((flag, recursive))
}

/// Sorts mount(8)-style options.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let set = |o: &mut MountOptions, on: bool, bit: u64| {
            if on {
                o.attrs |= bit
            } else {
                o.attrs &= !bit
            }
        };
        let atime = |o: &mut MountOptions, bits: u64| o.attrs = (o.attrs & !ATIME_MASK) | bits;
        match opt.as_ref() {
            "ro" | "rro" => set(&mut o, true, libc::MOUNT_ATTR_RDONLY),
            "rw" | "rrw" => set(&mut o, false, libc::MOUNT_ATTR_RDONLY),
            "nosuid" | "rnosuid" => set(&mut o, true, libc::MOUNT_ATTR_NOSUID),
            "suid" | "rsuid" => set(&mut o, false, libc::MOUNT_ATTR_NOSUID),
            "nodev" | "rnodev" => set(&mut o, true, libc::MOUNT_ATTR_NODEV),
            "dev" | "rdev" => set(&mut o, false, libc::MOUNT_ATTR_NODEV),
            "noexec" | "rnoexec" => set(&mut o, true, libc::MOUNT_ATTR_NOEXEC),
            "exec" | "rexec" => set(&mut o, false, libc::MOUNT_ATTR_NOEXEC),
            "nodiratime" | "rnodiratime" => set(&mut o, true, libc::MOUNT_ATTR_NODIRATIME),
            "diratime" | "rdiratime" => set(&mut o, false, libc::MOUNT_ATTR_NODIRATIME),
            "nosymfollow" | "rnosymfollow" => set(&mut o, true, libc::MOUNT_ATTR_NOSYMFOLLOW),
            "symfollow" | "rsymfollow" => set(&mut o, false, libc::MOUNT_ATTR_NOSYMFOLLOW),
            "relatime" | "rrelatime" => atime(&mut o, libc::MOUNT_ATTR_RELATIME),
            "norelatime" | "rnorelatime" | "atime" | "ratime" => atime(&mut o, 0),
            "strictatime" | "rstrictatime" => atime(&mut o, libc::MOUNT_ATTR_STRICTATIME),
            "noatime" | "rnoatime" => atime(&mut o, libc::MOUNT_ATTR_NOATIME),
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" | "rprivate" => o.propagation = Some(libc::MS_PRIVATE),
            "shared" | "rshared" => o.propagation = Some(libc::MS_SHARED),
            "slave" | "rslave" => o.propagation = Some(libc::MS_SLAVE),
            "unbindable" | "runbindable" => o.propagation = Some(libc::MS_UNBINDABLE),
            "defaults" | "async" => {}
            other => o.data.push(other.to_string()),
        }
    }
    o
}

/// Whether `mount` is a bind mount (by its type or its options): those come from the gofer.
pub fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount.options().as_ref().is_some_and(|opts| opts.iter().any(|o| o == "bind" || o == "rbind"))
}

/// The spec's bind mounts in spec order, as the gofer is asked to open them.
pub fn bind_mounts(mounts: &[Mount]) -> Vec<BindMount> {
    mounts
        .iter()
        .filter(|m| is_bind(m))
        .map(|m| {
            let o = parse_options(m.options().as_deref().unwrap_or_default());
            BindMount {
                source: m.source().clone().unwrap_or_default(),
                destination: m.destination().clone(),
                recursive: o.recursive,
                readonly: o.attrs & libc::MOUNT_ATTR_RDONLY != 0,
                attrs: o.attrs & !libc::MOUNT_ATTR_RDONLY,
            }
        })
        .collect()
}

/// The destinations of the spec's mounts that are not bind mounts: filesystems the
/// container makes for itself, which its gofer never sees.
pub fn own_mount_destinations(mounts: &[Mount]) -> Vec<std::path::PathBuf> {
    mounts.iter().filter(|m| !is_bind(m)).map(|m| m.destination().clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    #[test]
    fn options_are_sorted() {
        let o = parse_options(&["nosuid", "strictatime", "mode=755", "size=65536k", "ro", "rprivate"]);
        assert_eq!(o.attrs, libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_STRICTATIME | libc::MOUNT_ATTR_RDONLY);
        assert_eq!(o.data, vec!["mode=755".to_string(), "size=65536k".to_string()]);
        assert_eq!(o.propagation, Some(libc::MS_PRIVATE));
        assert!(!o.bind);
        let o = parse_options(&["ro", "rw", "noatime", "relatime", "rbind"]);
        assert_eq!(o.attrs, libc::MOUNT_ATTR_RELATIME);
        assert!(o.bind && o.recursive);
    }

    #[test]
    fn bind_mounts_in_spec_order() {
        let m = |dest: &str, typ: &str, opts: &[&str]| {
            MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(format!("/src{dest}"))
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };
        let mounts = vec![
            m("/proc", "proc", &[]),
            m("/a", "bind", &["ro"]),
            m("/tmp", "tmpfs", &[]),
            m("/b", "none", &["rbind", "nosuid"]),
        ];
        let binds = bind_mounts(&mounts);
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[0].destination, std::path::PathBuf::from("/a"));
        assert!(binds[0].readonly && !binds[0].recursive);
        assert!(binds[1].recursive && !binds[1].readonly);
        assert_eq!(binds[1].attrs, libc::MOUNT_ATTR_NOSUID);
        assert_eq!(binds[1].source, std::path::PathBuf::from("/src/b"));
    }
}
