//! OCI hooks: every stage in its place in the lifecycle, with the state on stdin, its own args,
//! env and namespaces; failures that fail create or start (and leave nothing behind), failures
//! that are only warnings, and timeouts.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use harness::{assert_nothing_left, eventually, processes_mentioning, stderr, unique, Bundle, Paddock};
use serde_json::{json, Value};

/// A hook script: appends `stage|$HOOK_ENV|$HOME|its mount namespace|the state it read` to the
/// log file it is given.
const SCRIPT: &str = r#"#!/bin/sh
state=$(cat)
printf '%s|%s|%s|%s|%s\n' "$1" "${HOOK_ENV:-}" "${HOME:-none}" "$(readlink /proc/self/ns/mnt)" "$state" >> "$2"
"#;

/// One line of the hooks' log.
#[derive(Debug)]
struct Logged {
    stage: String,
    env: String,
    home: String,
    mnt_ns: String,
    state: Value,
}

/// Where a logging hook runs and finds its files.
#[derive(Clone, Copy)]
enum Where {
    Host,
    Container,
    ContainerPath,
}

/// A bundle whose hooks log into a directory the container also sees, at `/hooklog`.
struct HookedBundle {
    bundle: Bundle,
    log_dir: tempfile::TempDir,
    script: PathBuf,
}

impl HookedBundle {
    fn new(args: &[&str]) -> Self {
        let bundle = Bundle::busybox(args);
        let log_dir = tempfile::Builder::new().prefix("pdk-hooklog-").tempdir_in("/tmp").unwrap();
        let script = log_dir.path().join("hook.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // startContainer's path resolves in the container: the script is in its rootfs too.
        let inside = bundle.rootfs().join("hook.sh");
        std::fs::write(&inside, SCRIPT).unwrap();
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755)).unwrap();
        bundle.add_bind(&log_dir.path().to_string_lossy(), "/hooklog", &["rw"]);
        Self { bundle, log_dir, script }
    }

    fn host_log(&self) -> PathBuf {
        self.log_dir.path().join("log")
    }

    /// A hook running the script. `Where::Host`: a runtime-namespace hook; `Where::Container`
    /// runs in the container's mount namespace before its pivot, where paths resolve on the
    /// host, as runc runs it (createContainer), and `Where::ContainerPath` in the container's
    /// mount tree (startContainer).
    fn logging_hook(&self, stage: &str, place: Where) -> Value {
        let host_script = self.script.to_string_lossy().into_owned();
        let host_log = self.host_log().to_string_lossy().into_owned();
        let (path, log) = match place {
            Where::Host => (host_script, host_log),
            Where::Container => (host_script, host_log),
            Where::ContainerPath => ("/hook.sh".to_string(), "/hooklog/log".to_string()),
        };
        json!({
            "path": path,
            "args": ["hook.sh", stage, log],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOK_ENV={stage}-env")],
            "timeout": 30
        })
    }

    fn set_hooks(&self, hooks: Value) {
        self.bundle.edit_config(|c| c["hooks"] = hooks);
    }

    fn logged(&self) -> Vec<Logged> {
        std::fs::read_to_string(self.host_log())
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut parts = line.splitn(5, '|');
                let mut next = || parts.next().unwrap_or_default().to_string();
                let (stage, env, home, mnt_ns) = (next(), next(), next(), next());
                let state = serde_json::from_str(&next()).unwrap_or_else(|e| panic!("bad state in {line:?}: {e}"));
                Logged { stage, env, home, mnt_ns, state }
            })
            .collect()
    }

    fn stages(&self) -> Vec<String> {
        self.logged().into_iter().map(|l| l.stage).collect()
    }
}

fn mnt_ns(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_string_lossy().into_owned()
}

/// A hook that prints to both streams and fails (or sleeps, for a timeout).
fn shell_hook(script: &str, timeout: Option<u64>) -> Value {
    let mut hook = json!({ "path": "/bin/sh", "args": ["sh", "-c", script] });
    if let Some(t) = timeout {
        hook["timeout"] = json!(t);
    }
    hook
}

