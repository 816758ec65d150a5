//! When to restart something that died, and when to give up: a container's restart policy
//! (docker's names), exponential backoff (reset after a healthy run) and an intensity limit,
//! as OTP supervisors have.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The policy itself is the wire's: ctl parses it too, and links no actor runtime.
pub use wire::spec::restart::{NoRestart, RestartPolicy, RESTART_ANNOTATION};

/// The limits of every container's restart budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimits {
    /// More than this many restarts ...
    pub intensity: usize,
    /// ... within this period, and the policy gives up.
    pub period: Duration,
}

impl Default for RestartLimits {
    fn default() -> Self {
        Self { intensity: 5, period: Duration::from_secs(60) }
    }
}

/// A restart budget.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    /// At most this many restarts ...
    pub max_restarts: usize,
    /// ... within this period; one more and we give up.
    pub period: Duration,
    /// The first delay.
    pub initial_delay: Duration,
    /// The delay doubles up to this.
    pub max_delay: Duration,
    /// A run this long counts as healthy: the delay starts over.
    pub reset_after: Duration,
    delay: Duration,
    recent: VecDeque<Instant>,
    last_start: Option<Instant>,
}

impl RestartBudget {
    /// A budget with these limits.
    pub fn new(
        max_restarts: usize,
        period: Duration,
        initial_delay: Duration,
        max_delay: Duration,
        reset_after: Duration,
    ) -> Self {
        Self {
            max_restarts,
            period,
            initial_delay,
            max_delay,
            reset_after,
            delay: initial_delay,
            recent: VecDeque::new(),
            last_start: None,
        }
    }

    /// The budget of a gofer: 5 restarts within a minute, 100 ms doubling to 30 s, reset after
    /// 10 s of healthy running.
    pub fn gofer() -> Self {
        Self::new(
            5,
            Duration::from_secs(60),
            Duration::from_millis(100),
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
    }

    /// A container's budget: at most `limits.intensity` restarts within `limits.period`, 100 ms
    /// doubling to 30 s, reset after 10 s of healthy running.
    pub fn container(limits: RestartLimits) -> Self {
        Self::new(
            limits.intensity,
            limits.period,
            Duration::from_millis(100),
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
    }

    /// Records that the thing (re)started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    /// The thing died at `now`: how long to wait before restarting it, or `None` to give up.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        if self.last_start.is_some_and(|s| now.duration_since(s) >= self.reset_after) {
            self.delay = self.initial_delay;
        }
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.period) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts {
            return None;
        }
        self.recent.push_back(now);
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max_delay);
        Some(delay)
    }

    /// How many restarts fall within the current period.
    pub fn recent(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_then_gives_up() {
        let mut b = RestartBudget::new(3, Duration::from_secs(60), ms(100), ms(300), Duration::from_secs(10));
        let t = Instant::now();
        b.started(t);
        assert_eq!(b.next_delay(t + ms(1)), Some(ms(100)));
        b.started(t + ms(101));
        assert_eq!(b.next_delay(t + ms(102)), Some(ms(200)));
        b.started(t + ms(302));
        assert_eq!(b.next_delay(t + ms(303)), Some(ms(300)), "capped");
        b.started(t + ms(603));
        assert_eq!(b.next_delay(t + ms(604)), None, "a fourth restart within the period");
    }

    #[test]
    fn a_healthy_run_resets_the_delay_and_old_restarts_expire() {
        let mut b =
            RestartBudget::new(2, Duration::from_secs(60), ms(100), Duration::from_secs(30), Duration::from_secs(10));
        let t = Instant::now();
        b.started(t);
        assert_eq!(b.next_delay(t + ms(5)), Some(ms(100)));
        b.started(t + ms(105));
        // Healthy for 20 s: back to the first delay.
        assert_eq!(b.next_delay(t + Duration::from_secs(20)), Some(ms(100)));
        b.started(t + Duration::from_secs(21));
        // Two restarts in the last minute: the third is refused...
        assert_eq!(b.next_delay(t + Duration::from_secs(22)), None);
        // ...but once they are older than the period, it is allowed again.
        assert!(b.next_delay(t + Duration::from_secs(90)).is_some());
    }
}
