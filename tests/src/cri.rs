//! A containerd of a test's own with the CRI plugin, driven through a CRI gRPC client
//! (`tests/cri.rs`, and the CRI benchmark of `benches/shim.rs`).
//!
//! Its three runtime handlers: `runc` (runc through the runc v2 shim), `paddock` (the same shim
//! with `BinaryName` = ctl) and `paddock-shim` (paddock's own shim, `runtime_type =
//! "io.containerd.paddock.v1"`). The pods' network is a CNI bridge of its own with no address
//! on the host side and no route out: nothing is sent beyond the namespaces it creates. Its
//! images are busybox-static OCI layouts built here and imported with `ctr images import`: no
//! pull.
//!
//! Needs containerd, runc, busybox-static and containernetworking-plugins (.ci/run installs
//! them); a missing one fails the caller.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, StatusRequest,
    StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::Channel;

use crate::{capture, command_timeout, eventually, processes_mentioning, stderr, stdout, Bundle};

/// The image every container runs, and the pod's sandbox ("pause") image: the same busybox
/// layer, the latter with a command of its own so that its process is recognisable.
pub const IMAGE: &str = "docker.io/library/pdk-busybox:cri";
/// The pod's sandbox image (containerd's `sandbox_image`).
pub const PAUSE_IMAGE: &str = "docker.io/library/pdk-pause:cri";
/// The command of [`PAUSE_IMAGE`].
pub const PAUSE_COMMAND: [&str; 2] = ["/bin/sleep", "2147483647"];
/// A mebibyte, for memory limits.
pub const MIB: i64 = 1 << 20;
/// The runtime handlers of a [`Node`], the reference first.
pub const HANDLERS: [&str; 3] = ["runc", "paddock", "paddock-shim"];

/// One CRI call of `$node` (a [`Node`]) in flight, bounded by [`command_timeout`]: the
/// method of `RuntimeServiceClient` and its request; a `Result<response, String>`.
#[macro_export]
macro_rules! cri {
    ($node:expr, $method:ident, $request:expr) => {{
        let mut client = $node.client();
        let request = $request;
        $node.call(stringify!($method), async move { client.$method(request).await })
    }};
}

/// A containerd of the caller's own with the CRI plugin and the runtime handlers [`HANDLERS`].
/// Everything it uses lives in `dir` (a directory of /tmp), except the CNI bridge (a link of
/// the host's named `bridge`) and the pods' cgroups (under `cgroup_parent`), all removed on
/// drop, with whatever pods, shims, containers and paddockds are left.
pub struct Node {
    dir: PathBuf,
    containerd: Option<Child>,
    bridge: String,
    network: String,
    cgroup_parent: String,
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Node {
    /// Starts one, waits until its CRI service and network are ready and imports [`IMAGE`]
    /// and [`PAUSE_IMAGE`].
    pub fn start() -> Self {
        crate::require_root();
        assert!(
            Path::new("/etc/hosts").is_file(),
            "/etc/hosts is missing: containerd's CRI plugin copies it into every pod (as every distribution has it)"
        );
        for plugin in ["bridge", "host-local", "loopback"] {
            assert!(
                Path::new("/usr/lib/cni").join(plugin).is_file(),
                "the CNI plugin /usr/lib/cni/{plugin} is missing (apt-get install containernetworking-plugins)"
            );
        }
        let dir = tempfile::Builder::new().prefix("pdk-cri-").tempdir_in("/tmp").expect("temp dir").keep();
        let tag = format!("{}", std::process::id() % 100_000);
        let bridge = format!("pdkcri{tag}");
        let network = format!("pdk-cri-{tag}");
        let cgroup_parent = format!("/pdk-cri-{}", std::process::id());
        for sub in ["cni", "logs", "paddock", "paddock-shim", "runc"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        // No gateway and no masquerading: the bridge has no address on the host and the pod no
        // route beyond its own subnet.
        let cni = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.222.0.0/24"}]],
                         "dataDir": dir.join("cni-ipam")}
            }]
        });
        std::fs::write(dir.join("cni/10-pdk.conflist"), serde_json::to_vec_pretty(&cni).unwrap()).unwrap();
        let d = dir.display();
        let ctl = crate::ctl_path();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # The pause's oom_score_adj (-998) needs CAP_SYS_RESOURCE, which a test machine may lack
  # (this one does): no lower than containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{d}/runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock.options]
        BinaryName = "{ctl}"
        Root = "{d}/paddock"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock-shim]
      runtime_type = "io.containerd.paddock.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.paddock-shim.options]
        ConfigPath = "{d}/paddock-shim.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
    max_conf_num = 1
