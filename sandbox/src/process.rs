//! The container process's own attributes: limits, user, capabilities, environment, working
//! directory, and the program to execute.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};
use wire::{ApiError, ErrorKind};

use crate::seccomp::Filter;

/// The default `PATH` when the spec's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything `execve` needs, prepared in advance so that the last steps before it cannot fail
/// for lack of memory or a bad string, and allocate nothing under a seccomp filter.
#[derive(Debug)]
pub struct ExecPlan {
    path: CString,
    /// The strings `argv_ptrs` and `envp_ptrs` point into (their heap buffers do not move).
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// NULL-terminated pointer arrays, as `execve` takes them.
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// The seccomp filter still to install right before `execve` (with no_new_privs set).
    seccomp: Option<Arc<Filter>>,
    /// The CPU affinity to take right before `execve` (`process.execCPUAffinity.final`).
    affinity: Option<nix::sched::CpuSet>,
}

impl ExecPlan {
    fn new(path: CString, argv: Vec<CString>, envp: Vec<CString>, seccomp: Option<Arc<Filter>>) -> Self {
        let pointers =
            |strings: &[CString]| strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
        Self { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs, seccomp, affinity: None }
    }

    /// The plan with `affinity` as the CPU affinity the process takes right before `execve`.
    pub fn with_affinity(mut self, affinity: Option<nix::sched::CpuSet>) -> Self {
        self.affinity = affinity;
        self
    }

    /// Takes the final CPU affinity and installs the seccomp filter, if either is still due,
    /// and replaces the process image. Returns only on failure.
    pub fn exec(&self) -> ApiError {
        if let Some(affinity) = &self.affinity {
            if let Err(err) = crate::attributes::set_affinity(affinity) {
                return ApiError::invalid_spec(format!("process.execCPUAffinity.final: {err}"));
            }
        }
        if let Some(filter) = &self.seccomp {
            // Not one that notifies an agent: apply() installs those.
            if let Err(err) = filter.install() {
                return ApiError::io("installing the seccomp filter", err);
            }
        }
        // SAFETY: every pointer is into a NUL-terminated string owned by `self` (or the
        // terminating NULL), and `self` outlives the call; execve only reads them.
        unsafe { libc::execve(self.path.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr()) };
        let err = std::io::Error::last_os_error();
        ApiError::new(ErrorKind::InvalidSpec, format!("exec {:?}: {err}", self.path.to_string_lossy()))
    }
}

fn spec_error(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::InvalidSpec, what.to_string())
}

fn cstring(what: &str, s: impl AsRef<[u8]>) -> Result<CString, ApiError> {
    CString::new(s.as_ref()).map_err(|_| spec_error(format!("{what} contains a NUL byte")))
}

