//! Control groups for containers, written directly to cgroupfs: v1 (one hierarchy per
//! controller, as on hybrid hosts) and v2 (unified). Direct writes are a handful of small files
//! per container, so a crate (and its sysfs scanning at every call) buys nothing here.
//!
//! Layout: `<root>/skiff/<node>/pod<uid>/<container-id>` in every hierarchy used.

use std::path::{Path, PathBuf};

/// v1 controllers the agent limits or reads.
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// Default CFS period (µs).
const CFS_PERIOD: i64 = 100_000;

/// Resource limits of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<i64>,
    /// CPU request in millicores (relative weight).
    pub cpu_request_millis: Option<i64>,
    pub pids: Option<i64>,
}

/// The cgroup layout of this host.
#[derive(Debug, Clone)]
pub enum Cgroups {
    V1 {
        /// Mount point per controller.
        roots: Vec<(String, PathBuf)>,
        base: PathBuf,
    },
    V2 {
        root: PathBuf,
        base: PathBuf,
    },
}

/// cgroup hierarchies mounted on this host, from /proc/self/mountinfo text.
pub fn parse_mountinfo(text: &str) -> (Option<PathBuf>, Vec<(String, PathBuf)>) {
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" if mount_point == "/sys/fs/cgroup" => v2 = Some(PathBuf::from(mount_point)),
            "cgroup" => {
                for opt in superopts.split(',') {
                    if V1_CONTROLLERS.contains(&opt) {
                        v1.push((opt.to_owned(), PathBuf::from(mount_point)));
                    }
                }
            }
            _ => {}
        }
    }
    (v2, v1)
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| std::io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

/// cgroup v1 `cpu.shares` for a request in millicores (as the kubelet computes it).
pub fn shares(millis: i64) -> u64 {
    let s = millis.saturating_mul(1024) / 1000;
    u64::try_from(s.max(2)).unwrap_or(2)
}

/// cgroup v2 `cpu.weight` for v1 shares (the OCI conversion).
pub fn weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

impl Cgroups {
    /// Detect the layout; containers of `node` live under `skiff/<node>`.
    pub fn detect(node: &str) -> Self {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_mountinfo(&text, node)
    }

    pub fn from_mountinfo(text: &str, node: &str) -> Self {
        let base = PathBuf::from("skiff").join(node);
        match parse_mountinfo(text) {
            (Some(root), _) => Self::V2 { root, base },
            (None, roots) => Self::V1 { roots, base },
        }
    }

