//! The shim's side of a container's stdio: it copies the container's output into its log and
//! to every client attached through the unix socket `attach.sock` in the container's state
//! directory, and feeds what attached clients send into the container's stdin (a pipe kept
//! open when the container has `stdin: true`) or terminal (`tty: true`). Frames on the socket
//! are [`wire`] frames: the shim sends `HELLO` (the container's settings as JSON), then
//! `STDOUT`/`STDERR`; clients send `STDIN`, `STDIN_CLOSE` and `RESIZE`. With `stdinOnce` the
//! container's stdin is closed when the first client that used it closes its stdin or leaves.
//!

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::init::{Lines, LogWriter};
use super::wire;

/// Name of the attach socket in a container's state directory.
pub const SOCKET: &str = "attach.sock";
/// A client that does not take its output within this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many clients are attached at once; later ones are refused.
const MAX_CLIENTS: usize = 16;

/// The container's stdio as the shim holds it.
pub struct ContainerIo {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The terminal's master side (`tty: true`): output and input both.
    pub terminal: Option<File>,
    /// The write end of the container's stdin pipe (`stdin: true` without a tty).
    pub stdin: Option<File>,
    pub stdin_once: bool,
    /// JSON sent to every client first.
    pub hello: Vec<u8>,
}

struct Client {
    conn: UnixStream,
    decoder: wire::Decoder,
    used_stdin: bool,
}

/// Where the attach socket of a container with state directory `state_dir` is.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// A short name for the socket in the directory `dir` (open): socket addresses are limited to
/// 108 bytes, which deep data directories and long container names exceed.
pub fn short_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd()))
}

/// Listen on the attach socket (a stale one is replaced).
pub fn listen(state_dir: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(socket_path(state_dir));
    let dir = File::open(state_dir)?;
    let l = UnixListener::bind(short_path(&dir))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

enum Source {
    Out,
    Err,
    Term,
    Listener,
    Client(usize),
}

/// Copy the container's output into the log and to attached clients, and clients' input to
/// the container, until the container has closed its output.
pub(super) fn serve(log: &mut LogWriter, mut io: ContainerIo, listener: Option<UnixListener>) {
    let mut out = io.stdout.take().map(File::from);
    let mut err = io.stderr.take().map(File::from);
    let mut out_lines = Lines::new("stdout");
    let mut err_lines = Lines::new("stderr");
    let mut clients: Vec<Client> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while out.is_some() || err.is_some() || io.terminal.is_some() {
        let ready: Vec<Source> = {
            let mut fds = Vec::new();
            let mut what = Vec::new();
            if let Some(f) = &out {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                what.push(Source::Out);
            }
            if let Some(f) = &err {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                what.push(Source::Err);
            }
            if let Some(f) = &io.terminal {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                what.push(Source::Term);
            }
            if let Some(l) = &listener {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                what.push(Source::Listener);
            }
            for (i, c) in clients.iter().enumerate() {
                fds.push(PollFd::new(c.conn.as_fd(), PollFlags::POLLIN));
                what.push(Source::Client(i));
            }
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
            let flags: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            what.into_iter()
                .zip(flags)
                .filter_map(|(w, r)| r.then_some(w))
                .collect()
        };
        let mut gone: Vec<usize> = Vec::new();
        for src in ready {
            match src {
                Source::Out | Source::Err | Source::Term => {
                    let (file, lines, kind) = match src {
                        Source::Out => (&mut out, &mut out_lines, wire::STDOUT),
                        Source::Err => (&mut err, &mut err_lines, wire::STDERR),
                        _ => (&mut io.terminal, &mut out_lines, wire::STDOUT),
                    };
                    let n = file.as_mut().map_or(Ok(0), |f| f.read(&mut chunk));
                    match n {
                        // EIO from a terminal: nothing holds its other side any more.
                        Ok(0) | Err(_) => {
                            lines.finish(log);
                            *file = None;
                        }
                        Ok(n) => {
                            lines.feed(&chunk[..n], log);
                            let f = wire::frame(kind, &chunk[..n]);
                            for (i, c) in clients.iter_mut().enumerate() {
                                if c.conn.write_all(&f).is_err() {
                                    gone.push(i);
                                }
                            }
                        }
                    }
                }
                Source::Listener => {
                    if let Some(l) = &listener
                        && let Ok((conn, _)) = l.accept()
                    {
                        accept(&mut clients, conn, &io.hello);
                    }
                }
                Source::Client(i) => {
                    let c = &mut clients[i];
                    match c.conn.read(&mut chunk) {
                        Ok(0) | Err(_) => gone.push(i),
                        Ok(n) => {
                            c.decoder.feed(&chunk[..n]);
                            if !client_input(c, &mut io) {
                                gone.push(i);
                            }
                        }
                    }
                }
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for i in gone.into_iter().rev() {
            let c = clients.remove(i);
            if c.used_stdin && io.stdin_once {
                io.stdin = None;
            }
        }
    }
}

fn accept(clients: &mut Vec<Client>, conn: UnixStream, hello: &[u8]) {
    if clients.len() >= MAX_CLIENTS || conn.set_nonblocking(false).is_err() {
        return;
    }
    let _ = conn.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
    let mut conn = conn;
    if conn.write_all(&wire::frame(wire::HELLO, hello)).is_err() {
        return;
    }
    clients.push(Client {
        conn,
        decoder: wire::Decoder::default(),
        used_stdin: false,
    });
}

/// Apply what a client sent; false when it sent garbage.
fn client_input(c: &mut Client, io: &mut ContainerIo) -> bool {
    loop {
        match c.decoder.next_frame() {
            Ok(None) => return true,
            Err(_) => return false,
            Ok(Some((kind, payload))) => match kind {
                wire::STDIN => {
                    c.used_stdin = true;
                    let target = io.terminal.as_mut().or(io.stdin.as_mut());
                    if let Some(t) = target {
                        let _ = t.write_all(&payload);
                    }
                }
                wire::STDIN_CLOSE => {
                    c.used_stdin = true;
                    if io.stdin_once {
                        io.stdin = None;
                    }
                }
                wire::RESIZE => {
                    if let (Some(t), Some((w, h))) = (&io.terminal, wire::parse_resize(&payload)) {
                        let _ = crate::sys::set_window_size(t.as_fd(), w, h);
                    }
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{recv_fd, send_fd};

    #[test]
    fn descriptors_pass_over_a_socket_pair() {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        std::fs::write(&path, "passed").unwrap();
        let f = OwnedFd::from(File::open(&path).unwrap());
        send_fd(&a, &f).unwrap();
        drop(f);
        let got = recv_fd(&b).expect("a descriptor");
        let mut text = String::new();
        File::from(got).read_to_string(&mut text).unwrap();
        assert_eq!(text, "passed");
        drop(a);
        assert!(recv_fd(&b).is_none());
    }
}
