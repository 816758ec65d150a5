//! What paddock needs from an OCI spec beyond what the sandbox applies, one concern per
//! module: [`annotations`] (overlay, placement), [`exec`] (an exec's process), [`validate`]
//! (checks before anything starts, the root filesystem's host path), [`resources`] (the cgroup
//! resources), [`namespaces`] (joined user namespaces, the sandbox's namespaces),
//! [`attributes`] (process attributes of runtime-spec 1.2). (The embedded default is the
//! wire's, so that ctl builds it without linking the actors: `wire::spec::embedded_default`.)

pub mod annotations;
pub mod attributes;
pub mod exec;
pub mod namespaces;
pub mod resources;
pub mod validate;

pub use annotations::{overlay_of, parse_overlay, placement, Placement};
pub use exec::{check_security_labels, exec_process};
pub use namespaces::{joined_user_namespace_maps, sandbox_namespaces};
pub use resources::{container_resources, merge_resources};
pub use validate::{check_oci_version, check_rootfs, require_console, rootfs_path, validate, validate_user, MAX_ID};

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oci_spec::runtime::RootBuilder;
    use wire::spec::embedded_default;

    use std::path::{Path, PathBuf};

    use wire::gofer_proto::Overlay;
    use wire::spec::OVERLAY_ANNOTATION;

    use super::*;

    #[test]
    fn oci_versions_of_another_major_or_not_semver_are_refused() {
        for good in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0", "1.1.0-rc.1", "1.0.0+build.5"] {
            check_oci_version(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["2.0.0", "0.9.0", "1.0", "1", "", "v1.0.0", "1.0.0-", "01.0.0", "1.x.0", "1.0.0 "] {
            let e = check_oci_version(bad).expect_err(bad);
            assert!(e.message.starts_with(&format!("ociVersion {bad:?}")), "{e}");
        }
    }

    #[test]
    fn embedded_default_is_valid_and_overlaid() {
        let spec = embedded_default("abc", vec!["true".into()]).unwrap();
        validate(&spec).unwrap();
        assert_eq!(overlay_of(&spec, Overlay::None).unwrap(), Overlay::RootMemory { size: None });
        assert_eq!(rootfs_path(Path::new(""), &spec).unwrap(), PathBuf::from("/"));
        assert_eq!(spec.hostname().as_deref(), Some("abc"));
        assert!(spec.process().as_ref().unwrap().no_new_privileges().unwrap());
    }

    #[test]
    fn overlay_values() {
        assert_eq!(parse_overlay("none").unwrap(), Overlay::None);
        assert_eq!(parse_overlay("root:memory").unwrap(), Overlay::RootMemory { size: None });
        assert_eq!(parse_overlay("all:memory:size=64m").unwrap(), Overlay::AllMemory { size: Some(64 << 20) });
        assert_eq!(parse_overlay("root:memory:size=1048576").unwrap(), Overlay::RootMemory { size: Some(1 << 20) });
        for bad in ["root:disk", "none:size=1k", "all:memory:size=", "all:memory:size=5x", ""] {
            assert!(parse_overlay(bad).is_err(), "{bad}");
        }
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_annotations(Some(HashMap::from([(OVERLAY_ANNOTATION.to_string(), "bogus".to_string())])));
        let e = overlay_of(&spec, Overlay::None).unwrap_err();
        assert!(e.to_string().contains(OVERLAY_ANNOTATION), "{e}");
        spec.set_annotations(None);
        assert_eq!(overlay_of(&spec, Overlay::AllMemory { size: None }).unwrap(), Overlay::AllMemory { size: None });
    }

    #[test]
    fn invalid_specs_are_refused_with_reasons() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        assert!(validate(&spec).unwrap_err().message.contains("process.args"));
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_root(None);
        assert!(validate(&spec).unwrap_err().message.contains("no root"));
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.process_mut().as_mut().unwrap().set_cwd("rel".into());
        assert!(validate(&spec).unwrap_err().message.contains("cwd"));
    }

    #[test]
    fn pod_annotations_place_containers() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        assert_eq!(placement(&spec).unwrap(), Placement::NewSandbox);
        let with = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        spec.set_annotations(Some(with(&[("io.kubernetes.cri.container-type", "sandbox")])));
        assert_eq!(placement(&spec).unwrap(), Placement::NewSandbox);
        spec.set_annotations(Some(with(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.sandbox-id", "pod1"),
        ])));
        assert_eq!(placement(&spec).unwrap(), Placement::Join("pod1".into()));
        spec.set_annotations(Some(with(&[
            ("io.kubernetes.cri-o.ContainerType", "container"),
            ("io.kubernetes.cri-o.SandboxID", "pod2"),
        ])));
        assert_eq!(placement(&spec).unwrap(), Placement::Join("pod2".into()));
        spec.set_annotations(Some(with(&[("io.kubernetes.cri.container-type", "container")])));
        assert!(placement(&spec).unwrap_err().message.contains("sandbox-id"));
    }

    #[test]
    fn idmapped_mounts_are_checked_as_runc_checks_them() {
        let base = embedded_default("x", vec!["true".into()]).unwrap();
        let with_mount = |mount: serde_json::Value, userns: bool| {
            let mut v = serde_json::to_value(&base).unwrap();
            v["mounts"].as_array_mut().unwrap().push(mount);
            if userns {
                v["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
                let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                v["linux"]["uidMappings"] = map.clone();
                v["linux"]["gidMappings"] = map;
            }
            let spec: oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
            let index = spec.mounts().as_ref().unwrap().len() - 1;
            (spec, format!("mounts[{index}] (/data): "))
        };
        let one = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        let ok = [
            (
                serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "options": ["rbind"],
                                "uidMappings": one, "gidMappings": one}),
                false,
            ),
            (serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "options": ["ridmap"]}), true),
        ];
        for (mount, userns) in ok {
            let (spec, _) = with_mount(mount.clone(), userns);
            validate(&spec).unwrap_or_else(|e| panic!("{mount}: {e}"));
        }
        let refused = [
            (
                serde_json::json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
                true,
                "(idmap) must be a bind mount",
            ),
            (
                serde_json::json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                                "uidMappings": one, "gidMappings": one}),
                false,
                "must be a bind mount",
            ),
            (
                serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "options": ["idmap"]}),
                false,
                "container has no user namespace",
            ),
            (
                serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "uidMappings": one}),
                false,
                "gidMappings is missing",
            ),
            (
                serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "uidMappings": one,
                                "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 0}]}),
                false,
                "gidMappings[0] (containerID 0, hostID 1000, size 0) is empty",
            ),
            (
                serde_json::json!({"destination": "/data", "type": "bind", "source": "/a", "gidMappings": one,
                                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10},
                                                {"containerID": 20, "hostID": 1005, "size": 1}]}),
                false,
                "uidMappings[1] (containerID 20, hostID 1005, size 1) overlaps range 0",
            ),
        ];
        for (mount, userns, expected) in refused {
            let (spec, prefix) = with_mount(mount.clone(), userns);
            let err = validate(&spec).unwrap_err();
            assert!(err.message.starts_with(&prefix) && err.message.contains(expected), "{mount}: {}", err.message);
        }
    }

    #[test]
    fn ids_that_setresuid_would_read_as_unchanged_are_refused() {
        let mut spec = embedded_default("x", vec!["id".into()]).unwrap();
        for (uid, gid, extra) in [(u32::MAX, 0, vec![]), (0, 2_147_483_648, vec![]), (0, 0, vec![u32::MAX])] {
            let process = spec.process_mut().as_mut().unwrap();
            let mut user = process.user().clone();
            user.set_uid(uid).set_gid(gid).set_additional_gids(Some(extra));
            process.set_user(user);
            let err = validate(&spec).unwrap_err();
            assert!(err.message.contains("must be in range 0-2147483647"), "{}", err.message);
        }
        let exec =
            wire::api::ExecSpec { args: vec!["id".into()], user: Some("4294967295".into()), ..Default::default() };
        let err = exec_process(&spec, &exec).unwrap_err();
        assert!(err.message.contains("process.user.uid 4294967295"), "{}", err.message);
        let exec =
            wire::api::ExecSpec { args: vec!["id".into()], user: Some("2147483647".into()), ..Default::default() };
        assert!(exec_process(&embedded_default("x", vec!["id".into()]).unwrap(), &exec).is_ok());
    }

    #[test]
    fn exec_overrides_the_containers_process() {
        let spec = embedded_default("x", vec!["sleep".into(), "9".into()]).unwrap();
        let exec = wire::api::ExecSpec {
            args: vec!["ls".into()],
            env: vec!["PATH=/bin".into(), "NEW=1".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            ..Default::default()
        };
        let p = exec_process(&spec, &exec).unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["ls".to_string()]);
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"PATH=/bin".to_string()) && env.contains(&"NEW=1".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        for bad in [
            wire::api::ExecSpec::default(),
            wire::api::ExecSpec { args: vec!["x".into()], user: Some("root".into()), ..Default::default() },
            wire::api::ExecSpec { args: vec!["x".into()], env: vec!["NOEQUALS".into()], ..Default::default() },
            wire::api::ExecSpec { args: vec!["x".into()], cwd: Some("rel".into()), ..Default::default() },
        ] {
            assert!(exec_process(&spec, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_root_needs_a_bundle() {
        let mut spec = embedded_default("x", vec!["true".into()]).unwrap();
        spec.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
        assert_eq!(rootfs_path(Path::new("/b"), &spec).unwrap(), PathBuf::from("/b/rootfs"));
        assert!(rootfs_path(Path::new(""), &spec).is_err());
    }
}
