//! The command line paddockd gives its helpers (`paddock-sandbox`, `paddock-gofer`):
//! `--id ID --control-fd N [--room PADDING]`. An internal interface, parsed by hand rather than pulling an
//! argument-parsing crate into a per-container process, and written here by both sides.

/// What paddockd tells a helper at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// The container's id (for a sandbox, its root container's), for messages and for a later
    /// paddockd to recognise the process.
    pub id: String,
    /// The listening control socket paddockd bound for it.
    pub control_fd: i32,
    /// Bytes of padding after the other arguments (`--room` and that many `-`): room for a
    /// pooled helper to rewrite its command line with a longer id once it is handed to a
    /// container (see [`crate::proctitle`]). 0: none.
    pub room: usize,
}

/// A command line that is not `--id ID --control-fd N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// An option without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A required option not given.
    #[error("{0} is required")]
    Missing(&'static str),
    /// `--control-fd` not a descriptor number.
    #[error("bad --control-fd {0:?}")]
    BadFd(String),
    /// Something else.
    #[error("unknown argument {0:?}")]
    Unknown(String),
}

impl HelperArgs {
    /// Parses the arguments after the program name.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, ArgsError> {
        let mut id = None;
        let mut control_fd = None;
        let mut room = 0;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--id" => id = Some(args.next().ok_or(ArgsError::MissingValue("--id"))?),
                "--control-fd" => {
                    let v = args.next().ok_or(ArgsError::MissingValue("--control-fd"))?;
                    control_fd = Some(v.parse().map_err(|_| ArgsError::BadFd(v))?);
                }
                "--room" => room = args.next().ok_or(ArgsError::MissingValue("--room"))?.len(),
                _ => return Err(ArgsError::Unknown(arg)),
            }
        }
        Ok(Self {
            id: id.ok_or(ArgsError::Missing("--id"))?,
            control_fd: control_fd.ok_or(ArgsError::Missing("--control-fd"))?,
            room,
        })
    }

    /// The arguments (after the program name) that [`HelperArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--id".into(), self.id.clone(), "--control-fd".into(), self.control_fd.to_string()];
        if self.room > 0 {
            args.extend(["--room".into(), "-".repeat(self.room)]);
        }
        args
    }

    /// The arguments a helper handed to container `id` shows (the room gone).
    pub fn for_container<'a>(id: &'a str, control_fd: &'a str) -> [&'a str; 4] {
        ["--id", id, "--control-fd", control_fd]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HelperArgs, ArgsError> {
        HelperArgs::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_and_rejects() {
        let args = parse("--id c --control-fd 3").unwrap();
        assert_eq!(args, HelperArgs { id: "c".into(), control_fd: 3, room: 0 });
        let roomy = HelperArgs { id: "pool-1".into(), control_fd: 3, room: 5 };
        assert_eq!(HelperArgs::parse(roomy.to_args().into_iter()).unwrap(), roomy);
        assert_eq!(HelperArgs::parse(args.to_args().into_iter()).unwrap(), args);
        assert_eq!(parse("--control-fd 3 --id c").unwrap(), args);
        assert_eq!(parse("--id c --control-fd x"), Err(ArgsError::BadFd("x".into())));
        assert_eq!(parse("--id c"), Err(ArgsError::Missing("--control-fd")));
        assert_eq!(parse("--control-fd 3"), Err(ArgsError::Missing("--id")));
        assert!(parse("--id c --control-fd 3 --bogus").unwrap_err().to_string().contains("--bogus"));
        assert_eq!(parse("--id"), Err(ArgsError::MissingValue("--id")));
    }
}
