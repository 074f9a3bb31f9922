//! Benchmark (not a test): scheduler and controller throughput against a real `skiff server`
//! with `skiff sim` hollow nodes, both started here as child processes.
//!
//! ```text
//! cargo run -p skiff-controllers --example bench -- \
//!     --skiff target/debug/skiff --nodes 5000 --pods 10000,50000 --replicas 1000 \
//!     --algo-nodes 5000 --algo-pods 10000,50000 [--e2e false]
//! ```
//!
//! `BENCH_SERVER_LOG=<filter>` (e.g. `warn,skiff_apiserver=debug`, which logs every request)
//! sets the server's `SKIFF_LOG` and keeps its log in the printed directory.
//!
//! Prints a Markdown table: pods/s bound by the scheduler, time for a Deployment to have all
//! replicas Running and for a rolling update of it, and the RSS of both processes.
//!
//! To time the scheduler apart from the API's create rate, the benchmark holds the scheduler's
//! leader-election Lease (`kube-system/kube-scheduler`) while it creates the pods, then lets it
//! expire: the scheduler takes over and binds the whole backlog. The headline rate runs from
//! releasing the Lease to the last binding seen on a watch, so it includes the scheduler's
//! start (listing every node and pod); from the first to the last binding is printed too when
//! that watch never had to re-list.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde_json::json;

struct Args {
    skiff: PathBuf,
    nodes: usize,
    pods: Vec<usize>,
    replicas: i32,
    algo_nodes: usize,
    algo_pods: Vec<usize>,
    e2e: bool,
}

fn args() -> Args {
    let mut a = Args {
        skiff: PathBuf::from("target/debug/skiff"),
        nodes: 5000,
        pods: vec![10_000, 50_000],
        replicas: 1000,
        algo_nodes: 5000,
        algo_pods: vec![10_000, 50_000],
        e2e: true,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|x| x == "--help" || x == "-h") {
        println!(
            "usage: bench [--skiff PATH] [--nodes N] [--pods N,M] [--replicas N] \
             [--algo-nodes N] [--algo-pods N,M] [--e2e true|false]"
        );
        std::process::exit(0);
    }
    if argv.len() % 2 == 1 {
        eprintln!("bench: {} needs a value (see --help)", argv[argv.len() - 1]);
        std::process::exit(2);
    }
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--skiff" => a.skiff = PathBuf::from(v),
            "--nodes" => a.nodes = v.parse().expect("--nodes N"),
            "--pods" => {
                a.pods = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().expect("--pods N,M"))
                    .collect()
            }
            "--replicas" => a.replicas = v.parse().expect("--replicas N"),
            "--algo-nodes" => a.algo_nodes = v.parse().expect("--algo-nodes N"),
            "--algo-pods" => {
                a.algo_pods = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().expect("--algo-pods N,M"))
                    .collect()
            }
            "--e2e" => a.e2e = v == "true",
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// (current, peak) resident set size in MiB.
fn rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ, 100 per second.
    #[allow(clippy::cast_precision_loss)]
    let secs = (ticks(11) + ticks(12)) as f64 / 100.0;
    secs
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "labels": {"bench": "sched"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]},
    }))
    .expect("pod")
}

/// Watch `ns` until `n` pods are bound; returns when the first and the last binding were seen,
/// and how many times the watch had to re-list (after which the first binding it saw may be
/// late, so "first to last" is then too short). `listed` fires once the watch's initial list is
/// in, so that no binding happens unseen.
async fn wait_bound(
    client: &kube::Client,
    ns: &str,
    n: usize,
    listed: tokio::sync::oneshot::Sender<()>,
) -> (Instant, Instant, usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut bound = std::collections::HashSet::new();
    let mut first = None;
    let mut listed = Some(listed);
    let mut lists = 0;
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(Ok(ev)) = stream.next().await {
        let p = match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
            watcher::Event::InitDone => {
                lists += 1;
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            _ => continue,
        };
        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            first.get_or_insert_with(Instant::now);
            bound.insert(p.metadata.name.clone().unwrap_or_default());
            if bound.len() >= n {
                break;
            }
        }
    }
    let last = Instant::now();
    (first.unwrap_or(last), last, lists.max(1) - 1)
}

