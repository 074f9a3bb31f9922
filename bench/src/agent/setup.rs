//! What one agent-bench run stands on: a "host" network namespace joined to this one by a
//! bridge, `skiff server` on the bridge address, `skiff agent` inside the namespace, and the
//! busybox root filesystem both skiff and runc start containers from. Every piece undoes
//! itself on drop (and the panic hook kills the processes: the release profile aborts).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_bench::child::Proc;

/// Run a command to completion; an error carries its stderr.
pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A bridge in this namespace (the server's side) and one network namespace behind a veth
/// (the node's side).
pub struct Net {
    bridge: String,
    pub netns: String,
    pub server_ip: String,
    pub node_ip: String,
}

impl Net {
    pub fn create(tag: u32) -> Result<Self> {
        let subnet = 100 + tag % 100;
        let mut net = Self {
            bridge: format!("skab{tag}"),
            netns: format!("skabn{tag}"),
            server_ip: format!("192.168.{subnet}.1"),
            node_ip: format!("192.168.{subnet}.2"),
        };
        let veth = format!("skabv{tag}");
        let steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "add", &net.bridge, "type", "bridge"],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.server_ip),
                "dev",
                &net.bridge,
            ],
            vec!["ip", "link", "set", &net.bridge, "up"],
            vec!["ip", "netns", "add", &net.netns],
            vec![
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &net.netns,
            ],
            vec!["ip", "link", "set", &veth, "master", &net.bridge, "up"],
            vec![
                "ip",
                "-n",
                &net.netns,
                "addr",
                "add",
                &format!("{}/24", net.node_ip),
                "dev",
                "eth0",
            ],
            vec!["ip", "-n", &net.netns, "link", "set", "eth0", "up"],
            vec!["ip", "-n", &net.netns, "link", "set", "lo", "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(str::to_owned).collect())
        .collect();
        for step in &steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if let Err(e) = sh(&args) {
                net.remove();
                return Err(e);
            }
        }
        Ok(net)
    }

    fn remove(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.netns]);
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `skiff server` (API only) on `ip`; returns it and its admin kubeconfig.
pub fn server(bin: &Path, dir: &Path, ip: &str) -> Result<(Proc, PathBuf)> {
    let data = dir.join("server");
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(format!("{ip}:0"))
        .arg("--no-controllers")
        .env("SKIFF_LOG", "warn");
    let mut p = Proc::spawn(cmd, &dir.join("server.log"))?;
    let kubeconfig = data.join("kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        p.check_alive("skiff server")?;
        if std::fs::read_to_string(&kubeconfig).is_ok_and(|t| t.contains("server: https://")) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "skiff server wrote no kubeconfig in 30 s:\n{}",
                p.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    Ok((p, kubeconfig))
}

/// `skiff agent` inside `netns`, running images from `images`.
pub struct Agent {
    proc: Option<Proc>,
    pub data: PathBuf,
}

impl Agent {
    pub fn start(
        bin: &Path,
        netns: &str,
        node: &str,
        kubeconfig: &Path,
        dir: &Path,
        images: &Path,
        log_filter: &str,
    ) -> Result<Self> {
        let data = dir.join("agent");
        let mut cmd = Command::new("nsenter");
        // nsenter execs the agent in place: its pid is the agent's.
        cmd.arg(format!("--net=/run/netns/{netns}"))
            .arg(bin)
            .args(["agent", "--node-name", node, "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--data-dir")
            .arg(&data)
            .arg("--local-images")
            .arg(images)
            .env("SKIFF_LOG", log_filter);
        let proc = Proc::spawn(cmd, &dir.join("agent.log"))?;
        Ok(Self {
            proc: Some(proc),
            data,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.check_alive("skiff agent"),
            None => bail!("agent stopped"),
        }
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    /// Everything the agent logged.
    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p.log_path()).ok())
            .unwrap_or_default()
    }

    /// Whether the agent still has state for the pod `uid` (it removes it last).
    pub fn has_pod(&self, uid: &str) -> bool {
        self.data.join("pods").join(uid).exists()
    }

    /// Pods the agent still has state for.
    pub fn pod_dirs(&self) -> usize {
        std::fs::read_dir(self.data.join("pods")).map_or(0, |d| d.flatten().count())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.proc.take();
        // The agent leaves containers running by design: kill what is left and unmount.
        let pods = std::fs::read_dir(self.data.join("pods"))
            .into_iter()
            .flatten();
        for pod in pods.flatten() {
            let ctrs = std::fs::read_dir(pod.path().join("containers"));
            for c in ctrs.into_iter().flatten().flatten() {
                for attempt in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                    let Ok(b) = std::fs::read(attempt.path().join("meta.json")) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else {
                        continue;
                    };
                    for key in ["pid", "shimPid"] {
                        if let Some(pid) = v[key].as_i64().and_then(|p| i32::try_from(p).ok())
                            && pid > 1
                        {
                            skiff_bench::child::kill(pid);
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        unmount_under(&self.data);
        remove_cgroups();
    }
}

/// Lazily unmount everything mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = sh(&["umount", "-l", p]);
    }
}

/// Remove the benchmark node's (empty) cgroups, deepest first.
fn remove_cgroups() {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for root in roots.flatten() {
        let base = root.path().join("skiff");
        let Ok(nodes) = std::fs::read_dir(&base) else {
            continue;
        };
        for node in nodes.flatten() {
            if node
                .file_name()
                .to_string_lossy()
                .starts_with("agent-bench-")
            {
                remove_tree(&node.path());
            }
        }
    }
}

fn remove_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A busybox root filesystem at `dir/busybox` (the agent's `--local-images` layout: the
/// image `busybox` is that directory).
pub fn busybox_rootfs(dir: &Path, busybox: &Path) -> Result<PathBuf> {
    let root = dir.join("busybox");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))
        .with_context(|| format!("copy {} (Debian: busybox-static)", busybox.display()))?;
    for applet in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_rootfs_has_applets() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("bb");
        std::fs::write(&fake, b"binary").unwrap();
        let root = busybox_rootfs(d.path(), &fake).unwrap();
        assert_eq!(std::fs::read(root.join("bin/busybox")).unwrap(), b"binary");
        assert_eq!(
            std::fs::read_link(root.join("bin/sleep")).unwrap(),
            Path::new("busybox")
        );
    }
}
