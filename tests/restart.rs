//! Restart policies: on-failure with a count, always (until the intensity limit or a user's
//! stop), the backoff between restarts as the events show it, and bad policies refused.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::SystemTime;

use harness::{stderr, unique, Bundle, Paddock};

/// The events of container `id` from `ctl events --follow`, until (and with) the first for
/// which `last` holds.
fn story_until(p: &Paddock, id: &str, last: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    let mut follower =
        p.command().args(["events", "--follow", id]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut story = Vec::new();
    for line in BufReader::new(follower.stdout.take().unwrap()).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = last(&event);
        story.push(event);
        if done {
            break;
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    story
}

fn kinds(story: &[serde_json::Value]) -> Vec<&str> {
    story.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn time(event: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(event["time"].as_str().unwrap()).unwrap()
}

#[test]
fn on_failure_restarts_n_times_with_backoff_then_gives_up() {
    let p = Paddock::new();
    let id = unique("flaky");
    let out = p.ctl(&["run", "--name", &id, "--restart", "on-failure:3", "--", "sh", "-c", "echo try; exit 1"]);
    // A foreground run returns once the container stopped for good, with its last status.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "try\ntry\ntry\ntry\n");
    let story = story_until(&p, &id, |e| e["type"] == "restart-gave-up");
    assert_eq!(
        kinds(&story),
        [
            "created",
            "started",
            "exited",
            "restart-scheduled",
            "started",
            "exited",
            "restart-scheduled",
            "started",
            "exited",
            "restart-scheduled",
            "started",
            "exited",
            "restart-gave-up"
        ]
    );
    let scheduled: Vec<&serde_json::Value> = story.iter().filter(|e| e["type"] == "restart-scheduled").collect();
    let delays: Vec<u64> = scheduled.iter().map(|e| e["delayMs"].as_u64().unwrap()).collect();
    assert_eq!(delays, [100, 200, 400], "the backoff doubles");
    assert_eq!(scheduled.iter().map(|e| e["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    // Each restart came no sooner than its delay after the exit.
    for (i, e) in story.iter().enumerate().filter(|(_, e)| e["type"] == "restart-scheduled") {
        let exited = time(&story[i - 1]);
        let started = time(&story[i + 1]);
        let waited = started.duration_since(exited).unwrap().as_millis() as u64;
        assert!(waited >= e["delayMs"].as_u64().unwrap(), "restarted after {waited} ms, before its delay: {e}");
        assert!(story[i + 1]["restarts"].as_u64().unwrap() == e["attempt"].as_u64().unwrap());
    }
    assert!(story.iter().filter(|e| e["type"] == "exited").all(|e| e["exitStatus"] == 1));
    let state: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["inspect", &id])).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["restart"]["count"], 3);
    assert_eq!(state["restart"]["lastExit"], 1);
    assert!(state["restart"]["gaveUp"].as_str().unwrap().contains("on-failure:3"), "{state}");
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 1);
    p.ctl_ok(&["delete", &id]);
}

#[test]
fn always_restarts_after_a_clean_exit_until_the_intensity_limit() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    bundle.annotate("dev.paddock.restart", "always");
    let id = unique("always");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let story = story_until(&p, &id, |e| e["type"] == "restart-gave-up");
    let started = story.iter().filter(|e| e["type"] == "started").count();
    // The default intensity: more than 5 restarts within 60 s is too many.
    assert_eq!(started, 6, "{:?}", kinds(&story));
    assert!(story.iter().filter(|e| e["type"] == "exited").all(|e| e["exitStatus"] == 0));
    let gave_up = story.last().unwrap();
    assert!(gave_up["reason"].as_str().unwrap().contains("intensity"), "{gave_up}");
    assert_eq!(gave_up["restarts"], 5);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 0);
    p.ctl_ok(&["delete", &id]);
}

#[test]
fn a_users_stop_ends_the_restarts_and_keeps_what_the_container_wrote() {
    let p = Paddock::new();
    let id = unique("stopper");
    // The embedded default writes to a memory overlay, which a restart keeps.
    p.ctl_detached(&[
        "run",
        "-d",
        "--name",
        &id,
        "--restart",
        "unless-stopped",
        "--",
        "sh",
        "-c",
        // The shell is PID 1 of the container: it ends on TERM only with a handler for it.
        "echo . >> /etc/runs; if [ $(wc -l < /etc/runs) -ge 3 ]; then trap 'exit 143' TERM; sleep 1000 & wait; fi; exit 0",
    ]);
    // Two restarts, then it stays up.
    let story = story_until(&p, &id, |e| e["type"] == "started" && e["restarts"] == 2);
    assert_eq!(kinds(&story).iter().filter(|k| **k == "exited").count(), 2);
    assert_eq!(p.state(&id)["status"], "running");
    p.ctl_ok(&["kill", &id, "TERM"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 143);
    let state = p.state(&id);
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["restart"]["count"], 2);
    assert!(state["restart"]["gaveUp"].is_null(), "a user's stop is not a policy giving up: {state}");
    p.ctl_ok(&["delete", &id]);
}

#[test]
fn a_bad_policy_is_refused_and_creates_nothing() {
    let p = Paddock::new();
    let id = unique("badpolicy");
    let out = p.ctl(&["run", "--name", &id, "--restart", "sometimes", "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sometimes"), "{}", stderr(&out));
    let bundle = Bundle::busybox(&["true"]);
    bundle.annotate("dev.paddock.restart", "on-failure:many");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("on-failure:many"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    harness::assert_nothing_left(&id);
}
