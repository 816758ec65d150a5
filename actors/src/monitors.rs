//! The pid files' processes: which live process monitors which container, and namespace paths
//! that name a monitor translated into the container's.
//!
//! Clients build namespace paths from the pid a pid file holds: Docker's `--network
//! container:X` and `--pid container:X`, podman's, and CRI's pod members (whose specs name
//! `/proc/<pause pid>/ns/ipc`, `uts`, `pid`). That pid is a monitor (see `ctl`'s
//! `monitor-process`), which joins its container's network, IPC and UTS namespaces, so those
//! paths already lead to the container's; but its PID namespace is one of its own (a monitor
//! in the host's would hand the host's to whoever joins it). So a spec path naming a live
//! monitor is rewritten to name the container's init instead, for every namespace type.

use std::collections::HashMap;

use oci_spec::runtime::Spec;

use crate::procfs;

/// Live monitors by pid (as paddockd sees them).
#[derive(Debug, Default)]
pub struct Monitors {
    by_pid: HashMap<i32, Entry>,
}

#[derive(Debug)]
struct Entry {
    container: String,
    start_time: u64,
}

impl Monitors {
    /// Records that `pid` monitors `container`; forgets monitors that have exited.
    pub fn record(&mut self, pid: i32, container: &str) {
        self.by_pid.retain(|pid, e| procfs::start_time(*pid).is_ok_and(|t| t == e.start_time));
        if let Ok(start_time) = procfs::start_time(pid) {
            self.by_pid.insert(pid, Entry { container: container.to_string(), start_time });
        }
    }

    /// The container that `pid` monitors, if `pid` is a monitor that still runs (not a
    /// process that has the pid of one that exited).
    pub fn container_of(&self, pid: i32) -> Option<&str> {
        let entry = self.by_pid.get(&pid)?;
        procfs::start_time(pid).is_ok_and(|t| t == entry.start_time).then_some(entry.container.as_str())
    }
}

/// `(pid, namespace type)` of a path of the form `/proc/<pid>/ns/<type>`.
pub fn proc_ns_path(path: &std::path::Path) -> Option<(i32, String)> {
    let text = path.to_str()?;
    let rest = text.strip_prefix("/proc/")?;
    let (pid, rest) = rest.split_once('/')?;
    let typ = rest.strip_prefix("ns/")?;
    if typ.is_empty() || typ.contains('/') {
        return None;
    }
    Some((pid.parse().ok().filter(|p| *p > 0)?, typ.to_string()))
}

/// The pids named by the spec's namespace paths of the form `/proc/<pid>/ns/<type>`.
pub fn named_pids(spec: &Spec) -> Vec<i32> {
    let mut pids: Vec<i32> = namespaces(spec)
        .iter()
        .filter_map(|n| n.path().as_deref().and_then(proc_ns_path).map(|(pid, _)| pid))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Rewrites every namespace path `/proc/<pid>/ns/<type>` whose pid `replace` maps to another
/// pid. Returns whether anything changed.
pub fn rewrite(spec: &mut Spec, replace: &HashMap<i32, i32>) -> bool {
    let Some(linux) = spec.linux_mut() else { return false };
    let Some(list) = linux.namespaces_mut() else { return false };
    let mut changed = false;
    for ns in list.iter_mut() {
        let Some((pid, typ)) = ns.path().as_deref().and_then(proc_ns_path) else { continue };
        if let Some(to) = replace.get(&pid) {
            ns.set_path(Some(format!("/proc/{to}/ns/{typ}").into()));
            changed = true;
        }
    }
    changed
}

fn namespaces(spec: &Spec) -> Vec<oci_spec::runtime::LinuxNamespace> {
    spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_ns_paths_are_recognised_and_others_are_not() {
        assert_eq!(proc_ns_path("/proc/42/ns/net".as_ref()), Some((42, "net".to_string())));
        assert_eq!(proc_ns_path("/proc/42/ns/pid".as_ref()), Some((42, "pid".to_string())));
        assert_eq!(proc_ns_path("/var/run/netns/cni-1".as_ref()), None);
        assert_eq!(proc_ns_path("/proc/self/ns/net".as_ref()), None);
        assert_eq!(proc_ns_path("/proc/0/ns/net".as_ref()), None);
        assert_eq!(proc_ns_path("/proc/42/ns/".as_ref()), None);
        assert_eq!(proc_ns_path("/proc/42/ns/net/x".as_ref()), None);
    }

    #[test]
    fn only_mapped_pids_are_rewritten() {
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "linux": {"namespaces": [
                {"type": "network", "path": "/proc/10/ns/net"},
                {"type": "pid", "path": "/proc/10/ns/pid"},
                {"type": "ipc", "path": "/proc/11/ns/ipc"},
                {"type": "uts", "path": "/var/run/utsns/x"},
                {"type": "mount"}
            ]}
        }))
        .unwrap();
        assert_eq!(named_pids(&spec), vec![10, 11]);
        assert!(rewrite(&mut spec, &HashMap::from([(10, 99)])));
        let paths: Vec<Option<String>> =
            namespaces(&spec).iter().map(|n| n.path().as_ref().map(|p| p.display().to_string())).collect();
        assert_eq!(
            paths,
            vec![
                Some("/proc/99/ns/net".into()),
                Some("/proc/99/ns/pid".into()),
                Some("/proc/11/ns/ipc".into()),
                Some("/var/run/utsns/x".into()),
                None
            ]
        );
        assert!(!rewrite(&mut spec, &HashMap::new()));
    }
}
