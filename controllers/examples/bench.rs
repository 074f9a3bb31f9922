//! Benchmark (not a test): scheduler and controller throughput against a real `skiff server`
//! with `skiff sim` hollow nodes, both started here as child processes.
//!
//! ```text
//! cargo run -p skiff-controllers --example bench -- \
//!     --skiff target/debug/skiff --nodes 5000 --pods 10000,50000 --replicas 1000 \
//!     --algo-nodes 5000 --algo-pods 10000,50000 [--e2e false]
//! ```
//!
//! Prints a Markdown table: pods/s bound by the scheduler, time for a Deployment to have all
//! replicas Running and for a rolling update of it, and the peak RSS of both processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
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

async fn wait_bound(client: &kube::Client, ns: &str, n: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut bound = std::collections::HashSet::new();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(Ok(p)) = stream.next().await {
        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            bound.insert(p.metadata.name.clone().unwrap_or_default());
            if bound.len() >= n {
                return;
            }
        }
    }
}

async fn scheduler_run(client: &kube::Client, n: usize) -> (f64, f64) {
    let ns = format!("sched-{n}");
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    let waiter = tokio::spawn({
        let client = client.clone();
        let ns = ns.clone();
        async move { wait_bound(&client, &ns, n).await }
    });
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
    let _ = waiter.await;
    let all = start.elapsed().as_secs_f64();
    (created, all)
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
        let (took, placed) = skiff_controllers::scheduler::bench_placement(a.algo_nodes, n);
        #[allow(clippy::cast_precision_loss)]
        let rate = placed as f64 / took.as_secs_f64();
        println!(
            "| scheduler algorithm alone (in memory): {placed} pods onto {} nodes | {:.2} s = **{rate:.0} pods/s** |",
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
    let server = Command::new(&a.skiff)
        .args(["server", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("SKIFF_LOG", "warn")
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

    for &n in &a.pods {
        let (created, all) = scheduler_run(&client, n).await;
        #[allow(clippy::cast_precision_loss)]
        let rate = n as f64 / all;
        println!(
            "| scheduler: {n} pods onto {} nodes, all bound | {all:.1} s = **{rate:.0} pods/s** (creates took {created:.1} s) |",
            a.nodes
        );
    }

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
        "| RSS `skiff server` (API + store + controllers + scheduler) | {s_now} MiB now, {s_peak} MiB peak |"
    );
    println!(
        "| RSS `skiff sim` ({} nodes) | {m_now} MiB now, {m_peak} MiB peak |",
        a.nodes
    );
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
