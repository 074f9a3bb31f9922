//! agent-bench figures: the agent's own step timings and the Markdown section (statistics and
//! the docs section writer are shared, in `skiff_bench`).

use std::fmt::Write as _;
use std::time::Duration;

use skiff_bench::stats::{median, ms, percentile};

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub skiff: Vec<Duration>,
    pub runc: Vec<Duration>,
    pub rss_kib: u64,
    pub threads: u64,
    pub failures: Vec<String>,
    /// The agent's own timings of its steps (from its debug log), by step.
    pub steps: Vec<(&'static str, Vec<Duration>)>,
}

/// The agent's debug lines that time a step (`us=N`), and what the report calls the step.
const STEPS: [(&str, &str); 3] = [
    ("sandbox made", "namespaces (in-process)"),
    ("pod network attached", "veth, address, route"),
    ("container started", "`container-init` helper until exec"),
];

/// `text` without ANSI escape sequences (the agent's log is coloured).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Each step's durations in an agent log.
pub fn agent_steps(log: &str) -> Vec<(&'static str, Vec<Duration>)> {
    let log = strip_ansi(log);
    STEPS
        .iter()
        .map(|(msg, name)| {
            let times = log
                .lines()
                .filter(|l| l.contains(msg))
                .filter_map(|l| {
                    let v = l
                        .split("us=")
                        .nth(1)?
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?;
                    v.parse::<u64>().ok().map(Duration::from_micros)
                })
                .collect();
            (*name, times)
        })
        .collect()
}

impl Run {
    /// skiff's p50 over runc's p50.
    pub fn ratio(&self) -> f64 {
        let r = ms(percentile(&self.runc, 50));
        if r > 0.0 {
            ms(percentile(&self.skiff, 50)) / r
        } else {
            0.0
        }
    }
}

/// What the report says about how it was made.
#[derive(Debug, Clone)]
pub struct Setup {
    pub pods: usize,
    pub keep: usize,
    pub settle: Duration,
    pub command: String,
    pub machine: String,
}

/// KiB to MB (10⁶ bytes), the unit of the goal.
fn mb(kib: u64) -> f64 {
    let bytes = kib.saturating_mul(1024);
    u32::try_from(bytes / 1000).map_or(f64::from(u32::MAX), f64::from) / 1000.0
}

struct Row {
    name: String,
    values: Vec<f64>,
    unit: &'static str,
    decimals: usize,
    goal: &'static str,
}

