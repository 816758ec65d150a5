//! Checks of the runtime-spec 1.2 fields that set a process's kernel attributes
//! (`process.rlimits`, `process.scheduler`, `process.ioPriority`, `process.execCPUAffinity`,
//! `linux.personality`, `linux.memoryPolicy`, `linux.timeOffsets`) and of those paddock
//! cannot honour on this host (`linux.intelRdt`): everything the sandbox would refuse is
//! refused at create (or exec), before anything is made, with the field it concerns named.
//! The rules are runc's (libcontainer/configs/validate).

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxNamespaceType, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyModeType, Process,
};
use wire::{ApiError, ErrorKind};

/// The highest CPU or NUMA node number a list may name (the kernel's `cpu_set_t` holds 1024).
const MAX_LISTED: usize = 1023;

/// Parses a list of numbers and ranges (`0-3,7`), as the spec writes CPUs and NUMA nodes;
/// `field` names it in the error.
pub fn parse_list(field: &str, text: &str) -> Result<Vec<usize>, ApiError> {
    let bad = |why: String| ApiError::invalid_spec(format!("{field} {text:?}: {why}"));
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let number =
            |s: &str| s.trim().parse::<usize>().map_err(|_| bad("expected numbers and ranges such as 0-3,7".into()));
        let (low, high) = (number(low)?, number(high)?);
        if low > high {
            return Err(bad(format!("the range {low}-{high} goes downwards")));
        }
        if high > MAX_LISTED {
            return Err(bad(format!("{high} is beyond {MAX_LISTED}")));
        }
        out.extend(low..=high);
    }
    Ok(out)
}

/// Checks a process's rlimits, scheduler, I/O priority and CPU affinity (the container's, or
/// one exec'd into it).
pub fn validate_process(process: &Process) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for limit in process.rlimits().as_deref().unwrap_or_default() {
        if !seen.insert(limit.typ().to_string()) {
            return Err(ApiError::invalid_spec(format!("process.rlimits lists {} twice", limit.typ())));
        }
        if limit.soft() > limit.hard() {
            return Err(ApiError::invalid_spec(format!(
                "process.rlimits {}: soft {} is above hard {}",
                limit.typ(),
                limit.soft(),
                limit.hard()
            )));
        }
    }
    if let Some(scheduler) = process.scheduler() {
        validate_scheduler(scheduler)?;
    }
    if let Some(io) = process.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(ApiError::invalid_spec(format!(
                "process.ioPriority.priority {}: must be 0 (highest) to 7 (lowest)",
                io.priority()
            )));
        }
    }
    if let Some(affinity) = process.exec_cpu_affinity() {
        for (field, list) in [
            ("process.execCPUAffinity.initial", affinity.initial()),
            ("process.execCPUAffinity.final", affinity.cpu_affinity_final()),
        ] {
            if let Some(text) = list.as_deref().filter(|t| !t.is_empty()) {
                parse_list(field, text)?;
            }
        }
    }
    Ok(())
}

fn validate_scheduler(scheduler: &oci_spec::runtime::Scheduler) -> Result<(), ApiError> {
    let policy = *scheduler.policy();
    let bad = |why: String| ApiError::invalid_spec(format!("process.scheduler (policy {policy}): {why}"));
    if policy == LinuxSchedulerPolicy::SchedIso {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            "process.scheduler.policy SCHED_ISO: Linux has no such policy",
        ));
    }
    let nice = scheduler.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(bad(format!("nice {nice} is not within -20 to 19")));
    }
    let priority = scheduler.priority().unwrap_or(0);
    let realtime = matches!(policy, LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr);
    if realtime && !(1..=99).contains(&priority) {
        return Err(bad(format!("priority {priority} is not within 1 to 99")));
    }
    if !realtime && priority != 0 {
        return Err(bad(format!("priority {priority}: only SCHED_FIFO and SCHED_RR take a priority")));
    }
    let deadline_fields = [scheduler.runtime(), scheduler.deadline(), scheduler.period()];
    if policy != LinuxSchedulerPolicy::SchedDeadline && deadline_fields.iter().any(|f| f.unwrap_or(0) != 0) {
        return Err(bad("runtime, deadline and period are for SCHED_DEADLINE only".into()));
    }
    for flag in scheduler.flags().as_deref().unwrap_or_default() {
        if matches!(flag, LinuxSchedulerFlag::SchedFlagUtilClampMin | LinuxSchedulerFlag::SchedFlagUtilClampMax) {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("process.scheduler.flags {flag}: not supported (the spec gives no utilization clamp values)"),
            ));
        }
    }
    Ok(())
}

