//! A process's standard streams, from containerd's FIFO paths to the descriptors paddockd
//! takes.
//!
//! Without a terminal, the process writes straight into containerd's stdout and stderr FIFOs
//! (opened for writing, which waits for containerd's reader, so nothing written is lost); its
//! stdin is a pipe the shim fills from the stdin FIFO, so that containerd can close it
//! (`CloseIO`) and the process sees end-of-file. With a terminal, the sandbox sends the pty's
//! master over a socket and the shim copies between it and the FIFOs.
//!
//! Every copy runs on a thread of its own with blocking I/O: they are few (one or two per
//! process) and a FIFO open that waits for containerd must not hold up the async runtime.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use tokio::sync::watch;
use wire::{FdSlot, Stdio};

/// Why a process's stdio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// Opening a FIFO containerd named failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The FIFO.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A pipe or socket pair could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being made.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The sandbox sent no terminal.
    #[error("the sandbox sent no terminal")]
    NoTerminal,
}

/// containerd's names for a process's streams.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    /// The stdin FIFO ("" for none).
    pub stdin: String,
    /// The stdout FIFO ("" for none).
    pub stdout: String,
    /// The stderr FIFO ("" for none).
    pub stderr: String,
    /// The process has a terminal.
    pub terminal: bool,
}

/// What the shim keeps of a process's streams while it runs.
#[derive(Debug, Default, Clone)]
pub struct IoHandle {
    /// The write end of the process's stdin pipe (or the pty master, with a terminal), until
    /// the end of containerd's stdin.
    stdin: Arc<Mutex<Option<File>>>,
    /// The shim's own writer of the stdin FIFO (see [`StdinFifo`]).
    fifo: Arc<Mutex<StdinFifo>>,
    /// The pty master, with a terminal (for `ResizePty`).
    master: Option<Arc<OwnedFd>>,
    /// Becomes `true` once the terminal's output copy has ended and closed the stdout FIFO
    /// (with a terminal).
    output_copied: Option<watch::Receiver<bool>>,
}

impl IoHandle {
    /// Closes the process's stdin (`CloseIO`): it reads end-of-file once what was sent is read.
    /// The shim's own writer of the FIFO goes, so the copy ends when the client's does, after
    /// everything in the FIFO; before the copy has opened the FIFO, there is nothing to wait for.
    pub fn close_stdin(&self) {
        let mut fifo = self.fifo.lock().unwrap_or_else(|p| p.into_inner());
        fifo.closed = true;
        fifo.writer = None;
        if !fifo.opened {
            self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Waits, at most `bound`, until the terminal's output copy has written everything the
    /// process left in the terminal into containerd's FIFO and closed it; at once without a
    /// terminal (the process wrote into the FIFOs itself). A client stops reading once the
    /// process's exit and Delete are answered (`ctr task exec -t` does), so both wait for this
    /// first, as runc's shim's Delete waits for its copy. Bounded: a process's own children
    /// may hold the terminal open after it exits.
    pub async fn output_copied(&self, bound: std::time::Duration) {
        let Some(mut copied) = self.output_copied.clone() else { return };
        // An error: the copy's thread is gone (it never started), nothing to wait for.
        let _ = tokio::time::timeout(bound, copied.wait_for(|done| *done)).await;
    }

    /// Sets the terminal's size; `false` when the process has no terminal.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<bool> {
        let Some(master) = &self.master else { return Ok(false) };
        let size = rustix::termios::Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(master.as_fd(), size)?;
        Ok(true)
    }
}

/// A process's stdio being prepared: what goes into paddockd's request, and what the shim
/// does once the process exists.
pub struct Prepared {
    /// For the request.
    pub stdio: Stdio,
    /// The shim's end of the console socket, with a terminal.
    console: Option<OwnedFd>,
    paths: StdioPaths,
    handle: IoHandle,
}

/// Opens a FIFO for writing; waits until containerd has its reader open.
fn open_writer(path: &str) -> Result<File, StdioError> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| StdioError::Open { path: path.to_string(), source })
}

/// The shim's hold on the stdin FIFO, as runc's shim keeps one: a writer of its own, so that
/// the FIFO reaches end-of-file only after `CloseIO`, not whenever a client closes its end.
#[derive(Debug, Default)]
struct StdinFifo {
    /// The copy has opened the FIFO.
    opened: bool,
    /// `CloseIO` came.
    closed: bool,
    writer: Option<File>,
}

