//! Listing a container's processes (its cgroup says which, `/proc` says what they are), and
//! its resource usage (its cgroup's counters).

use actix::prelude::*;
use wire::api::{ProcessInfo, Ps, Stats};
use wire::ApiError;

use super::ContainerActor;
use crate::blocking;
use crate::status::{self, Operation};

impl Handler<crate::Api<Ps>> for ContainerActor {
    type Result = ResponseFuture<Result<Vec<ProcessInfo>, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Ps>, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        if let Err(e) = status::require(&id, Operation::Processes, self.meta.status) {
            return Box::pin(async move { Err(e) });
        }
        let cgroup = self.cgroup.clone();
        // The pid files' monitors share the cgroup; they are not the container's processes.
        let monitors = self.monitors.clone();
        Box::pin(async move {
            let Some(cgroup) = cgroup else { return Ok(Vec::new()) };
            blocking(move || {
                let ours = |pid: &i32| {
                    !monitors
                        .iter()
                        .any(|m| m.pid == *pid && crate::procfs::start_time(*pid).is_ok_and(|t| t == m.start_time))
                };
                Ok(cgroup.procs().into_iter().filter(ours).filter_map(describe).collect())
            })
            .await
        })
    }
}

impl Handler<crate::Api<Stats>> for ContainerActor {
    type Result = ResponseFuture<Result<String, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Stats>, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        if self.meta.status == wire::Status::Stopped {
            let e = ApiError::new(
                wire::ErrorKind::InvalidStatus,
                format!("container {} is not running: it has no usage to report", wire::ids::show_id(&id)),
            );
            return Box::pin(async move { Err(e) });
        }
        let cgroup = self.cgroup.clone();
        Box::pin(async move {
            let Some(cgroup) = cgroup else { return Ok("{}".to_string()) };
            blocking(move || Ok(crate::stats::collect(&cgroup.dirs(), cgroup.is_v2()).to_string())).await
        })
    }
}

/// What `/proc` says of a process (`None` if it is gone meanwhile).
fn describe(pid: i32) -> Option<ProcessInfo> {
    let stat = sys::proc_stat::ProcStat::read(pid).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut command: String =
        String::from_utf8_lossy(&cmdline).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    if command.is_empty() {
        // Kernel-ish or zombie: the name in brackets, as ps shows it.
        command = format!("[{}]", stat.comm);
    }
    Some(ProcessInfo { pid, ppid: stat.ppid, uid, started: started_at(stat.start_time), command })
}

/// A start time in clock ticks after boot, as RFC 3339.
fn started_at(ticks: u64) -> String {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(boot)
        + std::time::Duration::from_millis(ticks * 1000 / hz);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_our_own_process() {
        let me = describe(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.ppid > 0);
        assert!(!me.command.is_empty());
        assert!(me.started.ends_with('Z'));
        assert!(describe(-5).is_none());
    }
}
