//! The container's seccomp filter (`linux.seccomp` of the OCI spec).
//!
//! A profile is compiled with libseccomp the way runc compiles it (actions, errno values,
//! argument conditions, architectures, flags; system calls unknown to libseccomp are skipped)
//! into a classic BPF program, in the sandbox and before it forks, so that a bad profile fails
//! `create` early with an error that names the offending field. The forked child then installs
//! the finished program with one `seccomp(2)` call that needs no allocation, as late as the
//! kernel allows (see [`crate::process::apply`]): right before `execve` when the process has
//! `noNewPrivileges`, otherwise just before it gives up its capabilities, as runc does.
//!
//! Processes that `ctl exec` starts get the container's filter too, as with runc. The sandbox
//! keeps each container's compiled filter for that, in the container's record.
//!
//! A profile with `SCMP_ACT_NOTIFY` is loaded with `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the
//! process gets the filter's notification descriptor and hands it at once, over the relay
//! socket paddockd gave it, to paddockd, which forwards it to the seccomp agent at
//! `listenerPath` (a host path only paddockd can reach) with the container's state, and only
//! then lets the process go on (see [`hand_off`]).

use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator, Spec,
};
use wire::{ApiError, ErrorKind};

/// A system call has at most this many arguments; conditions index them from 0.
const SYSCALL_MAX_ARGUMENTS: usize = 6;

/// Above this many syscall entries runc asks libseccomp for a binary search tree instead of a
/// linear list (libseccomp 2.5.4 and older misbehave with the tree and no rules at all).
const OPTIMIZE_ABOVE: usize = 32;

/// A compiled seccomp filter, ready to install: a few kilobytes at most (the kernel caps a
/// filter at 4096 instructions), kept by the sandbox for each container that has a profile.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)` (with `_NEW_LISTENER` when the profile
    /// uses `SCMP_ACT_NOTIFY`).
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("instructions", &self.program.len()).field("flags", &self.flags).finish()
    }
}

impl Filter {
    /// Whether the filter notifies a seccomp agent (`SCMP_ACT_NOTIFY`): installing it yields
    /// the notification descriptor, which [`hand_off`] passes on.
    pub fn notifies(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// Installs the filter on the calling thread, for good. Returns the filter's notification
    /// descriptor when it [notifies](Self::notifies) an agent.
    ///
    /// It allocates nothing on success, so it can be the last step before `execve` even under
    /// a profile that denies `brk` or `mmap`. Without `no_new_privs` the kernel requires
    /// CAP_SYS_ADMIN.
    #[expect(clippy::cast_possible_truncation, reason = "compile() checked the length against the kernel's limit")]
    pub fn install(&self) -> std::io::Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog {
            // compile() checked that the length fits the kernel's limit, far below u16::MAX.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the instructions it points
        // to, both alive for the duration of the call; it writes nothing of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if !self.notifies() {
            return Ok(None);
        }
        // The kernel returns the new listener's descriptor (close-on-exec) as the result.
        let fd = i32::try_from(rc).map_err(|_| std::io::Error::other(format!("seccomp(2) returned {rc}")))?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a non-negative result is a descriptor
        // that the kernel just opened for us and nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// How many BPF instructions the filter has.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.program.len()
    }
}

/// The compiled filter of `spec`'s `linux.seccomp`, if it has one.
pub fn for_spec(spec: &Spec) -> Result<Option<Filter>, ApiError> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => compile(profile).map(Some),
        None => Ok(None),
    }
}

fn spec_error(what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_spec(format!("linux.seccomp.{what}"))
}

fn unsupported(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Unsupported, format!("linux.seccomp.{what}"))
}

