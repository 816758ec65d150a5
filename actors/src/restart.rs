//! When to restart something that died, and when to give up: a container's restart policy
//! (docker's names), exponential backoff (reset after a healthy run) and an intensity limit,
//! as OTP supervisors have.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use wire::{ApiError, ExitStatus};

/// The annotation that sets a container's restart policy (`ctl run/create --restart` sets it).
pub const RESTART_ANNOTATION: &str = "dev.paddock.restart";

/// A container's restart policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart when the process exits with a non-zero status, at most `max` times (if given).
    OnFailure {
        /// The most restarts; `None`: no limit but the intensity limit.
        max: Option<u32>,
    },
    /// Restart whenever the process exits, unless a user stopped it (and then again when
    /// paddockd starts).
    Always,
    /// Restart whenever the process exits, unless a user stopped it.
    UnlessStopped,
}

/// Why a container is not restarted after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRestart {
    /// Its policy does not ask for it (no policy, a clean exit under on-failure, a user stop):
    /// nothing to report.
    NotWanted,
    /// The policy's budget is spent: the reason, for the `restart-gave-up` event.
    GaveUp(String),
}

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:N`, `always`, `unless-stopped`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::invalid_argument(format!(
                "restart policy {text:?} {why} (expected no, on-failure[:N], always or unless-stopped)"
            ))
        };
        match text {
            "no" | "" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure { max: None }),
            _ => match text.strip_prefix("on-failure:") {
                Some(n) => match n.parse::<u32>() {
                    Ok(max) => Ok(Self::OnFailure { max: Some(max) }),
                    Err(_) => Err(bad("has an invalid count")),
                },
                None => Err(bad("is unknown")),
            },
        }
    }

    /// The policy a spec asks for (annotation `dev.paddock.restart`).
    pub fn of(spec: &oci_spec::runtime::Spec) -> Result<Self, ApiError> {
        match spec.annotations().as_ref().and_then(|a| a.get(RESTART_ANNOTATION)) {
            Some(text) => Self::parse(text),
            None => Ok(Self::No),
        }
    }

    /// Whether an exit with `status` leads to restart number `restarts + 1`.
    pub fn after_exit(&self, status: ExitStatus, stopped_by_user: bool, restarts: u32) -> Result<(), NoRestart> {
        match self {
            Self::No => Err(NoRestart::NotWanted),
            _ if stopped_by_user => Err(NoRestart::NotWanted),
            Self::OnFailure { .. } if status.code() == 0 => Err(NoRestart::NotWanted),
            Self::OnFailure { max: Some(max) } if restarts >= *max => {
                Err(NoRestart::GaveUp(format!("{self}: {restarts} restarts done")))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::OnFailure { max: None } => f.write_str("on-failure"),
            Self::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            Self::Always => f.write_str("always"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

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
    fn policies_parse_and_decide() {
        for text in ["no", "on-failure", "on-failure:3", "always", "unless-stopped"] {
            assert_eq!(RestartPolicy::parse(text).unwrap().to_string(), text);
        }
        for bad in ["sometimes", "on-failure:x", "on-failure:-1", "always:2"] {
            assert!(RestartPolicy::parse(bad).unwrap_err().message.contains(bad));
        }
        let fail = ExitStatus::Exited(1);
        let ok = ExitStatus::Exited(0);
        let three = RestartPolicy::OnFailure { max: Some(3) };
        assert_eq!(three.after_exit(fail, false, 2), Ok(()));
        assert!(matches!(three.after_exit(fail, false, 3), Err(NoRestart::GaveUp(_))));
        assert_eq!(three.after_exit(ok, false, 0), Err(NoRestart::NotWanted));
        assert_eq!(three.after_exit(fail, true, 0), Err(NoRestart::NotWanted));
        assert_eq!(RestartPolicy::Always.after_exit(ok, false, 100), Ok(()));
        assert_eq!(
            RestartPolicy::UnlessStopped.after_exit(ExitStatus::Signaled(9), true, 0),
            Err(NoRestart::NotWanted)
        );
        assert_eq!(RestartPolicy::No.after_exit(fail, false, 0), Err(NoRestart::NotWanted));
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