#[test]
fn every_stage_runs_in_order_with_the_state_its_args_env_and_namespaces() {
    let p = Paddock::new();
    let hooked = HookedBundle::new(&["sleep", "1000"]);
    hooked.set_hooks(json!({
        "prestart": [hooked.logging_hook("prestart", Where::Host)],
        "createRuntime": [hooked.logging_hook("createRuntime", Where::Host), hooked.logging_hook("createRuntime2", Where::Host)],
        "createContainer": [hooked.logging_hook("createContainer", Where::Container)],
        "startContainer": [hooked.logging_hook("startContainer", Where::ContainerPath)],
        "poststart": [hooked.logging_hook("poststart", Where::Host)],
        "poststop": [hooked.logging_hook("poststop", Where::Host)],
    }));
    let id = unique("hooked");
    let bundle = hooked.bundle.path_str();
    p.ctl_ok(&["create", "--bundle", &bundle, &id]);
    assert_eq!(hooked.stages(), ["prestart", "createRuntime", "createRuntime2", "createContainer"]);
    let pid = p.state(&id)["pid"].as_i64().unwrap().to_string();
    let host_ns = mnt_ns("self");
    let container_ns = mnt_ns(&pid);
    assert_ne!(host_ns, container_ns);
    for logged in hooked.logged() {
        assert_eq!(logged.state["id"], id.as_str(), "{logged:?}");
        assert_eq!(logged.state["status"], "creating", "{logged:?}");
        assert_eq!(logged.state["pid"].to_string(), pid, "{logged:?}");
        assert_eq!(logged.state["bundle"], bundle.as_str(), "{logged:?}");
        assert_eq!(logged.env, format!("{}-env", logged.stage), "the hook's own env");
        assert_eq!(logged.home, "none", "the hook got paddockd's environment");
        // createContainer runs in the container's mount namespace, the others in the host's.
        let want = if logged.stage == "createContainer" { &container_ns } else { &host_ns };
        assert_eq!(&logged.mnt_ns, want, "{logged:?}");
    }

    p.ctl_ok(&["start", &id]);
    let logged = hooked.logged();
    assert_eq!(hooked.stages()[4..], ["startContainer", "poststart"]);
    assert_eq!(logged[4].state["status"], "created");
    assert_eq!(logged[4].mnt_ns, container_ns, "startContainer runs in the container's mount namespace");
    assert_eq!(logged[5].state["status"], "running");
    assert_eq!(logged[5].mnt_ns, host_ns);

    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    assert_eq!(hooked.logged().len(), 6, "poststop ran before delete");
    p.ctl_ok(&["delete", &id]);
    let logged = hooked.logged();
    assert_eq!(hooked.stages()[6..], ["poststop"], "poststop runs once, when delete returns");
    assert_eq!(logged[6].state["status"], "stopped");
    assert_eq!(logged[6].state["id"], id.as_str());
    assert!(p.ctl(&["delete", &id]).status.code() != Some(0));
    assert_eq!(hooked.logged().len(), 7);
}

/// Creates a container whose only hook is `hook` at `stage`; returns the failed create's
/// message after checking that nothing of the container is left.
fn failing_create(stage: &str, hook: Value) -> String {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    bundle.edit_config(|c| c["hooks"] = json!({ stage: [hook] }));
    let id = unique("hookfail");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success(), "create succeeded despite a failing {stage} hook");
    assert!(!p.ids().contains(&id), "the container was kept: {:?}", p.ids());
    assert!(!p.root().join(&id).exists(), "its state directory was kept");
    assert_nothing_left(&id);
    stderr(&out)
}

#[test]
fn a_failing_create_runtime_or_prestart_hook_fails_create_and_leaves_nothing() {
    let err = failing_create("createRuntime", shell_hook("echo out; echo boom >&2; exit 3", None));
    assert!(err.contains("createRuntime hook #0 (/bin/sh)"), "{err}");
    assert!(err.contains("exit status 3") && err.contains("boom") && err.contains("out"), "{err}");
    let err = failing_create("prestart", shell_hook("kill -9 $$", None));
    assert!(err.contains("prestart hook #0") && err.contains("killed by signal 9"), "{err}");
    let err = failing_create("createRuntime", json!({ "path": "/nonexistent/hook" }));
    assert!(err.contains("/nonexistent/hook") && err.contains("No such file"), "{err}");
}