    /// Directory of `rel` (e.g. `pod<uid>/<id>`) in each hierarchy.
    pub fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        match self {
            Self::V1 { roots, base } => {
                let mut seen: Vec<PathBuf> = Vec::new();
                for (_, root) in roots {
                    let d = root.join(base).join(rel);
                    if !seen.contains(&d) {
                        seen.push(d);
                    }
                }
                seen
            }
            Self::V2 { root, base } => vec![root.join(base).join(rel)],
        }
    }

    fn controller_dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        match self {
            Self::V1 { roots, base } => roots
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, r)| r.join(base).join(rel)),
            Self::V2 { root, base } => Some(root.join(base).join(rel)),
        }
    }

    /// Create `rel` with `limits`; returns the directories a process must join.
    pub fn create(&self, rel: &str, limits: &Limits) -> std::io::Result<Vec<PathBuf>> {
        if let Self::V2 { root, base } = self {
            // Delegate controllers down to the container's parent.
            let mut dir = root.clone();
            let parent_rel = Path::new(rel)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let chain: Vec<PathBuf> = base
                .join(parent_rel)
                .components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect();
            let _ = write(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
            for part in chain {
                dir = dir.join(part);
                std::fs::create_dir_all(&dir)?;
                let _ = write(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
            }
        }
        let dirs = self.dirs(rel);
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        match self {
            Self::V1 { .. } => {
                if let (Some(m), Some(d)) =
                    (limits.memory_bytes, self.controller_dir("memory", rel))
                {
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                    // No swap beyond the limit, so the limit really triggers the OOM killer.
                    let _ = write(&d.join("memory.memsw.limit_in_bytes"), &m.to_string());
                }
                if let Some(d) = self.controller_dir("cpu", rel) {
                    if let Some(l) = limits.cpu_limit_millis {
                        write(&d.join("cpu.cfs_period_us"), &CFS_PERIOD.to_string())?;
                        write(
                            &d.join("cpu.cfs_quota_us"),
                            &(l * CFS_PERIOD / 1000).max(1000).to_string(),
                        )?;
                    }
                    if let Some(r) = limits.cpu_request_millis {
                        write(&d.join("cpu.shares"), &shares(r).to_string())?;
                    }
                }
                if let (Some(p), Some(d)) = (limits.pids, self.controller_dir("pids", rel)) {
                    write(&d.join("pids.max"), &p.to_string())?;
                }
            }
            Self::V2 { .. } => {
                let d = &dirs[0];
                if let Some(m) = limits.memory_bytes {
                    write(&d.join("memory.max"), &m.to_string())?;
                    let _ = write(&d.join("memory.swap.max"), "0");
                }
                if let Some(l) = limits.cpu_limit_millis {
                    let quota = (l * CFS_PERIOD / 1000).max(1000);
                    write(&d.join("cpu.max"), &format!("{quota} {CFS_PERIOD}"))?;
                }
                if let Some(r) = limits.cpu_request_millis {
                    write(&d.join("cpu.weight"), &weight(shares(r)).to_string())?;
                }
                if let Some(p) = limits.pids {
                    write(&d.join("pids.max"), &p.to_string())?;
                }
            }
        }
        Ok(dirs)
    }

    /// How many processes the kernel OOM-killed in `rel`.
    pub fn oom_kills(&self, rel: &str) -> u64 {
        let (file, key) = match self {
            Self::V1 { .. } => ("memory.oom_control", "oom_kill"),
            Self::V2 { .. } => ("memory.events", "oom_kill"),
        };
        let Some(d) = self.controller_dir("memory", rel) else {
            return 0;
        };
        let text = std::fs::read_to_string(d.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Memory in use by `rel`, in bytes.
    pub fn memory_usage(&self, rel: &str) -> u64 {
        let file = match self {
            Self::V1 { .. } => "memory.usage_in_bytes",
            Self::V2 { .. } => "memory.current",
        };
        self.controller_dir("memory", rel)
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Remove `rel` (deepest first); best effort, a busy cgroup stays.
    pub fn remove(&self, rel: &str) {
        for d in self.dirs(rel) {
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
    const UNIFIED: &str = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn detects_hybrid_and_unified() {
        let c = Cgroups::from_mountinfo(HYBRID, "n1");
        let dirs = c.dirs("podX/c1");
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/skiff/n1/podX/c1"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/skiff/n1/podX/c1"),
                PathBuf::from("/sys/fs/cgroup/pids/skiff/n1/podX/c1"),
            ]
        );
        let u = Cgroups::from_mountinfo(UNIFIED, "n1");
        assert_eq!(
            u.dirs("p/c"),
            vec![PathBuf::from("/sys/fs/cgroup/skiff/n1/p/c")]
        );
    }

    #[test]
    fn cpu_conversions() {
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(1), 2);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(2), 1);
        assert_eq!(weight(262_144), 10_000);
    }

    #[test]
    fn writes_limits_in_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let c = Cgroups::V2 {
            root: d.path().to_path_buf(),
            base: PathBuf::from("skiff/n"),
        };
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            pids: None,
        };
        let dirs = c.create("pod1/c", &limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(dirs[0].join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(dirs[0].join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("skiff/n/pod1/cgroup.subtree_control")).unwrap(),
            "+memory +cpu +pids"
        );
        std::fs::write(dirs[0].join("memory.events"), "low 0\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(c.oom_kills("pod1/c"), 2);
    }
}
