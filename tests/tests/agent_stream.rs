//! `kubectl port-forward` and `kubectl exec` through `skiff server` to a `skiff agent` in its
//! own network namespace: forwards to a pod, a service and a deployment serve nginx's page
//! (several connections at once), and exec runs commands in a busybox container with exit
//! codes, stdin, `-c` and clear errors for what does not exist.
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
        let mut child = c
            .server
            .kubectl_cmd(&["port-forward", target, &format!(":{remote}")])
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
    let mut cmd: Command = c.server.kubectl_cmd(args);
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
