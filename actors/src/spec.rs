//! What paddock needs from an OCI spec beyond what the sandbox applies: validation, the root
//! filesystem's host path, the overlay choice, and the embedded default.

pub mod attributes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use wire::gofer_proto::Overlay;
use wire::{ApiError, ErrorKind};

/// The annotation that selects the overlay of a container: `none`, `root:memory` or
/// `all:memory`, optionally followed by `:size=SIZE` (bytes, or with a k, m or g suffix).
pub const OVERLAY_ANNOTATION: &str = "dev.paddock.overlay";

/// Parses an overlay setting (the annotation's or the daemon configuration's value).
pub fn parse_overlay(value: &str) -> Result<Overlay, ApiError> {
    let bad = || {
        ApiError::invalid_spec(format!(
            "overlay {value:?}: expected none, root:memory or all:memory, optionally with :size=SIZE"
        ))
    };
    let (mode, size) = match value.split_once(":size=") {
        Some((mode, size)) => (mode, Some(parse_size(size).ok_or_else(bad)?)),
        None => (value, None),
    };
    match mode {
        "none" if size.is_none() => Ok(Overlay::None),
        "root:memory" => Ok(Overlay::RootMemory { size }),
        "all:memory" => Ok(Overlay::AllMemory { size }),
        _ => Err(bad()),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// The overlay a spec asks for, or `default` when it does not say.
pub fn overlay_of(spec: &Spec, default: Overlay) -> Result<Overlay, ApiError> {
    match spec.annotations().as_ref().and_then(|a| a.get(OVERLAY_ANNOTATION)) {
        Some(v) => parse_overlay(v).map_err(|e| e.context(format!("annotation {OVERLAY_ANNOTATION}"))),
        None => Ok(default),
    }
}

/// Where a container goes: into a sandbox of its own, or into an existing one (a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new sandbox, with this container as its root.
    NewSandbox,
    /// The sandbox whose root container has this id.
    Join(String),
}

/// containerd's CRI annotations, and CRI-O's.
const CONTAINER_TYPE_KEYS: [(&str, &str); 2] = [
    ("io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"),
    ("io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID"),
];

/// Reads the pod annotations: a container of type `container` joins the sandbox they name;
/// anything else (`sandbox`, or no annotation) is a root container with a sandbox of its own.
pub fn placement(spec: &Spec) -> Result<Placement, ApiError> {
    let Some(annotations) = spec.annotations().as_ref() else { return Ok(Placement::NewSandbox) };
    for (type_key, sandbox_key) in CONTAINER_TYPE_KEYS {
        if annotations.get(type_key).map(String::as_str) == Some("container") {
            return match annotations.get(sandbox_key).filter(|s| !s.is_empty()) {
                Some(sandbox) => Ok(Placement::Join(sandbox.clone())),
                None => Err(ApiError::invalid_spec(format!(
                    "annotation {type_key}=container, but {sandbox_key} does not name the sandbox to join"
                ))),
            };
        }
    }
    Ok(Placement::NewSandbox)
}

/// The process `ctl exec` runs: the whole process it was given, or the container's own
/// process with the command, environment, working directory and user replaced.
pub fn exec_process(container: &Spec, exec: &wire::api::ExecSpec) -> Result<oci_spec::runtime::Process, ApiError> {
    let mut process = exec_process_itself(container, exec)?;
    runc_exec_flags(&mut process, exec)?;
    validate_user(&process)?;
    attributes::validate_process(&process)?;
    check_security_labels(&process)?;
    if let (None, Some(size)) = (process.console_size(), exec.console_size) {
        process.set_console_size(Some(console_size(size)));
    }
    Ok(process)
}

/// Applies runc's exec flags that change the process: `--cap` (added to every capability
/// set), `--additional-gids`, `--no-new-privs`, `--apparmor`, `--process-label`.
fn runc_exec_flags(process: &mut oci_spec::runtime::Process, exec: &wire::api::ExecSpec) -> Result<(), ApiError> {
    if !exec.add_caps.is_empty() {
        let mut added = Vec::with_capacity(exec.add_caps.len());
        for name in &exec.add_caps {
            // The spec's own reading of a name: CAP_SYS_ADMIN or SYS_ADMIN, any case.
            let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::from(name.as_str()))
                .map_err(|_| ApiError::invalid_argument(format!("--cap {name:?}: not a capability")))?;
            added.push(cap);
        }
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let with = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(added.iter().copied());
            Some(set)
        };
        caps.set_bounding(with(caps.bounding()));
        caps.set_effective(with(caps.effective()));
        caps.set_permitted(with(caps.permitted()));
        caps.set_inheritable(with(caps.inheritable()));
        caps.set_ambient(with(caps.ambient()));
        process.set_capabilities(Some(caps));
    }
    if !exec.additional_gids.is_empty() {
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(exec.additional_gids.iter().copied().filter(|g| !gids.contains(g)).collect::<Vec<_>>());
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    if exec.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &exec.apparmor_profile {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &exec.selinux_label {
        process.set_selinux_label(Some(label.clone()));
    }
    Ok(())
}

/// Refuses an AppArmor profile when AppArmor is not enabled (as runc does: the profile could
/// not confine the process), and an SELinux label when SELinux is absent. Empty means none.
/// (Where they are enabled, a profile or label is taken without being applied, as before:
/// Docker names its default profile on every AppArmor host.)
pub fn check_security_labels(process: &oci_spec::runtime::Process) -> Result<(), ApiError> {
    if let Some(profile) = process.apparmor_profile().as_ref().filter(|p| !p.is_empty()) {
        if !apparmor_enabled() {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("process.apparmorProfile {profile:?}: AppArmor is not enabled on this host"),
            ));
        }
    }
    if let Some(label) = process.selinux_label().as_ref().filter(|l| !l.is_empty()) {
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("process.selinuxLabel {label:?}: SELinux is not enabled on this host"),
            ));
        }
    }
    Ok(())
}

