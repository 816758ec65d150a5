//! `linux.netDevices`: host network interfaces moved into a container's network namespace at
//! create, each renamed as the spec says in the same netlink request (so the name is never
//! taken in between), as runc does.
//!
//! When the container is deleted its sandbox, the last process in that network namespace,
//! ends, and the kernel takes the interfaces out of the dying namespace, as it does for runc's
//! containers (runtime-spec, "namespace lifecycle and container termination"): a physical
//! interface goes back to the host's initial network namespace, a virtual one (dummy, veth,
//! macvlan) is destroyed with it.
//!
//! The request is a plain `RTM_NEWLINK` on an rtnetlink socket of paddockd's network namespace
//! (where the interface is), with the target namespace as `IFLA_NET_NS_FD`: a few lines, for
//! which no netlink library is worth its weight.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{Linux, LinuxNamespaceType, LinuxNetDevice};
use wire::{ApiError, ErrorKind};

use crate::meta::ProcessRecord;

const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

/// Whether `name` is a usable interface name (runc's rule): 1 to 15 bytes, not `.` or `..`,
/// without `/`, `:` or blanks.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.contains(['/', ':', ' ', '\t', '\n', '\0'])
}

/// Checks `linux.netDevices`: valid names, distinct in the container, and a network namespace
/// of the container's own to move them into. `joins_sandbox`: the container joins a pod's
/// sandbox, whose network namespace is the pod's.
pub fn validate(linux: &Linux, joins_sandbox: bool) -> Result<(), ApiError> {
    let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else { return Ok(()) };
    let new_netns = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if !new_netns {
        return Err(ApiError::invalid_spec(
            "linux.netDevices: the container needs a network namespace of its own (linux.namespaces has no network \
             namespace without a path) to move interfaces into",
        ));
    }
    if joins_sandbox {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            "linux.netDevices: a container that joins a pod shares the pod's network namespace; give the interfaces \
             to the pod's sandbox container",
        ));
    }
    let mut inside = HashMap::new();
    let mut names: Vec<_> = devices.iter().collect();
    names.sort_by_key(|(host, _)| host.as_str());
    for (host, device) in names {
        let target = target_name(host, device);
        for name in [host.as_str(), target] {
            if !valid_name(name) {
                return Err(ApiError::invalid_spec(format!(
                    "linux.netDevices {host:?}: {name:?} is not a network interface name (1 to {} bytes, no '/', ':' \
                     or blanks)",
                    libc::IFNAMSIZ - 1
                )));
            }
        }
        if let Some(other) = inside.insert(target.to_string(), host.clone()) {
            return Err(ApiError::invalid_spec(format!(
                "linux.netDevices {other:?} and {host:?} would both be {target:?} in the container"
            )));
        }
    }
    Ok(())
}

/// The interface's name in the container: the spec's, or its host name.
fn target_name<'a>(host: &'a str, device: &'a LinuxNetDevice) -> &'a str {
    device.name().as_deref().filter(|n| !n.is_empty()).unwrap_or(host)
}

/// Moves every interface of `linux.netDevices` into the network namespace of the sandbox
/// `sandbox` (a process in it), renamed. Blocking. On failure the interfaces moved already
/// stay in that namespace, which goes away with the failed create's sandbox (see the module
/// documentation).
pub fn move_in(linux: &Linux, sandbox: &ProcessRecord) -> Result<(), ApiError> {
    let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else { return Ok(()) };
    let path = format!("/proc/{}/ns/net", sandbox.pid);
    let netns = std::fs::File::open(&path).map_err(|e| ApiError::io(format!("opening {path}"), e))?;
    // Opened, then checked: a pid reused in between has another start time.
    if crate::procfs::start_time(sandbox.pid).ok() != Some(sandbox.start_time) {
        return Err(ApiError::new(ErrorKind::Sandbox, "the sandbox exited before its network interfaces were moved"));
    }
    let socket = RouteSocket::open().map_err(|e| ApiError::io("opening an rtnetlink socket", e))?;
    let mut names: Vec<_> = devices.iter().collect();
    names.sort_by_key(|(host, _)| host.as_str());
    for (host, device) in names {
        let target = target_name(host, device);
        let what = || format!("linux.netDevices {host:?} (as {target:?} in the container)");
        let c_host = CString::new(host.as_str()).map_err(|_| ApiError::invalid_spec(format!("{}: NUL", what())))?;
        // SAFETY: if_nametoindex reads the NUL-terminated name we own.
        let index = unsafe { libc::if_nametoindex(c_host.as_ptr()) };
        if index == 0 {
            return Err(ApiError::invalid_spec(format!(
                "{}: no such network interface in the runtime's network namespace",
                what()
            )));
        }
        socket
            .move_link(index, target, netns.as_raw_fd())
            .map_err(|e| ApiError::io(format!("{}: moving it into the container's network namespace", what()), e))?;
    }
    Ok(())
}

