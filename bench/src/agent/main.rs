//! `agent-bench`: how long the skiff node agent takes from a pod create request to `Running`,
//! next to `runc run -d` of the same root filesystem in the same run, and the agent's memory
//! with pods running. A benchmark program, not a test: it needs root, `runc` (Debian: runc)
//! and a static busybox (Debian: busybox-static); it prints a Markdown table and can write it
//! into `docs/benchmarks.md`.

mod pods;
mod report;
mod runc;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use skiff_bench::stats::{ms, percentile};

#[derive(Parser)]
#[command(
    name = "agent-bench",
    about = "Benchmark pod start latency of the skiff agent against runc, and its memory"
)]
struct Args {
    /// The `skiff` binary to run (build it with `cargo build --release --bin skiff`).
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// The runc binary for the baseline.
    #[arg(long, default_value = "runc")]
    runc: String,
    /// A statically linked busybox for the root filesystem.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Pods (and runc containers) started one at a time per run.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Most pods (containers) running at once; also the count the agent's memory is read at.
    #[arg(long, default_value_t = 30)]
    keep: usize,
    /// Seconds to wait with `keep` pods running before reading the agent's memory.
    #[arg(long, default_value_t = 15)]
    settle: u64,
    /// Runs; the report shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The agent's log filter (SKIFF_LOG), e.g. `skiff_agent=debug` to see its timings.
    #[arg(
        long,
        default_value = "warn,netlink_packet_route=error,skiff_agent::runtime=debug,skiff_agent::net=debug"
    )]
    agent_log: String,
    /// Keep the run directories (logs) under this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep_dir: Option<PathBuf>,
    /// Replace the agent-bench section of this Markdown file (e.g. docs/benchmarks.md).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else {
        "cgroup v1"
    };
    let runc = std::process::Command::new("runc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "Machine: {cpus} CPUs, kernel {}, {cgroup}; {runc}; release build of `skiff`; load \
         average when the report was written {} (the machine is shared).",
        kernel.trim(),
        load.join(" ")
    )
}

fn main() -> Result<()> {
    skiff_bench::child::install_panic_cleanup();
    let args = Args::parse();
    if !rustix::process::geteuid().is_root() {
        bail!("agent-bench needs root (network namespaces, mounts, cgroups)");
    }
    if !args.skiff.exists() {
        bail!(
            "{} is missing: run `cargo build --release --bin skiff` first (or pass --skiff)",
            args.skiff.display()
        );
    }
    let skiff = std::fs::canonicalize(&args.skiff)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs.max(1) {
        eprintln!("agent-bench: run {i}");
        let r = rt.block_on(async {
            tokio::select! {
                r = one(&args, &skiff, i) => r,
                s = interrupted() => bail!("stopped by {s}"),
            }
        })?;
        eprintln!(
            "agent-bench: run {i}: skiff p50 {:.1} ms p99 {:.1} ms, runc p50 {:.1} ms, ratio {:.2}, agent RSS {} KiB",
            ms(percentile(&r.skiff, 50)),
            ms(percentile(&r.skiff, 99)),
            ms(percentile(&r.runc, 50)),
            r.ratio(),
            r.rss_kib
        );
        runs.push(r);
    }
    let setup = report::Setup {
        pods: args.pods,
        keep: args.keep,
        settle: Duration::from_secs(args.settle),
        command: std::iter::once("agent-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        machine: machine(),
    };
    let md = report::markdown(&setup, &runs);
    println!("{md}");
    if let Some(path) = &args.write {
        skiff_bench::docs::write_section(path, "agent-bench", "# Benchmarks\n", &md)?;
        eprintln!("agent-bench: wrote {}", path.display());
    }
    Ok(())
}

/// One run: fresh network, server and agent; the skiff pods; the agent's memory; runc.
async fn one(args: &Args, skiff: &Path, run: usize) -> Result<report::Run> {
    // Names differ per run: the kernel removes the previous run's links asynchronously.
    let tag = (std::process::id() % 1000) * 10 + u32::try_from(run % 10).unwrap_or(0);
    let temp = tempfile::Builder::new().prefix("agent-bench").tempdir()?;
    let dir = match &args.keep_dir {
        Some(d) => {
            let d = d.join(format!("run{run}"));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d)?;
            std::fs::canonicalize(d)?
        }
        None => temp.path().to_path_buf(),
    };
    let images = dir.join("images");
    let rootfs = setup::busybox_rootfs(&images, &args.busybox)?;
    // runc first, on a quiet node; then a pause for the kernel to finish tearing its
    // namespaces down before skiff's turn.
    let runc = runc::Runc::new(&args.runc, &dir.join("runc"), &rootfs)?;
    let runc_times = tokio::task::block_in_place(|| runc.run(args.pods, args.keep, tag))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let net = setup::Net::create(tag)?;
    let (_server, kubeconfig) = setup::server(skiff, &dir, &net.server_ip)?;
    let node = format!("agent-bench-{tag}");
    let mut agent = setup::Agent::start(
        skiff,
        &net.netns,
        &node,
        &kubeconfig,
        &dir,
        &images,
        &args.agent_log,
    )?;
    let client = pods::client(&kubeconfig).await?;
    pods::wait_node_ready(&client, &node, &mut agent).await?;
    let outcome = pods::run(&client, &node, args.pods, args.keep, &mut agent).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    agent.check_alive()?;
    let st = skiff_bench::child::status(agent.pid())?;
    eprintln!(
        "agent-bench: run {run}: skiff p50 {:.1} ms, p99 {:.1} ms ({} failures), agent RSS {} KiB, {} threads",
        ms(percentile(&outcome.latencies, 50)),
        ms(percentile(&outcome.latencies, 99)),
        outcome.failures.len(),
        st.rss_kib,
        st.threads
    );
    pods::delete_all(&client, &agent).await?;
    let steps = report::agent_steps(&agent.log());
    drop(agent);
    drop(net);
    Ok(report::Run {
        skiff: outcome.latencies,
        runc: runc_times,
        rss_kib: st.rss_kib,
        threads: st.threads,
        failures: outcome.failures,
        steps,
    })
}

/// Resolves on SIGINT or SIGTERM, so that dropping the benchmark stops its children.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
