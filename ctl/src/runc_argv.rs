//! runc's command-line grammar, brought to clap's.
//!
//! runc parses with urfave/cli (v1), which takes every long flag with one dash or two
//! (`-no-subreaper`, as containerd's shim passes it, is `--no-subreaper`) and a boolean flag
//! as `--flag`, `--flag=true` or `--flag=false`. clap reads a single dash as a cluster of short
//! flags and refuses a value on a boolean. So before clap sees the arguments, each one that is
//! runc's form of one of ctl's flags is rewritten to clap's: `-name` to `--name` when `name`
//! is a long flag of the command at that point, `--bool=true` to `--bool`, `--bool=false` to
//! nothing. The grammar comes from clap's own description of ctl, so it cannot drift from the
//! flags ctl has.
//!
//! Rewriting stops where urfave/cli stops reading flags: at `--` and at the command's first
//! positional argument (after a container id come the container's own arguments, `-root`
//! among them perhaps, which are not ctl's).

use std::ffi::OsString;

use clap::{ArgAction, Command};

/// What a long flag is, for the rewriting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Takes no value (or an optional one): `--flag`.
    Switch,
    /// A boolean switch: `--flag=true|false` allowed.
    Bool,
    /// Takes a value: `--flag value` or `--flag=value`.
    Value,
}

/// The long flags (and short ones taking values) in force at one point of the command line.
struct Scope {
    longs: Vec<(String, Kind)>,
    shorts_with_value: Vec<char>,
}

impl Scope {
    fn of(command: &Command, inherited: &[(String, Kind)]) -> Self {
        let mut longs: Vec<(String, Kind)> = inherited.to_vec();
        let mut shorts_with_value = Vec::new();
        for arg in command.get_arguments() {
            let kind = match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Kind::Bool,
                ArgAction::Count
                | ArgAction::Help
                | ArgAction::HelpShort
                | ArgAction::HelpLong
                | ArgAction::Version => Kind::Switch,
                _ if arg.get_num_args().is_some_and(|n| n.min_values() == 0) => Kind::Switch,
                _ => Kind::Value,
            };
            for long in arg.get_long_and_visible_aliases().into_iter().flatten() {
                longs.push((long.to_string(), kind));
            }
            if kind == Kind::Value {
                shorts_with_value.extend(arg.get_short_and_visible_aliases().into_iter().flatten());
            }
        }
        Self { longs, shorts_with_value }
    }

    fn long(&self, name: &str) -> Option<Kind> {
        self.longs.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }
}

/// The global flags of `command` (those marked `global`), which every subcommand takes too.
fn globals(command: &Command) -> Vec<(String, Kind)> {
    let all = Scope::of(command, &[]);
    command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .flat_map(|a| a.get_long_and_visible_aliases().into_iter().flatten())
        .filter_map(|long| all.long(long).map(|k| (long.to_string(), k)))
        .collect()
}

/// `args` (program name first) with runc's forms of ctl's flags rewritten as clap reads them.
pub fn normalize(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let inherited = globals(command);
    let mut scope = Scope::of(command, &[]);
    let mut subcommand: Option<&Command> = None;
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            break;
        }
        if let Some(flag) = long_form(&text, &scope) {
            match flag {
                Rewritten::Keep(flag, takes_next) => {
                    out.push(flag.into());
                    if takes_next {
                        if let Some(value) = iter.next() {
                            out.push(value);
                        }
                    }
                }
                Rewritten::Drop => {}
            }
            continue;
        }
        if let Some(short) = text.strip_prefix('-').filter(|s| s.chars().count() == 1) {
            let takes_next = short.chars().next().is_some_and(|c| scope.shorts_with_value.contains(&c));
            out.push(arg);
            if takes_next {
                if let Some(value) = iter.next() {
                    out.push(value);
                }
            }
            continue;
        }
        if text.starts_with('-') {
            // Clustered short flags (`-it`), or a value clap will judge: as it is.
            out.push(arg);
            continue;
        }
        // A positional argument: the subcommand's name, or the first operand of one.
        match subcommand {
            None => {
                let found =
                    command.get_subcommands().find(|c| c.get_name() == text || c.get_all_aliases().any(|a| a == text));
                out.push(arg);
                match found {
                    Some(sub) => {
                        subcommand = Some(sub);
                        scope = Scope::of(sub, &inherited);
                    }
                    None => break,
                }
            }
            Some(_) => {
                out.push(arg);
                break;
            }
        }
    }
    out.extend(iter);
    out
}