/// Whether the kernel has AppArmor enabled (where runc asks).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y")
        || Path::new("/sys/kernel/security/apparmor").exists()
}

/// A `process.consoleSize` of `(rows, columns)`.
pub fn console_size((rows, columns): (u32, u32)) -> oci_spec::runtime::Box {
    oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(rows))
        .width(u64::from(columns))
        .build()
        .unwrap_or_default()
}

fn exec_process_itself(container: &Spec, exec: &wire::api::ExecSpec) -> Result<oci_spec::runtime::Process, ApiError> {
    if let Some(json) = &exec.process {
        return serde_json::from_str(json)
            .map_err(|e| ApiError::invalid_spec(format!("invalid OCI process for exec: {e}")));
    }
    let mut process =
        container.process().clone().ok_or_else(|| ApiError::invalid_spec("the container's spec has no process"))?;
    if exec.args.is_empty() {
        return Err(ApiError::invalid_argument("exec needs a command"));
    }
    process.set_args(Some(exec.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for var in &exec.env {
        let Some((key, _)) = var.split_once('=') else {
            return Err(ApiError::invalid_argument(format!("environment variable {var:?} is not KEY=VALUE")));
        };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(var.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &exec.cwd {
        if !cwd.is_absolute() {
            return Err(ApiError::invalid_argument(format!("working directory {} is not absolute", cwd.display())));
        }
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &exec.user {
        let bad = || ApiError::invalid_argument(format!("user {user:?}: expected UID or UID:GID (numbers)"));
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u.parse::<u32>().map_err(|_| bad())?, Some(g.parse::<u32>().map_err(|_| bad())?)),
            None => (user.parse::<u32>().map_err(|_| bad())?, None),
        };
        let mut u = process.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        process.set_user(u);
    }
    process.set_terminal(Some(exec.tty));
    Ok(process)
}

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
            let joinable = ns.typ() != LinuxNamespaceType::Time;
            if let Some(path) = ns.path() {
                if !joinable {
                    return Err(ApiError::new(
                        ErrorKind::Unsupported,
                        format!(
                            "joining an existing {:?} namespace by path ({}) is not supported (a time namespace's \
                             offsets are set before its first process runs)",
                            ns.typ(),
                            path.display()
                        ),
                    ));
                }
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

/// Refuses what paddock cannot do with a mount rather than doing something else: idmapped
/// mounts (`idmap`, `ridmap`, a mount's own `uidMappings`/`gidMappings`) are not supported.
fn validate_mounts(spec: &Spec) -> Result<(), ApiError> {
    for (i, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        let options = m.options().as_deref().unwrap_or_default();
        let idmap = options.iter().find(|o| matches!(o.as_str(), "idmap" | "ridmap"));
        if idmap.is_some() || m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "mounts[{i}] ({}): idmapped mounts ({}) are not supported",
                    m.destination().display(),
                    idmap.map_or("uidMappings/gidMappings", |o| o.as_str())
                ),
            ));
        }
    }
    Ok(())
}

/// The devices every container may use whatever its rules say (runc's list): mknod of any
/// node, and null, zero, full, random, urandom, tty, ptmx and the pty slaves.
const ALWAYS_ALLOWED_DEVICES: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 10] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
];

