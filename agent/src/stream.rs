//! Streaming endpoints of the agent's HTTPS server, as the kubelet serves them:
//! `/portForward/{ns}/{pod}` (`portforward.k8s.io`), `/exec/{ns}/{pod}/{container}` and
//! `/attach/{ns}/{pod}/{container}` (`v4.channel.k8s.io`), over SPDY/3.1 (see [`crate::spdy`])
//! or WebSocket (see [`crate::ws`]); both give a session the same [`Channels`].
//!
//! Port-forward connects, for every forwarded connection, to `127.0.0.1:PORT` inside the pod's
//! network namespace (from a throwaway thread that joins it, so localhost-only listeners are
//! reachable too). Exec runs `skiff container-init --exec` with the container's process
//! settings; the helper joins the container's namespaces and cgroup and execs the command with
//! the stream's pipes as its stdio, or on a new terminal (`tty`). Attach connects to the
//! container's shim through its attach socket (see [`crate::runtime::attach`]).

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::runtime::spec::{ContainerSpec, ExecSpec};
use crate::runtime::wire;
use crate::spdy::{self, Stream, StreamReader, StreamWriter};

/// Subprotocol of port-forward streams.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The remote-command subprotocol served for exec.
pub const EXEC_PROTOCOL: &str = "v4.channel.k8s.io";
/// How long the client has to open all the streams an exec needs.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve one port-forward session: every (error, data) stream pair with the same
/// `requestID` forwards one connection to the stream's `port`.
pub async fn port_forward<IO>(io: IO, netns: Option<PathBuf>, pod: String)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut streams = spdy::serve(io);
    let mut errors: HashMap<String, StreamWriter> = HashMap::new();
    while let Some(s) = streams.recv().await {
        let request = s.header("requestid").unwrap_or_default().to_owned();
        match s.header("streamtype") {
            Some("error") => {
                errors.insert(request, s.writer);
            }
            Some("data") => {
                let error = errors.remove(&request);
                let netns = netns.clone();
                let pod = pod.clone();
                tokio::spawn(async move { forward(s, error, netns, &pod).await });
            }
            _ => s.writer.close().await,
        }
    }
}

async fn forward(s: Stream, error: Option<StreamWriter>, netns: Option<PathBuf>, pod: &str) {
    let Stream {
        headers,
        mut reader,
        writer,
        ..
    } = s;
    let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
    let conn = match port {
        Some(p) if p > 0 => connect(netns, p).await,
        _ => Err(std::io::Error::other("invalid port")),
    };
    let tcp = match conn {
        Ok(t) => t,
        Err(e) => {
            if let Some(err) = &error {
                let msg = format!(
                    "error forwarding port {} to pod {pod}: failed to connect to localhost:{}: {e}",
                    port.unwrap_or(0),
                    port.unwrap_or(0)
                );
                err.send(msg.as_bytes()).await;
                err.close().await;
            }
            writer.close().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let upstream = async {
        while let Some(b) = reader.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !writer.send(&buf[..n]).await {
                        break;
                    }
                }
            }
        }
        writer.close().await;
        if let Some(err) = &error {
            err.close().await;
        }
    };
    tokio::join!(upstream, downstream);
}

/// A TCP connection to `127.0.0.1:port` in the network namespace bound at `netns` (the
/// agent's own namespace for host-network pods).
async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let Some(netns) = netns else {
        return TcpStream::connect(("127.0.0.1", port)).await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portforward".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = (|| -> std::io::Result<std::net::TcpStream> {
                let ns = std::fs::File::open(&netns)?;
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })();
            let _ = tx.send(r);
        })?;
    let std = rx
        .await
        .map_err(|_| std::io::Error::other("connect thread exited"))??;
    TcpStream::from_std(std)
}

/// What to run for an exec request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecRequest {
    /// From the raw query: `command` repeats, flags are `true`/`1`.
    pub fn from_query(query: &str) -> Self {
        let mut r = Self::default();
        for (k, v) in crate::server::query_pairs(query) {
            // As Go's strconv.ParseBool: the Python client sends `True`.
            let on = matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True");
            match k.as_str() {
                "command" => r.command.push(v),
                "input" | "stdin" => r.stdin = on,
                "output" | "stdout" => r.stdout = on,
                "error" | "stderr" => r.stderr = on,
                "tty" => r.tty = on,
                _ => {}
            }
        }
        r
    }

    /// Streams the client opens: error, then the requested stdio, and resize with a tty.
    fn expected_streams(&self) -> usize {
        1 + usize::from(self.stdin)
            + usize::from(self.stdout)
            + usize::from(self.stderr && !self.tty)
            + usize::from(self.tty)
    }
}

