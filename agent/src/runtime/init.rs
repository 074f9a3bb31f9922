//! The container helper: the code that runs in `skiff container-init`, a fresh single-threaded
//! process the agent starts, so that nothing runs between `fork` and `exec` in the
//! multi-threaded agent.
//!
//! For a container the helper becomes its shim: it joins the pod's namespaces, makes a PID
//! namespace, forks the container's first process (which sets up the root filesystem, drops
//! privileges and execs), reports the PID to the agent on stdout, then stays behind copying the
//! container's stdout/stderr into its CRI-format log and records the exit status on disk, so the
//! container keeps running (and keeps being logged) when the agent restarts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};

use super::caps;
use super::rootfs::secure_join;
use super::seccomp;
use super::spec::{ContainerSpec, ExecSpec, Exit, SandboxSpec, Started};
use super::wire;
use crate::sys::{Forked, Syscall, open_ns};

/// Default PATH when the container's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest line kept whole in the log; longer output is split into partial ("P") records.
const MAX_LINE: usize = 16 * 1024;
/// How long an exec'd process may outlive the hangup of its terminal.
const HANGUP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A step of container setup that failed, with the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct SetupError {
    step: String,
    #[source]
    source: std::io::Error,
}

fn err(step: impl Into<String>) -> impl FnOnce(nix::Error) -> SetupError {
    let step = step.into();
    move |e| SetupError {
        step,
        source: std::io::Error::from(e),
    }
}

fn io_err(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let step = step.into();
    move |source| SetupError { step, source }
}

/// A pod sandbox: new network, IPC and UTS namespaces for the calling thread, the pod's
/// hostname, and each namespace bound onto its file so it outlives the thread. The caller
/// must be a thread that exits afterwards (it stays in the pod's namespaces).
pub fn run_sandbox(sys: &dyn Syscall, spec: &SandboxSpec) -> Result<(), SetupError> {
    sys.unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(err("unshare pod namespaces"))?;
    sys.sethostname(&spec.hostname)
        .map_err(err("set hostname"))?;
    for (kind, target) in [("net", &spec.net), ("ipc", &spec.ipc), ("uts", &spec.uts)] {
        if !target.exists() {
            File::create(target).map_err(io_err(format!("create {}", target.display())))?;
        }
        let source = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
        sys.mount(Some(&source), target, None, MsFlags::MS_BIND, None)
            .map_err(err(format!("bind {kind} namespace")))?;
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SetupError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(err("pipe"))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Container helper entry point: returns the helper's exit code.
pub fn run_container(sys: &dyn Syscall, spec: &ContainerSpec) -> i32 {
    let report = |started: &Started| {
        let mut out = std::io::stdout();
        let line = serde_json::to_string(started).unwrap_or_default();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    match shim(sys, spec, &report) {
        Ok(code) => code,
        Err(e) => {
            report(&Started {
                pid: None,
                shim_pid: None,
                error: Some(e.to_string()),
            });
            1
        }
    }
}

fn shim(
    sys: &dyn Syscall,
    spec: &ContainerSpec,
    report: &dyn Fn(&Started),
) -> Result<i32, SetupError> {
    let _ = sys.setsid();
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (sync_r, sync_w) = pipe()?;
    // stdin: a pipe the shim keeps open for attached clients, or the terminal.
    let stdin = if spec.stdin && !spec.tty {
        Some(pipe()?)
    } else {
        None
    };
    let terminal = if spec.tty {
        Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(err("terminal socket pair"))?,
        )
    } else {
        None
    };
    join_pod_namespaces(sys, spec)?;
    sys.unshare(CloneFlags::CLONE_NEWPID)
        .map_err(err("unshare pid namespace"))?;
    match sys.fork().map_err(err("fork"))? {
        Forked::Child => {
            drop((out_r, err_r, sync_r));
            let stdio = ChildStdio {
                stdin: stdin.map(|(r, w)| {
                    drop(w);
                    r
                }),
                stdout: out_w,
                stderr: err_w,
                terminal: terminal.map(|(parent, child)| {
                    drop(parent);
                    child
                }),
            };
            let e = child(sys, spec, stdio);
            let mut w = File::from(sync_w);
            let _ = w.write_all(e.to_string().as_bytes());
            crate::sys::exit_now(127);
        }
        Forked::Parent(pid) => {
            drop((out_w, err_w, sync_w));
            let stdin = stdin.map(|(r, w)| {
                drop(r);
                File::from(w)
            });
            // The first process sends the terminal it opened, or closes the socket on exec.
            let master = terminal.and_then(|(parent, child)| {
                drop(child);
                crate::sys::recv_fd(&parent)
            });
            let shim_pid = std::process::id();
            let _ = write_json(
                &spec.state_dir.join("state.json"),
                &serde_json::json!({"pid": pid.as_raw(), "shimPid": shim_pid}),
            );
            let mut msg = String::new();
            let _ = File::from(sync_r).read_to_string(&mut msg);
            let shim_pid = i32::try_from(shim_pid).ok();
            let exec_error = if msg.is_empty() { None } else { Some(msg) };
            // Listening before the start is reported: an attach may follow at once.
            let listener = match super::attach::listen(&spec.state_dir) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("container-init: attach socket: {e}");
                    None
                }
            };
            report(&Started {
                pid: Some(pid.as_raw()),
                shim_pid,
                error: exec_error.clone(),
            });
            detach_stdio();
            let mut log = LogWriter::open(spec);
            let io = super::attach::ContainerIo {
                stdout: Some(out_r),
                stderr: Some(err_r),
                terminal: master.map(File::from),
                stdin,
                stdin_once: spec.stdin_once,
                hello: serde_json::to_vec(&serde_json::json!({
                    "stdin": spec.stdin, "stdinOnce": spec.stdin_once, "tty": spec.tty,
                }))
                .unwrap_or_default(),
            };
            super::attach::serve(&mut log, io, listener);
            let _ = std::fs::remove_file(super::attach::socket_path(&spec.state_dir));
            let exit = wait_exit(pid, exec_error);
            let _ = write_json(&spec.state_dir.join("exit.json"), &exit);
            Ok(0)
        }
    }
}

