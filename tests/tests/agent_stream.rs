//! `kubectl port-forward` and `kubectl exec` through `skiff server` to a `skiff agent` in its
//! own network namespace: forwards to a pod, a service and a deployment serve nginx's page
//! (several connections at once), and exec runs commands in a busybox container with exit
//! codes, stdin, `-c` and clear errors for what does not exist. Terminals (`exec -it`, driven
//! through a pty made by Python), `kubectl attach`, `kubectl run -i/-it --rm`, kubectl's
//! WebSocket-first transports against forced SPDY, the official Python client's `stream()`, and
//! service environment variables.
//!
//! Needs root, busybox-static, nginx-light, docker-registry and skopeo; without them the test
//! says so and passes without running.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skiff_tests::eventually;
use skiff_tests::images::NGINX_INDEX;
use skiff_tests::nodes::{Cluster, ClusterOptions, busybox_pod, can_run_agents};

/// A running `kubectl port-forward`, killed on drop.
struct Forward {
    child: Child,
    port: u16,
}

impl Forward {
    /// Start `kubectl port-forward TARGET :REMOTE` and wait for its "Forwarding from" line.
    fn start(c: &Cluster, target: &str, remote: u16) -> Self {
        Self::start_with(c, target, remote, &[])
    }

    /// [`Forward::start`] with extra environment for kubectl.
    fn start_with(c: &Cluster, target: &str, remote: u16, env: &[(&str, &str)]) -> Self {
        let mut child = c
            .server
            .kubectl_cmd(&["port-forward", target, &format!(":{remote}")])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout: kubectl dies of SIGPIPE if its "Handling connection" lines
        // have nowhere to go.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut fwd = Self { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            // "Forwarding from 127.0.0.1:40123 -> 80"
            if let Some(port) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
            {
                fwd.port = port;
                return fwd;
            }
        }
        let _ = fwd.child.kill();
        let mut err = String::new();
        if let Some(mut e) = fwd.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("kubectl port-forward {target} did not start: {err}");
    }

    /// `GET /` through the forward: the whole response.
    fn get(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the forward");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Forward {
    /// Stop the forward and return what kubectl said on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run kubectl with `stdin` and a deadline; the child is killed when it passes.
fn kubectl_timed(c: &Cluster, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
    kubectl_env(c, args, &[], stdin, timeout)
}

/// [`kubectl_timed`] with extra environment.
fn kubectl_env(
    c: &Cluster,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Output {
    let mut cmd: Command = c.server.kubectl_cmd(args);
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = w.write_all(text.as_bytes());
        });
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("kubectl output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("kubectl output");
    panic!(
        "kubectl {args:?} timed out; stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn port_forward_and_exec_reach_pods_through_the_agent() {
    if !can_run_agents() {
        return;
    }
    let c = Cluster::start(ClusterOptions::default());
    let node = c.agents[0].name.clone();
    c.server
        .ok(&["create", "deployment", "web", "--image=nginx", "--port=80"]);
    c.server.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=8000",
        "--target-port=80",
    ]);
    c.apply(&busybox_pod("shell", &node, "sleep 3600", "", ""));
    let web = eventually(Duration::from_secs(90), "a Running nginx pod", || {
        let list = c.server.get_json(&["get", "pods", "-l", "app=web"]);
        list["items"].as_array()?.iter().find_map(|p| {
            (p["status"]["phase"] == "Running")
                .then(|| p["metadata"]["name"].as_str().map(str::to_owned))?
        })
    });
    eventually(Duration::from_secs(60), "shell Running", || {
        (c.pod_status("shell")["phase"] == "Running").then_some(())
    });

    // port-forward to the pod: several connections at once through one forward.
    let page = NGINX_INDEX.trim();
    {
        let fwd = Forward::start(&c, &format!("pod/{web}"), 80);
        // nginx may still be starting: Running is not listening.
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = loop {
            let r = fwd.get();
            if r.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(first.contains(page), "{first}");
        let resps: Vec<String> = std::thread::scope(|s| {
            let fwd = &fwd;
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| fwd.get())).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("concurrent GET"))
                .collect()
        });
        if let Some(bad) = resps.iter().find(|r| !r.contains(page)) {
            panic!(
                "concurrent GET: {bad:?}\nkubectl: {}\nagent: {}\nserver: {}",
                fwd.stop(),
                c.agent_logs(),
                c.server.logs()
            );
        }
    }
    // ...to a service (kubectl picks a pod and maps port 8000 to the target port 80) and to
    // a deployment.
    for (target, port) in [("svc/web", 8000), ("deploy/web", 80)] {
        let fwd = Forward::start(&c, target, port);
        let resp = fwd.get();
        assert!(resp.contains(page), "{target}: {resp}");
    }
    // Nothing listens on port 81: the connection fails, kubectl says why.
    {
        let fwd = Forward::start(&c, &format!("pod/{web}"), 81);
        let resp = fwd.get();
        assert!(resp.is_empty(), "{resp}");
    }

    let t = Duration::from_secs(30);
    // exec: output, the pod's hostname file, exit codes, stdin, -c.
    let out = kubectl_timed(
        &c,
        &["exec", "shell", "--", "cat", "/etc/hostname"],
        None,
        t,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "shell");
    let out = kubectl_timed(
        &c,
        &["exec", "shell", "--", "sh", "-c", "echo oops >&2; exit 3"],
        None,
        t,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("oops"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let out = kubectl_timed(
        &c,
        &["exec", "-i", "shell", "--", "cat"],
        Some("line one\nline two\n"),
        t,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "line one\nline two\n");
    let out = kubectl_timed(
        &c,
        &[
            "exec",
            "shell",
            "-c",
            "c",
            "--",
            "sh",
            "-c",
            "echo $HOSTNAME",
        ],
        None,
        t,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Errors: a missing pod and a missing container.
    let out = kubectl_timed(&c, &["exec", "nope", "--", "true"], None, t);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = kubectl_timed(&c, &["exec", "shell", "-c", "nope", "--", "true"], None, t);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs a command on a new terminal (size 33 rows x 101 columns), types `TYPE` (with `\r`
/// for Enter) once the command has printed something, echoes what the terminal shows, and
/// exits with the command's exit code. Everything is bounded by a 60 s deadline.
const ON_A_TERMINAL: &str = r#"
import os, pty, sys, fcntl, termios, struct, select, subprocess, time
typed = sys.argv[1].encode()
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
os.close(slave)
out = b""
start = time.time()
sent = False
while time.time() - start < 60:
    if not sent and (out or time.time() - start > 3):
        time.sleep(0.5)
        os.write(master, typed)
        sent = True
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    elif p.poll() is not None:
        break
else:
    p.kill()
sys.stdout.write(out.decode(errors="replace"))
sys.exit(p.wait())
"#;

/// Run kubectl `args` on a terminal through [`ON_A_TERMINAL`], typing `typed`.
fn kubectl_on_terminal(c: &Cluster, typed: &str, args: &[&str]) -> Output {
    kubectl_on_terminal_env(c, &[], typed, args)
}

/// [`kubectl_on_terminal`] with extra environment.
fn kubectl_on_terminal_env(
    c: &Cluster,
    env: &[(&str, &str)],
    typed: &str,
    args: &[&str],
) -> Output {
    let mut kubectl = c.server.kubectl_cmd(args);
    kubectl.envs(env.iter().copied());
    let mut cmd = Command::new("python3");
    cmd.args(["-c", ON_A_TERMINAL, typed])
        .arg(kubectl.get_program())
        .args(kubectl.get_args());
    for (k, v) in kubectl.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null()).output().expect("python3")
}

#[test]
fn terminals_attach_and_interactive_run() {
    if !can_run_agents() {
        return;
    }
    let c = Cluster::start(ClusterOptions::default());
    let node = c.agents[0].name.clone();
    c.apply(&busybox_pod("shell", &node, "sleep 3600", "", ""));
    c.apply(&busybox_pod(
        "ticker",
        &node,
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done",
        "",
        "",
    ));
    c.apply(&busybox_pod(
        "done",
        &node,
        "true",
        "  restartPolicy: Never\n",
        "",
    ));
    for pod in ["shell", "ticker"] {
        eventually(Duration::from_secs(60), &format!("{pod} Running"), || {
            (c.pod_status(pod)["phase"] == "Running").then_some(())
        });
    }
    let t = Duration::from_secs(30);

    // exec -it: the command sees a terminal from the container's devpts at the client's
    // size, reads what is typed, and its exit code comes back.
    let out = kubectl_on_terminal(
        &c,
        "abc\r",
        &[
            "exec",
            "-it",
            "shell",
            "--",
            "sh",
            "-c",
            "tty; stty size; read x; echo got-$x; exit 3",
        ],
    );
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{shown}\n{}", c.agent_logs());
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert!(shown.contains("33 101"), "{shown}");
    assert!(shown.contains("got-abc"), "{shown}");

    // attach to a running pod, over WebSocket (kubectl's default) and SPDY: its new output
    // appears.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    for env in [&[][..], &spdy[..]] {
        let before = eventually(Duration::from_secs(20), "ticker has ticked", || {
            let logs = c.server.ok(&["logs", "ticker"]);
            (logs.lines().count() >= 2).then_some(logs.lines().count())
        });
        let mut attach = c
            .server
            .kubectl_cmd(&["attach", "ticker"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl attach");
        let stdout = attach.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut ticks = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ticks.len() < 2 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            if let Some(n) = line
                .strip_prefix("tick ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                ticks.push(n);
            }
        }
        let _ = attach.kill();
        let _ = attach.wait();
        assert_eq!(
            ticks.len(),
            2,
            "ticks seen through attach ({env:?}): {ticks:?}"
        );
        assert!(
            ticks[0] + 1 >= before && ticks[1] == ticks[0] + 1,
            "{ticks:?} after {before} lines"
        );
    }

    // run -i with piped stdin: stdin is kept open for the attach, closed after it
    // (stdinOnce), the output comes back and --rm deletes the pod.
    let out = kubectl_timed(
        &c,
        &[
            "run",
            "-i",
            "--rm",
            "--image=busybox",
            "--restart=Never",
            &format!("--overrides={{\"spec\":{{\"nodeName\":\"{node}\"}}}}"),
            "piped",
            "--",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        Some("hello\n"),
        Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("got hello"),
        "{}",
        text(&out.stdout)
    );
    eventually(Duration::from_secs(30), "pod piped deleted", || {
        let o = c.server.kubectl(&["get", "pod", "piped"]);
        (!o.status.success()).then_some(())
    });

    // run -it on a terminal: the container gets a terminal, the attach types into it.
    let out = kubectl_on_terminal(
        &c,
        "hello\r",
        &[
            "run",
            "-it",
            "--rm",
            "--image=busybox",
            "--restart=Never",
            &format!("--overrides={{\"spec\":{{\"nodeName\":\"{node}\"}}}}"),
            "interactive",
            "--",
            "sh",
            "-c",
            "read x; echo got $x; tty",
        ],
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}\n{}", c.agent_logs());
    assert!(shown.contains("got hello"), "{shown}");
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    eventually(Duration::from_secs(30), "pod interactive deleted", || {
        let o = c.server.kubectl(&["get", "pod", "interactive"]);
        (!o.status.success()).then_some(())
    });

    // Errors: stdin asked of a container without it; exec into a completed pod.
    let out = kubectl_timed(&c, &["attach", "-i", "shell"], Some("x\n"), t);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not started with stdin: true"),
        "{}",
        text(&out.stderr)
    );
    eventually(Duration::from_secs(60), "done Succeeded", || {
        (c.pod_status("done")["phase"] == "Succeeded").then_some(())
    });
    let out = kubectl_timed(&c, &["exec", "done", "--", "true"], None, t);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot exec into a container in a completed pod"),
        "{}",
        text(&out.stderr)
    );
}

/// The official Python client's `stream()` (WebSocket, `v4.channel.k8s.io`): a command's
/// output, then a command fed on stdin with its exit code. Prints one JSON line.
const PYTHON_STREAM: &str = r#"
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config()
v1 = client.CoreV1Api()
out = stream(v1.connect_get_namespaced_pod_exec, sys.argv[1], "default",
             command=["sh", "-c", "echo out-$((6*7)); echo err >&2"],
             stderr=True, stdin=False, stdout=True, tty=False)
r = stream(v1.connect_get_namespaced_pod_exec, sys.argv[1], "default",
           command=["sh", "-c", "read x; echo got-$x; exit 5"],
           stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
r.write_stdin("zzz\n")
r.run_forever(timeout=20)
print(json.dumps({"out": out, "stdin": r.read_stdout(), "code": r.returncode}))
"#;

#[test]
fn websocket_first_and_spdy_fallback_transports() {
    if !can_run_agents() {
        return;
    }
    let c = Cluster::start(ClusterOptions::default());
    let node = c.agents[0].name.clone();
    // A service made before the pod: its variables are in the pod's environment.
    c.server
        .ok(&["create", "service", "clusterip", "my-web", "--tcp=80:8080"]);
    let ip = c.server.get_json(&["get", "service", "my-web"])["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_owned();
    let api_ip = c.server.get_json(&["get", "service", "kubernetes"])["spec"]["clusterIP"]
        .as_str()
        .expect("the kubernetes service's cluster IP")
        .to_owned();
    c.apply(&busybox_pod(
        "web",
        &node,
        "mkdir -p /www && echo skiff-over-ws > /www/index.html && exec httpd -f -p 8080 -h /www",
        "",
        "",
    ));
    eventually(Duration::from_secs(60), "web Running", || {
        (c.pod_status("web")["phase"] == "Running").then_some(())
    });
    let t = Duration::from_secs(30);
    let spdy_exec = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let spdy_forward = [("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];

    // exec: kubectl's default (WebSocket v5) and SPDY; output, stdin and exit codes.
    for (env, websocket) in [(&[][..], true), (&spdy_exec[..], false)] {
        let out = kubectl_env(
            &c,
            &["-v=6", "exec", "-i", "web", "--", "sh", "-c", "cat; exit 3"],
            env,
            Some("through stdin\n"),
            t,
        );
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{log}");
        assert_eq!(text(&out.stdout), "through stdin\n", "{log}");
        // WebSocket is not refused (no fallback); with the variable set kubectl starts on SPDY.
        assert!(!log.contains("RemoteCommand fallback"), "{log}");
        assert_eq!(log.contains("POST https://"), !websocket, "{log}");
    }
    // Service variables, kubelet style.
    let out = kubectl_timed(&c, &["exec", "web", "--", "env"], None, t);
    let env = text(&out.stdout);
    for want in [
        format!("MY_WEB_SERVICE_HOST={ip}"),
        "MY_WEB_SERVICE_PORT=80".to_owned(),
        "MY_WEB_SERVICE_PORT_80_8080=80".to_owned(),
        format!("MY_WEB_PORT=tcp://{ip}:80"),
        format!("MY_WEB_PORT_80_TCP=tcp://{ip}:80"),
        "MY_WEB_PORT_80_TCP_PROTO=tcp".to_owned(),
        format!("MY_WEB_PORT_80_TCP_ADDR={ip}"),
        format!("KUBERNETES_SERVICE_HOST={api_ip}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in\n{env}");
    }
    // A terminal over SPDY too (the WebSocket one is in terminals_attach_and_interactive_run).
    let out = kubectl_on_terminal_env(
        &c,
        &spdy_exec,
        "",
        &["exec", "-it", "web", "--", "sh", "-c", "stty size; exit 4"],
    );
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert!(shown.contains("33 101"), "{shown}");

    // port-forward: SPDY tunnelled through WebSocket (default), and plain SPDY.
    for (env, websocket) in [(&[][..], true), (&spdy_forward[..], false)] {
        let fwd = Forward::start_with(&c, "pod/web", 8080, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        let page = loop {
            let r = fwd.get();
            if r.contains("skiff-over-ws") || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let err = fwd.stop();
        assert!(
            page.contains("skiff-over-ws"),
            "websocket {websocket}: {page}\n{err}"
        );
    }
    // ...and kubectl really used the tunnel by default.
    let mut child = c
        .server
        .kubectl_cmd(&["-v=6", "port-forward", "pod/web", ":8080"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut negotiated = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        if line.contains("negotiated protocol") {
            negotiated = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let negotiated = negotiated.expect("kubectl negotiated a WebSocket tunnel");
    assert!(negotiated.contains("portforward.k8s.io"), "{negotiated}");

    // The official Python client, WebSocket only.
    let kubectl = c.server.kubectl_cmd(&[]);
    let mut py = Command::new("python3");
    py.args(["-c", PYTHON_STREAM, "web"]);
    for (k, v) in kubectl.get_envs() {
        if let Some(v) = v {
            py.env(k, v);
        }
    }
    let out = py.stdin(Stdio::null()).output().expect("python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON line from the Python client");
    // stdout and stderr interleave in arrival order, which two pipes do not fix.
    let all = got["out"].as_str().unwrap_or_default();
    assert!(all == "out-42\nerr\n" || all == "err\nout-42\n", "{got}");
    assert_eq!(got["stdin"], "got-zzz\n", "{got}");
    assert_eq!(got["code"], 5, "{got}");
}