/// Take (`hold`) or give up the scheduler's Lease on its behalf. While the benchmark holds it,
/// the in-process scheduler stands by, as a second scheduler replica would.
async fn scheduler_lease(client: &kube::Client, hold: bool) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let now = jiff::Timestamp::now();
    let renew = if hold {
        now
    } else {
        now - jiff::SignedDuration::from_hours(1)
    };
    let patch = json!({"spec": {
        "holderIdentity": if hold { "benchmark" } else { "" },
        "leaseDurationSeconds": if hold { 3600 } else { 1 },
        "renewTime": renew.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    }});
    api.patch(
        "kube-scheduler",
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .expect("patch the scheduler lease");
}

struct SchedRun {
    /// Seconds to create all pods (scheduler standing by).
    created: f64,
    /// Seconds from releasing the Lease to the last binding.
    all_bound: f64,
    /// Seconds from the first to the last binding.
    binding: f64,
    /// Times the timing watch re-listed (then `binding` is too short to trust).
    relists: usize,
}

async fn scheduler_run(client: &kube::Client, n: usize) -> SchedRun {
    let ns = format!("sched-{n}");
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    scheduler_lease(client, true).await;
    // The scheduler notices within its renew period (2 s) and stops.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(128, |i| {
            let api = api.clone();
            async move {
                if let Err(e) = api.create(&PostParams::default(), &pod(i)).await {
                    eprintln!("create p-{i}: {e}");
                }
            }
        })
        .await;
    let created = start.elapsed().as_secs_f64();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn({
        let client = client.clone();
        let ns = ns.clone();
        async move { wait_bound(&client, &ns, n, listed_tx).await }
    });
    let _ = listed_rx.await;
    let released = Instant::now();
    scheduler_lease(client, false).await;
    let (first, last, relists) = waiter.await.expect("watch");
    SchedRun {
        created,
        all_bound: (last - released).as_secs_f64(),
        binding: (last - first).as_secs_f64(),
        relists,
    }
}

