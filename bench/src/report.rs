//! Turning api-bench runs into figures: the Markdown table (statistics and the docs section
//! writer are shared, in `skiff_bench`).

use std::fmt::Write as _;

use skiff_bench::stats::{median, ms, percentile};

use crate::client::WatchOutcome;
use crate::load::Phase;

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub create_serial: Phase,
    pub create_concurrent: Phase,
    pub gets: Phase,
    pub lists: Phase,
    pub watch: WatchOutcome,
    pub rss_idle_kib: u64,
    pub rss_loaded_kib: u64,
    pub rss_peak_lists_kib: u64,
    pub rss_peak_kib: u64,
    pub pod_json_len: usize,
    pub etcd_serial: Phase,
    pub etcd_concurrent: Phase,
}

/// The settings a report describes.
#[derive(Debug, Clone)]
pub struct Setup {
    pub pods: usize,
    pub serial_pods: usize,
    pub concurrency: usize,
    pub gets: usize,
    pub lists: usize,
    pub watchers: usize,
    pub events: usize,
    pub command: String,
    pub machine: String,
}

fn mib(kib: u64) -> f64 {
    u32::try_from(kib).map_or(f64::from(u32::MAX), f64::from) / 1024.0
}

/// One table row: a figure per run, shown as the median plus every run's value.
struct Row {
    name: String,
    values: Vec<f64>,
    unit: &'static str,
    decimals: usize,
    goal: String,
}

impl Row {
    fn new(name: impl Into<String>, values: Vec<f64>, unit: &'static str, decimals: usize) -> Self {
        Self {
            name: name.into(),
            values,
            unit,
            decimals,
            goal: String::new(),
        }
    }

    fn goal(mut self, goal: impl Into<String>) -> Self {
        self.goal = goal.into();
        self
    }

    fn render(&self, out: &mut String) {
        let d = self.decimals;
        let runs: Vec<String> = self.values.iter().map(|v| format!("{v:.d$}")).collect();
        let _ = writeln!(
            out,
            "| {} | **{:.d$}** {} | {} | {} |",
            self.name,
            median(&self.values),
            self.unit,
            runs.join(", "),
            self.goal
        );
    }
}

fn ratio(ours: &Phase, etcd: &Phase) -> f64 {
    let e = etcd.rate();
    if e > 0.0 { ours.rate() / e } else { 0.0 }
}

