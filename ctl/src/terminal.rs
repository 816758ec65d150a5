//! ctl's side of a process's terminal: the console socket the sandbox sends the pty's master
//! over (the caller's `--console-socket`, or a socket pair ctl keeps for itself), and, in the
//! foreground, the proxy between ctl's own terminal and that master.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::Context as _;
use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use wire::FdSlot;

/// Where the pty's master goes.
pub struct Console {
    /// The slot for the request: a socket the sandbox sends the master over.
    pub slot: FdSlot,
    /// ctl's own end, when ctl receives the master itself (a foreground process).
    receiver: Option<OwnedFd>,
}

impl Console {
    /// No terminal.
    pub fn none() -> Self {
        Self { slot: FdSlot::Empty, receiver: None }
    }

    /// Prepares for a process with (or without) a terminal: the master goes to `socket` when
    /// given (runc's `--console-socket`); otherwise a foreground ctl receives it itself.
    pub fn prepare(terminal: bool, socket: Option<&Path>, detach: bool) -> anyhow::Result<Self> {
        if !terminal {
            anyhow::ensure!(
                socket.is_none(),
                "--console-socket was given but the process has no terminal (process.terminal / --tty)"
            );
            return Ok(Self::none());
        }
        if let Some(path) = socket {
            let stream = wire::sockpath::connect(path)
                .with_context(|| format!("connecting to the console socket {}", path.display()))?;
            return Ok(Self { slot: FdSlot::new(OwnedFd::from(stream)), receiver: None });
        }
        anyhow::ensure!(
            !detach,
            "the process has a terminal and ctl will not stay to serve it: give --console-socket to receive it"
        );
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
            .context("socketpair for the terminal")?;
        Ok(Self { slot: FdSlot::new(theirs), receiver: Some(ours) })
    }

    /// Once the process is set up: the master, when ctl receives it itself.
    pub fn take_master(&mut self) -> anyhow::Result<Option<OwnedFd>> {
        let Some(receiver) = self.receiver.take() else { return Ok(None) };
        // The sandbox holds the other end only while it sets the process up.
        self.slot = FdSlot::Empty;
        receive_fd(receiver.as_fd()).map(Some)
    }
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(socket: BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .context("receiving the terminal")?;
    for cmsg in msg.cmsgs().context("reading the terminal's message")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor in our table; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    anyhow::bail!("the sandbox sent no terminal")
}

/// The window size of ctl's terminal (stdin, else stdout).
fn own_winsize() -> Option<rustix::termios::Winsize> {
    [std::io::stdin().as_fd(), std::io::stdout().as_fd()]
        .into_iter()
        .find_map(|fd| rustix::termios::tcgetwinsize(fd).ok())
        .filter(|size| size.ws_row > 0 && size.ws_col > 0)
}

/// The window size of ctl's terminal as `(rows, columns)`, if ctl has a terminal: the size a
/// process's terminal starts at when ctl serves it.
pub fn own_window_size() -> Option<(u32, u32)> {
    own_winsize().map(|size| (u32::from(size.ws_row), u32::from(size.ws_col)))
}

/// Copies the window size of ctl's terminal (stdin, else stdout) to the pty.
pub fn copy_window_size(master: BorrowedFd<'_>) {
    if let Some(size) = own_winsize() {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// The foreground process group of the pty, as a pid of ctl's namespace.
pub fn foreground_group(master: BorrowedFd<'_>) -> Option<i32> {
    rustix::termios::tcgetpgrp(master).ok().map(|p| p.as_raw_nonzero().get())
}

/// Copies between ctl's stdio and the pty until [`Proxy::finish`]; puts ctl's own terminal
/// in raw mode meanwhile (the container's terminal does the line editing and echo).
pub struct Proxy {
    stop: OwnedFd,
    output: Option<std::thread::JoinHandle<()>>,
    saved: Option<rustix::termios::Termios>,
}

impl Proxy {
    /// Starts copying.
    pub fn start(master: &OwnedFd) -> anyhow::Result<Self> {
        copy_window_size(master.as_fd());
        let saved = rustix::termios::tcgetattr(std::io::stdin()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &raw);
        }
        let (stop_read, stop) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("pipe")?;
        let input = master.try_clone().context("dup of the terminal")?;
        // Input ends with ctl (it may block on a terminal that never closes): not joined.
        std::thread::spawn(move || copy_input(input));
        let out = master.try_clone().context("dup of the terminal")?;
        let output = std::thread::spawn(move || copy_output(out, stop_read));
        Ok(Self { stop, output: Some(output), saved })
    }

    /// The process has exited: copy what it left in the pty, then stop.
    pub fn finish(mut self) {
        let _ = rustix::io::write(&self.stop, b"x");
        if let Some(t) = self.output.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}

fn copy_input(master: OwnedFd) {
    let mut buf = [0u8; 8192];
    loop {
        match rustix::io::read(std::io::stdin(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if write_all(master.as_fd(), &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn copy_output(master: OwnedFd, stop: OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = [0u8; 8192];
    let mut stopping = false;
    loop {
        if !stopping {
            let mut fds =
                [PollFd::new(master.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
                Ok(_) => {}
            }
            stopping = fds[1].revents().is_some_and(|r| !r.is_empty());
            if stopping {
                // From now on read only what is already there.
                let _ = rustix::io::ioctl_fionbio(&master, true);
            }
        }
        match rustix::io::read(&master, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if write_all(std::io::stdout().as_fd(), &buf[..n]).is_err() {
                    return;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            // EIO: every slave descriptor is closed; EAGAIN: drained after the exit.
            Err(_) => return,
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
