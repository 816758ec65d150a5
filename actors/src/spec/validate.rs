//! Checks on a spec before anything is started: versions, ids, namespaces, mounts, devices,
//! sysctls, the root filesystem.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};
use wire::gofer_proto::Overlay;
use wire::ApiError;

use super::{attributes, check_security_labels, overlay_of};

/// The largest uid or gid a process may run as, as runc allows: above it the kernel reads the
/// id as "unchanged" (`setresuid(-1, …)` keeps root) or the id is unmappable.
pub const MAX_ID: u32 = i32::MAX as u32;

/// A process's user, group and additional groups are within [`MAX_ID`] (runc's message).
pub fn validate_user(process: &oci_spec::runtime::Process) -> Result<(), ApiError> {
    let user = process.user();
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(user.additional_gids().as_deref().unwrap_or_default().iter().map(|g| ("additionalGids", *g)));
    for (field, id) in ids {
        if id > MAX_ID {
            return Err(ApiError::invalid_spec(format!(
                "process.user.{field} {id}: uids and gids must be in range 0-{MAX_ID}"
            )));
        }
    }
    Ok(())
}

/// A process with a terminal needs somewhere to send the pty's master, as runc requires.
pub fn require_console(process: &oci_spec::runtime::Process, stdio: &wire::Stdio) -> Result<(), ApiError> {
    if process.terminal().unwrap_or(false) && stdio.console.as_fd().is_none() {
        return Err(ApiError::invalid_argument(
            "the process has a terminal (process.terminal or --tty) but no console socket to send it to (--console-socket)",
        ));
    }
    Ok(())
}

