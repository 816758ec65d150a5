//! `/proc/<pid>/stat`, parsed in one place.
//!
//! The command name (field 2) is in parentheses and may itself contain spaces, parentheses
//! and bytes that are not UTF-8, so the fields after it are counted from the *last* `)`.

use std::os::fd::BorrowedFd;

/// The fields of `/proc/<pid>/stat` paddock reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (field 2), lossily decoded.
    pub comm: String,
    /// The state letter (field 3): `R`, `S`, `D`, `Z`, …
    pub state: u8,
    /// The parent's pid (field 4), in the PID namespace of the procfs read.
    pub ppid: i32,
    /// The start time in clock ticks after boot (field 22): with the pid, it identifies a
    /// process for good.
    pub start_time: u64,
}

/// A `stat` file that does not have the kernel's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed /proc/PID/stat")]
pub struct MalformedStat;

impl From<MalformedStat> for std::io::Error {
    fn from(e: MalformedStat) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

impl ProcStat {
    /// Parses the contents of a `stat` file.
    pub fn parse(stat: &[u8]) -> Result<Self, MalformedStat> {
        let open = stat.iter().position(|b| *b == b'(').ok_or(MalformedStat)?;
        let close = stat.iter().rposition(|b| *b == b')').ok_or(MalformedStat)?;
        let comm = stat.get(open + 1..close).ok_or(MalformedStat)?;
        let rest = std::str::from_utf8(&stat[close + 1..]).map_err(|_| MalformedStat)?;
        let mut fields = rest.split_whitespace();
        let state = match fields.next().map(str::as_bytes) {
            Some(&[letter]) => letter,
            _ => return Err(MalformedStat),
        };
        let ppid = fields.next().and_then(|f| f.parse().ok()).ok_or(MalformedStat)?;
        // Fields 5 to 21 are skipped: the start time is the 18th after the parent.
        let start_time = fields.nth(17).and_then(|f| f.parse().ok()).ok_or(MalformedStat)?;
        Ok(Self { comm: String::from_utf8_lossy(comm).into_owned(), state, ppid, start_time })
    }

    /// Reads process `pid`'s from `/proc`.
    pub fn read(pid: i32) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read(format!("/proc/{pid}/stat"))?)?)
    }

    /// Reads process `pid`'s from the procfs `proc` is a descriptor of (a PID namespace's
    /// own, where `pid` is a pid of that namespace).
    pub fn read_at(proc: BorrowedFd<'_>, pid: i32) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let file =
            rustix::fs::openat(proc, format!("{pid}/stat").as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut bytes)?;
        Ok(Self::parse(&bytes)?)
    }

    /// Whether the process has ended and waits to be reaped (or is being reaped).
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_around_a_hostile_command_name() {
        let mut line = b"42 (a) b) (\xff c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0".to_vec();
        line.extend_from_slice(b" 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
        let stat = ProcStat::parse(&line).unwrap();
        assert_eq!(stat.comm, "a) b) (\u{fffd} c");
        assert_eq!((stat.state, stat.ppid, stat.start_time), (b'S', 7, 123456));
        assert!(!stat.is_zombie());
    }

    #[test]
    fn refuses_what_is_not_a_stat_line() {
        assert_eq!(ProcStat::parse(b""), Err(MalformedStat));
        assert_eq!(ProcStat::parse(b"1 (x) S 0"), Err(MalformedStat));
        assert_eq!(ProcStat::parse(b"1 (x) SS 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"), Err(MalformedStat));
    }

    #[test]
    fn our_own_process() {
        let me = ProcStat::read(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id() as i32);
        assert!(me.start_time > 0);
        let proc = std::fs::File::open("/proc").unwrap();
        let again = ProcStat::read_at(std::os::fd::AsFd::as_fd(&proc), std::process::id() as i32).unwrap();
        assert_eq!(again.start_time, me.start_time);
    }
}