/// Applies the spec's process settings to the calling process, in the order that keeps the
/// privileges each step needs: limits and the bounding set while still root with every
/// capability, then the user switch, then the final capability sets, then the working
/// directory as the final user. Returns what to `execve`.
///
/// The container's `seccomp` filter is installed where runc installs it: with
/// `noNewPrivileges`, by [`ExecPlan::exec`] right before `execve`, so that as few of the
/// runtime's own system calls as possible run under it; without, the kernel only lets a
/// process with CAP_SYS_ADMIN install a filter, so it is installed here, before any
/// capability is dropped, and the remaining steps (user switch, capabilities, chdir, the
/// start handshake) run under it, as they do under runc.
///
/// A filter that notifies a seccomp agent is installed here in either case (with
/// `noNewPrivileges`, last), and its notification descriptor handed over `relay` to paddockd
/// for the agent (see [`crate::seccomp::hand_off`]) before this returns: so a container's
/// init does it during create, as runc's does, and create fails when the agent cannot be
/// reached. The agent then answers whatever the filter notifies of the rest.
pub fn apply(process: &Process, seccomp: Option<&Arc<Filter>>, relay: Option<OwnedFd>) -> Result<ExecPlan, ApiError> {
    // Nothing of the sandbox's goes through execve, whatever it left inheritable; done here,
    // before the filter, which may not allow close_range.
    sys::cloexec_from(3).map_err(|e| ApiError::io("marking descriptors close-on-exec", e))?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    let install = |filter: &Filter| -> Result<(), ApiError> {
        let notify = filter.install().map_err(|e| {
            let hint = if no_new_privs { "" } else { " (without process.noNewPrivileges it needs CAP_SYS_ADMIN)" };
            ApiError::io(format!("installing the seccomp filter{hint}"), e)
        })?;
        match (notify, relay.as_ref()) {
            (Some(notify), Some(relay)) => crate::seccomp::hand_off(notify, relay.as_fd()),
            (Some(_), None) => {
                Err(ApiError::internal("a seccomp filter that notifies an agent, but no relay to paddockd"))
            }
            (None, _) => Ok(()),
        }
    };
    if let (Some(filter), false) = (seccomp, no_new_privs) {
        install(filter)?;
    }
    let caps = process.capabilities().as_ref();
    if let Some(caps) = caps {
        drop_bounding(caps)?;
    }
    switch_user(process)?;
    match caps {
        Some(caps) => set_capabilities(caps)?,
        // No capabilities object at all: runc leaves the process with none.
        None => set_capabilities(&empty_capabilities())?,
    }
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| ApiError::io("setting no_new_privs", e))?;
    }
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask as libc::mode_t));

    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| spec_error(format!("cwd {}: {e}", cwd.display())))?;

    let args = process.args().as_deref().unwrap_or_default();
    let program = args.first().ok_or_else(|| spec_error("process.args is empty"))?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let path = find_program(program, path_var)?;
    let plan = ExecPlan::new(
        cstring("process.args[0]", path.as_os_str().as_bytes())?,
        args.iter().map(|a| cstring("process.args", a)).collect::<Result<_, _>>()?,
        env.iter().map(|e| cstring("process.env", e)).collect::<Result<_, _>>()?,
        seccomp.filter(|f| no_new_privs && !f.notifies()).cloned(),
    );
    if let (Some(filter), true) = (seccomp, no_new_privs) {
        if filter.notifies() {
            install(filter)?;
        }
    }
    Ok(plan)
}

/// The process's rlimits and oomScoreAdj: raising a hard limit or lowering the score needs
/// CAP_SYS_RESOURCE in the host's user namespace, so this comes before the process enters the
/// container's user namespace (if it has one).
/// `proc` is the sandbox's procfs, which the caller (in the sandbox's PID namespace) sees
/// itself in, whatever mount namespace it is in.
pub fn apply_limits(process: &Process, proc: &std::os::fd::OwnedFd) -> Result<(), ApiError> {
    set_rlimits(process)?;
    set_oom_score_adj(process, proc, "self")
}

