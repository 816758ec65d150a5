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
//! The kernel drops an interface's addresses when it changes namespace: as the runtime-spec
//! asks (and runc does), its permanent addresses of global scope, of any family, are read
//! before the move and added again in the container's namespace, and the interface is then
//! set up there.
//!
//! A restart of the container (its restart policy) runs its init again in the same sandbox,
//! whose network namespace, and the interfaces in it, live on: nothing is moved again.
//!
//! The requests are plain rtnetlink messages: `RTM_GETADDR` and `RTM_NEWLINK` (with the
//! target namespace as `IFLA_NET_NS_FD`) on a socket of paddockd's network namespace, where
//! the interface is; `RTM_GETLINK`, `RTM_NEWADDR` and `RTM_NEWLINK` (up) on a socket opened in
//! the container's. A few lines, for which no netlink library is worth its weight.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{Linux, LinuxNamespaceType, LinuxNetDevice};
use wire::{ApiError, ErrorKind};

use crate::meta::ProcessRecord;

const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
/// `AF_UNSPEC` in the byte a netlink header gives the family.
const AF_UNSPEC: u8 = 0;

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
    let inside = RouteSocket::open_in(&netns)
        .map_err(|e| ApiError::io("opening an rtnetlink socket in the container's network namespace", e))?;
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
        // Read before the move, which drops them.
        let addresses =
            socket.addresses(index).map_err(|e| ApiError::io(format!("{}: reading its addresses", what()), e))?;
        socket
            .move_link(index, target, netns.as_raw_fd())
            .map_err(|e| ApiError::io(format!("{}: moving it into the container's network namespace", what()), e))?;
        // A name template (`eth%d`) is the kernel's to complete: the interface keeps its index
        // then, as it does whenever the index is free in the new namespace.
        let moved = if target.contains('%') { Ok(index) } else { inside.link_index(target) };
        let moved = moved.map_err(|e| ApiError::io(format!("{}: finding it in the container", what()), e))?;
        for address in &addresses {
            inside.add_address(moved, address).map_err(|e| {
                ApiError::io(format!("{}: adding its address {} again in the container", what(), address), e)
            })?;
        }
        inside.set_up(moved).map_err(|e| ApiError::io(format!("{}: setting it up in the container", what()), e))?;
    }
    Ok(())
}

/// An interface address to carry into the container: its family, prefix length and the
/// attributes that say the address (`IFA_ADDRESS`, `IFA_LOCAL`, `IFA_BROADCAST`; not its label,
/// which names the interface by its old name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    family: u8,
    prefix_len: u8,
    attrs: Vec<(u16, Vec<u8>)>,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = self
            .attrs
            .iter()
            .find(|(t, _)| *t == IFA_LOCAL)
            .or_else(|| self.attrs.iter().find(|(t, _)| *t == IFA_ADDRESS));
        let ip = match local.map(|(_, v)| v.as_slice()) {
            Some(&[a, b, c, d]) => std::net::IpAddr::from([a, b, c, d]).to_string(),
            Some(v) => <[u8; 16]>::try_from(v).map(|b| std::net::IpAddr::from(b).to_string()).unwrap_or_default(),
            None => String::new(),
        };
        write!(f, "{ip}/{}", self.prefix_len)
    }
}

