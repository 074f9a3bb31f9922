//! Every system call the agent and its container helper make that changes process or kernel
//! state, behind one trait: [`Syscall`]. [`Linux`] is the real implementation (the only place
//! in the crate allowed `unsafe`); [`Recording`] is a test double that records each call so
//! tests can check what would be done, and in which order, without root.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

/// What [`Syscall::fork`] returned in the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent(Pid),
    Child,
}

/// One classic BPF instruction of a seccomp filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The system calls a container needs, as the helper and agent use them.
pub trait Syscall: Send + Sync {
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()>;
    /// Fork the calling (single-threaded) process.
    fn fork(&self) -> nix::Result<Forked>;
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()>;
    fn setgroups(&self, groups: &[Gid]) -> nix::Result<()>;
    fn setresgid(&self, gid: Gid) -> nix::Result<()>;
    fn setresuid(&self, uid: Uid) -> nix::Result<()>;
    /// Keep permitted capabilities across the uid change (PR_SET_KEEPCAPS).
    fn keep_caps(&self, keep: bool) -> nix::Result<()>;
    /// Remove `cap` from the bounding set.
    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()>;
    /// Set the effective, permitted and inheritable sets to `mask` (bit n = capability n).
    fn set_caps(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()>;
    /// Raise `cap` in the ambient set.
    fn raise_ambient(&self, cap: u32) -> nix::Result<()>;
    fn no_new_privs(&self) -> nix::Result<()>;
    fn seccomp(&self, program: &[BpfInsn]) -> nix::Result<()>;
    fn setsid(&self) -> nix::Result<()>;
    fn kill(&self, pid: Pid, signal: Signal) -> nix::Result<()>;
    /// Replace the process image; returns only on failure.
    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> nix::Error;
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

fn cstring(s: &str) -> nix::Result<CString> {
    CString::new(s).map_err(|_| nix::Error::EINVAL)
}

impl Syscall for Linux {
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd, flags)
    }

    fn fork(&self) -> nix::Result<Forked> {
        // SAFETY: only the single-threaded container helper calls fork (the agent never
        // does), so the child owns every lock and allocator state it inherits.
        match unsafe { nix::unistd::fork() }? {
            ForkResult::Parent { child } => Ok(Forked::Parent(child)),
            ForkResult::Child => Ok(Forked::Child),
        }
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(mode),
            nix::sys::stat::makedev(major, minor),
        )
    }

    fn setgroups(&self, groups: &[Gid]) -> nix::Result<()> {
        nix::unistd::setgroups(groups)
    }

    fn setresgid(&self, gid: Gid) -> nix::Result<()> {
        nix::unistd::setresgid(gid, gid, gid)
    }

    fn setresuid(&self, uid: Uid) -> nix::Result<()> {
        nix::unistd::setresuid(uid, uid, uid)
    }

    fn keep_caps(&self, keep: bool) -> nix::Result<()> {
        nix::sys::prctl::set_keepcaps(keep)
    }

    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()> {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        nix::errno::Errno::result(r).map(drop)
    }

    fn set_caps(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let split = |m: u64| {
            [
                u32::try_from(m & 0xffff_ffff).unwrap_or(0),
                u32::try_from(m >> 32).unwrap_or(0),
            ]
        };
        let (e, p, i) = (split(effective), split(permitted), split(inheritable));
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [
            Data {
                effective: e[0],
                permitted: p[0],
                inheritable: i[0],
            },
            Data {
                effective: e[1],
                permitted: p[1],
                inheritable: i[1],
            },
        ];
        // SAFETY: capset reads one header and two data structs (version 3 layout), both live
        // for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
        nix::errno::Errno::result(r).map(drop)
    }

    fn raise_ambient(&self, cap: u32) -> nix::Result<()> {
        // SAFETY: PR_CAP_AMBIENT_RAISE takes plain integers.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_RAISE).unwrap_or(0),
                libc::c_ulong::from(cap),
                0,
                0,
            )
        };
        nix::errno::Errno::result(r).map(drop)
    }

    fn no_new_privs(&self) -> nix::Result<()> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn seccomp(&self, program: &[BpfInsn]) -> nix::Result<()> {
        let mut filters: Vec<libc::sock_filter> = program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let len = u16::try_from(filters.len()).map_err(|_| nix::Error::E2BIG)?;
        let prog = libc::sock_fprog {
            len,
            filter: filters.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `filters`, which outlives the call; the kernel copies the
        // program before returning.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                &raw const prog,
                0,
                0,
            )
        };
        nix::errno::Errno::result(r).map(drop)
    }

    fn setsid(&self) -> nix::Result<()> {
        nix::unistd::setsid().map(drop)
    }

    fn kill(&self, pid: Pid, signal: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(pid, signal)
    }

    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> nix::Error {
        let build = || -> nix::Result<(CString, Vec<CString>, Vec<CString>)> {
            let p = cstring(&path.to_string_lossy())?;
            let a = args
                .iter()
                .map(|s| cstring(s))
                .collect::<nix::Result<_>>()?;
            let e = env.iter().map(|s| cstring(s)).collect::<nix::Result<_>>()?;
            Ok((p, a, e))
        };
        match build() {
            Ok((p, a, e)) => match nix::unistd::execve(&p, &a, &e) {
                Err(e) => e,
                Ok(never) => match never {},
            },
            Err(e) => e,
        }
    }
}