/// Checks `linux`'s personality, memory policy, time offsets and Intel RDT.
pub fn validate_linux(linux: &Linux) -> Result<(), ApiError> {
    if let Some(personality) = linux.personality() {
        if let Some(flags) = personality.flags().as_deref().filter(|f| !f.is_empty()) {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("linux.personality.flags {flags:?}: not supported (the runtime-spec defines none)"),
            ));
        }
    }
    if let Some(policy) = linux.memory_policy() {
        let nodes = match policy.nodes().as_deref().filter(|n| !n.trim().is_empty()) {
            Some(text) => parse_list("linux.memoryPolicy.nodes", text)?,
            None => Vec::new(),
        };
        let mode = policy.mode();
        match mode {
            MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal if !nodes.is_empty() => {
                return Err(ApiError::invalid_spec(format!("linux.memoryPolicy: mode {mode} takes no nodes")));
            }
            MemoryPolicyModeType::MpolBind
            | MemoryPolicyModeType::MpolInterleave
            | MemoryPolicyModeType::MpolPreferredMany
            | MemoryPolicyModeType::MpolWeightedInterleave
                if nodes.is_empty() =>
            {
                return Err(ApiError::invalid_spec(format!("linux.memoryPolicy: mode {mode} needs nodes")));
            }
            _ => {}
        }
    }
    validate_time(linux)?;
    if linux.intel_rdt().is_some() {
        let why = if resctrl_mounted() {
            "paddock does not manage resctrl groups".to_string()
        } else {
            "this host has no Intel RDT (resctrl is not mounted at /sys/fs/resctrl)".to_string()
        };
        return Err(ApiError::new(ErrorKind::Unsupported, format!("linux.intelRdt: {why}")));
    }
    Ok(())
}

/// A time namespace needs the kernel's support; its offsets need one of the container's own,
/// as runc requires, which is a new one: the kernel takes a namespace's offsets only until a
/// process is in it, so an existing one (a `path`) keeps those it has. Only the monotonic and
/// boot-time clocks have offsets.
fn validate_time(linux: &Linux) -> Result<(), ApiError> {
    let offsets = linux.time_offsets().as_ref().filter(|o| !o.is_empty());
    if has_namespace(linux, LinuxNamespaceType::Time) {
        if !Path::new("/proc/self/timens_offsets").exists() {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                "linux.namespaces: this kernel has no time namespaces (no /proc/self/timens_offsets)",
            ));
        }
        let joined = linux
            .namespaces()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Time)
            .and_then(|n| n.path().as_ref());
        if let (Some(path), Some(_)) = (joined, offsets) {
            return Err(ApiError::invalid_spec(format!(
                "linux.timeOffsets cannot be set for the existing time namespace {} the container joins: a time \
                 namespace's offsets are fixed once a process is in it",
                path.display()
            )));
        }
    } else if offsets.is_some() {
        return Err(ApiError::invalid_spec(
            "linux.timeOffsets is set, but linux.namespaces has no time namespace for the offsets to apply to",
        ));
    }
    let mut clocks: Vec<_> = offsets.into_iter().flatten().collect();
    clocks.sort_by_key(|(name, _)| name.as_str());
    for (clock, offset) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(ApiError::invalid_spec(format!(
                "linux.timeOffsets {clock:?}: only the monotonic and boottime clocks have offsets"
            )));
        }
        if offset.nanosecs().unwrap_or(0) >= 1_000_000_000 {
            return Err(ApiError::invalid_spec(format!(
                "linux.timeOffsets.{clock}.nanosecs {}: must be below 1000000000",
                offset.nanosecs().unwrap_or(0)
            )));
        }
    }
    Ok(())
}

