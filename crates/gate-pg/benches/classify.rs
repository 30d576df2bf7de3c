//! Classifier timings: a raw parse of pgbench's `-S` statement, a shape-cache hit on it with a
//! fresh literal each time, and a five-statement mixed text. Prints the median time per operation.
//!
//! Run with `cargo bench -p countersign-gate-pg --bench classify`.

use std::hint::black_box;
use std::time::Instant;

use countersign_gate_pg::classify::classify;
use countersign_gate_pg::shape::ShapeCache;

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";

const MIXED: &str = "BEGIN; \
    UPDATE pgbench_accounts SET abalance = abalance + -4077 WHERE aid = 48213; \
    SELECT abalance FROM pgbench_accounts WHERE aid = 48213; \
    INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4077, CURRENT_TIMESTAMP); \
    END;";

/// Runs `op` in batches and returns the median nanoseconds per call.
fn median_ns(batches: usize, per_batch: usize, mut op: impl FnMut(usize)) -> f64 {
    let mut samples: Vec<f64> = (0..batches)
        .map(|batch| {
            let started = Instant::now();
            for i in 0..per_batch {
                op(batch * per_batch + i);
            }
            started.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    // Texts prepared up front so that formatting them is not measured.
    let selects: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                48213 + i * 977
            )
        })
        .collect();
    let cache = ShapeCache::new(10_000);
    cache.classify(PGBENCH_SELECT);

    let raw = median_ns(31, 2_000, |_| {
        black_box(classify(black_box(PGBENCH_SELECT)));
    });
    let hit = median_ns(31, 50_000, |i| {
        black_box(cache.classify(black_box(&selects[i % selects.len()])));
    });
    let mixed = median_ns(31, 500, |_| {
        black_box(classify(black_box(MIXED)));
    });

    println!("classify, pgbench -S statement (parse):   {raw:>9.0} ns/op");
    println!("ShapeCache::classify, pgbench -S (hit):   {hit:>9.0} ns/op");
    println!("classify, 5-statement mixed text (parse): {mixed:>9.0} ns/op");
}