/// The newest attempt of container `container` of pod `uid`, if it is running: its state
/// directory, spec and first process.
fn running(
    data: &Path,
    uid: &str,
    container: &str,
) -> Result<(PathBuf, ContainerSpec, i32), String> {
    let dir = data
        .join("pods")
        .join(uid)
        .join("containers")
        .join(container);
    let latest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or_else(|| format!("container {container} is not running"))?;
    let adir = dir.join(latest.to_string());
    let meta: serde_json::Value = std::fs::read(adir.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("container {container} is not running"))?;
    let spec: ContainerSpec = std::fs::read(adir.join("spec.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("container {container} is not running"))?;
    let pid = meta["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0);
    if adir.join("exit.json").exists() || !crate::runtime::alive(pid) {
        return Err(format!(
            "container {container} is not running (it has exited)"
        ));
    }
    Ok((adir, spec, pid))
}

/// The running container `container` of pod `uid`: its spec and first process.
pub fn exec_target(data: &Path, uid: &str, container: &str) -> Result<ExecSpec, String> {
    let (_, spec, pid) = running(data, uid, container)?;
    Ok(ExecSpec::for_container(pid, &spec))
}

/// What an attach connects to: the shim's socket of the running container, and how the
/// container was started.
#[derive(Debug, Clone)]
pub struct AttachTarget {
    pub socket: PathBuf,
    pub stdin: bool,
    pub tty: bool,
}

/// The running container `container` of pod `uid`, for an attach that asks for `req`.
pub fn attach_target(
    data: &Path,
    uid: &str,
    container: &str,
    req: &ExecRequest,
) -> Result<AttachTarget, String> {
    let (adir, spec, _) = running(data, uid, container)?;
    if req.stdin && !spec.stdin {
        return Err(format!(
            "container {container} was not started with stdin: true, so there is no input to \
             attach to; attach without -i, or set stdin: true on the container"
        ));
    }
    Ok(AttachTarget {
        socket: crate::runtime::attach::socket_path(&adir),
        stdin: spec.stdin,
        tty: spec.tty,
    })
}

/// Where a remote-command session's output goes: one channel toward the client.
#[derive(Debug, Clone)]
pub enum Output {
    Spdy(StreamWriter),
    Ws(crate::ws::ChannelWriter),
}

impl Output {
    /// Send `data`; false once the client is gone.
    pub async fn send(&self, data: &[u8]) -> bool {
        match self {
            Self::Spdy(w) => w.send(data).await,
            Self::Ws(w) => w.send(data).await,
        }
    }

    /// No more data on this channel.
    pub async fn close(&self) {
        match self {
            Self::Spdy(w) => w.close().await,
            Self::Ws(w) => w.close().await,
        }
    }
}

/// The channels of one remote-command session (exec or attach), whatever carries them.
pub struct Channels {
    pub stdin: Option<StreamReader>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub resize: Option<StreamReader>,
    pub error: Output,
    /// Completes when the client's connection is gone.
    pub gone: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Channels {
    /// Close every output but the error channel.
    async fn close_outputs(&mut self) {
        for o in [&self.stdout, &self.stderr].into_iter().flatten() {
            o.close().await;
        }
    }
}

/// Accept the SPDY streams a remote-command client opens for `req`: the error stream, then
/// the requested stdio and, with a tty, the resize stream. `None` when the client gave up
/// (what went wrong is reported on the error stream when there is one).
async fn spdy_channels<IO>(io: IO, req: &ExecRequest) -> Option<Channels>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut incoming = spdy::serve(io);
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let want = req.expected_streams();
    let gathered = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while streams.len() < want {
            let Some(s) = incoming.recv().await else {
                return false;
            };
            let kind = s.header("streamtype").unwrap_or_default().to_owned();
            streams.insert(kind, s);
        }
        true
    })
    .await
    .unwrap_or(false);
    let error = Output::Spdy(streams.remove("error")?.writer);
    if !gathered {
        report(
            &error,
            Err("timed out waiting for the client's streams".into()),
        )
        .await;
        return None;
    }
    let mut take = |kind: &str| streams.remove(kind);
    // The client only writes on stdin; our side of it stays open until the session ends
    // (a half-close from us makes clients stop sending).
    let stdin = take("stdin").map(|s| s.reader);
    let resize = take("resize").map(|s| s.reader);
    Some(Channels {
        stdin,
        stdout: take("stdout").map(|s| Output::Spdy(s.writer)),
        stderr: take("stderr").map(|s| Output::Spdy(s.writer)),
        resize,
        error,
        gone: Box::pin(async move { while incoming.recv().await.is_some() {} }),
    })
}

/// What carries a streaming session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    /// WebSocket; for remote commands `v5` tells `v5.channel.k8s.io` from v4.
    WebSocket {
        v5: bool,
    },
}

/// The session's channels over `transport`.
async fn open_channels<IO>(io: IO, transport: Transport, req: &ExecRequest) -> Option<Channels>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    match transport {
        Transport::Spdy => spdy_channels(io, req).await,
        Transport::WebSocket { v5 } => Some(crate::ws::channels(io, req, v5).await),
    }
}

