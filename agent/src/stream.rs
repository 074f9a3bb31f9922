//! Streaming endpoints of the agent's HTTPS server, as the kubelet serves them:
//! `/portForward/{ns}/{pod}` (`portforward.k8s.io`) and `/exec/{ns}/{pod}/{container}`
//! (`v4.channel.k8s.io`), both over SPDY/3.1 (see [`crate::spdy`]).
//!
//! Port-forward connects, for every forwarded connection, to `127.0.0.1:PORT` inside the pod's
//! network namespace (from a throwaway thread that joins it, so localhost-only listeners are
//! reachable too). Exec runs `skiff container-init --exec` with the container's process
//! settings; the helper joins the container's namespaces and cgroup and execs the command with
//! the stream's pipes as its stdio.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::runtime::spec::{ContainerSpec, ExecSpec};
use crate::spdy::{self, Stream, StreamWriter};

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
            let on = v == "true" || v == "1";
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

/// The running container `container` of pod `uid`: its spec and first process.
pub fn exec_target(data: &Path, uid: &str, container: &str) -> Result<ExecSpec, String> {
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
    Ok(ExecSpec {
        pid,
        args: vec![],
        env: spec.env,
        cwd: spec.cwd,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.groups,
        capabilities: spec.capabilities,
        no_new_privs: spec.no_new_privs,
        seccomp: spec.seccomp,
        cgroups: spec.cgroups,
    })
}

/// Serve one exec session: collect the streams, run the command through the helper, copy
/// stdio, and report how it ended on the error stream.
pub async fn exec<IO>(
    io: IO,
    exe: PathBuf,
    state_dir: PathBuf,
    mut spec: ExecSpec,
    req: ExecRequest,
) where
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
    let Some(error) = streams.remove("error").map(|s| s.writer) else {
        return;
    };
    if !gathered {
        report(
            &error,
            Err("timed out waiting for the client's streams".into()),
        )
        .await;
        return;
    }
    if req.tty {
        report(
            &error,
            Err("a terminal (tty) is not supported by this node; run without -t".into()),
        )
        .await;
        for s in streams.values() {
            s.writer.close().await;
        }
        return;
    }
    spec.args = req.command.clone();
    let code = run(&exe, &state_dir, &spec, &mut streams).await;
    for s in streams.values() {
        s.writer.close().await;
    }
    report(&error, code).await;
}

async fn run(
    exe: &Path,
    state_dir: &Path,
    spec: &ExecSpec,
    streams: &mut HashMap<String, Stream>,
) -> Result<i32, String> {
    let path = state_dir.join(format!(
        "exec-{}.json",
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::write(&path, serde_json::to_vec(spec).unwrap_or_default())
        .map_err(|e| format!("write exec spec: {e}"))?;
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let child = tokio::process::Command::new(exe)
        .args(["container-init", "--exec"])
        .arg(&path)
        .stdin(pipe(streams.contains_key("stdin")))
        .stdout(pipe(streams.contains_key("stdout")))
        .stderr(pipe(streams.contains_key("stderr")))
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(format!("start exec helper: {e}"));
        }
    };
    let feed = match (child.stdin.take(), streams.remove("stdin")) {
        (Some(mut w), Some(st)) => {
            st.writer.close().await;
            let mut r = st.reader;
            Some(tokio::spawn(async move {
                while let Some(b) = r.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
            }))
        }
        _ => None,
    };
    let out_writer = streams.get("stdout").map(|s| s.writer.clone());
    let err_writer = streams.get("stderr").map(|s| s.writer.clone());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // stdin may stay open after the command exits: the outputs and the exit end the session.
    let ((), (), status) = tokio::join!(
        copy_out(stdout, out_writer),
        copy_out(stderr, err_writer),
        child.wait()
    );
    if let Some(f) = feed {
        f.abort();
    }
    let _ = std::fs::remove_file(&path);
    let status = status.map_err(|e| format!("wait for exec helper: {e}"))?;
    Ok(status.code().unwrap_or(137))
}

async fn copy_out<R: AsyncRead + Unpin>(from: Option<R>, to: Option<StreamWriter>) {
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
    to.close().await;
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

async fn report(error: &StreamWriter, result: Result<i32, String>) {
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
