//! When the helper pool refills: once the supervisor has served its container operations and
//! been quiet for a moment, not while a container it just made is being started, waited for
//! and deleted.
//!
//! Why: a refill forks and executes a gofer and a sandbox with new namespaces. Even at nice 19
//! that work competes with the container in hand for the CPUs and for the kernel's global locks
//! (the mount namespace copy, the network namespace set-up), and a `run` of `/bin/true` measured
//! 2 to 4 ms slower with the refill beside it than with the refill after it. The pool is for
//! the next create, so the present one goes first.
//!
//! A create that found the pool empty refills at once: demand is outrunning the pool, and
//! waiting for a quiet moment that may not come would leave every create without it.

use std::time::Duration;

use actix::prelude::*;

use super::Supervisor;

/// How long the supervisor must have had no container operation in progress before the pool
/// refills. Longer than the gap between the calls of one client's sequence (`create` then
/// `start` from a new process, the shim's or podman's), short beside the time between
/// unrelated containers.
const QUIET: Duration = Duration::from_millis(10);

/// The supervisor's count of operations in progress and whether the pool waits for a refill.
#[derive(Default)]
pub(super) struct RefillGate {
    /// Container operations (create, start, kill, exec, delete, …) in progress.
    busy: usize,
    /// The pool lacks members and will refill once quiet.
    pending: bool,
    /// The quiet period being counted down.
    timer: Option<SpawnHandle>,
}

impl Supervisor {
    /// A container operation begins: no refill starts until it ends (and the quiet period
    /// after it has passed).
    pub(super) fn operation_begins(&mut self, ctx: &mut Context<Self>) {
        self.refill.busy += 1;
        if let Some(timer) = self.refill.timer.take() {
            ctx.cancel_future(timer);
        }
    }

    /// A container operation ended (whatever its outcome).
    pub(super) fn operation_ends(&mut self, ctx: &mut Context<Self>) {
        self.refill.busy = self.refill.busy.saturating_sub(1);
        self.arm_refill(ctx);
    }

    /// The pool gave members away: it refills at once when `missed` (a create found it
    /// without what it needed), else once the supervisor is quiet.
    pub(super) fn refill_pool(&mut self, ctx: &mut Context<Self>, missed: bool) {
        if missed {
            self.refill.pending = false;
            self.pool.refill(&self.config);
        } else {
            self.refill.pending = true;
            self.arm_refill(ctx);
        }
    }

    fn arm_refill(&mut self, ctx: &mut Context<Self>) {
        if !self.refill.pending || self.refill.busy > 0 {
            return;
        }
        if let Some(timer) = self.refill.timer.take() {
            ctx.cancel_future(timer);
        }
        self.refill.timer = Some(ctx.run_later(QUIET, |act, _| {
            act.refill.timer = None;
            if act.refill.busy == 0 && act.refill.pending {
                act.refill.pending = false;
                act.pool.refill(&act.config);
            }
        }));
    }
}
