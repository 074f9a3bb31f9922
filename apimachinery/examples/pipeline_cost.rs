//! What each step of the API server's create pipeline costs for the pod `api-bench` creates:
//! parse, typed decode, defaults, validation, managed fields and encode, in microseconds per
//! pod. Run with `cargo run --release -p skiff-apimachinery --example pipeline_cost`
//! (`ROUNDS=n` sets the iterations per step, e.g. a few hundred under callgrind).

use std::hint::black_box;
use std::time::Instant;

use serde_json::{Value, json};
use skiff_apimachinery::patch::{self, CachedSchemaMeta};
use skiff_apimachinery::{Registry, defaults, schema, validation};

/// The body kube-rs sends for the benchmark's pod.
const BODY: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod-00001"},"spec":{"containers":[{"image":"registry.k8s.io/pause:3.10","name":"app"}]}}"#;

fn time(name: &str, rounds: u32, mut f: impl FnMut()) {
    for _ in 0..rounds / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!("{name:<28} {us:>8.2} µs");
}

fn main() {
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20_000);
    let res = Registry::builtin()
        .get("", "v1", "pods")
        .expect("pods are registered");
    let input: Value = serde_json::from_slice(BODY.as_bytes()).expect("valid JSON");
    let mut obj = res.decode(&input).expect("a valid pod").object;
    obj["metadata"]["namespace"] = json!("bench");
    obj["metadata"]["uid"] = json!("6a3b8f43-6c9e-4c8f-a0c2-3c1b0e1f2d4a");
    obj["metadata"]["creationTimestamp"] = json!("2026-11-23T08:00:00Z");
    defaults::apply(res, &mut obj);
    let meta = CachedSchemaMeta::new(schema::definitions(), &schema::definition_name(res));
    let now = jiff::Timestamp::now();
    let mut tracked = obj.clone();
    patch::track_update(None, &mut tracked, "kube-rs", None, &meta, now);

    time("parse body", rounds, || {
        black_box(serde_json::from_slice::<Value>(black_box(BODY.as_bytes())).ok());
    });
    time("typed decode", rounds, || {
        black_box(res.decode(black_box(&input)).ok());
    });
    time("defaults", rounds, || {
        let mut o = black_box(&input).clone();
        defaults::apply(res, &mut o);
        black_box(o);
    });
    time("  (clone of the input)", rounds, || {
        black_box(black_box(&input).clone());
    });
    time("validate_create", rounds, || {
        black_box(validation::validate_create(res, black_box(&obj)));
    });
    time("definition name", rounds, || {
        black_box(schema::definition_name(res));
    });
    time("track_update (create)", rounds, || {
        let mut o = black_box(&obj).clone();
        patch::track_update(None, &mut o, "kube-rs", None, &meta, now);
        black_box(o);
    });
    time("  (clone of the object)", rounds, || {
        black_box(black_box(&obj).clone());
    });
    time("encode (to_vec)", rounds, || {
        black_box(serde_json::to_vec(black_box(&tracked)).ok());
    });
    time("parse stored object", rounds, || {
        let bytes = serde_json::to_vec(&tracked).unwrap_or_default();
        black_box(serde_json::from_slice::<Value>(&bytes).ok());
    });
}