/// The cgroup settings of a container: the spec's `linux.resources`, whose device rules (when
/// it has any) are followed by the devices every container needs and those `linux.devices`
/// creates, as runc does.
pub fn container_resources(spec: &Spec) -> oci_spec::runtime::LinuxResources {
    let linux = spec.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let Some(mut rules) = resources.devices().clone().filter(|r| !r.is_empty()) else {
        return resources;
    };
    let rule = |typ, major, minor, access: &str| {
        let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    for (typ, major, minor, access) in ALWAYS_ALLOWED_DEVICES {
        rules.push(rule(typ, major, minor, access));
    }
    // A FIFO is no device: no cgroup rule names one (the v1 controller refuses `p` rules).
    for dev in linux.devices().as_deref().unwrap_or_default().iter().filter(|d| d.typ() != LinuxDeviceType::P) {
        rules.push(rule(dev.typ(), Some(dev.major()), Some(dev.minor()), "rwm"));
    }
    resources.set_devices(Some(rules));
    resources
}

/// Records an update of `linux.resources` in the spec: every field `update` sets replaces the
/// spec's, objects merged field by field (as `runc update` changes only what it is given).
pub fn merge_resources(spec: &mut Spec, update: &oci_spec::runtime::LinuxResources) {
    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    if !v.is_null() {
                        merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut current = serde_json::to_value(linux.resources().clone().unwrap_or_default()).unwrap_or_default();
    merge(&mut current, serde_json::to_value(update).unwrap_or_default());
    if let Ok(merged) = serde_json::from_value(current) {
        linux.set_resources(Some(merged));
        spec.set_linux(Some(linux));
    }
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

/// The capabilities docker grants by default, less `CAP_MKNOD` (paddock does not yet police
/// device creation with a devices cgroup).
const DEFAULT_CAPABILITIES: [Capability; 13] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The paths runc masks by default.
pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// The paths runc makes read-only by default.
pub const DEFAULT_READONLY_PATHS: [&str; 6] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/sys/fs/cgroup"];

fn build_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("building the default spec: {e}"))
}

/// The embedded default: `args` run on the host's root filesystem, read-only underneath a
/// private tmpfs overlay (writes vanish with the container), with a private `/tmp` and
/// `/run`, fresh `/proc`, `/sys` and `/dev`, its own hostname (the id), and new PID, mount,
/// UTS, IPC and network namespaces. The process runs as root with docker's default
/// capabilities (less `CAP_MKNOD`), `no_new_privs`, and runc's masked and read-only paths.
pub fn embedded_default(id: &str, args: Vec<String>) -> Result<Spec, ApiError> {
    let mount = |dest: &str, typ: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(typ)
            .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
            .map_err(build_error)
    };
    let mounts = vec![
        mount("/proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])?,
        mount("/dev/shm", "tmpfs", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/tmp", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        mount("/run", "tmpfs", &["nosuid", "nodev", "mode=755"])?,
    ];
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(caps)
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(build_error)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(build_error)?)
        .args(args)
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
            format!("TERM={}", std::env::var("TERM").unwrap_or_else(|_| "xterm".into())),
        ])
        .cwd("/")
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()
        .map_err(build_error)?;
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().map_err(build_error))
    .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .seccomp(crate::default_seccomp::profile(&DEFAULT_CAPABILITIES))
        .masked_paths(DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(DEFAULT_READONLY_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(build_error)?;
    let hostname: String = id.chars().take(63).collect();
    SpecBuilder::default()
        .version(wire::api::OCI_VERSION)
        .root(RootBuilder::default().path("/").readonly(false).build().map_err(build_error)?)
        .mounts(mounts)
        .process(process)
        .hostname(hostname)
        .linux(linux)
        .annotations(HashMap::from([(OVERLAY_ANNOTATION.to_string(), "root:memory".to_string())]))
        .build()
        .map_err(build_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_versions_of_another_major_or_not_semver_are_refused() {
        for good in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0", "1.1.0-rc.1", "1.0.0+build.5"] {
            check_oci_version(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["2.0.0", "0.9.0", "1.0", "1", "", "v1.0.0", "1.0.0-", "01.0.0", "1.x.0", "1.0.0 "] {
            let e = check_oci_version(bad).expect_err(bad);
            assert!(e.message.starts_with(&format!("ociVersion {bad:?}")), "{e}");
        }
    }

    #[test]
    fn embedded_default_is_valid_and_overlaid() {
        let spec = embedded_default("abc", vec!["true".into()]).unwrap();
        validate(&spec).unwrap();
        assert_eq!(overlay_of(&spec, Overlay::None).unwrap(), Overlay::RootMemory { size: None });
        assert_eq!(rootfs_path(Path::new(""), &spec).unwrap(), PathBuf::from("/"));
        assert_eq!(spec.hostname().as_deref(), Some("abc"));
        assert!(spec.process().as_ref().unwrap().no_new_privileges().unwrap());
    }

    #[test]
    fn overlay_values() {
        assert_eq!(parse_overlay("none").unwrap(), Overlay::None);
        assert_eq!(parse_overlay("root:memory").unwrap(), Overlay::RootMemory { size: None });
        assert_eq!(parse_overlay("all:memory:size=64m").unwrap(), Overlay::AllMemory { size: Some(64 << 20) });
        assert_eq!(parse_overlay("root:memory:size=1048576").unwrap(), Overlay::RootMemory { size: Some(1 << 20) });
        for bad in ["root:disk", "none:size=1k", "all:memory:size=", "all:memory:size=5x", ""] {
            assert!(parse_overlay(bad).is_err(), "{bad}");
        }
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_annotations(Some(HashMap::from([(OVERLAY_ANNOTATION.to_string(), "bogus".to_string())])));
        let e = overlay_of(&spec, Overlay::None).unwrap_err();
        assert!(e.to_string().contains(OVERLAY_ANNOTATION), "{e}");
        spec.set_annotations(None);
        assert_eq!(overlay_of(&spec, Overlay::AllMemory { size: None }).unwrap(), Overlay::AllMemory { size: None });
    }

    #[test]
    fn invalid_specs_are_refused_with_reasons() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        assert!(validate(&spec).unwrap_err().message.contains("process.args"));
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_root(None);
        assert!(validate(&spec).unwrap_err().message.contains("no root"));
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.process_mut().as_mut().unwrap().set_cwd("rel".into());
        assert!(validate(&spec).unwrap_err().message.contains("cwd"));
    }

    #[test]
    fn pod_annotations_place_containers() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        assert_eq!(placement(&spec).unwrap(), Placement::NewSandbox);
        let with = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        spec.set_annotations(Some(with(&[("io.kubernetes.cri.container-type", "sandbox")])));
        assert_eq!(placement(&spec).unwrap(), Placement::NewSandbox);
        spec.set_annotations(Some(with(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.sandbox-id", "pod1"),
        ])));
        assert_eq!(placement(&spec).unwrap(), Placement::Join("pod1".into()));
        spec.set_annotations(Some(with(&[
            ("io.kubernetes.cri-o.ContainerType", "container"),
            ("io.kubernetes.cri-o.SandboxID", "pod2"),
        ])));
        assert_eq!(placement(&spec).unwrap(), Placement::Join("pod2".into()));
        spec.set_annotations(Some(with(&[("io.kubernetes.cri.container-type", "container")])));
        assert!(placement(&spec).unwrap_err().message.contains("sandbox-id"));
    }

    #[test]
    fn ids_that_setresuid_would_read_as_unchanged_are_refused() {
        let mut spec = embedded_default("x", vec!["id".into()]).unwrap();
        for (uid, gid, extra) in [(u32::MAX, 0, vec![]), (0, 2_147_483_648, vec![]), (0, 0, vec![u32::MAX])] {
            let process = spec.process_mut().as_mut().unwrap();
            let mut user = process.user().clone();
            user.set_uid(uid).set_gid(gid).set_additional_gids(Some(extra));
            process.set_user(user);
            let err = validate(&spec).unwrap_err();
            assert!(err.message.contains("must be in range 0-2147483647"), "{}", err.message);
        }
        let exec =
            wire::api::ExecSpec { args: vec!["id".into()], user: Some("4294967295".into()), ..Default::default() };
        let err = exec_process(&spec, &exec).unwrap_err();
        assert!(err.message.contains("process.user.uid 4294967295"), "{}", err.message);
        let exec =
            wire::api::ExecSpec { args: vec!["id".into()], user: Some("2147483647".into()), ..Default::default() };
        assert!(exec_process(&embedded_default("x", vec!["id".into()]).unwrap(), &exec).is_ok());
    }

    #[test]
    fn exec_overrides_the_containers_process() {
        let spec = embedded_default("x", vec!["sleep".into(), "9".into()]).unwrap();
        let exec = wire::api::ExecSpec {
            args: vec!["ls".into()],
            env: vec!["PATH=/bin".into(), "NEW=1".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            ..Default::default()
        };
        let p = exec_process(&spec, &exec).unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["ls".to_string()]);
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"PATH=/bin".to_string()) && env.contains(&"NEW=1".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        for bad in [
            wire::api::ExecSpec::default(),
            wire::api::ExecSpec { args: vec!["x".into()], user: Some("root".into()), ..Default::default() },
            wire::api::ExecSpec { args: vec!["x".into()], env: vec!["NOEQUALS".into()], ..Default::default() },
            wire::api::ExecSpec { args: vec!["x".into()], cwd: Some("rel".into()), ..Default::default() },
        ] {
            assert!(exec_process(&spec, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_root_needs_a_bundle() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
        assert_eq!(rootfs_path(Path::new("/b"), &spec).unwrap(), PathBuf::from("/b/rootfs"));
        assert!(rootfs_path(Path::new(""), &spec).is_err());
    }
}