impl Row {
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

/// The Markdown section (without the markers) for `runs`.
pub fn markdown(setup: &Setup, runs: &[Run]) -> String {
    let each = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let (n, k) = (setup.pods, setup.keep);
    let rows = [
        Row {
            name: format!("skiff: pod create → `Running` seen by a watch, p50 ({n} pods)"),
            values: each(&|r| ms(percentile(&r.skiff, 50))),
            unit: "ms",
            decimals: 1,
            goal: "",
        },
        Row {
            name: "skiff: pod create → `Running`, p99".into(),
            values: each(&|r| ms(percentile(&r.skiff, 99))),
            unit: "ms",
            decimals: 1,
            goal: "",
        },
        Row {
            name: format!("`runc run -d`, same rootfs and command, p50 ({n} containers)"),
            values: each(&|r| ms(percentile(&r.runc, 50))),
            unit: "ms",
            decimals: 1,
            goal: "",
        },
        Row {
            name: "`runc run -d`, p99".into(),
            values: each(&|r| ms(percentile(&r.runc, 99))),
            unit: "ms",
            decimals: 1,
            goal: "",
        },
        Row {
            name: "skiff p50 / runc p50 (same run)".into(),
            values: each(&|r| r.ratio()),
            unit: "×",
            decimals: 2,
            goal: "≤ 2",
        },
        Row {
            name: format!("agent RSS with {k} pods running"),
            values: each(&|r| mb(r.rss_kib)),
            unit: "MB",
            decimals: 1,
            goal: "≤ 32 MB",
        },
        Row {
            name: format!("agent threads with {k} pods running"),
            values: each(&|r| u32::try_from(r.threads).map_or(f64::from(u32::MAX), f64::from)),
            unit: "",
            decimals: 0,
            goal: "",
        },
    ];
    let mut out = String::new();
    let _ = writeln!(out, "## Node agent\n");
    let _ = writeln!(out, "Command: `{}`\n", setup.command);
    let _ = writeln!(out, "{}\n", setup.machine);
    let _ = writeln!(
        out,
        "Medians of {} run(s). Each run starts a fresh `skiff server` (API only) on a bridge and \
         a fresh `skiff agent` in its own network namespace, then creates {n} pods \
         (`busybox:1.36`, `sleep 3600`, image cached: a local root filesystem directory) one at \
         a time, each timed from the create request until a watch shows it `Running`; at most \
         {k} run at once (the oldest is deleted, and the agent's clean-up awaited, outside the \
         timed window). Then, with {k} pods running, it waits {} s and reads the agent's \
         `VmRSS` (the per-container `skiff container-init` shims are separate processes and \
         not included). In the same run, first, `runc run -d` starts {n} containers of the \
         same root filesystem and command the same way.\n",
        runs.len(),
        setup.settle.as_secs()
    );
    out.push_str("| measurement | median | runs | goal |\n|---|---|---|---|\n");
    for row in &rows {
        row.render(&mut out);
    }
    if runs
        .iter()
        .any(|r| r.steps.iter().any(|(_, t)| !t.is_empty()))
    {
        out.push_str(
            "\nWhere the agent's time goes (its own debug timings, p50 per pod, median of runs): ",
        );
        let mut parts = Vec::new();
        for (i, (_, name)) in STEPS.iter().enumerate() {
            let v = each(&|r| r.steps.get(i).map_or(0.0, |(_, t)| ms(percentile(t, 50))));
            parts.push(format!("{name} {:.1} ms", median(&v)));
        }
        let _ = writeln!(
            out,
            "{}; the rest is the API round trips (watch event to the agent, status PATCH, \
             watch event to the client).",
            parts.join(", ")
        );
    }
    let ratio = median(&each(&|r| r.ratio()));
    let rss = median(&each(&|r| mb(r.rss_kib)));
    let verdict = |met: bool| if met { "met" } else { "**not met**" };
    let _ = writeln!(
        out,
        "\nGoals: p50 ≤ 2× runc {} ({ratio:.2}×); agent RSS ≤ 32 MB with {k} pods {} \
         ({rss:.1} MB).\n\n\
         Reproduce (as root; needs `runc` and `busybox-static`): `cargo build --release --bin \
         skiff && cargo run -p skiff-bench --bin agent-bench -- --write docs/benchmarks.md`.",
        verdict(ratio > 0.0 && ratio <= 2.0),
        verdict(rss > 0.0 && rss <= 32.0),
    );
    let problems: Vec<String> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.failures
                .iter()
                .map(move |f| format!("run {}: {f}", i + 1))
        })
        .collect();
    if !problems.is_empty() {
        out.push_str("\nProblems seen:\n");
        for p in problems.iter().take(20) {
            let _ = writeln!(out, "- {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msv(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn report_shows_ratio_rss_and_failures() {
        let run = Run {
            skiff: msv(&[60, 80, 100]),
            runc: msv(&[40, 40, 50]),
            rss_kib: 31_250,
            threads: 5,
            failures: vec!["bench-3 not Running after 60 s".into()],
            steps: agent_steps(
                "x DEBUG skiff_agent::runtime: sandbox made \u{1b}[3mus\u{1b}[0m\u{1b}[2m=\u{1b}[0m2000 dir=/p\n\
                 x DEBUG skiff_agent::runtime: container started us=30500 id=ab\n",
            ),
        };
        let setup = Setup {
            pods: 3,
            keep: 30,
            settle: Duration::from_secs(10),
            command: "agent-bench".into(),
            machine: "m".into(),
        };
        let md = markdown(&setup, &[run]);
        assert!(
            md.contains("| skiff p50 / runc p50 (same run) | **2.00** × | 2.00 | ≤ 2 |"),
            "{md}"
        );
        assert!(
            md.contains("| agent RSS with 30 pods running | **32.0** MB |"),
            "{md}"
        );
        assert!(
            md.contains("- run 1: bench-3 not Running after 60 s"),
            "{md}"
        );
        assert!(
            md.contains(
                "namespaces (in-process) 2.0 ms, veth, address, route 0.0 ms, \
                 `container-init` helper until exec 30.5 ms"
            ),
            "{md}"
        );
        assert!(md.contains("Goals: p50 ≤ 2× runc met (2.00×)"), "{md}");
    }
}
