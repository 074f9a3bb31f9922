//! One pod's worker: a task that owns the pod's sandbox, volumes and containers and drives them
//! towards the pod spec: init containers in order, then the containers, restarts with
//! back-off, probes, graceful termination; and posts the pod's status as the kubelet would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::env::{argv, expand, field_ref, parse_user, passwd_lookup, service_vars};
use super::probe::{self, ProbeState};
use super::volumes::{Volumes, sub_path, teardown};
use super::{Ctx, Msg};
use crate::images::{Image, ImageConfig};
use crate::runtime::spec::{ContainerSpec, ExecSpec, Mount, Namespaces, Rootfs};
use crate::runtime::{Limits, alive, caps, read_exit};

/// Back-off: 10 s doubling to 5 minutes, reset after 10 minutes of running.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often the worker looks at its containers without being woken.
const TICK: Duration = Duration::from_millis(500);
/// Log rotation defaults (the kubelet's containerLogMaxSize/MaxFiles).
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
const LOG_MAX_FILES: u32 = 5;

/// `meta.json` of a container attempt: what the agent knows once the helper reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    id: String,
    pid: i32,
    shim_pid: i32,
    started_at: String,
    image: String,
    image_id: String,
    /// The image's stop signal (`SIGQUIT`), if it names one.
    #[serde(default)]
    stop_signal: Option<String>,
}

impl Meta {
    /// The signal that starts a graceful stop: the image's `StopSignal`, else SIGTERM.
    fn stop_signal(&self) -> Signal {
        self.stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(Signal::SIGTERM)
    }
}

/// `SIGQUIT`, `QUIT` or `3` as a signal.
fn parse_signal(s: &str) -> Option<Signal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

/// How an attempt ended (kept as `terminated.json` so a restarted agent reports the same).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Terminated {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started_at: String,
    finished_at: String,
    container_id: String,
}

impl Terminated {
    fn json(&self) -> Value {
        let mut v = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(s) = self.signal {
            v["signal"] = json!(s);
        }
        if let Some(m) = &self.message {
            v["message"] = json!(m);
        }
        v
    }
}

/// One attempt of a container.
struct Instance {
    meta: Meta,
    spec: ContainerSpec,
    cgroup: String,
    finished: Option<Terminated>,
    probes: Option<(Arc<ProbeState>, Vec<tokio::task::JoinHandle<()>>)>,
    started: Instant,
    killing: bool,
}

/// A container of the pod.
struct Ctr {
    c: Container,
    init: bool,
    attempts: u32,
    current: Option<Instance>,
    last: Option<Terminated>,
    waiting: Option<(String, Option<String>)>,
    backoff: Duration,
    next_start: Option<Instant>,
    image_id: String,
}

impl Ctr {
    fn running(&self) -> bool {
        self.current.as_ref().is_some_and(|i| i.finished.is_none())
    }

    fn succeeded(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|i| i.finished.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    }

    fn finished(&self) -> Option<&Terminated> {
        self.current.as_ref().and_then(|i| i.finished.as_ref())
    }

    fn ready(&self) -> bool {
        self.running()
            && self
                .current
                .as_ref()
                .and_then(|i| i.probes.as_ref())
                .is_none_or(|(st, _)| {
                    st.ready.load(Ordering::SeqCst) && st.started.load(Ordering::SeqCst)
                })
    }

    fn started(&self) -> bool {
        self.running()
            && self
                .current
                .as_ref()
                .and_then(|i| i.probes.as_ref())
                .is_none_or(|(st, _)| st.started.load(Ordering::SeqCst))
    }

    fn stop_probes(&mut self) {
        if let Some(i) = self.current.as_mut()
            && let Some((_, tasks)) = i.probes.take()
        {
            for t in tasks {
                t.abort();
            }
        }
    }
}

