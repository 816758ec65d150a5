//! The child of [`super::Command::spawn`] made as `posix_spawn` makes it: `clone(2)` with
//! `CLONE_VM | CLONE_VFORK`, on a stack of its own. The child borrows the caller's memory
//! until it executes (or exits), and the calling thread sleeps until then.
//!
//! Why not a fork: paddockd is multi-threaded, with tens of MiB mapped. A fork copies its page
//! tables with its memory map write-locked (about 1 ms on this VM, past 20 ms under load), and
//! write-protects every private page, so each of its threads then faults on its next write,
//! and other CPUs get TLB flushes. During a burst of creates that past-the-pool spawns two
//! helpers each, the wire server's thread kept stalling on those locks and faults, and a
//! `state` over a held connection took up to tens of milliseconds. With `CLONE_VM` nothing is
//! copied and nothing is write-protected.
//!
//! What that asks of the child is what [`super::Command`] already holds to: it makes only
//! async-signal-safe system calls, on memory prepared before the clone, and ends in `execve` or
//! `_exit`. Two more things follow from sharing memory:
//! - no handler of the caller may run in the child, where it would act on the caller's data:
//!   the calling thread blocks every signal around the clone, and the child sets every handled
//!   signal back to its default before it unblocks them ([`super::ChildPlan::run`]), both
//!   with the raw system calls (libc's wrappers keep their own signals out, and may lock);
//! - `errno` in the child is the calling thread's (the thread pointer is shared), which sleeps
//!   meanwhile and reads no `errno` of the clone's when it succeeds;
//! - the child's memory is paddockd's until it executes, but it is no easier to reach: whatever
//!   user namespace it enters, its memory's owner stays the initial one, so ptrace,
//!   `/proc/PID/mem` and `pidfd_getfd` need `CAP_SYS_PTRACE` there, as for paddockd itself.
//!
//! Some kernels refuse a `CLONE_VM` child (`EINVAL`) to a caller that has unshared a time
//! namespace without entering it (6.18 does not); [`super::Command::spawn`] then forks.
//!
//! The clone goes through libc's `clone` wrapper because the child must start on its new stack
//! inside a function: returning from a raw system call there would pop a return address from
//! an empty stack. No crate wraps this (std's `Command` reaches `posix_spawn` only without
//! namespaces or a pidfd); `clone(2)` takes `CLONE_PIDFD` (Linux 5.2), but its flags are 32
//! bits whose low byte is the exit signal, so a request with `CLONE_NEWTIME` (0x80) or a
//! `clone3`-only flag is not made here ([`can_make`]).

use std::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd};

use super::ChildPlan;

/// The child's stack: the child only runs [`ChildPlan::run`] (a few libc calls, no large
/// frames), and `execve` copies its arguments from the kernel's side. Rounded up to whole
/// pages, with one inaccessible page below it, so an overflow faults instead of writing into
/// whatever lies below.
const STACK_SIZE: usize = 64 * 1024;

/// `CLONE_NEWTIME`, which libc does not name.
const CLONE_NEWTIME: i32 = 0x80;

/// Whether a child created in the namespaces `flags` that enters `joins` (`(descriptor,
/// CLONE_NEW*)`) can be made here: `clone(2)` must carry the flags (see the module's comment),
/// and the kernel lets a process enter a time namespace only when it shares its memory with
/// no other (`setns` fails with `EUSERS`).
pub(super) fn can_make(flags: u64, joins: &[(std::os::fd::RawFd, i32)]) -> bool {
    flags & !super::CLONE_FLAGS_MASK == 0 && !joins.iter().any(|&(_, nstype)| nstype == CLONE_NEWTIME)
}

/// A mapping for the child's stack, unmapped when dropped (once the child no longer runs on
/// it: with `CLONE_VFORK` the clone returns only after the child executed or exited).
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

impl ChildStack {
    fn new() -> std::io::Result<Self> {
        // SAFETY: sysconf only reads a value. Pages are 4 KiB to 64 KiB.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        let guard = page;
        let len = STACK_SIZE.div_ceil(page) * page + guard;
        // SAFETY: a new anonymous private mapping, at an address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the lowest page of the mapping just made, ours alone.
        if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The stack's top (stacks grow down on every architecture Linux runs paddock on).
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, which is how `clone` takes a stack.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, which no one uses any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Where the child starts, on its own stack.
extern "C" fn child_entry(plan: *mut c_void) -> libc::c_int {
    // SAFETY: `plan` is the `ChildPlan` that `spawn` passed, alive while the caller sleeps;
    // we are the child of a `CLONE_VM` clone, which `run` is written for.
    unsafe { (*plan.cast::<ChildPlan<'_>>()).run() }
}

/// Makes the child, which runs `plan` on a stack of its own; returns once it executed or
/// exited, with its pid and pidfd. `flags` are `CLONE_NEW*` flags (and `CLONE_PARENT`), which
/// with `plan`'s namespaces to enter pass [`can_make`].
pub(super) fn spawn(flags: u64, plan: &ChildPlan<'_>) -> std::io::Result<(i32, OwnedFd)> {
    debug_assert!(can_make(flags, plan.joins));
    let stack = ChildStack::new()?;
    // With CLONE_PARENT the child's exit signal is the caller's (the kernel wants none given).
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 { 0 } else { libc::SIGCHLD as u64 };
    let all_flags = flags | (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | exit_signal;
    // `clone(2)` reads its flags as 32 bits (`can_make` checked that they fit); libc's
    // wrapper takes them as an int.
    let clone_flags = u32::try_from(all_flags).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let clone_flags = clone_flags as libc::c_int;
    let mut pidfd: libc::c_int = -1;
    // Every signal blocked in this thread (restored below), with the raw system call: libc's
    // own two (32, 33) too, so that no handler of ours runs in the child while it shares our
    // memory.
    // SAFETY: async-signal-safe, on this thread's mask only.
    let before = unsafe { super::set_signal_mask(!0) };
    // SAFETY: the child runs `child_entry` on `stack` with `plan`, both alive until the clone
    // returns (CLONE_VFORK); with CLONE_PIDFD the kernel stores the pidfd in `pidfd` (the
    // parent_tid argument).
    let ret = unsafe {
        libc::clone(
            child_entry,
            stack.top(),
            clone_flags,
            plan as *const ChildPlan<'_> as *mut c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: as above.
    unsafe { super::set_signal_mask(before) };
    if ret < 0 {
        return Err(err);
    }
    drop(stack);
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor in `pidfd`, ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((ret, pidfd))
}
