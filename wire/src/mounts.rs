//! Reading the spec's mounts: which are bind mounts (and so come through the gofer), and
//! what their options mean. Shared by paddockd (which tells the gofer what to open) and the
//! sandbox (which attaches what the gofer sends, in the same order).

use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use crate::gofer_proto::{BindMount, IdMapping, IdRange};

/// A mount's options, sorted into what the new mount API wants.
///
/// The plain attribute options (`ro`, `nosuid`, …) change the mount itself only (for an
/// `rbind`, its submounts keep their own attributes, as with mount(8) and runc); their `r`
/// forms (`rro`, `rnosuid`, …, runtime-spec 1.1) change every mount of the tree
/// (`mount_setattr` with `AT_RECURSIVE`). A filesystem made fresh has no submounts, so for it
/// both amount to the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// `MOUNT_ATTR_*` bits to set on the mount itself (read-only, nosuid, …; the atime mode
    /// when [`MountOptions::clear`] holds `MOUNT_ATTR__ATIME`).
    pub attrs: u64,
    /// `MOUNT_ATTR_*` bits to clear on the mount itself (`rw`, `suid`, …; `MOUNT_ATTR__ATIME`
    /// when an atime option was given: the atime modes are an enum, not bits).
    pub clear: u64,
    /// `MOUNT_ATTR_*` bits to set on every mount of the tree (the `r` options).
    pub rec_attrs: u64,
    /// `MOUNT_ATTR_*` bits to clear on every mount of the tree.
    pub rec_clear: u64,
    /// Filesystem parameters for `fsconfig` (`mode=755`, `newinstance`, ...).
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// A propagation type (`MS_PRIVATE`, `MS_SHARED`, ...), if given.
    pub propagation: Option<u64>,
    /// The propagation was given in its `r` form (`rshared`, …): for every mount of the tree.
    pub propagation_recursive: bool,
    /// `idmap` (`Some(false)`: the mount itself) or `ridmap` (`Some(true)`: every mount of
    /// the tree) was given (runtime-spec 1.2, runc 1.2).
    pub idmap: Option<bool>,
}

impl MountOptions {
    /// The attributes a freshly made filesystem gets at `fsmount` (it has no submounts, so the
    /// recursive options count as plain ones, applied after them).
    pub fn fresh_attrs(&self) -> u64 {
        let mut attrs = self.attrs;
        if self.rec_clear & ATIME_MASK != 0 {
            attrs &= !ATIME_MASK;
        }
        (attrs & !self.rec_clear) | self.rec_attrs
    }

    /// Whether the mount (or, with `rro`, every mount of its tree) ends up read-only.
    pub fn readonly(&self) -> bool {
        (self.attrs | self.rec_attrs) & libc::MOUNT_ATTR_RDONLY != 0
    }
}

/// The options paddock knows, as `ctl features` lists them: the attributes in their plain and
/// recursive forms, the binds and the propagation types.
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "exec",
    "idmap",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];

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

/// Sorts mount(8)-style options. Later options override earlier ones.
///
/// The atime options choose one mode: `relatime`, `noatime` or `strictatime`; `atime` and
/// `nostrictatime` mean the kernel's default (relatime), `norelatime` strictatime (neither
/// relatime nor noatime).
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let opt = opt.as_ref();
        // `rro` is `ro` for the whole tree; `ro`, `rw` and `relatime` are not `r` forms.
        let (recursive, attr) = match opt.strip_prefix('r').and_then(attribute_of) {
            Some(attr) => (true, Some(attr)),
            None => (false, attribute_of(opt)),
        };
        if let Some(attr) = attr {
            let (set, clear) =
                if recursive { (&mut o.rec_attrs, &mut o.rec_clear) } else { (&mut o.attrs, &mut o.clear) };
            match attr {
                Attr::Set(bit) => {
                    *set |= bit;
                    *clear &= !bit;
                }
                Attr::Clear(bit) => {
                    *set &= !bit;
                    *clear |= bit;
                }
                Attr::Atime(mode) => {
                    *set = (*set & !ATIME_MASK) | mode;
                    *clear |= ATIME_MASK;
                }
            }
            continue;
        }
        match opt {
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "defaults" | "async" => {}
            "idmap" => o.idmap = Some(false),
            "ridmap" => o.idmap = Some(true),
            other => match propagation_of(other) {
                Some((flag, recursive)) => {
                    o.propagation = Some(flag);
                    o.propagation_recursive = recursive;
                }
                None => o.data.push(other.to_string()),
            },
        }
    }
    o
}

