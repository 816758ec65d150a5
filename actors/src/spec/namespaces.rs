//! Namespaces from the spec: the maps of a joined user namespace, and which namespaces the
//! sandbox makes, joins or shares with the host.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use wire::ApiError;

/// Gives a spec that joins a user namespace by path and lists no id maps the maps of that
/// namespace, as runc does: the mounts made for the container and its user's ids are read
/// through them. Only a `/proc/<pid>/ns/user` path can be read so; any other needs the maps
/// in the spec.
pub fn joined_user_namespace_maps(spec: &mut Spec) -> Result<(), ApiError> {
    let Some(linux) = spec.linux_mut() else { return Ok(()) };
    let Some(path) = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .and_then(|n| n.path().clone())
    else {
        return Ok(());
    };
    let listed = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| m.as_ref().is_some_and(|m| !m.is_empty());
    if listed(linux.uid_mappings()) && listed(linux.gid_mappings()) {
        return Ok(());
    }
    let Some((pid, _)) = crate::monitors::proc_ns_path(&path) else {
        return Err(ApiError::invalid_spec(format!(
            "the user namespace path {} is not /proc/<pid>/ns/user, so its id maps cannot be read: give them in \
             linux.uidMappings and linux.gidMappings",
            path.display()
        )));
    };
    let read = |file: &str| -> Result<Vec<oci_spec::runtime::LinuxIdMapping>, ApiError> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| ApiError::invalid_spec(format!("reading the id maps of {}: {e}", path.display())))?;
        text.lines()
            .map(|line| {
                let n: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
                match n[..] {
                    [container, host, size] => Ok(oci_spec::runtime::LinuxIdMappingBuilder::default()
                        .container_id(container)
                        .host_id(host)
                        .size(size)
                        .build()
                        .map_err(|e| ApiError::internal(e.to_string()))?),
                    _ => Err(ApiError::invalid_spec(format!("/proc/{pid}/{file}: unexpected line {line:?}"))),
                }
            })
            .collect()
    };
    if !listed(linux.uid_mappings()) {
        linux.set_uid_mappings(Some(read("uid_map")?));
    }
    if !listed(linux.gid_mappings()) {
        linux.set_gid_mappings(Some(read("gid_map")?));
    }
    Ok(())
}

/// How the sandbox gets its network, UTS and IPC namespaces from the spec: new ones (the
/// clone flags), joined ones (`(path, CLONE_NEW*)`), or, for a type the spec does not list,
/// the host's (as runc shares them). Its mount namespace is always its own. Its PID
/// namespace is its own when the spec gives the container a new one (the container's own
/// nests in it, so the sandbox stays invisible); with none (hostPID) or one named by path
/// the sandbox stays in the host's, from where it can place the container in either (a
/// process can enter only a PID namespace below its own).
pub fn sandbox_namespaces(spec: &Spec) -> (u64, Vec<(PathBuf, i32)>) {
    let mut flags = libc::CLONE_NEWNS as u64;
    let mut join = Vec::new();
    let listed = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    if listed.iter().any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none()) {
        flags |= libc::CLONE_NEWPID as u64;
    }
    for (typ, flag) in [
        (LinuxNamespaceType::Network, libc::CLONE_NEWNET),
        (LinuxNamespaceType::Uts, libc::CLONE_NEWUTS),
        (LinuxNamespaceType::Ipc, libc::CLONE_NEWIPC),
    ] {
        if let Some(ns) = listed.iter().find(|n| n.typ() == typ) {
            match ns.path() {
                Some(path) => join.push((path.clone(), flag)),
                None => flags |= flag as u64,
            }
        }
    }
    (flags, join)
}
