//! The container's cgroup resources from its spec: the devices every container may use, and
//! `update`'s changes merged into the spec kept in the metadata.

use oci_spec::runtime::{LinuxDeviceType, Spec};

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