/// What a plain attribute option does.
enum Attr {
    /// Sets a `MOUNT_ATTR_*` bit.
    Set(u64),
    /// Clears one.
    Clear(u64),
    /// Chooses an atime mode (an enum within `MOUNT_ATTR__ATIME`; relatime is 0).
    Atime(u64),
}

/// A plain attribute option (no `r` prefix), if `opt` is one.
fn attribute_of(opt: &str) -> Option<Attr> {
    Some(match opt {
        "ro" => Attr::Set(libc::MOUNT_ATTR_RDONLY),
        "rw" => Attr::Clear(libc::MOUNT_ATTR_RDONLY),
        "nosuid" => Attr::Set(libc::MOUNT_ATTR_NOSUID),
        "suid" => Attr::Clear(libc::MOUNT_ATTR_NOSUID),
        "nodev" => Attr::Set(libc::MOUNT_ATTR_NODEV),
        "dev" => Attr::Clear(libc::MOUNT_ATTR_NODEV),
        "noexec" => Attr::Set(libc::MOUNT_ATTR_NOEXEC),
        "exec" => Attr::Clear(libc::MOUNT_ATTR_NOEXEC),
        "nodiratime" => Attr::Set(libc::MOUNT_ATTR_NODIRATIME),
        "diratime" => Attr::Clear(libc::MOUNT_ATTR_NODIRATIME),
        "nosymfollow" => Attr::Set(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "symfollow" => Attr::Clear(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "relatime" | "atime" | "nostrictatime" => Attr::Atime(libc::MOUNT_ATTR_RELATIME),
        "strictatime" | "norelatime" => Attr::Atime(libc::MOUNT_ATTR_STRICTATIME),
        "noatime" => Attr::Atime(libc::MOUNT_ATTR_NOATIME),
        _ => return None,
    })
}

/// Whether `mount` is a bind mount (by its type or its options): those come from the gofer.
pub fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount.options().as_ref().is_some_and(|opts| opts.iter().any(|o| o == "bind" || o == "rbind"))
}

/// The spec's bind mounts in spec order, as the gofer is asked to open them.
pub fn bind_mounts(spec: &Spec) -> Vec<BindMount> {
    let linux = spec.linux().as_ref();
    let container_uids = linux.and_then(|l| l.uid_mappings().as_deref()).unwrap_or_default();
    let container_gids = linux.and_then(|l| l.gid_mappings().as_deref()).unwrap_or_default();
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| is_bind(m))
        .map(|m| {
            let o = parse_options(m.options().as_deref().unwrap_or_default());
            BindMount {
                source: m.source().clone().unwrap_or_default(),
                destination: m.destination().clone(),
                recursive: o.recursive,
                attrs: o.attrs,
                clear: o.clear,
                rec_attrs: o.rec_attrs,
                rec_clear: o.rec_clear,
                slave: o.propagation == Some(libc::MS_SLAVE),
                idmap: idmap_of(m, o.idmap, container_uids, container_gids),
            }
        })
        .collect()
}