/// Whether the resctrl filesystem is mounted at /sys/fs/resctrl.
fn resctrl_mounted() -> bool {
    const RDTGROUP_SUPER_MAGIC: i64 = 0x7655821;
    nix::sys::statfs::statfs(Path::new("/sys/fs/resctrl")).is_ok_and(|s| s.filesystem_type().0 == RDTGROUP_SUPER_MAGIC)
}

/// Whether `linux` gives the container a namespace of type `typ`.
pub fn has_namespace(linux: &Linux, typ: LinuxNamespaceType) -> bool {
    linux.namespaces().as_deref().unwrap_or_default().iter().any(|n| n.typ() == typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["x"]});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn lists_of_numbers_and_ranges() {
        assert_eq!(parse_list("f", "0-1,3").unwrap(), vec![0, 1, 3]);
        for bad in ["", "1-0", "a", "1,,2", "-1", "99999"] {
            let err = parse_list("linux.memoryPolicy.nodes", bad).unwrap_err();
            assert!(err.message.contains("linux.memoryPolicy.nodes"), "{}", err.message);
        }
    }

    #[test]
    fn process_fields_are_refused_by_name() {
        let cases = [
            (serde_json::json!({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]}), "RLIMIT_NOFILE"),
            (
                serde_json::json!({"rlimits": [{"type": "RLIMIT_CORE", "soft": 1, "hard": 1}, {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}]}),
                "twice",
            ),
            (serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}), "nice 20"),
            (serde_json::json!({"scheduler": {"policy": "SCHED_FIFO"}}), "priority 0"),
            (serde_json::json!({"scheduler": {"policy": "SCHED_BATCH", "priority": 3}}), "priority 3"),
            (serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "runtime": 5}}), "SCHED_DEADLINE"),
            (serde_json::json!({"scheduler": {"policy": "SCHED_ISO"}}), "SCHED_ISO"),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}}),
                "process.scheduler.flags",
            ),
            (serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}), "ioPriority.priority 8"),
            (serde_json::json!({"execCPUAffinity": {"final": "2000"}}), "execCPUAffinity.final"),
        ];
        for (json, expected) in cases {
            let err = validate_process(&process(json.clone())).unwrap_err();
            assert!(err.message.contains(expected), "{json}: {}", err.message);
        }
        let fine = process(serde_json::json!({
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000}],
            "scheduler": {"policy": "SCHED_RR", "priority": 5, "flags": ["SCHED_RESET_ON_FORK"]},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 7},
            "execCPUAffinity": {"initial": "0-1", "final": "0"}
        }));
        validate_process(&fine).unwrap();
    }

    #[test]
    fn linux_fields_are_refused_by_name() {
        let cases = [
            (serde_json::json!({"personality": {"domain": "LINUX32", "flags": ["x"]}}), "linux.personality.flags"),
            (serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND"}}), "needs nodes"),
            (serde_json::json!({"memoryPolicy": {"mode": "MPOL_DEFAULT", "nodes": "0"}}), "takes no nodes"),
            (serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0-x"}}), "memoryPolicy.nodes"),
            (serde_json::json!({"intelRdt": {"closID": "x"}}), "linux.intelRdt"),
            (serde_json::json!({"timeOffsets": {"monotonic": {"secs": 1}}}), "no time namespace"),
            (
                serde_json::json!({"namespaces": [{"type": "time"}], "timeOffsets": {"realtime": {"secs": 1}}}),
                "\"realtime\"",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "time"}], "timeOffsets": {"boottime": {"nanosecs": 1000000000u32}}}),
                "boottime.nanosecs",
            ),
            (
                serde_json::json!({
                    "namespaces": [{"type": "time", "path": "/proc/1/ns/time"}],
                    "timeOffsets": {"monotonic": {"secs": 1}}
                }),
                "existing time namespace /proc/1/ns/time",
            ),
        ];
        for (json, expected) in cases {
            let err = validate_linux(&linux(json.clone())).unwrap_err();
            assert!(err.message.contains(expected), "{json}: {}", err.message);
        }
        validate_linux(&linux(serde_json::json!({
            "personality": {"domain": "LINUX32"},
            "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}
        })))
        .unwrap();
    }
}
