//! Benchmarks of the audit log's hot paths at a million records: offline verification of a JSONL
//! export, proof generation from stored nodes, and appending to the frontier.
//!
//! Run with `cargo bench -p countersign-audit`. Set `AUDIT_BENCH_EVENTS` to change the export size
//! (default 1,000,000; a checkpoint is signed every 1,000 records).

use countersign_audit::export;
use countersign_audit::merkle::{self, Frontier, Hash, NodeId};
use countersign_audit::note::{Checkpoint, SigningKey};
use countersign_audit::{AuditEvent, EventKind, encode};
use countersign_core::{PrincipalRef, Resource, Timestamp};
use rand::Rng;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

const ORIGIN: &str = "countersign.bench/audit";
const CHECKPOINT_EVERY: u64 = 1000;

fn event(i: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Attempt, Timestamp(1_760_000_000_000 + i as i64));
    e.principal = Some(PrincipalRef::agent(format!("etl-nightly-{}", i % 97)));
    e.action = Some("db.query".into());
    e.resources = vec![Resource::new(
        "Table",
        format!("analytics.events_{}", i % 31),
    )];
    e.payload_digest = Some(format!(
        "sha256:{}",
        hex::encode(merkle::leaf_hash(&i.to_le_bytes()))
    ));
    e.verdict = Some(
        if i.is_multiple_of(5) {
            "approval"
        } else {
            "allow"
        }
        .into(),
    );
    e.policy_version = Some("v3".into());
    e.channel = Some("pg-gate".into());
    e
}

/// Writes an export of `n` records with a checkpoint every `CHECKPOINT_EVERY` and at the end.
fn write_export(path: &std::path::Path, n: u64, key: &SigningKey) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "{}", export::header_line(ORIGIN, 0, n))?;
    let mut frontier = Frontier::new();
    let mut bytes = 0u64;
    for seq in 0..n {
        let record = encode(seq, &event(seq)).expect("an event encodes");
        frontier.push(record.leaf_hash);
        let line = export::event_line(&record);
        bytes += line.len() as u64 + 1;
        writeln!(out, "{line}")?;
        if (seq + 1).is_multiple_of(CHECKPOINT_EVERY) || seq + 1 == n {
            let note = Checkpoint {
                origin: ORIGIN.into(),
                size: seq + 1,
                root: frontier.root(),
            }
            .sign(key)
            .map_err(std::io::Error::other)?;
            writeln!(out, "{}", export::checkpoint_line(&note))?;
        }
    }
    out.flush()?;
    Ok(bytes)
}

fn verify_file(path: &std::path::Path, key: &SigningKey) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let summary = export::verify_reader(vec![key.verifier()], reader).map_err(|e| e.to_string())?;
    Ok(summary.events)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} median {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}  (n = {})",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    let key = SigningKey::generate(ORIGIN)?;

    // ---- export verification ----
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit-export.jsonl");
    let t = Instant::now();
    let bytes = write_export(&path, n, &key)?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "generated {n} events ({:.0} bytes per event line, {:.1} MB file) in {:.2?}",
        bytes as f64 / n as f64,
        size as f64 / 1e6,
        t.elapsed()
    );
    let mut runs = Vec::new();
    for _ in 0..if quick { 1 } else { 3 } {
        let t = Instant::now();
        let events = verify_file(&path, &key)?;
        runs.push(t.elapsed());
        assert_eq!(events, n);
    }
    runs.sort();
    let best = runs[0];
    println!(
        "verify export ({n} events, checkpoint every {CHECKPOINT_EVERY}): runs {runs:.2?}, \
         best {best:.2?} = {:.0} MB/s, {:.2} µs/event",
        size as f64 / 1e6 / best.as_secs_f64(),
        best.as_secs_f64() * 1e6 / n as f64
    );
    drop(dir);

    // ---- Frontier::push throughput ----
    let leaves: Vec<Hash> = (0..n)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    let t = Instant::now();
    let mut frontier = Frontier::new();
    let mut nodes: HashMap<NodeId, Hash> = HashMap::with_capacity(2 * n as usize);
    for leaf in &leaves {
        for (id, hash) in frontier.push(*leaf) {
            nodes.insert(id, hash);
        }
    }
    let with_store = t.elapsed();
    let t = Instant::now();
    let mut bare = Frontier::new();
    for leaf in &leaves {
        bare.push_with(*leaf, |_, _| {});
    }
    let bare_time = t.elapsed();
    assert_eq!(bare.root(), frontier.root());
    println!(
        "Frontier::push_with: {:.0} ns/leaf ({:.2} M leaves/s); push + HashMap insert: {:.0} ns/leaf",
        bare_time.as_secs_f64() * 1e9 / n as f64,
        n as f64 / bare_time.as_secs_f64() / 1e6,
        with_store.as_secs_f64() * 1e9 / n as f64
    );

    // ---- proofs from stored nodes ----
    let root = frontier.root();
    let lookup = |id: NodeId| nodes.get(&id).copied();
    let mut rng = rand::rng();
    let samples = if quick { 200 } else { 10_000 };
    let mut inclusion = Vec::with_capacity(samples);
    let mut inclusion_verify = Vec::with_capacity(samples);
    let mut max_nodes = 0;
    for _ in 0..samples {
        let leaf = rng.random_range(0..n);
        let t = Instant::now();
        let ids = merkle::inclusion_nodes(leaf, n)?;
        // What a store does: fetch the named nodes in one query, then assemble from them.
        let fetched: HashMap<NodeId, Hash> = ids
            .iter()
            .filter_map(|id| lookup(*id).map(|h| (*id, h)))
            .collect();
        let proof = merkle::inclusion_proof(leaf, n, &|id| fetched.get(&id).copied())?;
        inclusion.push(t.elapsed());
        max_nodes = max_nodes.max(ids.len());
        let t = Instant::now();
        merkle::verify_inclusion(leaf, n, &leaves[leaf as usize], &proof, &root)?;
        inclusion_verify.push(t.elapsed());
    }
    report(
        &format!("inclusion_nodes+inclusion_proof (n={n})"),
        inclusion,
    );
    report("verify_inclusion", inclusion_verify);
    println!("  at most {max_nodes} stored nodes per inclusion proof");

    let mut consistency = Vec::with_capacity(samples);
    let mut consistency_verify = Vec::with_capacity(samples);
    let mut max_nodes = 0;
    for _ in 0..samples {
        let old = rng.random_range(1..n);
        let t = Instant::now();
        let ids = merkle::consistency_nodes(old, n)?;
        let fetched: HashMap<NodeId, Hash> = ids
            .iter()
            .filter_map(|id| lookup(*id).map(|h| (*id, h)))
            .collect();
        let get = |id| fetched.get(&id).copied();
        let proof = merkle::consistency_proof(old, n, &get)?;
        consistency.push(t.elapsed());
        max_nodes = max_nodes.max(ids.len());
        let old_root = merkle::root_from_nodes(old, &lookup)?;
        let t = Instant::now();
        merkle::verify_consistency(old, n, &old_root, &root, &proof)?;
        consistency_verify.push(t.elapsed());
    }
    report(
        &format!("consistency_nodes+consistency_proof (n={n})"),
        consistency,
    );
    report("verify_consistency", consistency_verify);
    println!("  at most {max_nodes} stored nodes per consistency proof");
    Ok(())
}
