//! CRIU's command line for a restore, as far as paddockd knows it (the sandbox adds the root,
//! the namespaces, the descriptors and the bind mounts).

use std::path::Path;

use wire::{ApiError, ErrorKind};

use super::record::host_hierarchy;
use super::{bind_key, CheckpointRecord, RESTORE_LOG};

/// CRIU's arguments for a restore, up to what only the sandbox knows (root, namespaces,
/// descriptors, bind mounts).
pub fn restore_args(
    image: &Path,
    work: &Path,
    cgroup: Option<&str>,
    record: &CheckpointRecord,
    options: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--images-dir".into(),
        image.display().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--log-file".into(),
        RESTORE_LOG.into(),
        "-v4".into(),
        "--restore-detached".into(),
        "--restore-sibling".into(),
        "--manage-cgroups=soft".into(),
    ];
    if let Some(cgroup) = cgroup {
        let hierarchies = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for root in cgroup_roots(&hierarchies, cgroup) {
            args.extend(["--cgroup-root".into(), root]);
        }
    }
    for mount in &record.cgroup_mounts {
        let hierarchy = host_hierarchy(mount).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "the checkpoint's cgroup hierarchy {} is not mounted on this host",
                    mount.controllers.join(",")
                ),
            )
        })?;
        let source = hierarchy.join(cgroup.unwrap_or_default().trim_start_matches('/'));
        let key = bind_key(Path::new(&mount.mountpoint))?;
        args.extend(["--external".into(), format!("mnt[{key}]:{}", source.display())]);
    }
    args.extend(options.iter().cloned());
    Ok(args)
}

/// CRIU's `--cgroup-root` values that put the restored processes in the container's cgroup:
/// one per v1 hierarchy (as paddock places containers there; a hybrid host's cgroup2 keeps
/// the checkpoint's own place, as paddock never moves a container there), or one for all on a
/// host with cgroup v2 only. `hierarchies` is `/proc/self/cgroup`.
fn cgroup_roots(hierarchies: &str, cgroup: &str) -> Vec<String> {
    let path = format!("/{}", cgroup.trim_start_matches('/'));
    let v1: Vec<String> = hierarchies
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (id, controllers) = (fields.next()?, fields.next()?);
            (id != "0" && !controllers.is_empty()).then(|| format!("{controllers}:{path}"))
        })
        .collect();
    if v1.is_empty() {
        vec![path]
    } else {
        v1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_roots_follow_the_hosts_hierarchies() {
        let hybrid = "9:name=systemd:/\n4:memory:/user.slice\n2:cpu,cpuacct:/\n0::/init.scope\n";
        assert_eq!(
            cgroup_roots(hybrid, "paddock/c/c"),
            ["name=systemd:/paddock/c/c", "memory:/paddock/c/c", "cpu,cpuacct:/paddock/c/c"]
        );
        assert_eq!(cgroup_roots("0::/init.scope\n", "/paddock/c/c"), ["/paddock/c/c"]);
    }
}
