//! The attributes the kernel keeps for a process across `execve`, which a container's
//! process takes from its spec: the scheduling policy (`process.scheduler`), the I/O
//! priority (`process.ioPriority`), the CPU affinity of a process exec'd into a container
//! (`process.execCPUAffinity`), the execution domain (`linux.personality`) and the NUMA
//! memory policy (`linux.memoryPolicy`).
//!
//! paddockd checks every value at create (and at exec) and names the field it refuses; what
//! reaches here is applied as given, and a kernel's refusal names the field too.
//!
//! Raising a scheduling or I/O priority takes CAP_SYS_NICE (and the realtime I/O class
//! CAP_SYS_ADMIN) in the host's user namespace, so these are set before the process enters
//! the container's user namespace and before it drops its capabilities, as runc sets them
//! before it drops them.

use nix::sched::CpuSet;
use nix::unistd::Pid;
use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Process,
};
use wire::ApiError;

fn refused(what: impl std::fmt::Display, err: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_spec(format!("{what}: {err}"))
}

/// Sets every attribute of `process` and `linux` on the calling process, except its CPU
/// affinity (see [`initial_affinity`] and [`final_affinity`]).
pub fn apply(process: &Process, linux: Option<&Linux>) -> Result<(), ApiError> {
    set_scheduler(process)?;
    set_io_priority(process)?;
    if let Some(linux) = linux {
        set_personality(linux)?;
        set_memory_policy(linux)?;
    }
    Ok(())
}

