//! `ctl events`: paddockd writes the events as JSON lines into a pipe ctl hands it, and ctl
//! copies them to its stdout as they come. The request's reply comes when the stream ends.
//!
//! runc's forms, `--stats` and `--interval`, print a container's resource usage (read by
//! paddockd from its cgroups) and its OOM kills, in runc's `{"type","id","data"}` lines.

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

/// paddockd's stats JSON in runc's shape: without the v2 figures it adds for containerd's shim
/// on a cgroup v2 host, which runc's output does not have.
fn runc_stats(json: &str) -> anyhow::Result<serde_json::Value> {
    let mut data: serde_json::Value = serde_json::from_str(json)?;
    if let Some(object) = data.as_object_mut() {
        object.shift_remove(wire::api::STATS_CGROUP2);
    }
    Ok(data)
}

/// runc's `events --stats`: one stats line per container.
pub fn print_stats(client: &mut Client, ids: &[String]) -> anyhow::Result<i32> {
    anyhow::ensure!(!ids.is_empty(), "events --stats needs a container id");
    for id in ids {
        let state = client.state(id)?;
        let data = runc_stats(&client.stats(&state.id)?)?;
        println!("{}", serde_json::json!({"type": "stats", "id": state.id, "data": data}));
    }
    Ok(0)
}

/// runc's `events --interval D ID`: a stats line every D and an `oom` line per OOM kill, until
/// the container stops (or is deleted).
pub fn stream_stats(root: &std::path::Path, ids: &[String], every: &str) -> anyhow::Result<i32> {
    let [id] = ids else { anyhow::bail!("events --interval takes exactly one container id") };
    let every = humantime::parse_duration(every).map_err(|e| anyhow::anyhow!("--interval {every:?}: {e}"))?;
    anyhow::ensure!(!every.is_zero(), "--interval must be longer than zero");
    let mut client = wire::autostart::connect_or_start(root)?;
    let id = client.state(id)?.id;
    // OOM kills come from paddockd's event stream, on a connection of its own; the retained
    // history it starts with is what happened before (up to `seen`).
    let seen = last_seq(&mut client, &id)?;
    let mut follower = wire::autostart::connect_or_start(root)?;
    let (reader, writer) = std::io::pipe()?;
    let watched = id.clone();
    std::thread::spawn(move || {
        let _ = follower.call(Request::Events(Events { ids: vec![watched], follow: true, sink: FdSlot::new(writer) }));
    });
    let oom_id = id.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(reader)).map_while(Result::ok) {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["type"] == "oom" && event["seq"].as_u64().is_some_and(|seq| seq > seen) {
                println!("{}", serde_json::json!({"type": "oom", "id": oom_id}));
            }
        }
    });
    loop {
        match client.stats(&id) {
            Ok(json) => {
                let data = runc_stats(&json)?;
                println!("{}", serde_json::json!({"type": "stats", "id": id, "data": data}));
            }
            Err(e) if matches!(e.kind, wire::ErrorKind::NotFound | wire::ErrorKind::InvalidStatus) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(every);
    }
}

/// The sequence number of the last retained event of container `id` (0 if none).
fn last_seq(client: &mut Client, id: &str) -> anyhow::Result<u64> {
    let (mut reader, writer) = std::io::pipe()?;
    let collector = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut text);
        text
    });
    client.call(Request::Events(Events { ids: vec![id.to_string()], follow: false, sink: FdSlot::new(writer) }))?;
    let text = collector.join().unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
        .max()
        .unwrap_or(0))
}