/// Sets the `oomScoreAdj` of process `who` (a pid, or `self`) of the sandbox's procfs `proc`.
pub fn set_oom_score_adj(process: &Process, proc: &std::os::fd::OwnedFd, who: &str) -> Result<(), ApiError> {
    if let Some(adj) = process.oom_score_adj() {
        let err = |e: std::io::Error| ApiError::io(format!("setting oomScoreAdj {adj}"), e);
        let file = rustix::fs::openat(
            proc,
            format!("{who}/oom_score_adj").as_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        rustix::io::write(&file, adj.to_string().as_bytes()).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// Sets the process's rlimits on the calling process.
pub fn set_rlimits(process: &Process) -> Result<(), ApiError> {
    for limit in process.rlimits().as_deref().unwrap_or_default() {
        let resource = rlimit_resource(limit.typ());
        let rl = libc::rlimit { rlim_cur: limit.soft(), rlim_max: limit.hard() };
        // SAFETY: setrlimit reads the rlimit struct we own.
        if unsafe { libc::setrlimit(resource, &rl) } != 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EPERM) {
                " (raising a hard limit above the runtime's own takes CAP_SYS_RESOURCE, which it lacks)"
            } else {
                ""
            };
            return Err(spec_error(format!(
                "process.rlimits {} (soft {}, hard {}): {err}{hint}",
                limit.typ(),
                limit.soft(),
                limit.hard()
            )));
        }
    }
    Ok(())
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn empty_capabilities() -> LinuxCapabilities {
    let none: oci_spec::runtime::Capabilities = HashSet::new();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(none.clone()))
        .set_effective(Some(none.clone()))
        .set_permitted(Some(none.clone()))
        .set_inheritable(Some(none.clone()))
        .set_ambient(Some(none));
    caps
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<CapsHashSet, ApiError> {
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        // oci-spec prints capabilities without their CAP_ prefix; the caps crate wants it.
        let name = cap.to_string();
        let name = if name.starts_with("CAP_") { name } else { format!("CAP_{name}") };
        let parsed: Capability =
            name.parse().map_err(|_| spec_error(format!("capability {name} is unknown to this host")))?;
        out.insert(parsed);
    }
    Ok(out)
}

fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), ApiError> {
    let keep = to_caps(caps.bounding())?;
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| ApiError::io(format!("dropping {cap} from the bounding set"), e))?;
        }
    }
    Ok(())
}

fn set_capabilities(caps: &LinuxCapabilities) -> Result<(), ApiError> {
    let effective = to_caps(caps.effective())?;
    let permitted = to_caps(caps.permitted())?;
    let inheritable = to_caps(caps.inheritable())?;
    let ambient = to_caps(caps.ambient())?;
    // Lower effective first (it must stay within permitted), then the others.
    for (set, value, name) in [
        (CapSet::Effective, &effective, "effective"),
        (CapSet::Inheritable, &inheritable, "inheritable"),
        (CapSet::Permitted, &permitted, "permitted"),
    ] {
        caps::set(None, set, value).map_err(|e| spec_error(format!("setting the {name} capabilities: {e}")))?;
    }
    // A capability can only be ambient if it is also permitted and inheritable. runc's own
    // default spec lists ambient capabilities without inheritable ones, and runc only warns
    // when raising them fails; so does paddock, silently.
    let _ = caps::clear(None, CapSet::Ambient);
    for cap in ambient {
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}

fn switch_user(process: &Process) -> Result<(), ApiError> {
    let user = process.user();
    // -1 means "unchanged" to setresuid: such an id would leave the process root. paddockd
    // refuses it already; the process that switches checks again.
    let ids = [user.uid(), user.gid()]
        .into_iter()
        .chain(user.additional_gids().as_deref().unwrap_or_default().iter().copied());
    for id in ids {
        if id > i32::MAX as u32 {
            return Err(spec_error(format!("uids and gids must be in range 0-{}, not {id}", i32::MAX)));
        }
    }
    let uid = nix::unistd::Uid::from_raw(user.uid());
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let groups: Vec<nix::unistd::Gid> =
        user.additional_gids().as_deref().unwrap_or_default().iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    nix::sys::prctl::set_keepcaps(true).map_err(|e| ApiError::io("PR_SET_KEEPCAPS", e))?;
    nix::unistd::setgroups(&groups).map_err(|e| spec_error(format!("additionalGids {groups:?}: {e}")))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| spec_error(format!("gid {gid}: {e}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| spec_error(format!("uid {uid}: {e}")))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| ApiError::io("PR_SET_KEEPCAPS", e))?;
    Ok(())
}

/// The home directory of `uid` from the container's `/etc/passwd`, or `/`.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| fields[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string())
}

/// Resolves the program as execvp would, in the container's root and with its `PATH`.
fn find_program(program: &str, path_var: &str) -> Result<PathBuf, ApiError> {
    let executable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file();
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(spec_error(format!(
                "exec: {program:?}: {}",
                if p.exists() { "permission denied or not a file" } else { "no such file or directory" }
            )))
        };
    }
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(OsStr::new(program)))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| spec_error(format!("exec: {program:?}: executable file not found in $PATH")))
}
