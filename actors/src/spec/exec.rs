//! The process of an exec: the request's own process (or the container's with the request's
//! changes) and runc's exec flags merged in, checked as the container's was.

use std::path::Path;

use oci_spec::runtime::Spec;
use wire::spec::console_size;
use wire::{ApiError, ErrorKind};

use super::{attributes, validate_user};

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