/// Test double: records each call as a line such as `mount proc -> /r/proc (proc)` and
/// succeeds, except for calls whose name is in `fail`.
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Mutex<Vec<String>>,
    pub fail: Vec<&'static str>,
}

impl Recording {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, name: &'static str, detail: String) -> nix::Result<()> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(if detail.is_empty() {
                name.to_owned()
            } else {
                format!("{name} {detail}")
            });
        }
        if self.fail.contains(&name) {
            Err(nix::Error::EPERM)
        } else {
            Ok(())
        }
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

impl Syscall for Recording {
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record("unshare", format!("{flags:?}"))
    }
    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
        let _ = fd.as_raw_fd();
        self.record("setns", format!("{flags:?}"))
    }
    fn fork(&self) -> nix::Result<Forked> {
        self.record("fork", String::new()).map(|()| Forked::Child)
    }
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let src = source.map(show).unwrap_or_else(|| "none".into());
        let mut d = format!("{src} -> {}", show(target));
        if let Some(t) = fstype {
            d.push_str(&format!(" ({t})"));
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            d.push_str(" ro");
        }
        if let Some(data) = data {
            d.push_str(&format!(" [{data}]"));
        }
        self.record("mount", d)
    }
    fn umount(&self, target: &Path, _flags: MntFlags) -> nix::Result<()> {
        self.record("umount", show(target))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.record(
            "pivot_root",
            format!("{} {}", show(new_root), show(put_old)),
        )
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record("chdir", show(path))
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record("sethostname", name.to_owned())
    }
    fn mknod_char(&self, path: &Path, _mode: u32, major: u64, minor: u64) -> nix::Result<()> {
        self.record("mknod", format!("{} {major}:{minor}", show(path)))
    }
    fn setgroups(&self, groups: &[Gid]) -> nix::Result<()> {
        self.record("setgroups", format!("{groups:?}"))
    }
    fn setresgid(&self, gid: Gid) -> nix::Result<()> {
        self.record("setresgid", gid.to_string())
    }
    fn setresuid(&self, uid: Uid) -> nix::Result<()> {
        self.record("setresuid", uid.to_string())
    }
    fn keep_caps(&self, keep: bool) -> nix::Result<()> {
        self.record("keep_caps", keep.to_string())
    }
    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()> {
        self.record("drop_bounding_cap", cap.to_string())
    }
    fn set_caps(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
        self.record(
            "set_caps",
            format!("{effective:#x} {permitted:#x} {inheritable:#x}"),
        )
    }
    fn raise_ambient(&self, cap: u32) -> nix::Result<()> {
        self.record("raise_ambient", cap.to_string())
    }
    fn no_new_privs(&self) -> nix::Result<()> {
        self.record("no_new_privs", String::new())
    }
    fn seccomp(&self, program: &[BpfInsn]) -> nix::Result<()> {
        self.record("seccomp", format!("{} insns", program.len()))
    }
    fn setsid(&self) -> nix::Result<()> {
        self.record("setsid", String::new())
    }
    fn kill(&self, pid: Pid, signal: Signal) -> nix::Result<()> {
        self.record("kill", format!("{pid} {signal}"))
    }
    fn execve(&self, path: &Path, args: &[String], _env: &[String]) -> nix::Error {
        let _ = self.record("execve", format!("{} {args:?}", show(path)));
        nix::Error::ENOSYS
    }
}

/// End the calling process at once, without running exit handlers or flushing buffers that
/// a forked child shares with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns.
    unsafe { libc::_exit(code) }
}

/// Open a namespace file (e.g. a pod's bound network namespace) for [`Syscall::setns`].
pub fn open_ns(path: &Path) -> std::io::Result<OwnedFd> {
    std::fs::File::open(path).map(OwnedFd::from)
}

/// Absolute path of `inside` (an absolute container path) under `root`.
pub fn under(root: &Path, inside: &str) -> PathBuf {
    root.join(inside.trim_start_matches('/'))
}

/// Set the window size of the terminal `fd` (TIOCSWINSZ); the foreground process group
/// gets SIGWINCH.
pub fn set_window_size(fd: BorrowedFd<'_>, width: u16, height: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
    nix::errno::Errno::result(r).map(drop)
}

/// Make the terminal `fd` the controlling terminal of the calling session leader
/// (TIOCSCTTY).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument and touches no memory of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).map(drop)
}

/// Send `fd` over the unix socket `sock` (SCM_RIGHTS): how a container's first process
/// hands the master side of the terminal it opened in its own devpts to the shim.
pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"t")],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receive one descriptor sent with [`send_fd`]; `None` when the peer closed without one.
pub fn recv_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor in our table for us; nothing
            // else owns it.
            return Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
        }
    }
    None
}
