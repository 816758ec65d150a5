//! Signal names and numbers as users type them: `KILL`, `SIGKILL`, `kill`, `9`, `RTMIN+2`.

/// A signal name or number that names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

/// Parses a signal given by name (with or without `SIG`, any case) or number.
pub fn parse_signal(text: &str) -> Result<i32, UnknownSignal> {
    let bad = || UnknownSignal(text.to_string());
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 =
            if rest.is_empty() { 0 } else { rest.strip_prefix('+').and_then(|n| n.parse().ok()).ok_or_else(bad)? };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() { Ok(n) } else { Err(bad()) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 =
            if rest.is_empty() { 0 } else { rest.strip_prefix('-').and_then(|n| n.parse().ok()).ok_or_else(bad)? };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() { Ok(n) } else { Err(bad()) };
    }
    format!("SIG{name}").parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for s in ["KILL", "SIGKILL", "kill", "sigkill", "9"] {
            assert_eq!(parse_signal(s).unwrap(), libc::SIGKILL, "{s}");
        }
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("USR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), libc::SIGRTMAX());
        for bad in ["", "0", "65", "-1", "NOPE", "SIG", "RTMIN+99", "9x"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
