//! paddockd: the supervisor daemon. See `paddockd --help`.

fn main() {
    std::process::exit(supervisor::daemon::main());
}
