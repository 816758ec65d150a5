//! The sandbox's command line: an internal interface between paddockd and the sandbox, parsed
//! by hand to keep this per-sandbox process small.

/// What paddockd tells the sandbox at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxArgs {
    /// The sandbox's id (its root container's id).
    pub id: String,
    /// The listening control socket paddockd bound for it.
    pub control_fd: i32,
}

impl SandboxArgs {
    /// Parses the arguments after the program name.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut id = None;
        let mut control_fd = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--id" => id = Some(args.next().ok_or("--id needs a value")?),
                "--control-fd" => {
                    let v = args.next().ok_or("--control-fd needs a value")?;
                    control_fd = Some(v.parse().map_err(|_| format!("bad --control-fd {v:?}"))?);
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

    #[test]
    fn parse_args() {
        let a = SandboxArgs::parse(["--id", "x", "--control-fd", "3"].map(String::from).into_iter()).unwrap();
        assert_eq!(a, SandboxArgs { id: "x".into(), control_fd: 3 });
        assert!(SandboxArgs::parse(["--id", "x"].map(String::from).into_iter()).is_err());
        assert!(SandboxArgs::parse(["--control-fd", "z", "--id", "x"].map(String::from).into_iter()).is_err());
    }
}
