//! A process's terminal, as runc gives one: a pty opened in the container's own devpts, its
//! slave the process's controlling terminal and stdio, its master sent over the caller's
//! console socket (the caller then owns the terminal; nothing of it stays in the sandbox).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use wire::ApiError;

/// Where the runtime-spec has a container's terminal bound (its pty's slave).
pub const CONSOLE: &str = "/dev/console";

/// Whether [`connect`] binds the terminal at [`CONSOLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The container's init: its terminal is the container's console, as the runtime-spec
    /// asks (runc binds it the same way).
    Bind,
    /// A process exec'd into the container: the console stays the init's.
    Leave,
}

/// A freshly opened pty.
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    name: Vec<u8>,
}

/// Opens a pty through `/dev/ptmx` of the current mount namespace (the container's, whose
/// `/dev/ptmx` leads to its own devpts instance).
pub fn open() -> Result<Pty, ApiError> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).map_err(|e| ApiError::io("opening /dev/ptmx for the terminal", e))?;
    let master = crate::sync::above_stdio(master)?;
    rustix::pty::unlockpt(&master).map_err(|e| ApiError::io("unlocking the pty", e))?;
    // TIOCGPTPEER opens the very slave of this master, whatever the container did to /dev/pts.
    let slave =
        rustix::pty::ioctl_tiocgptpeer(&master, flags).map_err(|e| ApiError::io("opening the pty's slave", e))?;
    // Neither may sit on a standard number: the slave is copied onto 0, 1, 2 and then closed.
    let slave = crate::sync::above_stdio(slave)?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map(|n| n.into_bytes()).unwrap_or_default();
    Ok(Pty { master, slave, name })
}

impl Pty {
    /// Sends the master over `socket`, with the slave's path as the message (as runc does;
    /// receivers such as conmon and containerd's shim take the descriptor).
    pub fn send_master(&self, socket: BorrowedFd<'_>) -> Result<(), ApiError> {
        let fds = [self.master.as_raw_fd()];
        let payload = if self.name.is_empty() { b"pty".as_slice() } else { self.name.as_slice() };
        sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| ApiError::io("sending the terminal over the console socket", e))?;
        Ok(())
    }

    /// The slave's path, as `ptsname` gave it when the pty was opened (empty if it could not).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The slave side.
    pub fn slave(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }

    /// Binds the slave on [`CONSOLE`] in the calling process's mount namespace (the
    /// container's, pivoted into: the mount point beneath its root, made by the device setup).
    fn bind_as_console(&self) -> Result<(), ApiError> {
        let what = |e: std::io::Error| ApiError::io(format!("binding the terminal on {CONSOLE}"), e);
        let slash = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| what(e.into()))?;
        let target =
            sys::make_beneath(slash.as_fd(), std::path::Path::new(CONSOLE), sys::Create::File).map_err(what)?;
        let tree = sys::clone_tree(self.slave.as_fd(), false).map_err(what)?;
        sys::attach(tree.as_fd(), target.as_fd()).map_err(what)
    }

    /// Makes the slave the calling process's controlling terminal (it must lead a session
    /// without one) and its stdin, stdout and stderr. The master is closed here.
    pub fn attach(self) -> Result<(), ApiError> {
        drop(self.master);
        // Above 0..=2 first: on one of them, it would be closed when dropped after the dup2s.
        let slave = crate::sync::above_stdio(self.slave)?;
        rustix::process::ioctl_tiocsctty(&slave)
            .map_err(|e| ApiError::io("making the pty the controlling terminal", e))?;
        for target in 0..3 {
            // SAFETY: dup2 onto 0..=2 replaces the standard descriptors, which nothing else in
            // this process holds as an OwnedFd.
            if unsafe { libc::dup2(slave.as_fd().as_raw_fd(), target) } < 0 {
                return Err(ApiError::io("dup2 of the pty onto stdio", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// In a user namespace whose root is mapped, makes the files this process creates from now on
/// (the pty's slave in devpts) owned by that root, as runc's are: the process still has the
/// host root's ids, which such a namespace does not map, so the slave would show as owned by
/// the overflow id and no path to it (`/dev/console`, `/dev/pts/N`) could be opened inside.
/// Where uid 0 is not mapped (or outside a user namespace) nothing changes. The ids proper
/// are set when the process takes its user; `setresuid` then resets the file-system ids.
fn as_namespace_root() {
    // Failure is harmless (the slave keeps the host root as owner, as before) and setfsuid
    // reports it only by returning the old id anyway.
    let _ = nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
    let _ = nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
}

/// Gives the calling process a terminal when `process` asks for one: the pty's master goes
/// over `console`, its slave becomes stdio (and, for `Console::Bind`, is bound on
/// `/dev/console`). Otherwise the caller's `stdio` is connected.
///
/// The terminal has the process's `consoleSize` before anyone can read it: whoever receives
/// the master may resize it only after the program already asked for its size (`stty size`
/// saw 0 rows that way).
pub fn connect(
    process: &oci_spec::runtime::Process,
    console: Option<&OwnedFd>,
    stdio: &[Option<OwnedFd>; 3],
    bind: Console,
) -> Result<(), ApiError> {
    if !process.terminal().unwrap_or(false) {
        return crate::sync::connect_stdio(stdio);
    }
    let console =
        console.ok_or_else(|| ApiError::invalid_argument("the process has a terminal but no console socket"))?;
    as_namespace_root();
    let pty = open()?;
    if let Some(size) = process.console_size() {
        let winsize = rustix::termios::Winsize {
            ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
            ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&pty.master, winsize)
            .map_err(|e| ApiError::io("setting the terminal's size (process.consoleSize)", e))?;
    }
    if bind == Console::Bind {
        pty.bind_as_console()?;
    }
    pty.send_master(console.as_fd())?;
    pty.attach()
}