#[test]
fn a_failing_create_container_hook_fails_create_and_leaves_nothing() {
    // The path resolves on the host; the hook runs in the container (whose busybox sh runs it).
    let dir = tempfile::Builder::new().prefix("pdk-hookscript-").tempdir_in("/tmp").unwrap();
    let script = dir.path().join("fail.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'no such device here' >&2\nexit 4\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = failing_create("createContainer", json!({ "path": script }));
    assert!(err.contains("createContainer hook #0"), "{err}");
    assert!(err.contains("exit status 4") && err.contains("no such device here"), "{err}");
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children_and_fails_create() {
    let marker = format!("sleep {}", 4000 + std::process::id() % 1000);
    let err = failing_create("createRuntime", shell_hook(&format!("echo started; {marker}; echo never"), Some(1)));
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(err.contains("started") && !err.contains("never"), "{err}");
    // The sleep it forked went with it (killed with its process group).
    assert!(
        eventually(Duration::from_secs(5), || processes_mentioning(&marker).is_empty()),
        "the hook's child survived: {:?}",
        processes_mentioning(&marker)
    );
}

#[test]
fn a_failing_start_container_hook_fails_start_and_stops_the_container() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit_config(|c| {
        c["hooks"] =
            json!({ "startContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo refused >&2; exit 2"] }] })
    });
    let id = unique("startfail");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let out = p.ctl(&["start", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("startContainer hook #0") && stderr(&out).contains("refused"), "{}", stderr(&out));
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137, "the container's process was killed before it ran");
    assert_eq!(p.state(&id)["status"], "stopped");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn failing_poststart_and_poststop_hooks_are_warnings_only() {
    let p = Paddock::new();
    let hooked = HookedBundle::new(&["sleep", "1000"]);
    hooked.set_hooks(json!({
        "poststart": [shell_hook("exit 1", None), hooked.logging_hook("poststart", Where::Host)],
        "poststop": [shell_hook("exit 1", None), hooked.logging_hook("poststop", Where::Host)],
    }));
    let id = unique("warned");
    let run = p.ctl(&["run", "-d", "--bundle", &hooked.bundle.path_str(), &id]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(p.state(&id)["status"], "running");
    assert_eq!(hooked.stages(), ["poststart"], "the hooks after the failed one still ran");
    let delete = p.ctl(&["delete", "--force", &id]);
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert_eq!(hooked.stages(), ["poststart", "poststop"]);
    assert!(!p.ids().contains(&id));
    assert_nothing_left(&id);
}

#[test]
fn malformed_hooks_are_refused_naming_the_field() {
    let relative = failing_create("poststop", json!({ "path": "bin/true" }));
    assert!(relative.contains("hooks.poststop[0].path") && relative.contains("absolute"), "{relative}");
    let zero = failing_create("createRuntime", json!({ "path": "/bin/true", "timeout": 0 }));
    assert!(zero.contains("hooks.createRuntime[0].timeout"), "{zero}");
}

#[test]
fn a_subcontainer_runs_its_create_and_start_hooks_when_it_starts() {
    let p = Paddock::new();
    let pod = unique("hookpod");
    let root = Bundle::busybox(&["sleep", "1000"]);
    root.annotate("io.kubernetes.cri.container-type", "sandbox");
    p.ctl_ok(&["run", "-d", "--bundle", &root.path_str(), &pod]);
    let hooked = HookedBundle::new(&["sleep", "1000"]);
    hooked.bundle.annotate("io.kubernetes.cri.container-type", "container");
    hooked.bundle.annotate("io.kubernetes.cri.sandbox-id", &pod);
    hooked.set_hooks(json!({
        "createRuntime": [hooked.logging_hook("createRuntime", Where::Host)],
        "createContainer": [hooked.logging_hook("createContainer", Where::Container)],
        "startContainer": [hooked.logging_hook("startContainer", Where::ContainerPath)],
        "poststart": [hooked.logging_hook("poststart", Where::Host)],
    }));
    let sub = unique("hooksub");
    p.ctl_ok(&["create", "--bundle", &hooked.bundle.path_str(), &sub]);
    p.ctl_ok(&["start", &sub]);
    assert_eq!(hooked.stages(), ["createRuntime", "createContainer", "startContainer", "poststart"]);
    let pid = p.state(&sub)["pid"].as_i64().unwrap();
    let logged = hooked.logged();
    assert_eq!(logged[0].state["pid"], pid, "the state names the subcontainer's own process");
    assert_eq!(logged[1].mnt_ns, mnt_ns(&pid.to_string()));
    p.ctl_ok(&["delete", "--force", &pod]);
    p.ctl_ok(&["delete", "--force", &sub]);
    assert_nothing_left(&sub);
    assert_nothing_left(&pod);
}

#[test]
fn poststop_runs_after_a_create_that_failed() {
    let p = Paddock::new();
    let hooked = HookedBundle::new(&["true"]);
    hooked.set_hooks(json!({
        "createRuntime": [hooked.logging_hook("createRuntime", Where::Host), shell_hook("exit 9", None)],
        "poststop": [hooked.logging_hook("poststop", Where::Host)],
    }));
    let id = unique("undo");
    let out = p.ctl(&["create", "--bundle", &hooked.bundle.path_str(), &id]);
    assert!(!out.status.success() && stderr(&out).contains("exit status 9"), "{}", stderr(&out));
    // What createRuntime set up, poststop can undo (as runc's destroy runs it).
    assert_eq!(hooked.stages(), ["createRuntime", "poststop"]);
    assert_nothing_left(&id);
}
