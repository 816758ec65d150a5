//! Container ids: validation, and resolution by unambiguous prefix.

use harness::{stderr, unique, Bundle, Paddock};

fn daemon_files_only(p: &Paddock) {
    for entry in std::fs::read_dir(p.root()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("paddockd."), "unexpected {name} in the state root");
    }
}

#[test]
fn invalid_ids_are_refused_and_create_nothing() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    let long = "a".repeat(2000);
    for id in ["../x", "a/b", "", long.as_str(), "..", "white space", "paddockd.sock"] {
        let out = p.ctl(&["create", "--bundle", &bundle.path_str(), id]);
        assert!(!out.status.success(), "{id:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains("invalid container id"), "{id:?}: {err}");
        assert!(err.len() < 400, "the error repeats the whole id: {err}");
    }
    // Nothing was made: the daemon may not even have been needed, and the root holds only
    // its own files.
    if p.root().exists() {
        daemon_files_only(&p);
    }
    assert!(p.ids().is_empty());
    daemon_files_only(&p);
}

#[test]
fn the_longest_valid_id_works() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["true"]);
    let id = format!("{}{}", unique("long"), "x".repeat(1024));
    let id = &id[..1024];
    let out = p.ctl(&["run", "--keep", "--bundle", &bundle.path_str(), id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.state(id)["id"], id);
    p.ctl_ok(&["delete", id]);
    assert!(p.ids().is_empty());
}

#[test]
fn prefixes_resolve_when_unambiguous() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let base = unique("pre");
    let (a1, a2, b) = (format!("{base}-alpha-1"), format!("{base}-alpha-2"), format!("{base}-beta"));
    for id in [&a1, &a2, &b] {
        p.ctl_ok(&["create", "--bundle", &bundle.path_str(), id]);
    }
    // A unique prefix and a full id both resolve.
    assert_eq!(p.state(&format!("{base}-b"))["id"], b.as_str());
    assert_eq!(p.state(&a1)["id"], a1.as_str());
    // An ambiguous prefix names every candidate and changes nothing.
    let out = p.ctl(&["delete", &format!("{base}-alpha")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains(&a1) && err.contains(&a2) && !err.contains(&b), "{err}");
    assert_eq!(p.ids().len(), 3);
    // Operations act on the resolved container.
    p.ctl_ok(&["start", &format!("{base}-be")]);
    assert_eq!(p.state(&b)["status"], "running");
    let out = p.ctl(&["state", &format!("{base}-gamma")]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