/// A flag argument, rewritten.
enum Rewritten {
    /// Pass this on; `true` if the next argument is its value.
    Keep(String, bool),
    /// `--bool=false`: as if absent.
    Drop,
}

/// The clap form of `text` if it is one of runc's forms of a long flag in `scope`.
fn long_form(text: &str, scope: &Scope) -> Option<Rewritten> {
    let bare = text.strip_prefix("--").or_else(|| text.strip_prefix('-'))?;
    let (name, value) = match bare.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (bare, None),
    };
    // `-x` is a short flag, never a long one; `--x` is clap's already.
    if name.chars().count() < 2 {
        return None;
    }
    let kind = scope.long(name)?;
    Some(match (kind, value) {
        (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("true") || v == "1" => {
            Rewritten::Keep(format!("--{name}"), false)
        }
        (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("false") || v == "0" => Rewritten::Drop,
        (Kind::Value, None) => Rewritten::Keep(format!("--{name}"), true),
        (_, Some(v)) => Rewritten::Keep(format!("--{name}={v}"), false),
        (_, None) => Rewritten::Keep(format!("--{name}"), false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn norm(args: &[&str]) -> Vec<String> {
        let command = crate::args::CtlArgs::command();
        let args = std::iter::once("ctl").chain(args.iter().copied()).map(OsString::from).collect();
        normalize(&command, args).into_iter().skip(1).map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&["restore", "-no-subreaper", "-bundle", "/b", "-detach", "id"]),
            ["restore", "--no-subreaper", "--bundle", "/b", "--detach", "id"]
        );
        assert_eq!(
            norm(&["-root", "/r", "-log-format", "json", "list"]),
            ["--root", "/r", "--log-format", "json", "list"]
        );
    }

    #[test]
    fn booleans_take_true_and_false() {
        assert_eq!(norm(&["--systemd-cgroup=false", "--debug=true", "list"]), ["--debug", "list"]);
        assert_eq!(norm(&["delete", "--force=true", "x"]), ["delete", "--force", "x"]);
    }

    #[test]
    fn values_stay_with_their_flags_and_short_flags_stay_short() {
        assert_eq!(
            norm(&["exec", "-p", "/proc.json", "-d", "--pid-file=/p", "id"]),
            ["exec", "-p", "/proc.json", "-d", "--pid-file=/p", "id"]
        );
        // A value that looks like a flag is a value.
        assert_eq!(norm(&["--log", "-root", "list"]), ["--log", "-root", "list"]);
    }

    #[test]
    fn the_containers_own_arguments_are_left_alone() {
        assert_eq!(norm(&["exec", "id", "ls", "-root", "-la"]), ["exec", "id", "ls", "-root", "-la"]);
        assert_eq!(norm(&["exec", "--", "-root"]), ["exec", "--", "-root"]);
    }

    /// Every argument vector that podman (conmon), containerd's runc shim (through ctr) and
    /// Docker were recorded passing to their runtime (tests/data/runtime-argv) parses.
    #[test]
    fn every_recorded_client_argument_vector_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/runtime-argv");
        let mut count = 0;
        for client in ["podman", "containerd", "docker"] {
            let text = std::fs::read_to_string(dir.join(format!("{client}.jsonl"))).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let argv: Vec<String> = serde_json::from_str(line).unwrap();
                let command = crate::args::CtlArgs::command();
                let args = std::iter::once("ctl".to_string()).chain(argv.iter().cloned()).map(OsString::from).collect();
                let parsed = crate::args::CtlArgs::try_parse_from(normalize(&command, args));
                if let Err(e) = parsed {
                    // `--help` and `--version` end parsing as clap's "errors" that print and exit 0.
                    assert!(
                        matches!(
                            e.kind(),
                            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                        ),
                        "{client}: {argv:?}: {e}"
                    );
                }
                count += 1;
            }
        }
        assert!(count > 100, "only {count} recorded vectors");
    }
}
