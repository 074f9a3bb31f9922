//! The load generator shared by every throughput phase: `concurrency` workers pull operation
//! numbers from a shared counter until `total` operations were issued or the deadline passed,
//! and each operation's latency is recorded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one phase did.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Operations that succeeded.
    pub ok: usize,
    /// Operations that failed.
    pub errors: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time from the first operation's start to the last one's end.
    pub elapsed: Duration,
    /// Latency of every successful operation.
    pub latencies: Vec<Duration>,
    /// Whether the deadline cut the phase short.
    pub timed_out: bool,
    /// CPU time the server under test used during the phase (zero when not measured).
    pub server_cpu: Duration,
    /// CPU time this benchmark process (the client) used during the phase.
    pub client_cpu: Duration,
}

impl Phase {
    /// Server CPU per successful operation, in microseconds.
    pub fn server_cpu_per_op_us(&self) -> f64 {
        per_op_us(self.server_cpu, self.ok)
    }

    /// Client CPU per successful operation, in microseconds.
    pub fn client_cpu_per_op_us(&self) -> f64 {
        per_op_us(self.client_cpu, self.ok)
    }

    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            count_f64(self.ok) / secs
        } else {
            0.0
        }
    }
}

fn per_op_us(cpu: Duration, ops: usize) -> f64 {
    if ops == 0 {
        0.0
    } else {
        cpu.as_secs_f64() * 1e6 / count_f64(ops)
    }
}

/// Lossless enough for rates: counts here stay far below 2^52.
pub fn count_f64(n: usize) -> f64 {
    u32::try_from(n).map_or(f64::from(u32::MAX), f64::from)
}

/// Run `op(i)` for `i` in `0..total` on `concurrency` tasks, stopping early at `limit`.
pub async fn run<F, Fut, E>(total: usize, concurrency: usize, limit: Duration, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut mine = Phase::default();
            loop {
                if Instant::now() >= deadline {
                    mine.timed_out = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t0 = Instant::now();
                match op(i).await {
                    Ok(()) => {
                        mine.ok += 1;
                        mine.latencies.push(t0.elapsed());
                    }
                    Err(e) => {
                        mine.errors += 1;
                        if mine.first_error.is_none() {
                            mine.first_error = Some(e.to_string());
                        }
                    }
                }
            }
            mine
        }));
    }
    let mut phase = Phase::default();
    for w in workers {
        match w.await {
            Ok(mine) => {
                phase.ok += mine.ok;
                phase.errors += mine.errors;
                phase.timed_out |= mine.timed_out;
                phase.latencies.extend(mine.latencies);
                if phase.first_error.is_none() {
                    phase.first_error = mine.first_error;
                }
            }
            Err(e) => {
                phase.errors += 1;
                phase.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    phase.elapsed = start.elapsed();
    phase
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn runs_every_operation_once_and_counts_errors() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let phase = run(100, 8, Duration::from_secs(10), move |i| {
            let s = Arc::clone(&s);
            async move {
                s.lock().unwrap().push(i);
                if i % 10 == 0 {
                    Err(format!("op {i} failed"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(phase.ok, 90);
        assert_eq!(phase.errors, 10);
        assert_eq!(phase.latencies.len(), 90);
        assert!(phase.first_error.unwrap().ends_with("failed"));
        assert!(!phase.timed_out);
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let phase = run(1_000_000, 2, Duration::from_millis(100), |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<(), String>(())
        })
        .await;
        assert!(phase.timed_out);
        assert!(phase.ok < 100, "ok {}", phase.ok);
        assert!(phase.elapsed < Duration::from_secs(2));
    }

    #[test]
    fn cpu_per_op_in_microseconds() {
        let p = Phase {
            ok: 1000,
            server_cpu: Duration::from_millis(250),
            client_cpu: Duration::from_millis(100),
            ..Phase::default()
        };
        assert!((p.server_cpu_per_op_us() - 250.0).abs() < 1e-9);
        assert!((p.client_cpu_per_op_us() - 100.0).abs() < 1e-9);
        assert!(Phase::default().server_cpu_per_op_us().abs() < 1e-12);
    }

    #[test]
    fn rate_is_ops_per_second() {
        let p = Phase {
            ok: 500,
            elapsed: Duration::from_millis(250),
            ..Phase::default()
        };
        assert!((p.rate() - 2000.0).abs() < 1e-9);
    }
}