"#,
            ctl = ctl.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        // The paddock shim's own configuration: the state root (as the runc shim's is
        // `<Root>/<namespace>`, so that the checks find every handler's the same way).
        let shim_root = dir.join("paddock-shim").join("k8s.io");
        std::fs::write(dir.join("paddock-shim.toml"), format!("root = \"{}\"\n", shim_root.display())).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut command = Command::new("containerd");
        command.arg("--config").arg(dir.join("config.toml"));
        // containerd finds `containerd-shim-paddock-v1` on its PATH.
        let path = format!("{}:{}", crate::bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        command.env("PATH", path);
        command.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // Its own process group: a Ctrl-C of the test run reaches it through the test alone.
        command.process_group(0);
        let containerd = command.spawn().expect("containerd is not installed (apt-get install containerd)");

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let socket = dir.join("containerd.sock");
        let channel = runtime.block_on(async {
            tonic::transport::Endpoint::try_from("http://[::]:50051").expect("endpoint").connect_with_connector_lazy(
                tower::service_fn(move |_: tonic::transport::Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }),
            )
        });
        let node = Self {
            dir,
            containerd: Some(containerd),
            bridge,
            network,
            cgroup_parent,
            runtime,
            client: RuntimeServiceClient::new(channel),
        };
        // The CRI service answers once it is initialised, and says the network is ready once
        // it has loaded the CNI configuration.
        let ready = eventually(Duration::from_secs(60), || {
            let status = cri!(node, status, StatusRequest { verbose: false });
            status.is_ok_and(|s| {
                s.status.is_some_and(|s| s.conditions.iter().all(|c| c.status) && s.conditions.len() >= 2)
            })
        });
        assert!(ready, "containerd's CRI plugin did not become ready:\n{}", node.log_tail("containerd.log", 40));
        let version = cri!(node, version, VersionRequest { version: "v1".into() }).expect("Version");
        println!("CRI: {} {} (API {})", version.runtime_name, version.runtime_version, version.runtime_api_version);
        node.import_images();
        node
    }

    /// A client of its CRI runtime service (cheap: clones share the connection).
    pub fn client(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup parent of its pods (see [`Node::pod_config`]).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// Runs one CRI call on the node's runtime, bounded by [`command_timeout`]; the error
    /// names `what`.
    pub fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, String> {
        // The timer is made inside the runtime: it needs the runtime's clock.
        match self.runtime.block_on(async { tokio::time::timeout(command_timeout(), call).await }) {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
            Err(_) => Err(format!("{what}: no answer within {:?}", command_timeout())),
        }
    }

    /// Runs `ctr` against its containerd.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        capture(Command::new("ctr").arg("--address").arg(self.dir.join("containerd.sock")).args(args))
    }

    /// Builds the busybox image and the pause image as one OCI layout archive and imports it
    /// into the CRI plugin's namespace.
    fn import_images(&self) {
        let bundle = Bundle::busybox(&["true"]);
        std::fs::write(bundle.rootfs().join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let archive = self.dir.join("images.tar");
        crate::images::write_oci_archive(
            &archive,
            &bundle.rootfs(),
            &[(IMAGE, vec!["/bin/sh"]), (PAUSE_IMAGE, PAUSE_COMMAND.to_vec())],
        );
        let out = self.ctr(&["-n", "k8s.io", "images", "import", archive.to_str().unwrap()]);
        assert!(out.status.success(), "ctr images import: {}{}", stderr(&out), stdout(&out));
        let list = stdout(&self.ctr(&["-n", "k8s.io", "images", "ls", "-q"]));
        assert!(list.contains(IMAGE) && list.contains(PAUSE_IMAGE), "images not imported: {list}");
        std::fs::remove_file(&archive).unwrap();
    }

    /// The state root the runc v2 shim gives `handler`'s binary: `<Root>/<namespace>`.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        self.dir.join(handler).join("k8s.io")
    }

    /// The last `lines` lines of a log file of the node's directory.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        tail(&self.dir.join(name), lines)
    }

    /// Best effort, for a caller that failed half-way: every pod the CRI plugin still knows is
    /// stopped and removed.
    pub fn remove_every_pod(&self) {
        let Ok(pods) = cri!(self, list_pod_sandbox, ListPodSandboxRequest { filter: None }) else {
            return;
        };
        for pod in pods.items {
            let _ = cri!(self, stop_pod_sandbox, StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() });
            let _ = cri!(self, remove_pod_sandbox, RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() });
        }
    }
}

