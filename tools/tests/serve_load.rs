//! Load test of `pistil serve` with gemma3:270m (loopback only, bounded):
//! 8 concurrent clients × 20 requests with short outputs (`num_predict` 8),
//! through a queue of 4 so that some are refused. Every request must be
//! answered (200) or cleanly refused (503 with a JSON error); the server must
//! not crash; its resident memory after the load must match the one after a
//! warm-up round. Prints requests answered/refused, p50/p95 latency, RSS.
//!
//! Ignored by default: it takes minutes on a loaded 2-core machine (run it
//! with `cargo test -p pistil --test serve_load -- --ignored --nocapture`).

mod pistil_bin;
mod serve_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::{gemma, start, under_qemu};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 20;

#[test]
#[ignore = "minutes long: cargo test -p pistil --test serve_load -- --ignored --nocapture"]
fn eight_clients_twenty_requests_each() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    if gemma().is_none() {
        eprintln!("skipped: gemma3:270m is not in the model cache (pistil pull gemma3:270m)");
        return;
    }
    let s = Arc::new(start(&["-m", "gemma3:270m", "-c", "512", "--queue", "4"]));
    let body = |i: usize| {
        json!({"model": "gemma3:270m", "prompt": format!("Say a word about the number {i}."),
               "stream": false, "options": {"num_predict": 8, "seed": i}})
        .to_string()
    };
    // Warm-up: every code path once, pages touched.
    for i in 0..CLIENTS {
        let (st, t) = s.post("/api/generate", &body(i));
        assert_eq!(st, 200, "{t}");
    }
    let rss_warm = s.rss();

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let deadline = Instant::now() + Duration::from_secs(900);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in 0..CLIENTS {
        let (s, latencies, refused) = (s.clone(), latencies.clone(), refused.clone());
        handles.push(std::thread::spawn(move || {
            for r in 0..PER_CLIENT {
                assert!(Instant::now() < deadline, "load test over its time bound");
                let t = Instant::now();
                let (st, text) = s.post("/api/generate", &body(c * 100 + r));
                let v: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                match st {
                    200 => {
                        assert_eq!(v["done"], true, "{v}");
                        latencies.lock().unwrap().push(t.elapsed());
                    }
                    503 => {
                        assert!(v["error"].as_str().unwrap().contains("busy"), "{v}");
                        *refused.lock().unwrap() += 1;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    other => panic!("unexpected status {other}: {v}"),
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let wall = t0.elapsed();
    // Idle again: the status answers, the memory is back where it was.
    let (st, _) = s.get("/health");
    assert_eq!(st, 200);
    let rss_after = s.rss();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let refused = *refused.lock().unwrap();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
    };
    eprintln!(
        "serve load: {} answered, {refused} refused (503) of {} in {:.1}s; latency p50 {:?} p95 {:?}; RSS after warm-up {} MiB, after load {} MiB",
        lat.len(),
        CLIENTS * PER_CLIENT,
        wall.as_secs_f64(),
        pct(0.50),
        pct(0.95),
        rss_warm >> 20,
        rss_after >> 20
    );
    assert_eq!(lat.len() + refused, CLIENTS * PER_CLIENT);
    assert!(!lat.is_empty());
    // Flat: within 10% (+8 MiB of allocator slack).
    assert!(
        rss_after <= rss_warm + rss_warm / 10 + (8 << 20),
        "RSS grew from {rss_warm} to {rss_after}"
    );
}