/// Copies containerd's stdin FIFO into `sink` on a thread until end-of-file, then closes it.
fn spawn_stdin_copy(path: String, sink: Arc<Mutex<Option<File>>>, hold: Arc<Mutex<StdinFifo>>) {
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        // Opening for reading waits for containerd's writer: a client that never attaches
        // stdin leaves this thread waiting, which costs nothing but the thread.
        let Ok(mut fifo) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path) else {
            return;
        };
        {
            let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
            hold.opened = true;
            if !hold.closed {
                // With a reader open, a non-blocking open for writing succeeds at once.
                hold.writer = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
                    .open(&path)
                    .ok();
            }
        }
        let mut buf = [0u8; 32 * 1024];
        loop {
            let n = match fifo.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
            let Some(out) = guard.as_mut() else { return };
            if out.write_all(&buf[..n]).is_err() {
                return;
            }
        }
        sink.lock().unwrap_or_else(|p| p.into_inner()).take();
    });
}

/// Copies the pty master into containerd's stdout FIFO until the terminal closes, then closes
/// the FIFO and says so on `copied`.
fn spawn_output_copy(master: Arc<OwnedFd>, path: String, copied: watch::Sender<bool>) {
    let _ = std::thread::Builder::new().name("tty-out".into()).spawn(move || {
        // The writer first: its open waits for containerd's reader, so what is written has a
        // reader to reach. Then a reader of the copy's own while it writes, as runc's shim
        // keeps one (in that order): the pipe and what it holds live until the copy is over
        // even if containerd's reader is between opens. Opening ours first would let the
        // writer's open succeed before containerd's reader exists.
        let out = if path.is_empty() { None } else { open_writer(&path).ok() };
        let hold = if out.is_none() {
            None
        } else {
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).open(&path).ok()
        };
        let mut buf = [0u8; 32 * 1024];
        let mut out = out;
        loop {
            let n = match rustix::io::read(master.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                // EIO: every process holding the terminal is gone.
                Err(_) => break,
            };
            if let Some(f) = out.as_mut() {
                if f.write_all(&buf[..n]).is_err() {
                    out = None;
                }
            }
        }
        drop(out);
        drop(hold);
        copied.send_replace(true);
    });
}

impl Prepared {
    /// Opens what containerd named. Blocking: run it off the async runtime.
    pub fn open(paths: &StdioPaths) -> Result<Self, StdioError> {
        let mut stdio = Stdio::default();
        let handle = IoHandle::default();
        if paths.terminal {
            let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| StdioError::Io { what: "socketpair for the terminal", source: e.into() })?;
            stdio.console = FdSlot::new(theirs);
            return Ok(Self { stdio, console: Some(ours), paths: paths.clone(), handle });
        }
        if !paths.stdin.is_empty() {
            let (reader, writer) = std::io::pipe().map_err(|source| StdioError::Io { what: "stdin pipe", source })?;
            stdio.stdin = FdSlot::new(reader);
            *handle.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(File::from(OwnedFd::from(writer)));
        }
        if !paths.stdout.is_empty() {
            stdio.stdout = FdSlot::new(open_writer(&paths.stdout)?);
        }
        if !paths.stderr.is_empty() {
            stdio.stderr = FdSlot::new(open_writer(&paths.stderr)?);
        }
        Ok(Self { stdio, console: None, paths: paths.clone(), handle })
    }

    /// Once paddockd has set the process up: receives the terminal (blocking) and starts the
    /// copies. The request's descriptors must be gone by now (sent, and dropped with it).
    pub fn finish(mut self) -> Result<IoHandle, StdioError> {
        if let Some(console) = self.console.take() {
            // The sandbox held the other end only while it set the process up.
            self.stdio = Stdio::default();
            let master = Arc::new(receive_fd(console.as_fd())?);
            let writer =
                master.try_clone().map_err(|source| StdioError::Io { what: "duplicating the terminal", source })?;
            *self.handle.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(File::from(writer));
            self.handle.master = Some(master.clone());
            let (copied, receiver) = watch::channel(false);
            self.handle.output_copied = Some(receiver);
            spawn_output_copy(master, self.paths.stdout.clone(), copied);
        }
        if !self.paths.stdin.is_empty() {
            spawn_stdin_copy(self.paths.stdin.clone(), self.handle.stdin.clone(), self.handle.fifo.clone());
        }
        Ok(self.handle)
    }
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, StdioError> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| StdioError::Io { what: "receiving the terminal", source: e.into() })?;
    let cmsgs = msg.cmsgs().map_err(|e| StdioError::Io { what: "reading the terminal's message", source: e.into() })?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor in our table; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(StdioError::NoTerminal)
}
