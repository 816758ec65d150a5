//! The gofer's command line: an internal interface between paddockd and the gofer, parsed by
//! hand rather than pulling an argument-parsing crate into a per-container process.

/// What paddockd tells the gofer at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoferArgs {
    /// The container's id, for messages.
    pub id: String,
    /// The listening control socket.
    pub control_fd: i32,
}

/// What is wrong with the gofer's command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// An option was given without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// An option's value does not parse.
    #[error("bad {option} {value:?}")]
    BadValue {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
    },
    /// An argument the gofer does not know.
    #[error("unknown argument {0:?}")]
    Unknown(String),
    /// A required option is missing.
    #[error("{0} is required")]
    Required(&'static str),
}

impl GoferArgs {
    /// Parses the arguments after the program name.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, ArgsError> {
        let mut id = None;
        let mut control_fd = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--id" => id = Some(args.next().ok_or(ArgsError::MissingValue("--id"))?),
                "--control-fd" => {
                    let v = args.next().ok_or(ArgsError::MissingValue("--control-fd"))?;
                    control_fd =
                        Some(v.parse::<i32>().map_err(|_| ArgsError::BadValue { option: "--control-fd", value: v })?);
                }
                _ => return Err(ArgsError::Unknown(arg)),
            }
        }
        Ok(Self {
            id: id.ok_or(ArgsError::Required("--id"))?,
            control_fd: control_fd.ok_or(ArgsError::Required("--control-fd"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<GoferArgs, ArgsError> {
        GoferArgs::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse("--id c --control-fd 3").unwrap(), GoferArgs { id: "c".into(), control_fd: 3 });
        assert_eq!(
            parse("--id c --control-fd x"),
            Err(ArgsError::BadValue { option: "--control-fd", value: "x".into() })
        );
        assert_eq!(parse("--id c"), Err(ArgsError::Required("--control-fd")));
        assert_eq!(parse("--id c --control-fd 3 --bogus"), Err(ArgsError::Unknown("--bogus".into())));
        assert_eq!(parse("--id"), Err(ArgsError::MissingValue("--id")));
        assert_eq!(ArgsError::Unknown("--bogus".into()).to_string(), "unknown argument \"--bogus\"");
    }
}