/// The container's first process's ends of its stdio.
struct ChildStdio {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Where to send the terminal's master side (`tty: true`).
    terminal: Option<OwnedFd>,
}

/// Point stdin/stdout at /dev/null so the agent's pipe closes and a dead agent cannot stall us.
fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        let _ = nix::unistd::dup2_stdin(null.as_fd());
    }
}

fn wait_exit(pid: Pid, error: Option<String>) -> Exit {
    let finished_at = jiff::Timestamp::now().to_string();
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Exit {
                    exit_code: if error.is_some() { 128 } else { code },
                    signal: None,
                    finished_at,
                    error,
                };
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Exit {
                    exit_code: 128 + sig as libc::c_int,
                    signal: Some(sig as libc::c_int),
                    finished_at,
                    error,
                };
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => {
                return Exit {
                    exit_code: 255,
                    signal: None,
                    finished_at,
                    error,
                };
            }
        }
    }
}

fn join_pod_namespaces(sys: &dyn Syscall, spec: &ContainerSpec) -> Result<(), SetupError> {
    let ns = &spec.namespaces;
    for (path, flag, what) in [
        (&ns.net, CloneFlags::CLONE_NEWNET, "net"),
        (&ns.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (&ns.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        if let Some(path) = path {
            let fd = open_ns(path).map_err(io_err(format!("open {what} namespace")))?;
            sys.setns(fd.as_fd(), flag)
                .map_err(err(format!("join {what} namespace")))?;
        }
    }
    Ok(())
}

/// The container's first process: everything from here ends in exec or an error.
fn child(sys: &dyn Syscall, spec: &ContainerSpec, stdio: ChildStdio) -> SetupError {
    match stdio.stdin {
        Some(r) => {
            let _ = nix::unistd::dup2_stdin(r.as_fd());
        }
        None => {
            if let Ok(null) = File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(null.as_fd());
            }
        }
    }
    let _ = nix::unistd::dup2_stdout(stdio.stdout.as_fd());
    let _ = nix::unistd::dup2_stderr(stdio.stderr.as_fd());
    drop((stdio.stdout, stdio.stderr));
    if let Err(e) = setup(sys, spec) {
        return e;
    }
    if let Some(sock) = stdio.terminal
        && let Err(e) = open_terminal(sys, &sock)
    {
        return e;
    }
    exec(sys, spec)
}

/// Open a terminal in the container's devpts, make it this process's controlling terminal
/// and stdio, and send its master side to the shim over `sock`.
fn open_terminal(sys: &dyn Syscall, sock: &OwnedFd) -> Result<(), SetupError> {
    let pty = nix::pty::openpty(None, None).map_err(err("open a terminal"))?;
    take_terminal(sys, pty.slave)?;
    crate::sys::send_fd(sock, &pty.master).map_err(err("hand the terminal to the shim"))?;
    Ok(())
}

/// Namespaces, cgroups, root filesystem, then privileges: all before exec.
pub fn setup(sys: &dyn Syscall, spec: &ContainerSpec) -> Result<(), SetupError> {
    for cg in &spec.cgroups {
        std::fs::write(cg.join("cgroup.procs"), b"0")
            .map_err(io_err(format!("join cgroup {}", cg.display())))?;
    }
    sys.unshare(CloneFlags::CLONE_NEWNS)
        .map_err(err("unshare mount namespace"))?;
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(err("make / private"))?;
    mount_rootfs(sys, spec)?;
    pivot(sys, &spec.rootfs.merged)?;
    if !spec.privileged {
        mask_proc(sys);
    }
    drop_privileges(sys, spec)?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    sys.chdir(Path::new(cwd))
        .map_err(err(format!("chdir {cwd}")))?;
    if spec.no_new_privs {
        sys.no_new_privs().map_err(err("no_new_privs"))?;
    }
    if spec.seccomp {
        sys.seccomp(&seccomp::default_filter())
            .map_err(err("seccomp"))?;
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), SetupError> {
    std::fs::create_dir_all(path).map_err(io_err(format!("mkdir {}", path.display())))
}

fn mount_rootfs(sys: &dyn Syscall, spec: &ContainerSpec) -> Result<(), SetupError> {
    let r = &spec.rootfs;
    let lower = r
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        r.upper.display(),
        r.work.display()
    );
    sys.mount(
        Some(Path::new("overlay")),
        &r.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )
    .map_err(err("mount overlay rootfs"))?;
    let root = &r.merged;
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;

    let proc = secure_join(root, "/proc").map_err(io_err("resolve /proc"))?;
    mkdir(&proc)?;
    sys.mount(Some(Path::new("proc")), &proc, Some("proc"), nosuid, None)
        .map_err(err("mount /proc"))?;

    let sysfs = secure_join(root, "/sys").map_err(io_err("resolve /sys"))?;
    mkdir(&sysfs)?;
    let ro = if spec.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    sys.mount(
        Some(Path::new("sysfs")),
        &sysfs,
        Some("sysfs"),
        nosuid | ro,
        None,
    )
    .map_err(err("mount /sys"))?;

    mount_dev(sys, root)?;

    for m in &spec.mounts {
        bind(sys, root, m)?;
    }
    if r.readonly {
        sys.mount(
            Some(root),
            root,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(err("remount rootfs read-only"))?;
    }
    Ok(())
}

fn mount_dev(sys: &dyn Syscall, root: &Path) -> Result<(), SetupError> {
    let dev = secure_join(root, "/dev").map_err(io_err("resolve /dev"))?;
    mkdir(&dev)?;
    sys.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(err("mount /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        sys.mknod_char(&p, 0o666, major, minor)
            .map_err(err(format!("mknod /dev/{name}")))?;
        // mknod honours the umask; make the modes exact.
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666));
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))
            .map_err(io_err(format!("symlink /dev/{name}")))?;
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    sys.mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(err("mount /dev/pts"))?;
    let shm = dev.join("shm");
    mkdir(&shm)?;
    sys.mount(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
    .map_err(err("mount /dev/shm"))?;
    let mq = dev.join("mqueue");
    mkdir(&mq)?;
    sys.mount(
        Some(Path::new("mqueue")),
        &mq,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        None,
    )
    .map_err(err("mount /dev/mqueue"))?;
    Ok(())
}

fn bind(sys: &dyn Syscall, root: &Path, m: &super::spec::Mount) -> Result<(), SetupError> {
    let dest =
        secure_join(root, &m.destination).map_err(io_err(format!("resolve {}", m.destination)))?;
    let is_dir = std::fs::metadata(&m.source)
        .map_err(io_err(format!("mount source {}", m.source.display())))?
        .is_dir();
    if is_dir {
        mkdir(&dest)?;
    } else {
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        if !dest.exists() {
            File::create(&dest).map_err(io_err(format!("create {}", m.destination)))?;
        }
    }
    sys.mount(
        Some(&m.source),
        &dest,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(err(format!("bind mount {}", m.destination)))?;
    if m.readonly {
        sys.mount(
            Some(&m.source),
            &dest,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None,
        )
        .map_err(err(format!("remount {} read-only", m.destination)))?;
    }
    Ok(())
}

/// Make `root` the root: pivot_root with the old root stacked on top, then detach it.
fn pivot(sys: &dyn Syscall, root: &Path) -> Result<(), SetupError> {
    sys.chdir(root).map_err(err("chdir rootfs"))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(err("pivot_root"))?;
    sys.umount(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(err("detach old root"))?;
    sys.chdir(Path::new("/")).map_err(err("chdir /"))?;
    Ok(())
}

/// Hide kernel interfaces a container should not see or change (best effort: paths that do
/// not exist on this kernel are skipped).
fn mask_proc(sys: &dyn Syscall) {
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ] {
        let p = Path::new(p);
        if p.exists() {
            let _ = sys.mount(
                Some(Path::new("/dev/null")),
                p,
                None,
                MsFlags::MS_BIND,
                None,
            );
        }
    }
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        let p = Path::new(p);
        if p.exists() {
            let _ = sys.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None);
            let _ = sys.mount(
                Some(p),
                p,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None,
            );
        }
    }
}

