//! The baseline: `runc run -d` of the same root filesystem and command, one container at a
//! time, timed until runc returns (the container's process has been started), with at most
//! `keep` containers running (the oldest is removed outside the timed window).

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// runc's state directory and a bundle whose config runs `sleep 3600` in `rootfs` (read-only,
/// so that every container shares it as it is).
pub struct Runc {
    bin: String,
    state: std::path::PathBuf,
    bundle: std::path::PathBuf,
}

/// The bundle's `config.json`: runc's default spec with our rootfs and command, no terminal.
pub fn config(default_spec: &str, rootfs: &Path) -> Result<String> {
    let mut spec: Value = serde_json::from_str(default_spec).context("parse runc spec")?;
    spec["process"]["terminal"] = Value::Bool(false);
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    spec["root"]["path"] = Value::String(rootfs.display().to_string());
    spec["root"]["readonly"] = Value::Bool(true);
    Ok(serde_json::to_string_pretty(&spec)?)
}

impl Runc {
    pub fn new(bin: &str, dir: &Path, rootfs: &Path) -> Result<Self> {
        let bundle = dir.join("bundle");
        let state = dir.join("state");
        std::fs::create_dir_all(&bundle)?;
        std::fs::create_dir_all(&state)?;
        let out = Command::new(bin)
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .with_context(|| format!("run {bin} spec (Debian: runc)"))?;
        if !out.status.success() {
            bail!("{bin} spec: {}", String::from_utf8_lossy(&out.stderr));
        }
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, config(&text, rootfs)?)?;
        Ok(Self {
            bin: bin.to_owned(),
            state,
            bundle,
        })
    }

    /// A runc command whose stderr goes to `state/stderr` (a pipe would stay open: the
    /// detached container inherits runc's stdio).
    fn cmd(&self, args: &[&str]) -> Result<Command> {
        let err = std::fs::File::create(self.bundle.join("stderr"))?;
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        Ok(c)
    }

    fn delete(&self, name: &str) {
        if let Ok(mut c) = self.cmd(&["delete", "--force", name]) {
            let _ = c.status();
        }
    }

    /// Start `count` containers one at a time; returns each `runc run -d`'s duration.
    pub fn run(&self, count: usize, keep: usize, tag: u32) -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(count);
        let mut running: VecDeque<String> = VecDeque::new();
        let result = (|| -> Result<()> {
            for i in 0..count {
                while running.len() >= keep.max(1) {
                    if let Some(name) = running.pop_front() {
                        self.delete(&name);
                    }
                }
                let name = format!("agent-bench-{tag}-{i}");
                let bundle = self.bundle.display().to_string();
                let t0 = Instant::now();
                let status = self
                    .cmd(&["run", "-d", "--bundle", &bundle, &name])?
                    .status()?;
                let took = t0.elapsed();
                if !status.success() {
                    let err =
                        std::fs::read_to_string(self.bundle.join("stderr")).unwrap_or_default();
                    bail!("runc run: {}", err.trim());
                }
                out.push(took);
                running.push_back(name);
            }
            Ok(())
        })();
        for name in running {
            self.delete(&name);
        }
        result.map(|()| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_runs_sleep_in_our_rootfs_without_a_terminal() {
        let default = r#"{"process":{"terminal":true,"args":["sh"]},"root":{"path":"rootfs","readonly":true}}"#;
        let c: Value =
            serde_json::from_str(&config(default, Path::new("/r/busybox")).unwrap()).unwrap();
        assert_eq!(c["process"]["terminal"], false);
        assert_eq!(c["process"]["args"], serde_json::json!(["sleep", "3600"]));
        assert_eq!(c["root"]["path"], "/r/busybox");
        assert_eq!(c["root"]["readonly"], true);
    }
}