/// The addresses of an `RTM_GETADDR` dump's messages (`ifaddrmsg` and attributes) that belong
/// to interface `index` and are to be carried over: permanent, of global scope (runtime-spec,
/// after RFC 3549).
fn addresses_to_carry(index: u32, messages: &[(u16, Vec<u8>)]) -> Vec<Address> {
    let mut carried = Vec::new();
    for (typ, body) in messages {
        // ifaddrmsg: family, prefix length, flags, scope, index.
        if *typ != RTM_NEWADDR || body.len() < 8 {
            continue;
        }
        let (family, prefix_len, flags, scope) = (body[0], body[1], u32::from(body[2]), body[3]);
        if u32::from_ne_bytes([body[4], body[5], body[6], body[7]]) != index || scope != RT_SCOPE_UNIVERSE {
            continue;
        }
        let attrs = parse_attrs(&body[8..]);
        // IFA_FLAGS, when present, holds all the flags (the header's byte only the low ones).
        let flags = attrs
            .iter()
            .find(|(t, v)| *t == IFA_FLAGS && v.len() == 4)
            .map_or(flags, |(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        if flags & IFA_F_PERMANENT == 0 {
            continue;
        }
        let attrs = attrs.into_iter().filter(|(t, _)| matches!(*t, IFA_ADDRESS | IFA_LOCAL | IFA_BROADCAST)).collect();
        carried.push(Address { family, prefix_len, attrs });
    }
    carried
}

/// The attributes (type, payload) of a run of rtattrs; a malformed tail is ignored.
fn parse_attrs(mut data: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut attrs = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let typ = u16::from_ne_bytes([data[2], data[3]]);
        if len < 4 || len > data.len() {
            break;
        }
        attrs.push((typ, data[4..len].to_vec()));
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    attrs
}

/// An rtnetlink socket.
struct RouteSocket {
    fd: OwnedFd,
    /// The sequence number of the last request.
    sequence: std::cell::Cell<u32>,
}

/// An `ifinfomsg`: family, pad, type, index, flags, change.
#[expect(clippy::cast_possible_wrap, reason = "the kernel's interface indexes are positive ints")]
fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut body = vec![AF_UNSPEC, 0];
    body.extend_from_slice(&0u16.to_ne_bytes());
    body.extend_from_slice(&(index as i32).to_ne_bytes());
    body.extend_from_slice(&flags.to_ne_bytes());
    body.extend_from_slice(&change.to_ne_bytes());
    body
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
        Ok(Self { fd, sequence: std::cell::Cell::new(0) })
    }

    /// A socket of the network namespace `netns`: opened by a thread of its own that enters
    /// it and then ends (a socket stays in the namespace it was made in; no thread of
    /// paddockd's is left in another).
    fn open_in(netns: &std::fs::File) -> std::io::Result<Self> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    Self::open()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the thread opening the socket panicked")))
        })
    }

    /// Sends one request (`body` after the netlink header) and collects the answer's messages
    /// (type, payload) until the kernel's acknowledgement, or the end of a dump.
    #[expect(clippy::cast_possible_truncation, reason = "requests here are a header and a few small attributes")]
    fn request(&self, typ: u16, flags: u16, body: &[u8]) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
        let sequence = self.sequence.get().wrapping_add(1);
        self.sequence.set(sequence);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let flags = NLM_F_REQUEST | if dump { flags } else { flags | NLM_F_ACK };
        let mut message = Vec::with_capacity(16 + body.len());
        message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&typ.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        message.extend_from_slice(body);
        rustix::io::write(&self.fd, &message)?;
        let mut answers = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = rustix::io::read(&self.fd, &mut buffer)?;
            let mut data = &buffer[..n];
            if data.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "rtnetlink closed"));
            }
            while data.len() >= 16 {
                let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
                if len < 16 || len > data.len() {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a malformed rtnetlink answer"));
                }
                let kind = u16::from_ne_bytes([data[4], data[5]]);
                let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
                let payload = &data[16..len];
                data = &data[len.next_multiple_of(4).min(data.len())..];
                if seq != sequence {
                    // An answer to an earlier request that timed out.
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(answers),
                    NLMSG_ERROR => {
                        // A signed errno (0: acknowledged), then the request's header.
                        let errno = match payload {
                            [a, b, c, d, ..] => i32::from_ne_bytes([*a, *b, *c, *d]),
                            _ => {
                                return Err(std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    "a short rtnetlink error",
                                ))
                            }
                        };
                        if errno != 0 {
                            return Err(std::io::Error::from_raw_os_error(-errno));
                        }
                        return Ok(answers);
                    }
                    _ => answers.push((kind, payload.to_vec())),
                }
            }
        }
    }

    /// `RTM_NEWLINK` for interface `index`: into the network namespace `netns`, named
    /// `name` there. Waits for the kernel's acknowledgement.
    #[expect(clippy::cast_sign_loss, reason = "a descriptor, which is not negative")]
    fn move_link(&self, index: u32, name: &str, netns: i32) -> std::io::Result<()> {
        let mut body = ifinfomsg(index, 0, 0);
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        push_attr(&mut body, IFLA_IFNAME, &name_bytes);
        push_attr(&mut body, IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes());
        self.request(RTM_NEWLINK, 0, &body).map(drop)
    }

    /// The addresses of interface `index` to carry into another namespace.
    fn addresses(&self, index: u32) -> std::io::Result<Vec<Address>> {
        // ifaddrmsg of any family; the kernel dumps every interface's.
        let body = [AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0];
        Ok(addresses_to_carry(index, &self.request(RTM_GETADDR, NLM_F_DUMP, &body)?))
    }

    /// The index of the interface named `name`.
    fn link_index(&self, name: &str) -> std::io::Result<u32> {
        let mut body = ifinfomsg(0, 0, 0);
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        push_attr(&mut body, IFLA_IFNAME, &name_bytes);
        self.request(RTM_GETLINK, 0, &body)?
            .iter()
            .find(|(t, b)| *t == RTM_NEWLINK && b.len() >= 8)
            .map(|(_, b)| u32::from_ne_bytes([b[4], b[5], b[6], b[7]]))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no interface {name:?}")))
    }

    /// Adds `address` to interface `index`.
    fn add_address(&self, index: u32, address: &Address) -> std::io::Result<()> {
        let mut body = vec![address.family, address.prefix_len, 0, RT_SCOPE_UNIVERSE];
        body.extend_from_slice(&index.to_ne_bytes());
        for (typ, payload) in &address.attrs {
            push_attr(&mut body, *typ, payload);
        }
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body).map(drop)
    }

    /// Sets interface `index` up.
    fn set_up(&self, index: u32) -> std::io::Result<()> {
        let up = libc::IFF_UP as u32;
        self.request(RTM_NEWLINK, 0, &ifinfomsg(index, up, up)).map(drop)
    }
}