/// Serve one exec session.
pub async fn exec<IO>(
    io: IO,
    transport: Transport,
    exe: PathBuf,
    state_dir: PathBuf,
    spec: ExecSpec,
    req: ExecRequest,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if let Some(ch) = open_channels(io, transport, &req).await {
        exec_session(ch, exe, state_dir, spec, req).await;
    }
}

/// Run the command through the helper, copy stdio, and report how it ended on the error
/// channel.
pub async fn exec_session(
    mut ch: Channels,
    exe: PathBuf,
    state_dir: PathBuf,
    mut spec: ExecSpec,
    req: ExecRequest,
) {
    spec.args = req.command.clone();
    let code = if req.tty {
        run_tty(&exe, &state_dir, spec, &mut ch).await
    } else {
        run(&exe, &state_dir, &spec, &mut ch).await
    };
    ch.close_outputs().await;
    report(&ch.error, code).await;
}

/// Write the helper's spec next to the container's state and start the helper on it.
fn spawn_helper(
    exe: &Path,
    state_dir: &Path,
    spec: &ExecSpec,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(tokio::process::Child, SpecFile), String> {
    let path = state_dir.join(format!(
        "exec-{}.json",
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::write(&path, serde_json::to_vec(spec).unwrap_or_default())
        .map_err(|e| format!("write exec spec: {e}"))?;
    let file = SpecFile(path);
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let child = tokio::process::Command::new(exe)
        .args(["container-init", "--exec"])
        .arg(&file.0)
        .stdin(pipe(stdin))
        .stdout(pipe(stdout))
        .stderr(pipe(stderr))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start exec helper: {e}"))?;
    Ok((child, file))
}

/// The helper's spec file, removed when the exec is over.
struct SpecFile(PathBuf);

impl Drop for SpecFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn run(
    exe: &Path,
    state_dir: &Path,
    spec: &ExecSpec,
    ch: &mut Channels,
) -> Result<i32, String> {
    let (mut child, _file) = spawn_helper(
        exe,
        state_dir,
        spec,
        ch.stdin.is_some(),
        ch.stdout.is_some(),
        ch.stderr.is_some(),
    )?;
    let feed = match (child.stdin.take(), ch.stdin.take()) {
        (Some(mut w), Some(mut r)) => Some(tokio::spawn(async move {
            while let Some(b) = r.recv().await {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
        })),
        _ => None,
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // stdin may stay open after the command exits: the outputs and the exit end the session.
    let ((), (), status) = tokio::join!(
        copy_out(stdout, ch.stdout.clone()),
        copy_out(stderr, ch.stderr.clone()),
        child.wait()
    );
    if let Some(f) = feed {
        f.abort();
    }
    let status = status.map_err(|e| format!("wait for exec helper: {e}"))?;
    Ok(status.code().unwrap_or(137))
}

/// How long to wait for the client's first window size before starting a terminal.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(2);

/// Exec on a terminal: the helper gets [`wire`] frames (stdin and window sizes) on its stdin
/// and writes the terminal's output to its stdout. When the client's channels end, the
/// helper's stdin closes and it hangs the terminal up.
async fn run_tty(
    exe: &Path,
    state_dir: &Path,
    mut spec: ExecSpec,
    ch: &mut Channels,
) -> Result<i32, String> {
    spec.tty = true;
    let mut sizes = wire::ResizeParser::default();
    let mut resize = ch.resize.take();
    if let Some(r) = resize.as_mut() {
        // Start at the client's size, so the first thing the command sees is right.
        let first = tokio::time::timeout(FIRST_SIZE_WAIT, async {
            while let Some(b) = r.recv().await {
                if let Some(last) = sizes.feed(&b).last() {
                    return Some(*last);
                }
            }
            None
        });
        spec.size = first.await.ok().flatten();
    }
    let (mut child, _file) = spawn_helper(exe, state_dir, &spec, true, true, true)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let mut tasks = Vec::new();
    if let Some(mut w) = child.stdin.take() {
        tasks.push(tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if w.write_all(&f).await.is_err() {
                    break;
                }
            }
        }));
    }
    if let Some(mut r) = ch.stdin.take() {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(b) = r.recv().await {
                if tx.send(wire::frame(wire::STDIN, &b)).await.is_err() {
                    break;
                }
            }
        }));
    }
    if let Some(mut r) = resize {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(b) = r.recv().await {
                for (w, h) in sizes.feed(&b) {
                    if tx.send(wire::resize(w, h)).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    // Without client channels that could end, the terminal stays up until the command exits.
    let keep = (tasks.len() < 2).then(|| tx.clone());
    drop(tx);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // The helper's own errors (before the terminal exists) are shown like terminal output.
    let ((), (), status) = tokio::join!(
        copy_out(stdout, ch.stdout.clone()),
        copy_out(stderr, ch.stdout.clone()),
        child.wait()
    );
    drop(keep);
    for t in tasks {
        t.abort();
    }
    let status = status.map_err(|e| format!("wait for exec helper: {e}"))?;
    Ok(status.code().unwrap_or(137))
}

async fn copy_out<R: AsyncRead + Unpin>(from: Option<R>, to: Option<Output>) {
    let (Some(mut from), Some(to)) = (from, to) else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !to.send(&buf[..n]).await {
                    break;
                }
            }
        }
    }
}

