//! The embedded default: the spec `ctl run -- CMD` gives a container when no bundle is named.
//!
//! ctl builds it and paddockd validates it (its unit tests check that the default passes
//! paddockd's own validation), so it lives where both reach it without a runtime.

use std::collections::HashMap;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::OVERLAY_ANNOTATION;
use crate::error::ApiError;

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
        .seccomp(super::default_seccomp::profile(&DEFAULT_CAPABILITIES))
        .masked_paths(DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(DEFAULT_READONLY_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(build_error)?;
    let hostname: String = id.chars().take(63).collect();
    SpecBuilder::default()
        .version(crate::api::OCI_VERSION)
        .root(RootBuilder::default().path("/").readonly(false).build().map_err(build_error)?)
        .mounts(mounts)
        .process(process)
        .hostname(hostname)
        .linux(linux)
        .annotations(HashMap::from([(OVERLAY_ANNOTATION.to_string(), "root:memory".to_string())]))
        .build()
        .map_err(build_error)
}