/// A user namespace needs uid and gid mappings (each within 32 bits, none empty), and
/// mappings need a user namespace, as runc checks.
fn validate_id_mappings(linux: &oci_spec::runtime::Linux) -> Result<(), ApiError> {
    // A user namespace joined by path has its maps already (paddockd reads them from it).
    let user_ns = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .map(|n| n.path().is_some());
    let (user_ns, joined) = (user_ns.is_some(), user_ns == Some(true));
    for (name, maps) in [("uidMappings", linux.uid_mappings()), ("gidMappings", linux.gid_mappings())] {
        let maps = maps.as_deref().unwrap_or_default();
        if user_ns && !joined && maps.is_empty() {
            return Err(ApiError::invalid_spec(format!("a user namespace needs linux.{name}")));
        }
        if !user_ns && !maps.is_empty() {
            return Err(ApiError::invalid_spec(format!("linux.{name} without a user namespace in linux.namespaces")));
        }
        for (i, m) in maps.iter().enumerate() {
            let fits = |start: u32| u64::from(start) + u64::from(m.size()) <= 1 << 32;
            if m.size() == 0 || !fits(m.container_id()) || !fits(m.host_id()) {
                return Err(ApiError::invalid_spec(format!(
                    "linux.{name}[{i}] (containerID {}, hostID {}, size {}) is empty or beyond 32 bits",
                    m.container_id(),
                    m.host_id(),
                    m.size()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a spec of another major version of the runtime-spec (whose fields could mean
/// something else), or whose `ociVersion` is not a SemVer 2.0 version at all. Any 1.x is
/// taken, as runc takes it: newer minors only add fields, which are checked one by one.
pub fn check_oci_version(version: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_spec(format!(
            "ociVersion {version:?}: {why} (this runtime implements 1.0.0 to {})",
            wire::api::OCI_VERSION
        ))
    };
    // MAJOR.MINOR.PATCH, then an optional -prerelease and +build of [0-9A-Za-z.-].
    let (core, suffix) = match version.find(['-', '+']) {
        Some(at) => version.split_at(at),
        None => (version, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric =
        |n: &&str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0'));
    let suffix_ok = suffix.is_empty()
        || (suffix.len() > 1
            && suffix[1..].split(['.', '+', '-']).all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric())));
    if numbers.len() != 3 || !numbers.iter().all(numeric) || !suffix_ok {
        return Err(bad("not a SemVer version (MAJOR.MINOR.PATCH)"));
    }
    if numbers[0] != "1" {
        return Err(bad(&format!("major version {} is not supported", numbers[0])));
    }
    Ok(())
}

/// Checks what must hold before anything is started. A container that joins a sandbox
/// shares the sandbox's network, IPC and UTS namespaces whatever paths its spec gives for
/// them (CRI points them at the pod's own, as runsc ignores them), and its PID namespace is
/// the pod's when its spec names one (CRI's shareProcessNamespace), its own otherwise.
pub fn validate(spec: &Spec) -> Result<(), ApiError> {
    check_oci_version(spec.version())?;
    let root = spec.root().as_ref().ok_or_else(|| ApiError::invalid_spec("the spec has no root"))?;
    if root.path().as_os_str().is_empty() {
        return Err(ApiError::invalid_spec("root.path is empty"));
    }
    let process = spec.process().as_ref().ok_or_else(|| ApiError::invalid_spec("the spec has no process"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ApiError::invalid_spec("process.args is empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(ApiError::invalid_spec(format!("process.cwd {:?} is not an absolute path", process.cwd())));
    }
    validate_user(process)?;
    attributes::validate_process(process)?;
    crate::hooks::validate(spec)?;
    if let Some(linux) = spec.linux() {
        for ns in linux.namespaces().as_deref().unwrap_or_default() {
            if let Some(path) = ns.path() {
                if !path.is_absolute() {
                    return Err(ApiError::invalid_spec(format!("namespace path {} is not absolute", path.display())));
                }
            }
        }
        validate_id_mappings(linux)?;
        let mount_ns =
            linux.namespaces().as_deref().unwrap_or_default().iter().any(|n| n.typ() == LinuxNamespaceType::Mount);
        let restricted = [("maskedPaths", linux.masked_paths()), ("readonlyPaths", linux.readonly_paths())];
        if let Some((field, _)) = restricted.iter().find(|(_, p)| p.as_ref().is_some_and(|p| !p.is_empty())) {
            if !mount_ns {
                return Err(ApiError::invalid_spec(format!(
                    "linux.{field} needs a mount namespace: without one they would be applied to the host's mounts"
                )));
            }
        }
        if let Some(propagation) = linux.rootfs_propagation() {
            if wire::mounts::propagation_of(propagation).is_none() {
                return Err(ApiError::invalid_spec(format!(
                    "linux.rootfsPropagation {propagation:?} is not one of private, shared, slave, unbindable (or \
                     their r- forms)"
                )));
            }
        }
        validate_sysctls(linux)?;
        attributes::validate_linux(linux)?;
        validate_devices(linux)?;
    }
    let has_uts = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|ns| ns.typ() == LinuxNamespaceType::Uts));
    for (field, value) in [("hostname", spec.hostname()), ("domainname", spec.domainname())] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) && !has_uts {
            return Err(ApiError::invalid_spec(format!(
                "{field} is set but the spec has no uts namespace: it would change the host's"
            )));
        }
    }
    if let Some(process) = spec.process() {
        check_security_labels(process)?;
    }
    validate_mounts(spec)?;
    overlay_of(spec, Overlay::None)?;
    Ok(())
}

/// Checks the idmapped mounts (runtime-spec 1.2: a mount's `uidMappings`/`gidMappings`, the
/// `idmap` and `ridmap` options) as runc does: only a bind mount can be idmapped, it needs both
/// uid and gid maps, and a bare `idmap` takes the container's user namespace's maps, so the
/// container must have them. Each range must also be one the kernel takes.
fn validate_mounts(spec: &Spec) -> Result<(), ApiError> {
    let linux = spec.linux().as_ref();
    let container_maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    for (i, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        let options = m.options().as_deref().unwrap_or_default();
        let option = options.iter().rev().find(|o| matches!(o.as_str(), "idmap" | "ridmap"));
        let own_maps = m.uid_mappings().is_some() || m.gid_mappings().is_some();
        if option.is_none() && !own_maps {
            continue;
        }
        let refuse =
            |what: String| ApiError::invalid_spec(format!("mounts[{i}] ({}): {what}", m.destination().display()));
        let what = option.map_or("uidMappings/gidMappings", |o| o.as_str());
        if !wire::mounts::is_bind(m) {
            return Err(refuse(format!(
                "an idmapped mount ({what}) must be a bind mount (type \"bind\" or option bind/rbind), as runc \
                 requires; the kernel idmaps only a copy of an existing mount"
            )));
        }
        if own_maps {
            for (field, maps) in [("uidMappings", m.uid_mappings()), ("gidMappings", m.gid_mappings())] {
                let maps = maps.as_deref().unwrap_or_default();
                if maps.is_empty() {
                    return Err(refuse(format!(
                        "an idmapped mount needs both uidMappings and gidMappings, and {field} is missing or empty"
                    )));
                }
                check_id_ranges(maps).map_err(|(j, why)| refuse(format!("{field}[{j}] {why}")))?;
            }
        } else if !container_maps {
            return Err(refuse(format!(
                "{what} without uidMappings/gidMappings on the mount takes the container's user namespace maps, \
                 but the container has no user namespace with linux.uidMappings and linux.gidMappings: give the \
                 mount its own"
            )));
        }
    }
    Ok(())
}

/// The most lines a user namespace's map may have (the kernel's `UID_GID_MAP_MAX_EXTENTS`).
const MAX_MAP_RANGES: usize = 340;

/// Checks one idmap (a list of ranges) as the kernel would when it is written: each range
/// non-empty and within 32 bits, no two overlapping on either side, at most
/// [`MAX_MAP_RANGES`]. The error names the offending range's index.
fn check_id_ranges(maps: &[oci_spec::runtime::LinuxIdMapping]) -> Result<(), (usize, String)> {
    if maps.len() > MAX_MAP_RANGES {
        return Err((MAX_MAP_RANGES, format!("is one range too many: the kernel takes at most {MAX_MAP_RANGES}")));
    }
    let span = |start: u32, size: u32| (u64::from(start), u64::from(start) + u64::from(size));
    for (j, m) in maps.iter().enumerate() {
        let (container, host) = (span(m.container_id(), m.size()), span(m.host_id(), m.size()));
        let show = format!("(containerID {}, hostID {}, size {})", m.container_id(), m.host_id(), m.size());
        if m.size() == 0 || container.1 > 1 << 32 || host.1 > 1 << 32 {
            return Err((j, format!("{show} is empty or beyond 32 bits")));
        }
        let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
        if let Some(k) = maps[..j].iter().position(|o| {
            overlaps(container, span(o.container_id(), o.size())) || overlaps(host, span(o.host_id(), o.size()))
        }) {
            return Err((j, format!("{show} overlaps range {k}")));
        }
    }
    Ok(())
}

/// Checks `linux.devices`: each path absolute and without `..`, each type one a node can have
/// (`a` is a cgroup rule's wildcard, not a node).
fn validate_devices(linux: &oci_spec::runtime::Linux) -> Result<(), ApiError> {
    for (i, dev) in linux.devices().as_deref().unwrap_or_default().iter().enumerate() {
        let path = dev.path();
        if !path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(ApiError::invalid_spec(format!(
                "linux.devices[{i}].path {:?} is not an absolute path without '..'",
                path.display()
            )));
        }
        if path.parent().is_none() {
            return Err(ApiError::invalid_spec(format!("linux.devices[{i}].path \"/\" names no file")));
        }
        if dev.typ() == LinuxDeviceType::A {
            return Err(ApiError::invalid_spec(format!(
                "linux.devices[{i}].type \"a\" is not a node type (c, u, b or p)"
            )));
        }
    }
    Ok(())
}

/// Checks `linux.sysctl` as runc does: each key must be namespaced, and its namespace must be
/// the container's own (net.* needs a network namespace; the IPC ones an IPC namespace;
/// kernel.hostname and kernel.domainname a UTS namespace).
fn validate_sysctls(linux: &oci_spec::runtime::Linux) -> Result<(), ApiError> {
    let has = |typ| linux.namespaces().as_deref().unwrap_or_default().iter().any(|n| n.typ() == typ);
    for key in linux.sysctl().as_ref().map(|m| m.keys().collect::<Vec<_>>()).unwrap_or_default() {
        if key.is_empty() || key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
            return Err(ApiError::invalid_spec(format!("linux.sysctl {key:?} is not a sysctl name")));
        }
        let ipc = matches!(
            key.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        ) || key.starts_with("fs.mqueue.");
        let needs = if ipc {
            LinuxNamespaceType::Ipc
        } else if key.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(ApiError::invalid_spec(format!(
                "linux.sysctl {key:?} is not namespaced: setting it would change the host"
            )));
        };
        if !has(needs) {
            return Err(ApiError::invalid_spec(format!(
                "linux.sysctl {key:?} needs a {needs:?} namespace of the container's own"
            )));
        }
    }
    Ok(())
}

/// Refuses a `root.path` that is a symlink, as runc does: the container's root is the
/// directory named, never what a link (perhaps to `/`) points at. Its own path is checked
/// with `lstat`; the gofer opens it without following a symlink either.
pub fn check_rootfs(rootfs: &Path) -> Result<(), ApiError> {
    let meta = std::fs::symlink_metadata(rootfs)
        .map_err(|e| ApiError::invalid_spec(format!("root.path {}: {e}", rootfs.display())))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(rootfs).map(|t| t.display().to_string()).unwrap_or_default();
        return Err(ApiError::invalid_spec(format!(
            "root.path {} is a symlink (to {target}): give the directory itself",
            rootfs.display()
        )));
    }
    if !meta.is_dir() {
        return Err(ApiError::invalid_spec(format!("root.path {} is not a directory", rootfs.display())));
    }
    Ok(())
}

/// The container's root filesystem: `root.path`, relative to the bundle unless absolute.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf, ApiError> {
    let root = spec.root().as_ref().ok_or_else(|| ApiError::invalid_spec("the spec has no root"))?;
    let path = root.path();
    if path.is_absolute() {
        Ok(path.clone())
    } else if bundle.as_os_str().is_empty() {
        Err(ApiError::invalid_spec(format!("root.path {path:?} is relative but there is no bundle")))
    } else {
        Ok(bundle.join(path))
    }
}