fn drop_privileges(sys: &dyn Syscall, spec: &ContainerSpec) -> Result<(), SetupError> {
    drop_to(sys, spec.capabilities, spec.uid, spec.gid, &spec.groups)
}

fn drop_to(
    sys: &dyn Syscall,
    mask: u64,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> Result<(), SetupError> {
    for cap in 0..=caps::last() {
        if mask & (1 << cap) == 0 {
            // Capabilities the running kernel does not know fail with EINVAL: nothing to drop.
            match sys.drop_bounding_cap(cap) {
                Ok(()) | Err(nix::Error::EINVAL) => {}
                Err(e) => return Err(err(format!("drop capability {cap}"))(e)),
            }
        }
    }
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    sys.setgroups(&groups).map_err(err("setgroups"))?;
    sys.keep_caps(true).map_err(err("keep capabilities"))?;
    sys.setresgid(Gid::from_raw(gid)).map_err(err("setgid"))?;
    sys.setresuid(Uid::from_raw(uid)).map_err(err("setuid"))?;
    sys.keep_caps(false).map_err(err("keep capabilities"))?;
    sys.set_caps(mask, mask, mask)
        .map_err(err("set capabilities"))?;
    Ok(())
}

fn env_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// `args[0]` as a path: as given when it has a slash, else the first executable in PATH.
pub fn resolve_command(cmd: &str, path: &str, root: &Path) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    path.split(':').filter(|d| !d.is_empty()).find_map(|dir| {
        let candidate = Path::new(dir).join(cmd);
        let on_disk = crate::sys::under(root, &candidate.to_string_lossy());
        let meta = std::fs::metadata(&on_disk).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

fn exec(sys: &dyn Syscall, spec: &ContainerSpec) -> SetupError {
    exec_args(sys, &spec.args, &spec.env)
}

fn exec_args(sys: &dyn Syscall, args: &[String], env: &[String]) -> SetupError {
    let Some(cmd) = args.first() else {
        return SetupError {
            step: "exec".into(),
            source: std::io::Error::other("no command specified"),
        };
    };
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let Some(path) = resolve_command(cmd, env_path(&env), Path::new("/")) else {
        return SetupError {
            step: format!("exec: \"{cmd}\""),
            source: std::io::Error::other("executable file not found in $PATH"),
        };
    };
    let e = sys.execve(&path, args, &env);
    err(format!("exec {}", path.display()))(e)
}

/// Exec helper: join a running container's namespaces and cgroups, then run `spec.args` in
/// it with the container's privileges; exits with the command's status. Output goes to the
/// helper's own stdout/stderr.
pub fn run_exec(sys: &dyn Syscall, spec: &ExecSpec) -> i32 {
    match exec_in(sys, spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            126
        }
    }
}

fn exec_in(sys: &dyn Syscall, spec: &ExecSpec) -> Result<i32, SetupError> {
    for cg in &spec.cgroups {
        std::fs::write(cg.join("cgroup.procs"), b"0")
            .map_err(io_err(format!("join cgroup {}", cg.display())))?;
    }
    let mut fds = Vec::new();
    for (ns, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = PathBuf::from(format!("/proc/{}/ns/{ns}", spec.pid));
        fds.push((
            open_ns(&path).map_err(io_err(format!("open {ns} namespace")))?,
            flag,
            ns,
        ));
    }
    for (fd, flag, ns) in &fds {
        sys.setns(fd.as_fd(), *flag)
            .map_err(err(format!("join {ns} namespace")))?;
    }
    drop(fds);
    // The terminal comes from the container's own devpts: /dev/ptmx now resolves in its
    // mount namespace.
    let pty = if spec.tty {
        let size = spec.size.map(|(w, h)| nix::pty::Winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        Some(nix::pty::openpty(size.as_ref(), None).map_err(err("open a terminal"))?)
    } else {
        None
    };
    match sys.fork().map_err(err("fork"))? {
        Forked::Child => {
            let e = (|| {
                if let Some(pty) = pty {
                    drop(pty.master);
                    take_terminal(sys, pty.slave)?;
                }
                let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
                sys.chdir(Path::new(cwd))
                    .map_err(err(format!("chdir {cwd}")))?;
                drop_to(sys, spec.capabilities, spec.uid, spec.gid, &spec.groups)?;
                if spec.no_new_privs {
                    sys.no_new_privs().map_err(err("no_new_privs"))?;
                }
                if spec.seccomp {
                    sys.seccomp(&seccomp::default_filter())
                        .map_err(err("seccomp"))?;
                }
                Ok(exec_args(sys, &spec.args, &spec.env))
            })();
            let e = match e {
                Ok(e) | Err(e) => e,
            };
            eprintln!("{e}");
            crate::sys::exit_now(126);
        }
        Forked::Parent(pid) => match pty {
            None => Ok(wait_exit(pid, None).exit_code),
            Some(pty) => {
                drop(pty.slave);
                Ok(relay_terminal(pid, pty.master))
            }
        },
    }
}

/// In a new session, make `tty` the controlling terminal and stdin, stdout and stderr.
fn take_terminal(sys: &dyn Syscall, tty: OwnedFd) -> Result<(), SetupError> {
    sys.setsid().map_err(err("setsid"))?;
    crate::sys::set_controlling_terminal(tty.as_fd()).map_err(err("set controlling terminal"))?;
    nix::unistd::dup2_stdin(tty.as_fd()).map_err(err("terminal as stdin"))?;
    nix::unistd::dup2_stdout(tty.as_fd()).map_err(err("terminal as stdout"))?;
    nix::unistd::dup2_stderr(tty.as_fd()).map_err(err("terminal as stderr"))?;
    Ok(())
}

/// Between the agent and the terminal of process `pid`: [`wire`] frames on stdin (input,
/// window sizes) go to the terminal, its output to stdout. When stdin ends (the client went
/// away) the terminal is hung up, which sends SIGHUP to the process. Returns its exit code
/// once it has exited and its output is drained.
fn relay_terminal(pid: Pid, master: OwnedFd) -> i32 {
    let mut master = Some(File::from(master));
    let mut input = Some(std::io::stdin().lock());
    let mut output = std::io::stdout().lock();
    let mut decoder = wire::Decoder::default();
    let mut exit = None;
    let mut chunk = vec![0u8; 32 * 1024];
    // Once the process is gone, what it wrote is drained until the terminal is quiet.
    let mut quiet_rounds = 0;
    // A process that outlives its hangup by this long is killed.
    let mut hung_up: Option<std::time::Instant> = None;
    while master.is_some() || exit.is_none() {
        if hung_up.is_some_and(|t| t.elapsed() > HANGUP_GRACE) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let (input_ready, master_ready) = {
            let mut fds = Vec::new();
            if let Some(i) = &input {
                fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
            }
            if let Some(m) = &master {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, PollTimeout::from(100u8)) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let mut it = ready.into_iter();
            let i = if input.is_some() {
                it.next().unwrap_or(false)
            } else {
                false
            };
            let m = if master.is_some() {
                it.next().unwrap_or(false)
            } else {
                false
            };
            (i, m)
        };
        if input_ready && let Some(i) = input.as_mut() {
            match i.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    // The session is over: hang up.
                    input = None;
                    master = None;
                    hung_up.get_or_insert_with(std::time::Instant::now);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
                }
                Ok(n) => {
                    decoder.feed(&chunk[..n]);
                    while let Ok(Some((kind, payload))) = decoder.next_frame() {
                        let Some(m) = master.as_mut() else { break };
                        match kind {
                            wire::STDIN => {
                                let _ = m.write_all(&payload);
                            }
                            wire::RESIZE => {
                                if let Some((w, h)) = wire::parse_resize(&payload) {
                                    let _ = crate::sys::set_window_size(m.as_fd(), w, h);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if master_ready && let Some(m) = master.as_mut() {
            match m.read(&mut chunk) {
                // EIO: every holder of the terminal's other side has closed it.
                Ok(0) | Err(_) => master = None,
                Ok(n) => {
                    quiet_rounds = 0;
                    if output
                        .write_all(&chunk[..n])
                        .and_then(|()| output.flush())
                        .is_err()
                    {
                        master = None;
                    }
                }
            }
        } else if exit.is_some() {
            quiet_rounds += 1;
            if quiet_rounds > 2 {
                master = None;
            }
        }
        if exit.is_none() {
            match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => exit = Some(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => exit = Some(128 + sig as libc::c_int),
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => exit = Some(255),
            }
        }
    }
    exit.unwrap_or(255)
}

/// The shim's log file: CRI format (`<RFC3339Nano> <stream> <F|P> <text>`), rotated by size.
pub(super) struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    pub(super) fn open(spec: &ContainerSpec) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            path: spec.log_path.clone(),
            file,
            size,
            max_bytes: spec.log_max_bytes,
            max_files: spec.log_max_files,
        }
    }

    fn record(&mut self, stream: &str, tag: char, text: &[u8]) {
        let ts = jiff::Timestamp::now();
        let mut line = format!("{} {stream} {tag} ", crate::logs::format_ts(ts)).into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.max_bytes > 0
            && self.size + u64::try_from(line.len()).unwrap_or(u64::MAX) > self.max_bytes
            && self.size > 0
        {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut()
            && f.write_all(&line).is_ok()
        {
            self.size += u64::try_from(line.len()).unwrap_or(0);
        }
    }

    /// `x.log` → `x.log.1` → … → `x.log.<max_files-1>`; the oldest falls off.
    fn rotate(&mut self) {
        let keep = self.max_files.max(2) - 1;
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(keep));
        for i in (1..keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        let _ = std::fs::rename(&self.path, name(1));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// Splits a byte stream into log records.
pub(super) struct Lines {
    stream: &'static str,
    buf: Vec<u8>,
}

impl Lines {
    pub(super) fn new(stream: &'static str) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub(super) fn feed(&mut self, data: &[u8], log: &mut LogWriter) {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            log.record(self.stream, 'F', &line[..line.len() - 1]);
        }
        while self.buf.len() >= MAX_LINE {
            let part: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
            log.record(self.stream, 'P', &part);
        }
    }

    pub(super) fn finish(&mut self, log: &mut LogWriter) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            log.record(self.stream, 'F', &rest);
        }
    }
}

/// Used by tests: the raw fd of a file, to check descriptors are distinct.
#[cfg(test)]
fn raw(f: &File) -> i32 {
    f.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::{Mount, Namespaces, Rootfs};
    use crate::sys::Recording;

    fn spec(dir: &Path) -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            rootfs: Rootfs {
                lower: vec![dir.join("l1"), dir.join("l2")],
                upper: dir.join("u"),
                work: dir.join("w"),
                merged: dir.join("m"),
                readonly: false,
            },
            namespaces: Namespaces::default(),
            mounts: vec![Mount {
                source: dir.join("hosts"),
                destination: "/etc/hosts".into(),
                readonly: true,
            }],
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 5],
            capabilities: caps::mask(&[], &[], false),
            no_new_privs: true,
            seccomp: true,
            privileged: false,
            cgroups: vec![],
            log_path: dir.join("0.log"),
            log_max_bytes: 200,
            log_max_files: 3,
            state_dir: dir.to_path_buf(),
            stdin: false,
            stdin_once: false,
            tty: false,
        }
    }

    #[test]
    fn setup_order_pivot_then_privileges_then_seccomp() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let sys = Recording::default();
        setup(&sys, &spec(d.path())).unwrap();
        let calls = sys.calls();
        let pos = |p: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(p))
                .unwrap_or_else(|| panic!("{p} missing in {calls:#?}"))
        };
        assert!(calls[0].starts_with("unshare") && calls[0].contains("NEWNS"));
        let overlay = &calls[pos("mount overlay")];
        assert!(overlay.contains(&format!(
            "lowerdir={}:{}",
            d.path().join("l1").display(),
            d.path().join("l2").display()
        )));
        assert!(pos("mount proc") < pos("pivot_root"));
        assert!(calls.iter().any(|c| c.starts_with("mount devpts")));
        assert!(
            calls
                .iter()
                .any(|c| c.contains("/etc/hosts") && c.ends_with("ro"))
        );
        assert!(pos("pivot_root") < pos("drop_bounding_cap"));
        assert!(pos("setresuid 1000") < pos("set_caps"));
        assert!(pos("setresgid") < pos("setresuid"));
        assert!(pos("no_new_privs") < pos("seccomp"));
        // SYS_ADMIN (21) is dropped from the bounding set, CHOWN (0) is kept.
        assert!(calls.contains(&"drop_bounding_cap 21".to_string()));
        assert!(!calls.contains(&"drop_bounding_cap 0".to_string()));
        let dev = d.path().join("m/dev");
        assert_eq!(
            std::fs::read_link(dev.join("stdout")).unwrap(),
            Path::new("/proc/self/fd/1")
        );
        assert_eq!(
            std::fs::read_link(dev.join("fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
    }

    #[test]
    fn failing_call_names_the_step() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("hosts"), "").unwrap();
        let sys = Recording {
            fail: vec!["pivot_root"],
            ..Recording::default()
        };
        let e = setup(&sys, &spec(d.path())).unwrap_err();
        assert!(e.to_string().starts_with("pivot_root"), "{e}");
    }

    #[test]
    fn resolves_commands_through_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        let sh = d.path().join("bin/sh");
        std::fs::write(&sh, "").unwrap();
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("bin/data"), "").unwrap();
        assert_eq!(
            resolve_command("sh", "/usr/bin:/bin", d.path()),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(resolve_command("data", "/bin", d.path()), None);
        assert_eq!(
            resolve_command("./x", "/bin", d.path()),
            Some(PathBuf::from("./x"))
        );
    }

    #[test]
    fn log_lines_partial_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let s = spec(d.path());
        let mut log = LogWriter::open(&s);
        let mut lines = Lines {
            stream: "stdout",
            buf: Vec::new(),
        };
        lines.feed(b"hello\nwor", &mut log);
        lines.feed(b"ld\n", &mut log);
        let text = std::fs::read_to_string(&s.log_path).unwrap();
        let recs: Vec<&str> = text.lines().collect();
        assert_eq!(recs.len(), 2);
        assert!(recs[0].ends_with(" stdout F hello"), "{}", recs[0]);
        assert!(recs[1].ends_with(" stdout F world"));
        for i in 0..10 {
            lines.feed(format!("line {i}\n").as_bytes(), &mut log);
        }
        let rotated = PathBuf::from(format!("{}.1", s.log_path.display()));
        assert!(rotated.exists());
        assert!(std::fs::metadata(&s.log_path).unwrap().len() <= 200);
        assert!(!PathBuf::from(format!("{}.3", s.log_path.display())).exists());
        let f = File::open(&s.log_path).unwrap();
        assert!(raw(&f) > 2);
    }
}
