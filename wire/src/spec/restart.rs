//! A container's restart policy (docker's names), set by the annotation
//! [`RESTART_ANNOTATION`]: ctl checks it when `--restart` writes it into a spec, and paddockd
//! decides by it after every exit. The budgets that bound the restarts are paddockd's own
//! (`actors::restart`).

use std::fmt;

use crate::{ApiError, ExitStatus};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