/// Compiles an OCI seccomp profile with runc's semantics:
///
/// - `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` return `errnoRet` (`defaultErrnoRet` for the
///   default action), EPERM when it is absent; `errnoRet` on other actions is ignored.
///   `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`.
/// - A rule whose action is the default action is redundant and skipped; so is a system call
///   name libseccomp does not know (an older libseccomp, or one of another architecture).
/// - Conditions on distinct arguments must all hold (AND). If any argument has more than one
///   condition, every condition of the entry becomes a rule of its own (OR), as runc does.
/// - `SCMP_CMP_MASKED_EQ` matches when `arg & value == valueTwo`.
/// - Each of `architectures` is added to the filter.
/// - `SECCOMP_FILTER_FLAG_LOG`, `_SPEC_ALLOW` and `_TSYNC` are passed to `seccomp(2)`.
///
/// `SCMP_ACT_NOTIFY` as runc has it: a rule may notify the seccomp agent at `listenerPath`,
/// which the profile must then name (a `listenerPath` without any such rule is ignored, as the
/// runtime-spec says; `listenerMetadata` without `listenerPath` is refused).
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` only applies to such a filter. The default action
/// cannot notify, and neither can `sendmsg`: the process makes system calls after loading the
/// filter (`sendmsg` first, to hand the notification descriptor on), and one that waited for
/// an agent that has no descriptor yet would wait forever (runc refuses the same two, with
/// `write` for `sendmsg`).
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, ApiError> {
    let syscalls = profile.syscalls().as_deref().unwrap_or_default();
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(unsupported(
            "defaultAction: SCMP_ACT_NOTIFY cannot be the default action: the runtime's own system calls after \
             loading the filter would wait for a seccomp agent that does not have the filter's descriptor yet",
        ));
    }
    let default_action = action(profile.default_action(), profile.default_errno_ret())
        .map_err(|e| spec_error(format_args!("defaultAction: {e}")))?;
    let mut notifies = false;
    for (i, call) in syscalls.iter().enumerate() {
        if call.action() != LinuxSeccompAction::ScmpActNotify {
            continue;
        }
        notifies = true;
        if let Some(k) = call.names().iter().position(|n| n == HAND_OFF_SYSCALL) {
            return Err(unsupported(format_args!(
                "syscalls[{i}].names[{k}]: SCMP_ACT_NOTIFY cannot be used for {HAND_OFF_SYSCALL:?}: the container's \
                 process hands the filter's descriptor on with it, which would wait forever for an agent that does \
                 not have it yet"
            )));
        }
    }
    if notifies && profile.listener_path().is_none() {
        return Err(spec_error(
            "listenerPath: the profile uses SCMP_ACT_NOTIFY, which needs the path of a seccomp agent's socket",
        ));
    }
    if profile.listener_metadata().is_some() && profile.listener_path().is_none() {
        return Err(spec_error("listenerMetadata: must not be set without listenerPath"));
    }
    if let Some(path) = profile.listener_path() {
        if notifies && !path.is_absolute() {
            return Err(spec_error(format_args!("listenerPath {}: not an absolute path", path.display())));
        }
    }

    let mut ctx = ScmpFilterContext::new(default_action).map_err(|e| {
        spec_error(format_args!("defaultAction {}: libseccomp refused it: {e}", profile.default_action()))
    })?;
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let scmp = ScmpArch::from_str(&arch.to_string()).map_err(|_| {
            spec_error(format_args!("architectures[{i}]: {arch} is not an architecture libseccomp knows"))
        })?;
        ctx.add_arch(scmp)
            .map_err(|e| spec_error(format_args!("architectures[{i}]: libseccomp cannot add {arch}: {e}")))?;
    }
    let mut flags: libc::c_ulong = 0;
    for (i, flag) in profile.flags().iter().flatten().enumerate() {
        // libseccomp's attribute setters check that the kernel supports the flag, which the
        // kernel itself would only tell at start.
        let not_supported = |e: libseccomp::error::SeccompError| {
            unsupported(format_args!("flags[{i}]: {flag} is not supported by this kernel or libseccomp: {e}"))
        };
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true).map_err(not_supported)?;
                flags |= libc::SECCOMP_FILTER_FLAG_LOG;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true).map_err(not_supported)?;
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
            }
            // The process is single-threaded when it installs the filter, so this changes
            // nothing; passing it on is still what the profile asked for.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags |= libc::SECCOMP_FILTER_FLAG_TSYNC,
            // libseccomp only learned this flag in 2.6; the kernel takes it from us directly,
            // and refuses it (EINVAL) on a filter without a listener.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if notifies => {
                flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(spec_error(format_args!(
                    "flags[{i}]: {flag} only applies to a profile that uses SCMP_ACT_NOTIFY, and this one does not"
                )))
            }
        }
    }
    if syscalls.len() > OPTIMIZE_ABOVE {
        // Only speed: an older libseccomp without the tree still compiles a correct filter.
        let _ = ctx.set_ctl_optimize(2);
    }

    for (i, call) in syscalls.iter().enumerate() {
        let what = |detail: std::fmt::Arguments<'_>| spec_error(format_args!("syscalls[{i}]{detail}"));
        let rule_action = action(call.action(), call.errno_ret()).map_err(|e| what(format_args!(": {e}")))?;
        let args = call.args().as_deref().unwrap_or_default();
        let conditions = args
            .iter()
            .enumerate()
            .map(|(j, arg)| condition(arg).map_err(|e| what(format_args!(".args[{j}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_index = [0usize; SYSCALL_MAX_ARGUMENTS];
        for arg in args {
            per_index[arg.index()] += 1;
        }
        let separate_rules = per_index.iter().any(|&n| n > 1);
        for (k, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(what(format_args!(".names[{k}]: an empty string is not a system call")));
            }
            if rule_action == default_action {
                continue;
            }
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if separate_rules {
                conditions.iter().try_for_each(|c| ctx.add_rule_conditional(rule_action, syscall, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(rule_action, syscall, &conditions).map(drop)
            };
            added.map_err(|e| what(format_args!(".names[{k}] {name:?}: libseccomp refused the rule: {e}")))?;
        }
    }
    if notifies {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    export(&ctx, flags)
}

/// The system call [`hand_off`] passes the notification descriptor with, which the filter
/// therefore cannot have notify.
const HAND_OFF_SYSCALL: &str = "sendmsg";

/// Hands the notification descriptor of a just-installed filter to paddockd over `relay` (its
/// seccomp relay socket, see `actors::seccomp_agent`) and waits until paddockd has passed it to
/// the seccomp agent: from then on the agent answers whatever the filter notifies, including
/// the process's own remaining system calls before `execve`.
///
/// One `sendmsg` (the filter may notify anything else) carrying the descriptor; paddockd learns
/// the process's pid from the kernel (`SCM_CREDENTIALS`), as it sees it. It answers `K` or an
/// error message. Allocates nothing.
#[expect(clippy::cast_possible_truncation, reason = "the size of one int in a control message")]
pub fn hand_off(notify: OwnedFd, relay: BorrowedFd<'_>) -> Result<(), ApiError> {
    const SPACE: usize = 64;
    // A buffer aligned for cmsghdr, large enough for one descriptor.
    #[repr(C, align(8))]
    struct Control([u8; SPACE]);
    let mut control = Control([0; SPACE]);
    let mut byte = [b'F'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    // SAFETY: msghdr is plain data; zero is valid for every field not set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space.min(SPACE) as _;
    // SAFETY: msg_control points to SPACE aligned bytes, enough for one header and one int
    // (CMSG_SPACE(4) is 24 on 64-bit); CMSG_FIRSTHDR is then non-null and CMSG_DATA in bounds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), notify.as_raw_fd());
    }
    let gone = |e: std::io::Error| ApiError::io("handing the seccomp notification descriptor to paddockd", e);
    loop {
        // SAFETY: `msg` and everything it points to live across the call, which only reads them.
        let sent = unsafe { libc::sendmsg(relay.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(gone(err));
        }
    }
    // paddockd holds its own copy now.
    drop(notify);
    let mut answer = [0u8; 4096];
    let n = loop {
        // SAFETY: recv writes at most answer.len() bytes into the buffer we own.
        let n = unsafe { libc::recv(relay.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0) };
        if n >= 0 {
            break n as usize;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(gone(err));
        }
    };
    match answer.get(..n) {
        Some([b'K']) => Ok(()),
        Some([]) | None => Err(ApiError::new(
            ErrorKind::Sandbox,
            "paddockd went away before it passed the seccomp notification descriptor to the agent",
        )),
        Some(text) => Err(ApiError::new(ErrorKind::Io, String::from_utf8_lossy(text.get(1..).unwrap_or_default()))),
    }
}

/// A part of a seccomp rule that libseccomp cannot be given.
#[derive(Debug, thiserror::Error)]
enum RuleError {
    /// An `errnoRet` beyond what a filter can return.
    #[error("errnoRet {0} is out of range (0-{max})", max = u16::MAX)]
    ErrnoOutOfRange(u32),
    /// An argument index a system call does not have.
    #[error(
        "index {0} is out of range: a system call has at most {max} arguments (0-{last})",
        max = SYSCALL_MAX_ARGUMENTS,
        last = SYSCALL_MAX_ARGUMENTS - 1
    )]
    IndexOutOfRange(usize),
}

/// The libseccomp action for an OCI action and its `errnoRet`, as runc maps them.
#[expect(clippy::cast_possible_truncation, reason = "errno values and an argument index below 6, checked")]
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, RuleError> {
    let errno = || -> Result<u16, RuleError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(n) => u16::try_from(n).map_err(|_| RuleError::ErrnoOutOfRange(n)),
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(errno()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// The libseccomp comparison for one argument condition.
#[expect(clippy::cast_possible_truncation, reason = "errno values and an argument index below 6, checked")]
fn condition(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, RuleError> {
    let index = arg.index();
    if index >= SYSCALL_MAX_ARGUMENTS {
        return Err(RuleError::IndexOutOfRange(index));
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // runc passes (value, valueTwo) to libseccomp, whose MASKED_EQ takes the mask first.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or_default())
        }
    };
    // The index is below 6, checked above.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// libseccomp's BPF program for `ctx`, read back through a memfd (libseccomp before 2.6 can
/// only export to a file descriptor).
fn export(ctx: &ScmpFilterContext, flags: libc::c_ulong) -> Result<Filter, ApiError> {
    let memfd = rustix::fs::memfd_create("paddock-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| ApiError::io("memfd for the seccomp filter", e))?;
    ctx.export_bpf(memfd.as_fd()).map_err(|e| ApiError::io("compiling the seccomp filter", e))?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| ApiError::io("reading the compiled seccomp filter", e))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(ApiError::internal(format!("libseccomp exported a seccomp filter of {} bytes", bytes.len())));
    }
    let program: Vec<libc::sock_filter> = bytes
        .chunks_exact(size)
        .map(|insn| libc::sock_filter {
            code: u16::from_ne_bytes([insn[0], insn[1]]),
            jt: insn[2],
            jf: insn[3],
            k: u32::from_ne_bytes([insn[4], insn[5], insn[6], insn[7]]),
        })
        .collect();
    if program.len() > libc::BPF_MAXINSNS as usize {
        return Err(spec_error(format_args!(
            "syscalls: the profile compiles to {} BPF instructions, more than the kernel's limit of {}",
            program.len(),
            libc::BPF_MAXINSNS
        )));
    }
    Ok(Filter { program, flags })
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::ForkResult;
    use serde_json::json;

    use super::*;

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).expect("a valid OCI seccomp profile")
    }

    fn compiled(value: serde_json::Value) -> Filter {
        compile(&profile(value)).expect("the profile compiles")
    }

    fn refused(value: serde_json::Value) -> ApiError {
        compile(&profile(value)).expect_err("the profile is refused")
    }

    /// How a probe ended under a filter.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// The probe returned this errno (0: success).
        Errno(i32),
        /// The process was killed by this signal.
        Killed(Signal),
    }

    /// Runs `probe` in a forked child under `filter`, with no_new_privs so that no privilege is
    /// needed. The child makes only async-signal-safe calls: the test harness has threads.
    fn run_under(filter: &Filter, probe: fn() -> i32) -> Outcome {
        // SAFETY: the child only calls prctl, seccomp, the probe's raw system call and _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            ForkResult::Child => {
                // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers.
                let code = if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                    200
                } else if filter.install().is_err() {
                    201
                } else {
                    probe()
                };
                // SAFETY: ends the child without running the harness's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, 200) => panic!("the child could not set no_new_privs"),
                WaitStatus::Exited(_, 201) => panic!("the child could not install the filter"),
                WaitStatus::Exited(_, code) => Outcome::Errno(code),
                WaitStatus::Signaled(_, signal, _) => Outcome::Killed(signal),
                other => panic!("unexpected status {other:?}"),
            },
        }
    }

    /// `getpriority(which, who)` as a raw system call (harmless, two plain arguments): the
    /// errno it fails with, or 0.
    fn getpriority(which: libc::c_long, who: libc::c_long) -> i32 {
        // SAFETY: getpriority takes no pointers.
        if unsafe { libc::syscall(libc::SYS_getpriority, which, who) } == -1 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(255)
        } else {
            0
        }
    }

    fn deny_getpriority(args: serde_json::Value) -> Filter {
        compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES, "args": args}]
        }))
    }

    #[test]
    fn errno_actions_return_errno_ret_or_eperm() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]
        }));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::EACCES));
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::EPERM));
        // The default action with defaultErrnoRet; the process can still exit.
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": libc::ENOSYS,
            "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::ENOSYS));
    }

    #[test]
    fn every_other_action_does_what_it_says() {
        let with = |action: &str| {
            compiled(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpriority"], "action": action}]
            }))
        };
        for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
            assert_eq!(run_under(&with(action), || getpriority(0, 0)), Outcome::Killed(Signal::SIGSYS), "{action}");
        }
        // Without a tracer, the kernel fails a traced system call with ENOSYS.
        assert_eq!(run_under(&with("SCMP_ACT_TRACE"), || getpriority(0, 0)), Outcome::Errno(libc::ENOSYS));
        assert_eq!(run_under(&with("SCMP_ACT_LOG"), || getpriority(0, 0)), Outcome::Errno(0));
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Killed(Signal::SIGSYS));
        assert_eq!(run_under(&filter, || 0), Outcome::Errno(0));
    }

    #[test]
    fn conditions_on_distinct_arguments_must_all_hold() {
        let filter = deny_getpriority(json!([
            {"index": 0, "value": libc::PRIO_PGRP, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}
        ]));
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PGRP as _, 0)), Outcome::Errno(libc::EACCES));
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PROCESS as _, 0)), Outcome::Errno(0));
        // No such process group: the kernel's own answer, not the filter's.
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PGRP as _, 0x3fff_fff0)), Outcome::Errno(libc::ESRCH));
    }

    #[test]
    fn several_conditions_on_one_argument_make_every_condition_a_rule_of_its_own() {
        let filter = deny_getpriority(json!([
            {"index": 0, "value": libc::PRIO_PGRP, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": libc::PRIO_USER, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 4242, "op": "SCMP_CMP_EQ"}
        ]));
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PGRP as _, 0)), Outcome::Errno(libc::EACCES));
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_USER as _, 0)), Outcome::Errno(libc::EACCES));
        // As runc: the condition on the other argument is ORed too.
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PROCESS as _, 4242)), Outcome::Errno(libc::EACCES));
        assert_eq!(run_under(&filter, || getpriority(libc::PRIO_PROCESS as _, 0)), Outcome::Errno(0));
    }

    #[test]
    fn comparison_operators() {
        let denied = |op: &str, value: u64, value_two: Option<u64>, which: fn() -> i32| {
            let mut arg = json!({"index": 0, "value": value, "op": op});
            if let Some(two) = value_two {
                arg["valueTwo"] = json!(two);
            }
            run_under(&deny_getpriority(json!([arg])), which) == Outcome::Errno(libc::EACCES)
        };
        // PRIO_PROCESS = 0, PRIO_PGRP = 1, PRIO_USER = 2; 3 is invalid (EINVAL when allowed).
        assert!(denied("SCMP_CMP_NE", 0, None, || getpriority(1, 0)));
        assert!(!denied("SCMP_CMP_NE", 0, None, || getpriority(0, 0)));
        assert!(denied("SCMP_CMP_LT", 1, None, || getpriority(0, 0)));
        assert!(!denied("SCMP_CMP_LT", 1, None, || getpriority(1, 0)));
        assert!(denied("SCMP_CMP_LE", 1, None, || getpriority(1, 0)));
        assert!(!denied("SCMP_CMP_LE", 1, None, || getpriority(2, 0)));
        assert!(denied("SCMP_CMP_GE", 2, None, || getpriority(2, 0)));
        assert!(!denied("SCMP_CMP_GE", 2, None, || getpriority(1, 0)));
        assert!(denied("SCMP_CMP_GT", 1, None, || getpriority(2, 0)));
        assert!(!denied("SCMP_CMP_GT", 1, None, || getpriority(1, 0)));
        // value is the mask, valueTwo what the masked argument must equal.
        assert!(denied("SCMP_CMP_MASKED_EQ", 2, Some(2), || getpriority(2, 0)));
        assert!(denied("SCMP_CMP_MASKED_EQ", 2, Some(2), || getpriority(3, 0)));
        assert!(!denied("SCMP_CMP_MASKED_EQ", 2, Some(2), || getpriority(1, 0)));
        assert!(denied("SCMP_CMP_MASKED_EQ", 2, None, || getpriority(1, 0)));
    }

    #[test]
    fn unknown_names_and_rules_with_the_default_action_are_skipped() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["no_such_syscall", "exit", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}
            ]
        }));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::EPERM));
    }

    #[test]
    fn architectures_and_flags() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["getpriority", "socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]
        }));
        assert_eq!(filter.flags, libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_TSYNC);
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::EACCES));
        let native = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}
        ]}));
        assert!(filter.len() > native.len(), "the other architectures add to the program");
        let spec_allow =
            compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
        assert_eq!(spec_allow.flags, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    }

    #[test]
    fn a_long_profile_compiles_to_a_tree() {
        let names: Vec<String> = ["read", "write", "openat", "close", "fstat", "mmap", "brk", "exit_group", "exit"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let syscalls: Vec<_> =
            (0..40).map(|i| json!({"names": [names[i % names.len()].clone()], "action": "SCMP_ACT_ALLOW"})).collect();
        let filter = compiled(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": syscalls}));
        assert_eq!(run_under(&filter, || getpriority(0, 0)), Outcome::Errno(libc::EPERM));
    }

    #[test]
    fn notify_rules_need_a_listener_and_load_with_one() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}
            ],
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        }));
        assert!(filter.notifies());
        assert_eq!(filter.flags, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
        // listenerPath without a notifying rule is ignored, as the runtime-spec says.
        let quiet = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}));
        assert!(!quiet.notifies());
        assert_eq!(quiet.flags, 0);

        let err = refused(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}));
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert!(
            err.message.contains("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default"),
            "{}",
            err.message
        );
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert_eq!(err.kind, ErrorKind::InvalidSpec);
        assert!(
            err.message.contains("linux.seccomp.listenerPath: the profile uses SCMP_ACT_NOTIFY"),
            "{}",
            err.message
        );
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(
            err.message.contains("linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for \"sendmsg\""),
            "{}",
            err.message
        );
        let err = refused(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "meta"}));
        assert!(
            err.message.contains("linux.seccomp.listenerMetadata: must not be set without listenerPath"),
            "{}",
            err.message
        );
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(err.message.contains("linux.seccomp.listenerPath agent.sock: not an absolute path"), "{}", err.message);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_field_named() {
        let err =
            refused(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
        assert!(
            err.message.contains("linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to a profile that uses SCMP_ACT_NOTIFY"),
            "{}",
            err.message
        );
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}
            ]}]
        }));
        assert_eq!(err.kind, ErrorKind::InvalidSpec);
        assert!(err.message.contains("linux.seccomp.syscalls[0].args[1]: index 6 is out of range"), "{}", err.message);
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert!(err.message.contains("linux.seccomp.syscalls[0].names[1]"), "{}", err.message);
        let err = refused(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 70000
        }));
        assert!(err.message.contains("linux.seccomp.defaultAction: errnoRet 70000 is out of range"), "{}", err.message);
    }

    #[test]
    fn for_spec_reads_linux_seccomp() {
        let mut spec = Spec::default();
        assert!(for_spec(&spec).expect("no profile is fine").is_none());
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_seccomp(Some(profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))));
        spec.set_linux(Some(linux));
        assert!(for_spec(&spec).expect("compiles").is_some());
    }
}