/// Appends an rtattr (length, type, payload, padded to 4 bytes).
#[expect(clippy::cast_possible_truncation, reason = "payloads here are an interface name, an address or a u32")]
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

    /// An `RTM_NEWADDR` message body as the kernel dumps one.
    fn address_message(index: u32, scope: u8, flags: u32, local: &[u8], label: &str) -> (u16, Vec<u8>) {
        let family = u8::try_from(if local.len() == 4 { libc::AF_INET } else { libc::AF_INET6 }).unwrap();
        let mut body = vec![family, 24, 0, scope];
        body.extend_from_slice(&index.to_ne_bytes());
        push_attr(&mut body, IFA_ADDRESS, local);
        push_attr(&mut body, IFA_LOCAL, local);
        push_attr(&mut body, 3, label.as_bytes()); // IFA_LABEL
        push_attr(&mut body, IFA_FLAGS, &flags.to_ne_bytes());
        (RTM_NEWADDR, body)
    }

    #[test]
    fn only_permanent_global_addresses_of_the_interface_are_carried() {
        let messages = [
            address_message(7, RT_SCOPE_UNIVERSE, IFA_F_PERMANENT, &[10, 0, 0, 2], "eth0"),
            // Another interface's, a link-scope one, a dynamic one.
            address_message(8, RT_SCOPE_UNIVERSE, IFA_F_PERMANENT, &[10, 0, 1, 2], "eth1"),
            address_message(7, 253, IFA_F_PERMANENT, &[169, 254, 0, 1], "eth0"),
            address_message(7, RT_SCOPE_UNIVERSE, 0, &[10, 0, 0, 3], "eth0"),
            address_message(
                7,
                RT_SCOPE_UNIVERSE,
                IFA_F_PERMANENT,
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                "eth0",
            ),
        ];
        let carried = addresses_to_carry(7, &messages);
        let shown: Vec<String> = carried.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.2/24", "fd00::2/24"]);
        // The label, which names the old interface, stays behind.
        assert!(carried.iter().all(|a| a.attrs.iter().all(|(t, _)| matches!(*t, IFA_ADDRESS | IFA_LOCAL))));
        // A truncated attribute run ends the parse without a panic.
        assert_eq!(parse_attrs(&[8, 0, 1, 0, 10]), vec![]);
    }

    #[test]
    fn attributes_are_padded() {
        let mut out = Vec::new();
        push_attr(&mut out, IFLA_IFNAME, b"eth1\0");
        assert_eq!(out.len(), 12);
        assert_eq!(&out[..4], &[9, 0, 3, 0]);
    }
}