impl Node {
    /// The kubelet's pod for runtime handler `handler`, without shareProcessNamespace (each
    /// container says for itself whether it shares the pod's PID namespace, the pause's, as
    /// CRI lets it): named `name` in namespace `paddock-tests` with a fresh uid, hostname
    /// `hostname`, its containers' logs in `log_dir`, under the node's cgroup parent.
    pub fn pod_config(&self, name: &str, handler: &str, hostname: &str, log_dir: &Path) -> PodSandboxConfig {
        let namespaces = NamespaceOption {
            network: NamespaceMode::Pod as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: crate::unique(&format!("uid-{handler}")),
                namespace: "paddock-tests".into(),
                attempt: 0,
            }),
            hostname: hostname.into(),
            log_directory: log_dir.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// One container of a pod: its CRI name, its command, how it shares the pod's PID namespace,
/// and its memory limit (0: none).
pub struct ContainerSpec {
    /// Its CRI name (its log is `<name>.log` in the pod's log directory).
    pub name: &'static str,
    /// Its command, run in [`IMAGE`].
    pub command: Vec<String>,
    /// `Pod` to share the pause's PID namespace, `Container` for one of its own.
    pub pid: NamespaceMode,
    /// Its memory limit in bytes; 0 for none.
    pub memory_limit: i64,
}

impl ContainerSpec {
    /// The CRI configuration of this container: [`IMAGE`], the pod's network and IPC
    /// namespaces, 512 CPU shares.
    pub fn config(&self) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: self.name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
            command: self.command.clone(),
            log_path: format!("{}.log", self.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: self.memory_limit,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: self.pid as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Never a panic here, and every step bounded: this may run while the test is failing.
        self.remove_every_pod();
        if let Some(mut containerd) = self.containerd.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(containerd.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if crate::wait_child(&mut containerd, Duration::from_secs(20)).is_none() {
                let _ = containerd.kill();
                let _ = containerd.wait();
            }
        }
        // Shims outlive containerd by design; what is left of ours (after a failure) goes, with
        // the containers their runtimes still hold.
        let dir = self.dir.display().to_string();
        for pid in processes_mentioning(&format!("-address {dir}/containerd.sock")) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let quietly = |cmd: &mut Command| crate::output_within(cmd, Duration::from_secs(30));
        for (binary, root) in [
            (PathBuf::from("runc"), self.runtime_root("runc")),
            (crate::ctl_path(), self.runtime_root("paddock")),
            (crate::ctl_path(), self.runtime_root("paddock-shim")),
        ] {
            delete_every_container(&binary, &root);
        }
        stop_paddockd(&self.runtime_root("paddock"));
        stop_paddockd(&self.runtime_root("paddock-shim"));
        // The pods' cgroup parent (the runtimes remove the pods' and containers' own).
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let parent = hierarchy.path().join(self.cgroup_parent.trim_start_matches('/'));
            for leftover in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if leftover.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(leftover.path());
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        // Nothing may be removed through a mount: unmount whatever is still mounted beneath the
        // directory (deepest first), then remove it with a removal that refuses mount points.
        let mut beneath: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| Path::new(m).starts_with(&self.dir) && Path::new(m) != self.dir)
            .collect();
        beneath.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in &beneath {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        if let Err(e) = sys::remove_dir_within_mount(&self.dir) {
            eprintln!("cri: {} not removed: {e}", self.dir.display());
        }
        let _ = quietly(Command::new("ip").args(["link", "delete", &self.bridge]));
        // libcni's cache of results, normally emptied by each pod's network teardown.
        for entry in std::fs::read_dir("/var/lib/cni/results").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&format!("{}-", self.network)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Best effort, bounded, never a panic (for clean-up after a failure): `binary` (runc or ctl)
/// deletes, forcibly, every container it lists in state root `root`, if that exists.
pub fn delete_every_container(binary: &Path, root: &Path) {
    if !root.is_dir() {
        return;
    }
    let quietly = |cmd: &mut Command| crate::output_within(cmd, Duration::from_secs(30));
    let listed = quietly(Command::new(binary).arg("--root").arg(root).args(["list", "-q"]));
    for id in listed.unwrap_or_default().lines() {
        let _ = quietly(Command::new(binary).arg("--root").arg(root).args(["delete", "--force", id]));
    }
}

/// Stops the paddockd serving state root `root`, if one does (ctl starts one on its first call;
/// it would otherwise stay until its idle exit).
pub fn stop_paddockd(root: &Path) {
    let Some(pid) = std::fs::read_to_string(root.join("paddockd.pid")).ok().and_then(|s| s.trim().parse().ok()) else {
        return;
    };
    if let Ok(fd) = crate::pidfd(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        crate::wait_pidfd(&fd, Duration::from_secs(20));
    }
}

/// Mount points of this mount namespace (the fifth field of /proc/self/mountinfo).
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| m.replace("\\040", " ")))
        .collect()
}

/// The last `lines` lines of the file at `path` (or why it could not be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
