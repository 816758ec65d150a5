//! ctl: paddock's command-line client. See `ctl --help`.

fn main() {
    std::process::exit(supervisor::cli::main());
}
