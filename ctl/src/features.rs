//! `ctl --version`, `ctl features` (the runtime-spec's features document) and `ctl spec`.

use std::path::Path;

use anyhow::Context as _;

/// The runtime-spec version paddock implements.
pub const SPEC_VERSION: &str = "1.2.0";

/// `ctl --version`, in runc's shape (podman shows it; scripts grep the first line).
pub fn version_text() -> String {
    format!("ctl version {}\nspec: {SPEC_VERSION}\n", env!("CARGO_PKG_VERSION"))
}

/// What `ctl features` prints: what paddock honours, as the runtime-spec's `features.md`
/// describes. Only what is honoured is listed.
pub fn features_json() -> String {
    let value = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": wire::mounts::KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "netDevices": { "enabled": true },
            // SCMP_ACT_NOTIFY with a seccomp agent at listenerPath (for the init and every
            // exec'd process, as runc); SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only with it.
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": [
                    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
                    "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
                    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
                    "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
                ],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ]
            },
            "memoryPolicy": {
                "modes": [
                    "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                    "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"
                ],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "mountExtensions": { "idmap": { "enabled": true } }
        },
        "annotations": {
            "dev.paddock.restart": "no | on-failure[:N] | always | unless-stopped"
        }
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// `ctl spec`: writes runc's default config.json into `bundle` (refusing to overwrite one),
/// with Docker's default seccomp profile for its capabilities (runc writes none).
pub fn write_default_spec(bundle: &Path, rootless: bool) -> anyhow::Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        anyhow::bail!("{} already exists; remove it first", path.display());
    }
    let mut spec = if rootless {
        oci_spec::runtime::Spec::rootless(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    } else {
        oci_spec::runtime::Spec::default()
    };
    let bounding: Vec<oci_spec::runtime::Capability> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().clone())
        .map(|set| set.into_iter().collect())
        .unwrap_or_default();
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(Some(wire::spec::default_seccomp::profile(&bounding)));
    }
    let text = serde_json::to_string_pretty(&spec).context("serializing the spec")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