/// Serve one attach session.
pub async fn attach<IO>(io: IO, transport: Transport, target: AttachTarget, req: ExecRequest)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if let Some(ch) = open_channels(io, transport, &req).await {
        attach_session(ch, target).await;
    }
}

/// Connect the client's channels to the container's shim until the container exits or the
/// client goes away, then report on the error channel.
pub async fn attach_session(mut ch: Channels, target: AttachTarget) {
    let gone = std::mem::replace(&mut ch.gone, Box::pin(std::future::pending()));
    let result = tokio::select! {
        r = attached(&mut ch, &target) => r,
        () = gone => Ok(()),
    };
    ch.close_outputs().await;
    report(&ch.error, result.map(|()| 0)).await;
}

async fn attached(ch: &mut Channels, target: &AttachTarget) -> Result<(), String> {
    let not_running =
        |e: std::io::Error| format!("cannot attach: the container is not running ({e})");
    let dir = std::fs::File::open(target.socket.parent().unwrap_or(Path::new("/")))
        .map_err(not_running)?;
    let conn = tokio::net::UnixStream::connect(crate::runtime::attach::short_path(&dir))
        .await
        .map_err(not_running)?;
    drop(dir);
    let (mut rd, mut wr) = conn.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let mut tasks = vec![tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
    })];
    if let Some(mut r) = ch.stdin.take().filter(|_| target.stdin) {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(b) = r.recv().await {
                if tx.send(wire::frame(wire::STDIN, &b)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(wire::frame(wire::STDIN_CLOSE, &[])).await;
        }));
    }
    if let Some(mut r) = ch.resize.take().filter(|_| target.tty) {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut sizes = wire::ResizeParser::default();
            while let Some(b) = r.recv().await {
                for (w, h) in sizes.feed(&b) {
                    if tx.send(wire::resize(w, h)).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let stdout = ch.stdout.clone();
    // On a terminal everything is stdout.
    let stderr = if target.tty {
        ch.stdout.clone()
    } else {
        ch.stderr.clone()
    };
    let mut decoder = wire::Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    'read: loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => decoder.feed(&buf[..n]),
        }
        while let Some((kind, payload)) = decoder.next_frame().map_err(|e| e.to_string())? {
            let to = match kind {
                wire::STDOUT => &stdout,
                wire::STDERR => &stderr,
                _ => continue,
            };
            if let Some(o) = to
                && !o.send(&payload).await
            {
                break 'read;
            }
        }
    }
    drop(tx);
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The v4 error stream's content: a `Status` saying how the command ended.
fn status_json(result: &Result<i32, String>) -> serde_json::Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    }
}

async fn report(error: &Output, result: Result<i32, String>) {
    let body = serde_json::to_vec(&status_json(&result)).unwrap_or_default();
    error.send(&body).await;
    error.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_keeps_every_command_word() {
        let r = ExecRequest::from_query(
            "command=sh&command=-c&command=exit%203&container=c&stdin=true&stdout=true&stderr=true&tty=false",
        );
        assert_eq!(r.command, ["sh", "-c", "exit 3"]);
        assert!(r.stdin && r.stdout && r.stderr && !r.tty);
        assert_eq!(r.expected_streams(), 4);
        let t = ExecRequest::from_query("command=sh&stdin=true&stdout=true&stderr=true&tty=true");
        // With a tty stderr is merged into stdout and a resize stream is added.
        assert_eq!(t.expected_streams(), 4);
        // The Python client spells booleans the Python way.
        let p = ExecRequest::from_query("command=ls&stdin=False&stdout=True&stderr=True&tty=False");
        assert!(!p.stdin && p.stdout && p.stderr && !p.tty);
    }

    #[test]
    fn exit_codes_become_v4_statuses() {
        assert_eq!(status_json(&Ok(0))["status"], "Success");
        let s = status_json(&Ok(3));
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(status_json(&Err("x".into()))["reason"], "InternalError");
    }

    #[test]
    fn exec_target_needs_a_running_attempt() {
        let d = tempfile::tempdir().unwrap();
        let err = exec_target(d.path(), "u", "c").unwrap_err();
        assert!(err.contains("not running"), "{err}");
    }
}
