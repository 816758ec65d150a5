//! A helper's command line, rewritten in place once it knows whose it is.
//!
//! paddockd keeps a few helpers started ahead of need (its pool) under a placeholder
//! `--id`; when one is handed to a container, the helper rewrites its own argument strings so
//! that `/proc/PID/cmdline` names that container, as a helper started for it would. Tools and
//! a later paddockd recognise a container's helpers by that command line. As `setproctitle`
//! does: the strings live in the process's own memory (the initial stack), and the kernel
//! reads `/proc/PID/cmdline` from there; the new line must fit in the old one's bytes, the
//! rest is zeroed (the kernel then shows the new arguments followed by empty ones).

/// Where this process's argument strings are, captured at start.
#[derive(Debug)]
pub struct Title {
    /// The first byte after `argv[0]`'s terminating NUL.
    start: usize,
    /// One past the last byte of the argument strings.
    end: usize,
}

/// Why a command line could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum TitleError {
    /// `/proc/self/stat` could not be read or has no argument range.
    #[error("reading the argument range from /proc/self/stat: {0}")]
    Stat(#[source] std::io::Error),
    /// The new arguments need more bytes than the old ones had.
    #[error("the new arguments need {need} bytes, the command line has {room}")]
    TooLong {
        /// The bytes needed.
        need: usize,
        /// The bytes there are.
        room: usize,
    },
}

impl Title {
    /// Finds this process's argument strings (fields 48 and 49 of `/proc/self/stat`). Call it
    /// at start, before anything hides `/proc` or forbids reading it.
    pub fn capture() -> Result<Self, TitleError> {
        let invalid =
            |what: &str| TitleError::Stat(std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()));
        let stat = std::fs::read("/proc/self/stat").map_err(TitleError::Stat)?;
        let close = stat.iter().rposition(|b| *b == b')').ok_or_else(|| invalid("no ')'"))?;
        let rest = std::str::from_utf8(&stat[close + 1..]).map_err(|_| invalid("not UTF-8"))?;
        // The fields after the command name start at field 3: fields 48 and 49 are the 46th
        // and 47th of them.
        let mut fields = rest.split_whitespace().skip(45);
        let mut next =
            || fields.next().and_then(|f| f.parse::<usize>().ok()).ok_or_else(|| invalid("no arg_start/arg_end"));
        let (arg_start, arg_end) = (next()?, next()?);
        let argv0 = std::env::args_os().next().map_or(0, |a| a.len());
        let start = arg_start.saturating_add(argv0 + 1);
        if arg_start == 0 || start > arg_end {
            return Err(invalid("an empty argument range"));
        }
        Ok(Self { start, end: arg_end })
    }

    /// Rewrites the arguments after the program name to `args`, zeroing what is left of the
    /// old ones. Only for a single-threaded process that no longer reads `std::env::args`
    /// (their strings change under it).
    pub fn set(&self, args: &[&str]) -> Result<(), TitleError> {
        let mut line = Vec::new();
        for arg in args {
            line.extend_from_slice(arg.as_bytes());
            line.push(0);
        }
        let room = self.end - self.start;
        if line.len() > room {
            return Err(TitleError::TooLong { need: line.len(), room });
        }
        // SAFETY: [start, end) is this process's own argument strings, on its initial stack,
        // mapped writable for its whole life (the kernel placed them there at execve); nothing
        // in this program holds a Rust reference to them (std reads them through raw pointers
        // only when std::env::args is called, which the caller no longer does), and the
        // writes stay within the range (line.len() <= room).
        unsafe {
            std::ptr::copy_nonoverlapping(line.as_ptr(), self.start as *mut u8, line.len());
            std::ptr::write_bytes((self.start + line.len()) as *mut u8, 0, room - line.len());
        }
        Ok(())
    }
}