async fn wait_deployment(
    api: &Api<Deployment>,
    name: &str,
    replicas: i32,
    generation_at_least: i64,
) {
    loop {
        if let Ok(d) = api.get(name).await {
            let s = d.status.unwrap_or_default();
            if s.observed_generation.unwrap_or(0) >= generation_at_least
                && s.updated_replicas == Some(replicas)
                && s.available_replicas == Some(replicas)
                && s.replicas == Some(replicas)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    println!("| measurement | result |");
    println!("|---|---|");
    for &n in &a.algo_pods {
        let cpu0 = cpu_seconds(std::process::id());
        let (took, placed) = skiff_controllers::scheduler::bench_placement(a.algo_nodes, n);
        let cpu = cpu_seconds(std::process::id()) - cpu0;
        #[allow(clippy::cast_precision_loss)]
        let (rate, per_cpu) = (
            placed as f64 / took.as_secs_f64(),
            placed as f64 / cpu.max(0.01),
        );
        println!(
            "| scheduler algorithm alone (in memory): {placed} pods onto {} nodes | {:.2} s = **{rate:.0} pods/s** wall; {cpu:.2} CPU s = {per_cpu:.0} pods per CPU-second |",
            a.algo_nodes,
            took.as_secs_f64()
        );
    }
    if !a.e2e {
        return;
    }
    let dir = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log");
    let server_log = std::env::var("BENCH_SERVER_LOG").ok();
    if server_log.is_some() {
        eprintln!("bench: logs kept in {}", dir.display());
    }
    let server = Command::new(&a.skiff)
        .args(["server", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("SKIFF_LOG", server_log.as_deref().unwrap_or("warn"))
        .stdout(Stdio::null())
        .stderr(log("server.log"))
        .spawn()
        .expect("start skiff server");
    let server_pid = server.id();
    let mut procs = Procs(vec![server]);
    let kubeconfig = data.join("kubeconfig");
    while !kubeconfig.exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = skiff_controllers::client_from_kubeconfig(&kubeconfig)
        .await
        .expect("client");

    let t = Instant::now();
    let sim = Command::new(&a.skiff)
        .args(["sim", "--nodes", &a.nodes.to_string(), "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--cpu", "32", "--memory", "256Gi", "--max-pods", "250"])
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log("sim.log"))
        .spawn()
        .expect("start skiff sim");
    let sim_pid = sim.id();
    procs.0.push(sim);
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let n = nodes
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if n >= a.nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let register = t.elapsed().as_secs_f64();
    println!(
        "| {} simulated nodes registered | {register:.1} s |",
        a.nodes
    );
    // Idle cluster: only lease renewals (every node once per 10 s) and controllers watching.
    let idle = Duration::from_secs(30);
    let (s0, m0) = (cpu_seconds(server_pid), cpu_seconds(sim_pid));
    tokio::time::sleep(idle).await;
    let (s1, m1) = (cpu_seconds(server_pid), cpu_seconds(sim_pid));
    let (s_now, _) = rss(server_pid);
    let (m_now, _) = rss(sim_pid);
    println!(
        "| idle with {} nodes heartbeating (10 s leases): CPU of `skiff server` / `skiff sim` | {:.0} % / {:.0} % of one core; RSS {s_now} / {m_now} MiB |",
        a.nodes,
        (s1 - s0) * 100.0 / idle.as_secs_f64(),
        (m1 - m0) * 100.0 / idle.as_secs_f64()
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"replicas": a.replicas, "selector": {"matchLabels": {"app": "big"}},
            "template": {"metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "resources": {"requests": {"cpu": "10m"}}}]}}},
    }))
    .expect("deployment");
    let t = Instant::now();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    wait_deployment(&deployments, "big", a.replicas, 1).await;
    println!(
        "| deployment of {} replicas to all Running and available | {:.1} s |",
        a.replicas,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
    deployments
        .patch("big", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("set image");
    wait_deployment(&deployments, "big", a.replicas, 2).await;
    println!(
        "| rolling update of {} pods (25% surge / 25% unavailable) | {:.1} s |",
        a.replicas,
        t.elapsed().as_secs_f64()
    );
    let (s_now, s_peak) = rss(server_pid);
    let (m_now, m_peak) = rss(sim_pid);
    println!(
        "| RSS after the deployment: `skiff server` (API + store + controllers + scheduler) / `skiff sim` | {s_now} MiB (peak {s_peak}) / {m_now} MiB (peak {m_peak}) |"
    );
    for &n in &a.pods {
        let r = scheduler_run(&client, n).await;
        #[allow(clippy::cast_precision_loss)]
        let (all_rate, bind_rate, create_rate) = (
            n as f64 / r.all_bound.max(1e-9),
            n as f64 / r.binding.max(1e-9),
            n as f64 / r.created,
        );
        let first_to_last = if r.relists == 0 {
            format!(
                "first to last binding {:.1} s = {bind_rate:.0} pods/s",
                r.binding
            )
        } else {
            format!(
                "first to last binding not measured: the timing watch re-listed {} time(s)",
                r.relists
            )
        };
        println!(
            "| scheduler: {n} pending pods onto {} nodes, Lease released (scheduler starts: lists nodes and pods) to all bound | {:.1} s = **{all_rate:.0} pods/s** ({first_to_last}) |",
            a.nodes, r.all_bound
        );
        println!(
            "| API: {n} pod creates (128 concurrent clients), scheduler standing by | {:.1} s = {create_rate:.0} creates/s |",
            r.created
        );
        let (s_now, s_peak) = rss(server_pid);
        let (m_now, m_peak) = rss(sim_pid);
        println!(
            "| RSS after {n} more pods: `skiff server` / `skiff sim` | {s_now} MiB (peak {s_peak}) / {m_now} MiB (peak {m_peak}) |"
        );
    }
    drop(procs);
    if server_log.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