/// The idmap of a bind mount, as runc reads the spec: the mount's own maps if it lists any
/// (idmapped even without an `idmap` option, and then not recursively), else with `idmap` or
/// `ridmap` the container's user namespace's maps (paddockd has filled those in for a joined
/// user namespace).
fn idmap_of(
    m: &Mount,
    option: Option<bool>,
    container_uids: &[LinuxIdMapping],
    container_gids: &[LinuxIdMapping],
) -> Option<IdMapping> {
    let ranges = |maps: &[LinuxIdMapping]| -> Vec<IdRange> {
        maps.iter().map(|m| IdRange { container_id: m.container_id(), host_id: m.host_id(), size: m.size() }).collect()
    };
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Some(IdMapping {
            uids: ranges(m.uid_mappings().as_deref().unwrap_or_default()),
            gids: ranges(m.gid_mappings().as_deref().unwrap_or_default()),
            recursive: option == Some(true),
        });
    }
    option.map(|recursive| IdMapping { uids: ranges(container_uids), gids: ranges(container_gids), recursive })
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
        assert_eq!(o.clear, libc::MOUNT_ATTR__ATIME);
        let o = parse_options(&["ro", "rw", "noatime", "relatime", "rbind"]);
        assert_eq!(o.attrs, libc::MOUNT_ATTR_RELATIME);
        assert_eq!(o.clear, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR__ATIME);
        assert!(o.bind && o.recursive);
    }

    #[test]
    fn recursive_forms_apply_to_the_tree() {
        let o = parse_options(&["rbind", "rro", "nosuid", "rnoatime", "rnodev", "rdev", "rshared"]);
        assert_eq!(o.attrs, libc::MOUNT_ATTR_NOSUID);
        assert_eq!(o.clear, 0);
        assert_eq!(o.rec_attrs, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clear, libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODEV);
        assert_eq!((o.propagation, o.propagation_recursive), (Some(libc::MS_SHARED), true));
        assert!(o.readonly());
        let o = parse_options(&["relatime", "rrelatime", "rstrictatime", "ro", "rw", "rrw"]);
        assert_eq!(o.attrs, libc::MOUNT_ATTR_RELATIME);
        assert_eq!(o.rec_attrs, libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(o.rec_clear, libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_RDONLY);
        assert!(!o.readonly());
        // A fresh mount: the recursive forms override the plain ones.
        let o = parse_options(&["noatime", "rstrictatime", "nosuid", "rsuid", "rro"]);
        assert_eq!(o.fresh_attrs(), libc::MOUNT_ATTR_STRICTATIME | libc::MOUNT_ATTR_RDONLY);
        assert!(!parse_options(&["shared"]).propagation_recursive);
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
        let mut spec = Spec::default();
        spec.set_mounts(Some(mounts));
        let binds = bind_mounts(&spec);
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[0].destination, std::path::PathBuf::from("/a"));
        assert!(binds[0].attrs == libc::MOUNT_ATTR_RDONLY && !binds[0].recursive);
        assert!(binds[1].recursive && binds[1].attrs & libc::MOUNT_ATTR_RDONLY == 0);
        assert_eq!(binds[1].attrs, libc::MOUNT_ATTR_NOSUID);
        assert_eq!(binds[1].source, std::path::PathBuf::from("/src/b"));
        assert!(binds.iter().all(|b| b.idmap.is_none()));
    }

    #[test]
    fn idmaps_come_from_the_mount_or_the_container() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/own", "type": "bind", "source": "/a", "options": ["rbind"],
                 "uidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
                 "gidMappings": [{"containerID": 100, "hostID": 0, "size": 2}]},
                {"destination": "/rec", "type": "bind", "source": "/b", "options": ["rbind", "ridmap"]},
                {"destination": "/top", "type": "bind", "source": "/c", "options": ["ridmap", "idmap"]},
                {"destination": "/plain", "type": "bind", "source": "/d", "options": ["bind"]}
            ],
            "linux": {
                "namespaces": [{"type": "user"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}]
            }
        }))
        .unwrap();
        let binds = bind_mounts(&spec);
        let own = binds[0].idmap.as_ref().unwrap();
        assert_eq!(own.uids, vec![IdRange { container_id: 1000, host_id: 0, size: 1 }]);
        assert_eq!(IdMapping::map_text(&own.gids), "100 0 2\n");
        assert!(!own.recursive, "mappings alone idmap the mount itself");
        let rec = binds[1].idmap.as_ref().unwrap();
        assert!(rec.recursive);
        assert_eq!(IdMapping::map_text(&rec.uids), "0 100000 65536\n");
        assert_eq!(IdMapping::map_text(&rec.gids), "0 200000 65536\n");
        assert!(!binds[2].idmap.as_ref().unwrap().recursive, "the later option wins");
        assert!(binds[3].idmap.is_none());
        assert!(parse_options(&["idmap"]).data.is_empty());
    }
}
