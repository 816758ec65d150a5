//! `ctl events`: paddockd writes the events as JSON lines into a pipe ctl hands it, and ctl
//! copies them to its stdout as they come. The request's reply comes when the stream ends.

use std::io::Write as _;

use wire::api::{Reply, Request};
use wire::client::Client;
use wire::events::Events;
use wire::FdSlot;

/// Prints the events of `ids` (all if empty); with `follow`, until paddockd stops or stdout
/// goes away.
pub fn print(client: &mut Client, ids: Vec<String>, follow: bool) -> anyhow::Result<i32> {
    let (reader, writer) = std::io::pipe()?;
    let copier = std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(reader);
        let stdout = std::io::stdout();
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let mut out = stdout.lock();
                    // The reader of our stdout is gone: dropping the pipe ends the stream.
                    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // Our copy of the write end goes with the request: the pipe ends when paddockd's does.
    let result = client.call(Request::Events(Events { ids, follow, sink: FdSlot::new(writer) }));
    let _ = copier.join();
    match result? {
        Reply::Done => Ok(0),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}
