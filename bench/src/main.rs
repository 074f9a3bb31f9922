//! `api-bench`: pod creates/s, gets/s, list and watch latency and server memory of `skiff
//! server` through its full HTTPS API, next to etcd 3.4's raw put rate on the same machine.
//! A benchmark program, not a test: it prints a Markdown table and can write it into
//! `docs/benchmarks.md`.

mod client;
mod etcd;
mod load;
mod procs;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "api-bench",
    about = "Benchmark the skiff API server against etcd 3.4"
)]
struct Args {
    /// The `skiff` binary to run (build it with `cargo build --release --bin skiff`).
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// The etcd 3.4 server binary (Debian package `etcd-server`).
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Pods to create in total [default: 10000, quick: 500].
    #[arg(long)]
    pods: Option<usize>,
    /// How many of them are created one at a time [default: 1000, quick: 100].
    #[arg(long)]
    serial_pods: Option<usize>,
    /// Concurrency of the concurrent creates, gets and etcd puts.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Gets [default: 10000, quick: 1000].
    #[arg(long)]
    gets: Option<usize>,
    /// Full lists [default: 10, quick: 5].
    #[arg(long)]
    lists: Option<usize>,
    /// Concurrent watchers [default: 1000, quick: 100].
    #[arg(long)]
    watchers: Option<usize>,
    /// Pods created one by one while they watch [default: 50, quick: 10].
    #[arg(long)]
    events: Option<usize>,
    /// Runs; the report shows the median [default: 3, quick: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Stop any phase after this many seconds.
    #[arg(long, default_value_t = 120)]
    phase_limit: u64,
    /// Small counts, to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Replace the generated section of this Markdown file (e.g. docs/benchmarks.md).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

const INTRO: &str = "# Benchmarks\n\n\
The API server measured through its full HTTPS API with a stock `kube` client, next to etcd \
3.4's own put rate on the same machine in the same run. Regenerate with:\n\n\
```sh\ncargo build --release --bin skiff\n\
cargo run --release -p skiff-bench --bin api-bench -- --write docs/benchmarks.md\n```\n\n\
It needs `etcd` (Debian `etcd-server`) and, to build, `protoc` (Debian `protobuf-compiler`). \
Figures depend on the machine; compare only figures from one run of the tool.\n";

fn main() -> Result<()> {
    skiff_bench::child::install_panic_cleanup();
    let args = Args::parse();
    let q = args.quick;
    let pick =
        |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full });
    let settings = run::Settings {
        pods: pick(args.pods, 10_000, 500),
        serial_pods: pick(args.serial_pods, 1_000, 100),
        concurrency: args.concurrency.max(1),
        gets: pick(args.gets, 10_000, 1_000),
        lists: pick(args.lists, 10, 5),
        watchers: pick(args.watchers, 1_000, 100),
        events: pick(args.events, 50, 10),
        phase_limit: Duration::from_secs(args.phase_limit.max(1)),
        skiff: args.skiff,
        etcd: args.etcd,
    };
    let runs = pick(args.runs, 3, 1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(async {
        tokio::select! {
            r = all_runs(&settings, runs) => r,
            s = interrupted() => bail!("stopped by {s}"),
        }
    })?;
    let setup = report::Setup {
        pods: settings.pods,
        serial_pods: settings.serial_pods.min(settings.pods),
        concurrency: settings.concurrency,
        gets: settings.gets,
        lists: settings.lists,
        watchers: settings.watchers,
        events: settings.events,
        command: std::iter::once("api-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        machine: run::machine(&settings),
    };
    let md = report::markdown(&setup, &results);
    println!("{md}");
    if let Some(path) = args.write {
        skiff_bench::docs::write_section(&path, "api-bench", INTRO, &md)?;
        eprintln!("api-bench: wrote {}", path.display());
    }
    Ok(())
}

async fn all_runs(settings: &run::Settings, runs: usize) -> Result<Vec<report::Run>> {
    let mut out = Vec::with_capacity(runs);
    for i in 1..=runs {
        out.push(run::one(settings, i).await?);
    }
    Ok(out)
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