/// An rtnetlink socket.
struct RouteSocket {
    fd: OwnedFd,
}

impl RouteSocket {
    fn open() -> std::io::Result<Self> {
        // SAFETY: socket takes plain integers; the result is checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel answers at once; a request it dropped must not hang a create.
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(std::time::Duration::from_secs(10)),
        )?;
        Ok(Self { fd })
    }

    /// `RTM_NEWLINK` for interface `index`: into the network namespace `netns`, named
    /// `name` there. Waits for the kernel's acknowledgement.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the message is two attributes, an interface name of at most 15 bytes and a descriptor"
    )]
    fn move_link(&self, index: u32, name: &str, netns: i32) -> std::io::Result<()> {
        let mut attrs = Vec::new();
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        push_attr(&mut attrs, IFLA_IFNAME, &name_bytes);
        push_attr(&mut attrs, IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes());
        // ifinfomsg: family, pad, type, index, flags, change.
        let mut body = vec![libc::AF_UNSPEC as u8, 0];
        body.extend_from_slice(&0u16.to_ne_bytes());
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&attrs);
        let flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut message = Vec::with_capacity(16 + body.len());
        message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        message.extend_from_slice(&body);
        rustix::io::write(&self.fd, &message)?;
        let mut answer = [0u8; 4096];
        let n = rustix::io::read(&self.fd, &mut answer)?;
        // nlmsghdr (16 bytes), then for NLMSG_ERROR a signed errno (0: acknowledged).
        if n < 20 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a short rtnetlink answer"));
        }
        let typ = u16::from_ne_bytes([answer[4], answer[5]]);
        if typ != NLMSG_ERROR {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("rtnetlink answered type {typ}")));
        }
        let errno = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
        if errno != 0 {
            return Err(std::io::Error::from_raw_os_error(-errno));
        }
        Ok(())
    }
}

/// Appends an rtattr (length, type, payload, padded to 4 bytes).
#[expect(clippy::cast_possible_truncation, reason = "payloads here are an interface name or a u32")]
fn push_attr(out: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&typ.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn names_and_namespaces_are_checked() {
        let ok = linux(serde_json::json!({
            "namespaces": [{"type": "network"}],
            "netDevices": {"dummy0": {"name": "eth1"}, "dummy1": {}}
        }));
        validate(&ok, false).unwrap();
        assert!(validate(&ok, true).unwrap_err().message.contains("pod"));
        for (json, expected) in [
            (serde_json::json!({"netDevices": {"d0": {}}}), "network namespace of its own"),
            (
                serde_json::json!({"namespaces": [{"type": "network", "path": "/proc/1/ns/net"}], "netDevices": {"d0": {}}}),
                "network namespace of its own",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"d0": {"name": "a/b"}}}),
                "\"a/b\" is not a network interface name",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"averyveryverylongname": {}}}),
                "is not a network interface name",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"d0": {"name": "x"}, "d1": {"name": "x"}}}),
                "would both be \"x\"",
            ),
        ] {
            let err = validate(&linux(json.clone()), false).unwrap_err();
            assert!(err.message.contains(expected), "{json}: {}", err.message);
        }
    }

    #[test]
    fn attributes_are_padded() {
        let mut out = Vec::new();
        push_attr(&mut out, IFLA_IFNAME, b"eth1\0");
        assert_eq!(out.len(), 12);
        assert_eq!(&out[..4], &[9, 0, 3, 0]);
    }
}