pub struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    uid: String,
    dir: PathBuf,
    rx: mpsc::Receiver<Msg>,
    wake: Arc<Notify>,
    ctrs: Vec<Ctr>,
    ns: Option<Namespaces>,
    ip: Option<String>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    last_status: Value,
    start_time: String,
    gone: bool,
    sandbox_error: Option<String>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn container_id(attempt_dir: &Path) -> String {
    let seed = format!(
        "{}{}",
        attempt_dir.display(),
        jiff::Timestamp::now().as_nanosecond()
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    for round in 0u8..4 {
        for b in seed.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>, pod: Pod, rx: mpsc::Receiver<Msg>) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx.data.join("pods").join(&uid);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ctrs: Vec<Ctr> = Vec::new();
        for (c, init) in spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c, true))
            .chain(spec.containers.into_iter().map(|c| (c, false)))
        {
            ctrs.push(Ctr {
                c,
                init,
                attempts: 0,
                current: None,
                last: None,
                waiting: None,
                backoff: Duration::ZERO,
                next_start: None,
                image_id: String::new(),
            });
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(now);
        let mut w = Self {
            ctx,
            pod,
            uid,
            dir,
            rx,
            wake: Arc::new(Notify::new()),
            ctrs,
            ns: None,
            ip: None,
            volumes: None,
            last_status: Value::Null,
            start_time,
            gone: false,
            sandbox_error: None,
        };
        w.recover();
        w
    }

    fn ctr_dir(&self, name: &str) -> PathBuf {
        self.dir.join("containers").join(name)
    }

    pub fn log_path(data: &Path, uid: &str, name: &str, attempt: u32) -> PathBuf {
        data.join("pods")
            .join(uid)
            .join("logs")
            .join(name)
            .join(format!("{attempt}.log"))
    }

    /// Pick up what a previous agent left: sandbox, address, container attempts.
    fn recover(&mut self) {
        let sandbox = self.dir.join("ns");
        if crate::runtime::Runtime::sandbox_exists(&sandbox) {
            self.ns = Some(Namespaces {
                net: Some(sandbox.join("net")),
                ipc: Some(sandbox.join("ipc")),
                uts: Some(sandbox.join("uts")),
            });
            self.ip = self
                .ctx
                .net
                .as_ref()
                .and_then(|n| n.ipam.lookup(&self.uid))
                .map(|i| i.to_string());
        }
        for i in 0..self.ctrs.len() {
            let name = self.ctrs[i].c.name.clone();
            let cdir = self.ctr_dir(&name);
            let mut attempts: Vec<u32> = std::fs::read_dir(&cdir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            attempts.sort_unstable();
            let Some(&latest) = attempts.last() else {
                continue;
            };
            let load = |a: u32| -> Option<Instance> {
                let d = cdir.join(a.to_string());
                let meta: Meta =
                    serde_json::from_slice(&std::fs::read(d.join("meta.json")).ok()?).ok()?;
                let spec: ContainerSpec =
                    serde_json::from_slice(&std::fs::read(d.join("spec.json")).ok()?).ok()?;
                Some(Instance {
                    cgroup: format!("pod{}/{}", self.uid, meta.id),
                    meta,
                    spec,
                    finished: None,
                    probes: None,
                    started: Instant::now(),
                    killing: false,
                })
            };
            let ctr = &mut self.ctrs[i];
            ctr.attempts = latest + 1;
            if latest > 0
                && let Some(mut prev) = load(latest - 1)
            {
                prev.finished = Some(self.ctx.exit_of(&prev, true));
                ctr.last = prev.finished;
            }
            if let Some(inst) = load(latest) {
                ctr.image_id = inst.meta.image_id.clone();
                ctr.current = Some(inst);
            }
        }
        for i in 0..self.ctrs.len() {
            self.start_probes_if_running(i);
        }
    }

    pub async fn run(mut self) {
        tracing::debug!(pod = %self.name(), "worker started");
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(pod = %self.name(), error = %e, "pod sync");
            }
            if self.gone || self.terminal_and_cleaned() {
                break;
            }
            tokio::select! {
                m = self.rx.recv() => match m {
                    Some(Msg::Update(p)) => self.pod = *p,
                    Some(Msg::Gone) | None => self.gone = true,
                },
                () = self.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
        if self.gone {
            self.kill_all(Duration::ZERO).await;
            self.cleanup().await;
        }
    }

    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn terminal_and_cleaned(&self) -> bool {
        false
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    async fn sync(&mut self) -> Result<(), String> {
        if self.gone {
            return Ok(());
        }
        self.observe_exits();
        if self.pod.metadata.deletion_timestamp.is_some() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30);
            self.kill_all(Duration::from_secs(u64::try_from(grace).unwrap_or(0)))
                .await;
            self.post_status().await;
            self.cleanup().await;
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let _ = api
                .delete(self.pod.metadata.name.as_deref().unwrap_or_default(), &dp)
                .await;
            self.gone = true;
            return Ok(());
        }
        if self.phase_terminal() {
            self.post_status().await;
            return Ok(());
        }
        if let Err(e) = self.ensure_sandbox().await {
            self.sandbox_error = Some(e.clone());
            self.post_status().await;
            return Err(e);
        }
        self.sandbox_error = None;
        if self.volumes.is_none() {
            let v = Volumes {
                client: &self.ctx.client,
                sys: self.ctx.runtime.sys.as_ref(),
                pod: &self.pod,
                dir: self.dir.join("volumes"),
            };
            match v.prepare().await {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    self.ctx.events.record(
                        &self.pod,
                        None,
                        true,
                        "FailedMount",
                        format!("MountVolume.SetUp failed for {e}"),
                    );
                    self.post_status().await;
                    return Err(e);
                }
            }
        }
        self.drive().await;
        self.post_status().await;
        Ok(())
    }

    fn phase_terminal(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) && !self.ctrs.iter().any(Ctr::running)
    }

    async fn ensure_sandbox(&mut self) -> Result<(), String> {
        if self.ns.is_some() && (self.ip.is_some() || self.ctx.net.is_none()) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let meta = json!({
            "namespace": self.pod.metadata.namespace,
            "name": self.pod.metadata.name,
            "uid": self.uid,
        });
        let _ = std::fs::write(self.dir.join("pod.json"), meta.to_string());
        let sandbox = self.dir.join("ns");
        let ns = if crate::runtime::Runtime::sandbox_exists(&sandbox) {
            Namespaces {
                net: Some(sandbox.join("net")),
                ipc: Some(sandbox.join("ipc")),
                uts: Some(sandbox.join("uts")),
            }
        } else {
            let hostname = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .or_else(|| self.pod.metadata.name.clone())
                .unwrap_or_default();
            self.ctx
                .runtime
                .create_sandbox(&sandbox, &hostname)
                .await
                .map_err(|e| {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.ctx.events.record(
                        &self.pod,
                        None,
                        true,
                        "FailedCreatePodSandBox",
                        msg.clone(),
                    );
                    msg
                })?
        };
        if let (Some(net), Some(netns)) = (self.ctx.net.as_ref(), ns.net.as_ref()) {
            let ip = net.attach(netns, &self.uid).await.map_err(|e| {
                let msg = format!("Failed to create pod sandbox: network: {e}");
                self.ctx.events.record(
                    &self.pod,
                    None,
                    true,
                    "FailedCreatePodSandBox",
                    msg.clone(),
                );
                msg
            })?;
            self.ip = Some(ip.to_string());
        }
        self.ns = Some(ns);
        self.write_etc_files()?;
        Ok(())
    }

    fn write_etc_files(&self) -> Result<(), String> {
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let hostname = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.clone());
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if let Some(ip) = &self.ip {
            hosts.push_str(&format!("{ip}\t{hostname}\n"));
        }
        for ha in self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_aliases.clone())
            .unwrap_or_default()
        {
            hosts.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                ha.ip,
                ha.hostnames.unwrap_or_default().join("\t")
            ));
        }
        std::fs::write(etc.join("hosts"), hosts).map_err(|e| e.to_string())?;
        std::fs::write(etc.join("hostname"), format!("{hostname}\n")).map_err(|e| e.to_string())?;
        let ns = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let resolv = match &self.ctx.cluster_dns {
            Some(dns) => format!(
                "search {ns}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {dns}\noptions ndots:5\n"
            ),
            None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        std::fs::write(etc.join("resolv.conf"), resolv).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Notice attempts that ended, and liveness failures.
    fn observe_exits(&mut self) {
        for i in 0..self.ctrs.len() {
            let liveness_failed = self.ctrs[i]
                .current
                .as_ref()
                .filter(|inst| inst.finished.is_none() && !inst.killing)
                .and_then(|inst| inst.probes.as_ref())
                .is_some_and(|(st, _)| st.liveness_failed.load(Ordering::SeqCst));
            if liveness_failed {
                let name = self.ctrs[i].c.name.clone();
                let msg = format!("Container {name} failed liveness probe, will be restarted");
                self.ctx
                    .events
                    .record(&self.pod, Some(&name), false, "Killing", msg);
                if let Some(inst) = self.ctrs[i].current.as_mut() {
                    inst.killing = true;
                    let pid = inst.meta.pid;
                    let stop = inst.meta.stop_signal();
                    let grace = self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                        .unwrap_or(30);
                    let rt = self.ctx.clone();
                    tokio::spawn(async move {
                        rt.runtime.signal(pid, stop);
                        let deadline =
                            Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(0));
                        while alive(pid) && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        rt.runtime.signal(pid, Signal::SIGKILL);
                    });
                }
            }
            let ended = match self.ctrs[i].current.as_ref() {
                Some(inst) if inst.finished.is_none() => {
                    read_exit(&inst.spec.state_dir).is_some() || !alive(inst.meta.shim_pid)
                }
                _ => false,
            };
            if ended {
                let ctr = &mut self.ctrs[i];
                ctr.stop_probes();
                if let Some(inst) = ctr.current.as_mut() {
                    let t = self.ctx.exit_of(inst, false);
                    let _ = std::fs::write(
                        inst.spec.state_dir.join("terminated.json"),
                        serde_json::to_vec(&t).unwrap_or_default(),
                    );
                    self.ctx.runtime.cleanup(&inst.spec);
                    self.ctx.runtime.cgroups.remove(&inst.cgroup);
                    if inst.started.elapsed() > BACKOFF_RESET {
                        ctr.backoff = Duration::ZERO;
                    }
                    inst.finished = Some(t);
                }
            }
        }
    }

    fn should_restart(&self, t: &Terminated) -> bool {
        match self.restart_policy() {
            "Never" => false,
            "OnFailure" => t.exit_code != 0,
            _ => true,
        }
    }

    /// Start what should run now.
    async fn drive(&mut self) {
        // Init containers, in order.
        for i in 0..self.ctrs.len() {
            if !self.ctrs[i].init {
                continue;
            }
            if self.ctrs[i].succeeded() {
                continue;
            }
            if self.ctrs[i].running() {
                return;
            }
            if let Some(t) = self.ctrs[i].finished().cloned() {
                // Init containers restart unless the pod's policy is Never.
                if self.restart_policy() == "Never" {
                    return;
                }
                if !self.backoff_elapsed(i, &t) {
                    return;
                }
            }
            self.start(i).await;
            return;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].init || self.ctrs[i].running() {
                continue;
            }
            if let Some(t) = self.ctrs[i].finished().cloned() {
                if !self.should_restart(&t) || !self.backoff_elapsed(i, &t) {
                    continue;
                }
            } else if let Some(at) = self.ctrs[i].next_start
                && Instant::now() < at
            {
                continue;
            }
            self.start(i).await;
        }
    }

    /// Whether the back-off after a failed attempt is over; sets CrashLoopBackOff otherwise.
    fn backoff_elapsed(&mut self, i: usize, _t: &Terminated) -> bool {
        let ctr = &mut self.ctrs[i];
        let now = Instant::now();
        match ctr.next_start {
            None => {
                // First restart right away; then 10 s, doubling.
                let delay = ctr.backoff;
                ctr.backoff = if delay.is_zero() {
                    BACKOFF_START
                } else {
                    (delay * 2).min(BACKOFF_MAX)
                };
                if delay.is_zero() {
                    return true;
                }
                ctr.next_start = Some(now + delay);
                let name = ctr.c.name.clone();
                let pod = self.pod.metadata.name.clone().unwrap_or_default();
                let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
                ctr.waiting = Some((
                    "CrashLoopBackOff".into(),
                    Some(format!(
                        "back-off {}s restarting failed container={name} pod={pod}_{ns}({})",
                        delay.as_secs(),
                        self.uid
                    )),
                ));
                self.ctx.events.record(
                    &self.pod,
                    Some(&name),
                    true,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {pod}_{ns}({})",
                        self.uid
                    ),
                );
                false
            }
            Some(at) if now >= at => true,
            Some(_) => false,
        }
    }

    async fn pull_secrets(&self) -> Vec<Secret> {
        let ns = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut out = Vec::new();
        for r in self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            if let Ok(Some(s)) = api.get_opt(&r.name).await {
                out.push(s);
            }
        }
        out
    }

    async fn start(&mut self, i: usize) {
        self.ctrs[i].next_start = None;
        let c = self.ctrs[i].c.clone();
        let image_ref = c.image.clone().unwrap_or_default();
        let secrets = self.pull_secrets().await;
        if self
            .ctx
            .images
            .will_pull(&image_ref, c.image_pull_policy.as_deref())
        {
            self.ctx.events.record(
                &self.pod,
                Some(&c.name),
                false,
                "Pulling",
                format!("Pulling image \"{image_ref}\""),
            );
        }
        let pull_started = Instant::now();
        let image = match self
            .ctx
            .images
            .ensure(&image_ref, c.image_pull_policy.as_deref(), &secrets)
            .await
        {
            Ok(img) => img,
            Err(e) => {
                let ctr = &mut self.ctrs[i];
                let back = matches!(
                    ctr.waiting.as_ref().map(|w| w.0.as_str()),
                    Some("ErrImagePull" | "ImagePullBackOff")
                );
                self.ctx.events.record(
                    &self.pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    format!("Failed to pull image \"{image_ref}\": {e}"),
                );
                self.ctx.events.record(
                    &self.pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    format!("Error: {}", e.reason),
                );
                let delay = if back {
                    (ctr.backoff * 2).clamp(BACKOFF_START, BACKOFF_MAX)
                } else {
                    BACKOFF_START
                };
                ctr.backoff = delay;
                ctr.next_start = Some(Instant::now() + delay);
                if back {
                    ctr.waiting = Some((
                        "ImagePullBackOff".into(),
                        Some(format!("Back-off pulling image \"{image_ref}\": {e}")),
                    ));
                    self.ctx.events.record(
                        &self.pod,
                        Some(&c.name),
                        false,
                        "BackOff",
                        format!("Back-off pulling image \"{image_ref}\""),
                    );
                } else {
                    ctr.waiting = Some((
                        e.reason.into(),
                        Some(format!("failed to pull image \"{image_ref}\": {e}")),
                    ));
                }
                // Retries go through the normal path: treat as not started.
                ctr.current = ctr.current.take().filter(|inst| inst.finished.is_some());
                if ctr.current.is_some() {
                    // A restart that cannot pull: keep the old termination for status, retry later.
                    ctr.next_start = Some(Instant::now() + delay);
                }
                return;
            }
        };
        if image.pulled {
            self.ctx.events.record(
                &self.pod,
                Some(&c.name),
                false,
                "Pulled",
                format!(
                    "Successfully pulled image \"{image_ref}\" in {:.3}s",
                    pull_started.elapsed().as_secs_f64()
                ),
            );
        } else {
            self.ctx.events.record(
                &self.pod,
                Some(&c.name),
                false,
                "Pulled",
                format!("Container image \"{image_ref}\" already present on machine"),
            );
        }
        let attempt = self.ctrs[i].attempts;
        let adir = self.ctr_dir(&c.name).join(attempt.to_string());
        let id = container_id(&adir);
        let spec = match self.build_spec(&c, &image, &adir, &id, attempt).await {
            Ok(s) => s,
            Err(e) => {
                let ctr = &mut self.ctrs[i];
                ctr.waiting = Some(("CreateContainerConfigError".into(), Some(e.clone())));
                ctr.next_start = Some(Instant::now() + BACKOFF_START);
                self.ctx.events.record(
                    &self.pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    format!("Error: {e}"),
                );
                return;
            }
        };
        let cgroup = format!("pod{}/{}", self.uid, id);
        let started_at = now();
        let result = self.ctx.runtime.start(&spec).await;
        let ctr = &mut self.ctrs[i];
        ctr.attempts = attempt + 1;
        ctr.image_id = image.id.clone();
        if let Some(prev) = ctr.current.take() {
            ctr.last = prev.finished;
        }
        ctr.waiting = None;
        let (pid, shim_pid, error) = match result {
            Ok(s) => (s.pid.unwrap_or(0), s.shim_pid.unwrap_or(0), s.error),
            Err(e) => (0, 0, Some(e.to_string())),
        };
        let meta = Meta {
            id: id.clone(),
            pid,
            shim_pid,
            started_at: started_at.clone(),
            image: image_ref.clone(),
            image_id: image.id.clone(),
            stop_signal: image.config.stop_signal.clone(),
        };
        let _ = std::fs::write(
            adir.join("meta.json"),
            serde_json::to_vec(&meta).unwrap_or_default(),
        );
        self.ctx.events.record(
            &self.pod,
            Some(&c.name),
            false,
            "Created",
            format!("Created container {}", c.name),
        );
        let mut inst = Instance {
            meta,
            spec,
            cgroup,
            finished: None,
            probes: None,
            started: Instant::now(),
            killing: false,
        };
        if let Some(e) = error {
            self.ctx.events.record(
                &self.pod,
                Some(&c.name),
                true,
                "Failed",
                format!("Error: failed to start container \"{}\": {e}", c.name),
            );
            inst.finished = Some(Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(e),
                started_at: "1970-01-01T00:00:00Z".into(),
                finished_at: now(),
                container_id: format!("skiff://{id}"),
            });
            self.ctx.runtime.cleanup(&inst.spec);
        } else {
            self.ctx.events.record(
                &self.pod,
                Some(&c.name),
                false,
                "Started",
                format!("Started container {}", c.name),
            );
        }
        self.ctrs[i].current = Some(inst);
        self.start_probes_if_running(i);
    }

    fn start_probes_if_running(&mut self, i: usize) {
        let ctr = &self.ctrs[i];
        if !ctr.running() || ctr.init {
            return;
        }
        let c = ctr.c.clone();
        if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
            return;
        }
        let Some(inst) = ctr.current.as_ref() else {
            return;
        };
        let exec_base = ExecSpec::for_container(inst.meta.pid, &inst.spec);
        let state_dir = inst.spec.state_dir.clone();
        let exe = self.ctx.runtime.exe.clone();
        let exec: probe::ExecFn = Arc::new(move |args, timeout| {
            let mut spec = exec_base.clone();
            spec.args = args;
            let path = state_dir.join(format!(
                "exec-{}.json",
                jiff::Timestamp::now().as_nanosecond()
            ));
            let exe = exe.clone();
            Box::pin(async move { run_exec(&exe, &path, &spec, timeout).await })
        });
        let target = probe::Target {
            pod_ip: self.ip.as_ref().and_then(|i| i.parse().ok()),
            container: c.clone(),
            exec,
        };
        let events = self.ctx.events.clone();
        let pod = self.pod.clone();
        let name = c.name.clone();
        let report: probe::Report = Arc::new(move |kind, msg| {
            events.record(
                &pod,
                Some(&name),
                true,
                "Unhealthy",
                format!("{kind} probe failed: {msg}"),
            );
        });
        let (st, tasks) = probe::start(target, self.wake.clone(), report);
        if let Some(inst) = self.ctrs[i].current.as_mut() {
            inst.probes = Some((st, tasks));
        }
    }

    /// The services whose variables the pod's containers get: its namespace's (unless
    /// `enableServiceLinks: false`) and the API server's `default/kubernetes`. A failed list
    /// gives none rather than failing the container.
    async fn services(&self, ns: &str) -> Vec<Service> {
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut out = Vec::new();
        if links {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
            match api.list(&Default::default()).await {
                Ok(list) => out.extend(list.items),
                Err(e) => tracing::warn!(error = %e, ns, "list services for environment"),
            }
        }
        if !links || ns != "default" {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), "default");
            if let Ok(Some(k)) = api.get_opt("kubernetes").await {
                out.push(k);
            }
        }
        out
    }

    async fn env(
        &self,
        c: &Container,
        image: &ImageConfig,
    ) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
        let ns = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut set = |k: String, v: String, vars: &mut BTreeMap<String, String>| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
        for e in image.env.clone().unwrap_or_default() {
            if let Some((k, v)) = e.split_once('=') {
                set(k.into(), v.into(), &mut vars);
            }
        }
        let hostname = self.pod.metadata.name.clone().unwrap_or_default();
        set("HOSTNAME".into(), hostname, &mut vars);
        // Below envFrom and env, above the image's: what kubelet gives for services.
        for (k, v) in service_vars(&self.services(&ns).await) {
            set(k, v, &mut vars);
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
        for ef in c.env_from.clone().unwrap_or_default() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            if let Some(r) = ef.config_map_ref {
                match cms.get_opt(&r.name).await {
                    Ok(Some(cm)) => {
                        for (k, v) in cm.data.unwrap_or_default() {
                            set(format!("{prefix}{k}"), v, &mut vars);
                        }
                    }
                    _ if r.optional.unwrap_or(false) => {}
                    _ => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            }
            if let Some(r) = ef.secret_ref {
                match secrets.get_opt(&r.name).await {
                    Ok(Some(s)) => {
                        for (k, v) in s.data.unwrap_or_default() {
                            set(
                                format!("{prefix}{k}"),
                                String::from_utf8_lossy(&v.0).into_owned(),
                                &mut vars,
                            );
                        }
                    }
                    _ if r.optional.unwrap_or(false) => {}
                    _ => return Err(format!("secret \"{}\" not found", r.name)),
                }
            }
        }
        for e in c.env.clone().unwrap_or_default() {
            let value = if let Some(v) = e.value {
                expand(&v, &vars)
            } else if let Some(src) = e.value_from {
                if let Some(f) = src.field_ref {
                    let mut v = field_ref(&self.pod, &f.field_path).unwrap_or_default();
                    if f.field_path == "status.podIP" {
                        v = self.ip.clone().unwrap_or_default();
                    } else if f.field_path == "status.hostIP" {
                        v = self.ctx.node.ip.to_string();
                    }
                    v
                } else if let Some(k) = src.config_map_key_ref {
                    match cms.get_opt(&k.name).await {
                        Ok(Some(cm)) => match cm.data.unwrap_or_default().remove(&k.key) {
                            Some(v) => v,
                            None if k.optional.unwrap_or(false) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    k.key, k.name
                                ));
                            }
                        },
                        _ if k.optional.unwrap_or(false) => continue,
                        _ => return Err(format!("configmap \"{}\" not found", k.name)),
                    }
                } else if let Some(k) = src.secret_key_ref {
                    match secrets.get_opt(&k.name).await {
                        Ok(Some(s)) => match s.data.unwrap_or_default().remove(&k.key) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if k.optional.unwrap_or(false) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    k.key, k.name
                                ));
                            }
                        },
                        _ if k.optional.unwrap_or(false) => continue,
                        _ => return Err(format!("secret \"{}\" not found", k.name)),
                    }
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            set(e.name, value, &mut vars);
        }
        let list = order
            .iter()
            .map(|k| format!("{k}={}", vars.get(k).cloned().unwrap_or_default()))
            .collect();
        Ok((list, vars))
    }

    async fn build_spec(
        &self,
        c: &Container,
        image: &Image,
        adir: &Path,
        id: &str,
        attempt: u32,
    ) -> Result<ContainerSpec, String> {
        let (env, vars) = self.env(c, &image.config).await?;
        let args = argv(c, &image.config, &vars);
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let (mut uid, mut gid) = (0u32, 0u32);
        if let Some(u) = image.config.user.as_deref().filter(|u| !u.is_empty()) {
            let (pu, pg) = parse_user(u);
            match pu {
                Some(n) => uid = n,
                None => {
                    let name = u.split(':').next().unwrap_or(u);
                    let passwd = image
                        .layers
                        .iter()
                        .find_map(|l| std::fs::read_to_string(l.join("etc/passwd")).ok())
                        .unwrap_or_default();
                    let (lu, lg) = passwd_lookup(&passwd, name)
                        .ok_or_else(|| format!("unable to find user {name}"))?;
                    uid = lu;
                    gid = lg;
                }
            }
            if let Some(g) = pg {
                gid = g;
            }
        }
        if let Some(u) = sc.run_as_user.or(psc.run_as_user) {
            uid = u32::try_from(u).map_err(|_| "invalid runAsUser".to_string())?;
        }
        if let Some(g) = sc.run_as_group.or(psc.run_as_group) {
            gid = u32::try_from(g).map_err(|_| "invalid runAsGroup".to_string())?;
        }
        if sc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid == 0 {
            return Err("container has runAsNonRoot and image will run as root".into());
        }
        let mut groups: Vec<u32> = vec![gid];
        for g in psc
            .supplemental_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(psc.fs_group)
        {
            if let Ok(g) = u32::try_from(g) {
                groups.push(g);
            }
        }
        let privileged = sc.privileged.unwrap_or(false);
        let capabilities = caps::mask(
            &sc.capabilities
                .as_ref()
                .and_then(|c| c.add.clone())
                .unwrap_or_default(),
            &sc.capabilities
                .as_ref()
                .and_then(|c| c.drop.clone())
                .unwrap_or_default(),
            privileged,
        );
        let vols = self.volumes.clone().unwrap_or_default();
        let etc = self.dir.join("etc");
        let mut mounts = vec![
            Mount {
                source: etc.join("hosts"),
                destination: "/etc/hosts".into(),
                readonly: false,
            },
            Mount {
                source: etc.join("hostname"),
                destination: "/etc/hostname".into(),
                readonly: false,
            },
            Mount {
                source: etc.join("resolv.conf"),
                destination: "/etc/resolv.conf".into(),
                readonly: false,
            },
        ];
        for vm in c.volume_mounts.clone().unwrap_or_default() {
            let base = vols
                .get(&vm.name)
                .ok_or_else(|| format!("volume \"{}\" not found", vm.name))?;
            let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sp) => sub_path(base, &expand(sp, &vars))?,
                None => base.clone(),
            };
            mounts.push(Mount {
                source,
                destination: vm.mount_path.clone(),
                readonly: vm.read_only.unwrap_or(false),
            });
        }
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let lim = Limits {
            memory_bytes: limits
                .get("memory")
                .and_then(|q| super::quantity::bytes(&q.0)),
            cpu_limit_millis: limits
                .get("cpu")
                .and_then(|q| super::quantity::millis(&q.0)),
            cpu_request_millis: requests
                .get("cpu")
                .or(limits.get("cpu"))
                .and_then(|q| super::quantity::millis(&q.0)),
            pids: None,
        };
        let cgroups = self
            .ctx
            .runtime
            .cgroups
            .create(&format!("pod{}/{id}", self.uid), &lim)
            .map_err(|e| format!("cgroup: {e}"))?;
        let ns = self.ns.clone().unwrap_or_default();
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let cwd = c
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        Ok(ContainerSpec {
            id: id.to_owned(),
            rootfs: Rootfs {
                lower: image.layers.clone(),
                upper: adir.join("upper"),
                work: adir.join("work"),
                merged: adir.join("rootfs"),
                readonly: sc.read_only_root_filesystem.unwrap_or(false),
            },
            namespaces: Namespaces {
                net: if host_network { None } else { ns.net },
                ipc: ns.ipc,
                uts: if host_network { None } else { ns.uts },
            },
            mounts,
            args,
            env,
            cwd,
            uid,
            gid,
            groups,
            capabilities,
            no_new_privs: !privileged,
            seccomp: !privileged,
            privileged,
            cgroups,
            log_path: Self::log_path(&self.ctx.data, &self.uid, &c.name, attempt),
            log_max_bytes: LOG_MAX_BYTES,
            log_max_files: LOG_MAX_FILES,
            state_dir: adir.to_path_buf(),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        })
    }

    /// Stop every running container: preStop, SIGTERM, then SIGKILL after `grace`.
    async fn kill_all(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut pids = Vec::new();
        for ctr in &mut self.ctrs {
            ctr.stop_probes();
            if let Some(inst) = ctr.current.as_mut()
                && inst.finished.is_none()
            {
                if !inst.killing {
                    self.ctx.events.record(
                        &self.pod,
                        Some(&ctr.c.name),
                        false,
                        "Killing",
                        format!("Stopping container {}", ctr.c.name),
                    );
                }
                inst.killing = true;
                pids.push((
                    inst.meta.pid,
                    inst.meta.stop_signal(),
                    ctr.c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()),
                    inst.spec.clone(),
                ));
            }
        }
        for (pid, stop, pre_stop, spec) in &pids {
            if let Some(h) = pre_stop
                && !grace.is_zero()
            {
                self.run_hook(*pid, h, spec, deadline).await;
            }
            self.ctx.runtime.signal(*pid, *stop);
        }
        while Instant::now() < deadline && pids.iter().any(|(p, _, _, _)| alive(*p)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (pid, _, _, spec) in &pids {
            if alive(*pid) {
                self.ctx.runtime.signal(*pid, Signal::SIGKILL);
            }
            // Wait for the shim to record the exit.
            for _ in 0..50 {
                if read_exit(&spec.state_dir).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.observe_exits();
    }

    async fn run_hook(
        &self,
        pid: i32,
        h: &k8s_openapi::api::core::v1::LifecycleHandler,
        spec: &ContainerSpec,
        deadline: Instant,
    ) {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if let Some(e) = &h.exec {
            let es = ExecSpec {
                args: e.command.clone().unwrap_or_default(),
                ..ExecSpec::for_container(pid, spec)
            };
            let path = spec.state_dir.join("prestop.json");
            let _ = run_exec(&self.ctx.runtime.exe, &path, &es, timeout).await;
        } else if let Some(hg) = &h.http_get {
            let p = k8s_openapi::api::core::v1::Probe {
                http_get: Some(hg.clone()),
                timeout_seconds: i32::try_from(timeout.as_secs()).ok(),
                ..Default::default()
            };
            let t = probe::Target {
                pod_ip: self.ip.as_ref().and_then(|i| i.parse().ok()),
                container: Container::default(),
                exec: Arc::new(|_, _| Box::pin(async { Ok(0) })),
            };
            let _ = probe::check(&p, &t).await;
        } else if let Some(s) = &h.sleep {
            tokio::time::sleep(
                Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)).min(timeout),
            )
            .await;
        }
    }

    /// Remove everything the pod had on this node.
    async fn cleanup(&mut self) {
        for ctr in &mut self.ctrs {
            ctr.stop_probes();
            if let Some(inst) = &ctr.current {
                self.ctx.runtime.cleanup(&inst.spec);
                self.ctx.runtime.cgroups.remove(&inst.cgroup);
            }
        }
        self.ctx.runtime.cgroups.remove(&format!("pod{}", self.uid));
        if let Some(net) = &self.ctx.net {
            let _ = net.detach(&self.uid).await;
        }
        self.ctx.runtime.remove_sandbox(&self.dir.join("ns"));
        teardown(self.ctx.runtime.sys.as_ref(), &self.dir.join("volumes"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn status(&self) -> Value {
        super::status::build(&super::status::Input {
            pod: &self.pod,
            ip: self.ip.as_deref(),
            host_ip: &self.ctx.node.ip.to_string(),
            start_time: &self.start_time,
            sandbox_ready: self.ns.is_some() && self.sandbox_error.is_none(),
            restart_policy: self.restart_policy(),
            containers: self
                .ctrs
                .iter()
                .map(|c| super::status::Ctr {
                    name: &c.c.name,
                    image: c.c.image.as_deref().unwrap_or_default(),
                    image_id: &c.image_id,
                    init: c.init,
                    restarts: c.attempts.saturating_sub(1),
                    running_since: c
                        .current
                        .as_ref()
                        .filter(|i| i.finished.is_none())
                        .map(|i| i.meta.started_at.as_str()),
                    container_id: c.current.as_ref().map(|i| format!("skiff://{}", i.meta.id)),
                    terminated: c.finished().map(Terminated::json),
                    last: c.last.as_ref().map(Terminated::json),
                    waiting: c.waiting.clone(),
                    ready: c.ready(),
                    started: c.started(),
                    exit_code: c.finished().map(|t| t.exit_code),
                    will_restart: c.finished().is_some_and(|t| {
                        self.should_restart(t) || (c.init && self.restart_policy() != "Never")
                    }),
                })
                .collect(),
        })
    }

    async fn post_status(&mut self) {
        let st = self.status();
        if st == self.last_status {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = json!({"status": st});
        match api
            .patch_status(
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(p) => {
                tracing::debug!(pod = %self.name(), phase = ?st["phase"], "status posted");
                self.last_status = st;
                if p.metadata.uid.as_deref() == Some(&self.uid) {
                    self.pod.status = p.status;
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => self.gone = true,
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "post pod status"),
        }
    }
}

/// Run an exec helper with a deadline; Ok(exit code).
async fn run_exec(
    exe: &Path,
    path: &Path,
    spec: &ExecSpec,
    timeout: Duration,
) -> Result<i32, String> {
    std::fs::write(path, serde_json::to_vec(spec).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(exe)
        .args(["container-init", "--exec"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string());
    let out = match child {
        Ok(c) => {
            tokio::time::timeout(timeout.max(Duration::from_secs(1)), c.wait_with_output()).await
        }
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(path);
    match out {
        Ok(Ok(o)) => o.status.code().ok_or_else(|| "killed".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("command timed out after {}s", timeout.as_secs())),
    }
}

/// The `terminated.reason` of an attempt. As with containerd, an OOM kill anywhere in the
/// container's cgroup makes a failed exit `OOMKilled`, even when the kernel chose a child
/// of the first process and the first process then exited with an error of its own.
fn exit_reason(e: &crate::runtime::spec::Exit, oom_killed: bool) -> &'static str {
    if e.error.is_some() {
        "StartError"
    } else if e.exit_code == 0 {
        "Completed"
    } else if oom_killed {
        "OOMKilled"
    } else {
        "Error"
    }
}

impl Ctx {
    /// How an attempt ended, from the shim's record (or its absence).
    fn exit_of(&self, inst: &Instance, assume_gone: bool) -> Terminated {
        if let Some(t) = std::fs::read(inst.spec.state_dir.join("terminated.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Terminated>(&b).ok())
        {
            return t;
        }
        let exit = read_exit(&inst.spec.state_dir);
        let oom = self.runtime.cgroups.oom_kills(&inst.cgroup) > 0;
        let container_id = format!("skiff://{}", inst.meta.id);
        match exit {
            Some(e) => {
                let reason = exit_reason(&e, oom);
                Terminated {
                    exit_code: e.exit_code,
                    signal: None,
                    reason: reason.into(),
                    message: e.error,
                    started_at: inst.meta.started_at.clone(),
                    finished_at: e
                        .finished_at
                        .split('.')
                        .next()
                        .map(|s| format!("{}Z", s.trim_end_matches('Z')))
                        .unwrap_or(e.finished_at),
                    container_id,
                }
            }
            None => Terminated {
                exit_code: if assume_gone { 255 } else { 137 },
                signal: None,
                reason: "Unknown".into(),
                message: Some("the container's helper exited without recording a status".into()),
                started_at: inst.meta.started_at.clone(),
                finished_at: now(),
                container_id,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::Exit;

    fn exit(code: i32, signal: Option<i32>, error: Option<&str>) -> Exit {
        Exit {
            exit_code: code,
            signal,
            finished_at: "2026-11-23T10:00:00Z".into(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn stop_signals() {
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn exit_reasons() {
        assert_eq!(exit_reason(&exit(0, None, None), false), "Completed");
        assert_eq!(exit_reason(&exit(3, None, None), false), "Error");
        assert_eq!(exit_reason(&exit(137, Some(9), None), false), "Error");
        assert_eq!(exit_reason(&exit(137, Some(9), None), true), "OOMKilled");
        // A child was OOM-killed and the shell gave up with its own status.
        assert_eq!(exit_reason(&exit(1, None, None), true), "OOMKilled");
        assert_eq!(exit_reason(&exit(0, None, None), true), "Completed");
        assert_eq!(
            exit_reason(&exit(128, None, Some("exec: no such file")), true),
            "StartError"
        );
    }
}