/// Collect per-run figures with `f`.
fn each(runs: &[Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// The Markdown section (without the markers) for `runs`.
pub fn markdown(setup: &Setup, runs: &[Run]) -> String {
    let c = setup.concurrency;
    let n = setup.pods;
    let mut rows = vec![
        Row::new(
            "pod creates/s, concurrency 1",
            each(runs, |r| r.create_serial.rate()),
            "/s",
            0,
        ),
        Row::new(
            "etcd puts/s, concurrency 1",
            each(runs, |r| r.etcd_serial.rate()),
            "/s",
            0,
        ),
        Row::new(
            "ours / etcd, concurrency 1",
            each(runs, |r| ratio(&r.create_serial, &r.etcd_serial)),
            "×",
            2,
        )
        .goal("≥ 1"),
        Row::new(
            format!("pod creates/s, concurrency {c}"),
            each(runs, |r| r.create_concurrent.rate()),
            "/s",
            0,
        ),
        Row::new(
            format!("etcd puts/s, concurrency {c}"),
            each(runs, |r| r.etcd_concurrent.rate()),
            "/s",
            0,
        ),
        Row::new(
            format!("ours / etcd, concurrency {c}"),
            each(runs, |r| ratio(&r.create_concurrent, &r.etcd_concurrent)),
            "×",
            2,
        )
        .goal("≥ 1"),
        Row::new(
            "pod create latency p50, concurrency 1",
            each(runs, |r| ms(percentile(&r.create_serial.latencies, 50))),
            "ms",
            2,
        ),
        Row::new(
            "pod create latency p99, concurrency 1",
            each(runs, |r| ms(percentile(&r.create_serial.latencies, 99))),
            "ms",
            2,
        ),
        Row::new(
            "etcd put latency p50, concurrency 1",
            each(runs, |r| ms(percentile(&r.etcd_serial.latencies, 50))),
            "ms",
            2,
        ),
        Row::new(
            format!("pod create latency p50, concurrency {c}"),
            each(runs, |r| ms(percentile(&r.create_concurrent.latencies, 50))),
            "ms",
            2,
        ),
        Row::new(
            format!("pod create latency p99, concurrency {c}"),
            each(runs, |r| ms(percentile(&r.create_concurrent.latencies, 99))),
            "ms",
            2,
        ),
        Row::new(
            format!("etcd put latency p50, concurrency {c}"),
            each(runs, |r| ms(percentile(&r.etcd_concurrent.latencies, 50))),
            "ms",
            2,
        ),
        Row::new(
            "server CPU per pod create, concurrency 1",
            each(runs, |r| r.create_serial.server_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            "etcd CPU per put, concurrency 1",
            each(runs, |r| r.etcd_serial.server_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            format!("server CPU per pod create, concurrency {c}"),
            each(runs, |r| r.create_concurrent.server_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            format!("etcd CPU per put, concurrency {c}"),
            each(runs, |r| r.etcd_concurrent.server_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            format!("client CPU per pod create (kube-rs), concurrency {c}"),
            each(runs, |r| r.create_concurrent.client_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            format!("client CPU per put (etcd-client), concurrency {c}"),
            each(runs, |r| r.etcd_concurrent.client_cpu_per_op_us()),
            "µs",
            0,
        ),
        Row::new(
            format!("pod gets/s, concurrency {c}"),
            each(runs, |r| r.gets.rate()),
            "/s",
            0,
        ),
        Row::new(
            format!("list {n} pods (JSON) p50"),
            each(runs, |r| ms(percentile(&r.lists.latencies, 50))),
            "ms",
            1,
        ),
        Row::new(
            format!("list {n} pods (JSON) p99"),
            each(runs, |r| ms(percentile(&r.lists.latencies, 99))),
            "ms",
            1,
        ),
        Row::new(
            format!("open {} watches (32 at a time)", setup.watchers),
            each(runs, |r| ms(r.watch.connect_time)),
            "ms",
            0,
        ),
        Row::new(
            format!("watch event latency p50, {} watchers", setup.watchers),
            each(runs, |r| ms(percentile(&r.watch.latencies, 50))),
            "ms",
            2,
        ),
        Row::new(
            format!("watch event latency p99, {} watchers", setup.watchers),
            each(runs, |r| ms(percentile(&r.watch.latencies, 99))),
            "ms",
            2,
        ),
        Row::new(
            "server RSS, idle",
            each(runs, |r| mib(r.rss_idle_kib)),
            "MiB",
            1,
        ),
        Row::new(
            format!("server RSS with {n} pods"),
            each(runs, |r| mib(r.rss_loaded_kib)),
            "MiB",
            1,
        )
        .goal("≤ 64 MB"),
        Row::new(
            "server peak RSS (VmHWM) after the lists",
            each(runs, |r| mib(r.rss_peak_lists_kib)),
            "MiB",
            1,
        ),
        Row::new(
            "server peak RSS (VmHWM) after the watches",
            each(runs, |r| mib(r.rss_peak_kib)),
            "MiB",
            1,
        ),
    ];
    let value_len = runs.first().map_or(0, |r| r.pod_json_len);

    let mut out = String::new();
    let _ = writeln!(out, "Command: `{}`\n", setup.command);
    let _ = writeln!(out, "{}\n", setup.machine);
    let _ = writeln!(
        out,
        "Medians of {} run(s); each run starts a fresh `skiff server` and a fresh etcd. \
         Pods: {} created one at a time, then {} at concurrency {c} (all in one namespace); \
         {} gets; {} full lists; {} watchers × {} events. etcd values are {} bytes, the size \
         of a created pod's JSON.\n",
        runs.len(),
        setup.serial_pods,
        n.saturating_sub(setup.serial_pods),
        setup.gets,
        setup.lists,
        setup.watchers,
        setup.events,
        value_len
    );
    out.push_str("| measurement | median | runs | goal |\n|---|---|---|---|\n");
    for row in rows.drain(..) {
        row.render(&mut out);
    }
    let problems = problems(runs, setup.watchers);
    if !problems.is_empty() {
        out.push_str("\nProblems seen:\n");
        for p in problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    out
}

/// Errors, timeouts and lost events, one line each, so that a figure never hides a failure.
fn problems(runs: &[Run], watchers: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let run = i + 1;
        for (name, p) in [
            ("creates, concurrency 1", &r.create_serial),
            ("creates, concurrent", &r.create_concurrent),
            ("gets", &r.gets),
            ("lists", &r.lists),
            ("etcd puts, concurrency 1", &r.etcd_serial),
            ("etcd puts, concurrent", &r.etcd_concurrent),
        ] {
            if p.errors > 0 {
                out.push(format!(
                    "run {run}: {name}: {} errors (first: {})",
                    p.errors,
                    p.first_error.as_deref().unwrap_or("?")
                ));
            }
            if p.timed_out {
                out.push(format!(
                    "run {run}: {name}: stopped at the time limit after {} ok",
                    p.ok
                ));
            }
        }
        let w = &r.watch;
        if w.missed > 0 || w.first_error.is_some() || w.connected < watchers {
            out.push(format!(
                "run {run}: watch: {} of {watchers} connected, {} (watcher, event) pairs missed{}",
                w.connected,
                w.missed,
                w.first_error
                    .as_deref()
                    .map(|e| format!(", first error: {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn markdown_shows_medians_ratios_and_problems() {
        let phase = |ok: usize, ms: u64| Phase {
            ok,
            elapsed: Duration::from_millis(ms),
            latencies: vec![Duration::from_millis(1); ok],
            ..Phase::default()
        };
        let run = Run {
            create_serial: phase(100, 1000),
            etcd_serial: phase(200, 1000),
            create_concurrent: phase(1000, 1000),
            etcd_concurrent: phase(500, 1000),
            rss_loaded_kib: 32 * 1024,
            gets: Phase {
                errors: 2,
                first_error: Some("boom".into()),
                ..phase(10, 10)
            },
            ..Run::default()
        };
        let setup = Setup {
            pods: 1100,
            serial_pods: 100,
            concurrency: 64,
            gets: 10,
            lists: 1,
            watchers: 1,
            events: 1,
            command: "api-bench".into(),
            machine: "m".into(),
        };
        let md = markdown(&setup, &[run]);
        assert!(
            md.contains("| ours / etcd, concurrency 1 | **0.50** × | 0.50 | ≥ 1 |"),
            "{md}"
        );
        assert!(
            md.contains("| ours / etcd, concurrency 64 | **2.00** × |"),
            "{md}"
        );
        assert!(
            md.contains("| server RSS with 1100 pods | **32.0** MiB |"),
            "{md}"
        );
        assert!(md.contains("run 1: gets: 2 errors (first: boom)"), "{md}");
        assert!(md.contains("run 1: watch: 0 of 1 connected"), "{md}");
    }
}
