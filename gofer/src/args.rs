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

impl GoferArgs {
    /// Parses the arguments after the program name.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut id = None;
        let mut control_fd = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--id" => id = Some(args.next().ok_or("--id needs a value")?),
                "--control-fd" => {
                    let v = args.next().ok_or("--control-fd needs a value")?;
                    control_fd = Some(v.parse::<i32>().map_err(|_| format!("bad --control-fd {v:?}"))?);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Self { id: id.ok_or("--id is required")?, control_fd: control_fd.ok_or("--control-fd is required")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<GoferArgs, String> {
        GoferArgs::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse("--id c --control-fd 3").unwrap(), GoferArgs { id: "c".into(), control_fd: 3 });
        assert!(parse("--id c --control-fd x").is_err());
        assert!(parse("--id c").unwrap_err().contains("--control-fd"));
        assert!(parse("--id c --control-fd 3 --bogus").unwrap_err().contains("--bogus"));
        assert!(parse("--id").is_err());
    }
}
