//! One benchmark run, phase by phase: a fresh `skiff server` (creates, gets, lists, watch,
//! memory), stopped, then a fresh etcd (puts) so the two never compete for the CPU.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::client;
use crate::etcd;
use crate::load::Phase;
use crate::procs::{Etcd, Skiff};
use crate::report::Run;
use skiff_bench::child::{cpu_time, status};

/// Namespace of the pods that are created, read and listed.
const NS: &str = "bench";
/// Namespace the watchers watch: empty until the watch phase creates its pods.
const WATCH_NS: &str = "bench-watch";

/// What to run and how much of it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub skiff: PathBuf,
    pub etcd: PathBuf,
    pub pods: usize,
    pub serial_pods: usize,
    pub concurrency: usize,
    pub gets: usize,
    pub lists: usize,
    pub watchers: usize,
    pub events: usize,
    pub phase_limit: Duration,
}

fn say(run: usize, what: &str) {
    eprintln!("api-bench: run {run}: {what}");
}

/// Run `phase`, recording the CPU time `server` and this process used meanwhile.
async fn with_cpu(server: u32, phase: impl Future<Output = Phase>) -> Result<Phase> {
    let me = std::process::id();
    let (s0, c0) = (cpu_time(server)?, cpu_time(me)?);
    let mut p = phase.await;
    p.server_cpu = cpu_time(server)?.saturating_sub(s0);
    p.client_cpu = cpu_time(me)?.saturating_sub(c0);
    Ok(p)
}

/// Run every phase once.
pub async fn one(s: &Settings, run: usize) -> Result<Run> {
    let mut r = Run::default();
    let limit = s.phase_limit;
    let serial = s.serial_pods.min(s.pods);

    say(run, "starting skiff server");
    let skiff = Skiff::start(&s.skiff)?;
    let api = client::connect(skiff.kubeconfig()).await?;
    client::wait_ready(&api, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_idle_kib = status(skiff.pid())?.rss_kib;
    client::ensure_namespace(&api, NS).await?;
    client::ensure_namespace(&api, WATCH_NS).await?;

    say(run, &format!("creating {serial} pods one at a time"));
    r.create_serial = with_cpu(
        skiff.pid(),
        client::create_pods(&api, NS, 0..serial, 1, limit),
    )
    .await?;
    if r.create_serial.ok == 0 && serial > 0 {
        bail!(
            "no pod could be created: {}",
            r.create_serial.first_error.as_deref().unwrap_or("?")
        );
    }
    say(
        run,
        &format!(
            "creating {} pods at concurrency {}",
            s.pods - serial,
            s.concurrency
        ),
    );
    r.create_concurrent = with_cpu(
        skiff.pid(),
        client::create_pods(&api, NS, serial..s.pods, s.concurrency, limit),
    )
    .await?;
    let created = r.create_serial.ok + r.create_concurrent.ok;
    r.pod_json_len = client::pod_json_len(&api, NS, &client::pod_name(0)).await?;

    say(
        run,
        &format!("{} gets at concurrency {}", s.gets, s.concurrency),
    );
    r.gets = client::get_pods(&api, NS, s.pods, s.gets, s.concurrency, limit).await;
    r.rss_loaded_kib = status(skiff.pid())?.rss_kib;

    say(run, &format!("{} lists of {created} pods", s.lists));
    r.lists = client::list_latency(&api, NS, s.lists, created).await?;
    r.rss_peak_lists_kib = status(skiff.pid())?.hwm_kib;

    say(
        run,
        &format!("{} watchers, {} events", s.watchers, s.events),
    );
    r.watch = client::watch_latency(&api, WATCH_NS, s.watchers, s.events, limit).await?;
    r.rss_peak_kib = status(skiff.pid())?.hwm_kib;
    drop(api);
    drop(skiff);

    say(run, "starting etcd");
    let etcd_proc = Etcd::start(&s.etcd)?;
    let kv = etcd::connect(etcd_proc.endpoint(), Duration::from_secs(30)).await?;
    say(run, &format!("etcd: {serial} puts one at a time"));
    r.etcd_serial = with_cpu(
        etcd_proc.pid(),
        etcd::put_rate(
            &kv,
            "/registry/pods/bench/s-",
            serial,
            r.pod_json_len,
            1,
            limit,
        ),
    )
    .await?;
    say(
        run,
        &format!(
            "etcd: {} puts at concurrency {}",
            s.pods - serial,
            s.concurrency
        ),
    );
    r.etcd_concurrent = with_cpu(
        etcd_proc.pid(),
        etcd::put_rate(
            &kv,
            "/registry/pods/bench/c-",
            s.pods - serial,
            r.pod_json_len,
            s.concurrency,
            limit,
        ),
    )
    .await?;
    drop(kv);
    drop(etcd_proc);
    Ok(r)
}

/// A one-line description of this machine and the etcd under comparison.
pub fn machine(s: &Settings) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u32>().ok())
        .map_or(0.0, |kib| f64::from(kib) / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let etcd = std::process::Command::new(&s.etcd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "etcd version unknown".to_owned());
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z");
    format!(
        "Machine: {cpu}, {cpus} CPUs, {mem_gib:.1} GiB RAM, Linux {}; {etcd}; run {date}. \
         Client, server and etcd share the machine, all over 127.0.0.1.",
        kernel.trim()
    )
}