/// `process.scheduler`, through `sched_setattr(2)`.
#[expect(clippy::cast_possible_truncation, reason = "the size of sched_attr and a policy number")]
fn set_scheduler(process: &Process) -> Result<(), ApiError> {
    let Some(scheduler) = process.scheduler() else { return Ok(()) };
    let policy = match scheduler.policy() {
        LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => 6,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(refused("process.scheduler.policy SCHED_ISO", "Linux has no such policy"))
        }
    };
    let mut flags = 0u64;
    for flag in scheduler.flags().as_deref().unwrap_or_default() {
        flags |= match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            other => {
                return Err(refused(
                    format!("process.scheduler.flags {other}"),
                    "not supported (the spec gives no utilization clamp values)",
                ))
            }
        };
    }
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy as u32,
        sched_flags: flags,
        sched_nice: scheduler.nice().unwrap_or(0),
        sched_priority: scheduler.priority().unwrap_or(0).max(0) as u32,
        sched_runtime: scheduler.runtime().unwrap_or(0),
        sched_deadline: scheduler.deadline().unwrap_or(0),
        sched_period: scheduler.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr reads the sched_attr we own, of the size it states.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
    if ret != 0 {
        return Err(refused(
            format!("process.scheduler (policy {})", scheduler.policy()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `process.ioPriority`, through `ioprio_set(2)` on the process itself.
fn set_io_priority(process: &Process) -> Result<(), ApiError> {
    let Some(io) = process.io_priority() else { return Ok(()) };
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&io.priority()) {
        return Err(refused(format!("process.ioPriority.priority {}", io.priority()), "must be 0 to 7"));
    }
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: ioprio_set takes plain integers.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, (class << 13) | io.priority()) };
    if ret != 0 {
        return Err(refused(
            format!("process.ioPriority (class {}, priority {})", io.class(), io.priority()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `linux.personality`, through `personality(2)`.
fn set_personality(linux: &Linux) -> Result<(), ApiError> {
    let Some(personality) = linux.personality() else { return Ok(()) };
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let domain = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality takes a plain integer.
    if unsafe { libc::personality(domain) } < 0 {
        return Err(refused(
            format!("linux.personality.domain {}", personality.domain()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Parses a list of numbers and ranges (`0-3,7`), as the spec writes CPUs and NUMA nodes.
pub fn parse_list(field: &str, text: &str) -> Result<Vec<usize>, ApiError> {
    let bad = |why: &str| refused(format!("{field} {text:?}"), why);
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let low: usize = low.trim().parse().map_err(|_| bad("expected numbers and ranges such as 0-3,7"))?;
        let high: usize = high.trim().parse().map_err(|_| bad("expected numbers and ranges such as 0-3,7"))?;
        if low > high {
            return Err(bad("a range must go upwards"));
        }
        if high >= CpuSet::count() {
            return Err(bad(&format!("{high} is beyond this host's limit of {}", CpuSet::count())));
        }
        out.extend(low..=high);
    }
    Ok(out)
}

/// `linux.memoryPolicy`, through `set_mempolicy(2)`.
fn set_memory_policy(linux: &Linux) -> Result<(), ApiError> {
    let Some(policy) = linux.memory_policy() else { return Ok(()) };
    let mode: libc::c_int = match policy.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let mut flags: libc::c_int = 0;
    for flag in policy.flags().as_deref().unwrap_or_default() {
        flags |= match flag {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let nodes = match policy.nodes().as_deref().filter(|n| !n.trim().is_empty()) {
        Some(text) => parse_list("linux.memoryPolicy.nodes", text)?,
        None => Vec::new(),
    };
    // One word more than the nodes need: the kernel reads one bit fewer than it is told.
    let words = nodes.iter().max().map_or(0, |n| n / 64 + 1) + 1;
    let mut mask = vec![0 as libc::c_ulong; words];
    for node in &nodes {
        mask[node / 64] |= 1 << (node % 64);
    }
    let (ptr, maxnode) = if nodes.is_empty() { (std::ptr::null(), 0) } else { (mask.as_ptr(), words * 64) };
    // SAFETY: set_mempolicy reads maxnode - 1 bits from the mask we own, which holds
    // words * 64 bits (or none, with a null mask and maxnode 0).
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, ptr, maxnode as libc::c_ulong) };
    if ret != 0 {
        return Err(refused(
            format!("linux.memoryPolicy (mode {}, nodes {:?})", policy.mode(), policy.nodes().as_deref().unwrap_or("")),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A CPU set from `process.execCPUAffinity.initial` or `.final` (`field` names which).
fn cpu_set(field: &str, text: &str) -> Result<CpuSet, ApiError> {
    let mut set = CpuSet::new();
    for cpu in parse_list(field, text)? {
        set.set(cpu).map_err(|e| refused(format!("{field} {text:?}"), e))?;
    }
    Ok(set)
}

/// Sets `process.execCPUAffinity.initial` on the new process `pid` (from its parent, before
/// the process is placed in the container's cgroups: the process inherits it for what it does
/// there).
pub fn initial_affinity(process: &Process, pid: Pid) -> Result<(), ApiError> {
    let Some(text) = process.exec_cpu_affinity().as_ref().and_then(|a| a.initial().as_deref()) else {
        return Ok(());
    };
    let set = cpu_set("process.execCPUAffinity.initial", text)?;
    nix::sched::sched_setaffinity(pid, &set)
        .map_err(|e| refused(format!("process.execCPUAffinity.initial {text:?}"), e))
}

/// The CPU set of `process.execCPUAffinity.final`, to set right before `execve` (see
/// [`set_affinity`]).
pub fn final_affinity(process: &Process) -> Result<Option<CpuSet>, ApiError> {
    match process.exec_cpu_affinity().as_ref().and_then(|a| a.cpu_affinity_final().as_deref()) {
        Some(text) if !text.is_empty() => Ok(Some(cpu_set("process.execCPUAffinity.final", text)?)),
        _ => Ok(None),
    }
}

/// Sets the calling process's CPU affinity to `set`.
pub fn set_affinity(set: &CpuSet) -> std::io::Result<()> {
    nix::sched::sched_setaffinity(Pid::from_raw(0), set).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_numbers_and_ranges() {
        assert_eq!(parse_list("f", "0-1,3").unwrap(), vec![0, 1, 3]);
        assert_eq!(parse_list("f", "5").unwrap(), vec![5]);
        for bad in ["", "1-0", "a", "1,,2", "-1", "99999"] {
            let err = parse_list("linux.memoryPolicy.nodes", bad).unwrap_err();
            assert!(err.message.contains("linux.memoryPolicy.nodes"), "{}", err.message);
        }
    }
}
