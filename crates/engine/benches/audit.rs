//! Benchmarks of the audit log through the engine and the real store:
//!
//! (a) appending with checkpointing on: concurrent `Engine::check` calls on the allow path, on
//!     SQLite and on PostgreSQL, at the default cadence (a checkpoint every 1,000 events or 1 s);
//! (b) proofs from the store at a million records: a SQLite store filled directly through
//!     `StoreTx` (the engine would take far too long), then `audit_io::inclusion_proof` and
//!     `audit_io::consistency_proof` at random sizes;
//! (c) exporting that store and verifying the export (in-process, and with the release binary
//!     `target/release/countersign` when it has been built).
//!
//! Run with `cargo bench -p countersign-engine --bench audit`. Environment:
//! `AUDIT_BENCH_EVENTS` (records in the filled store, default 1,000,000),
//! `AUDIT_BENCH_SECONDS` (duration of each append run, default 5), `AUDIT_BENCH_TASKS`
//! (concurrent callers, default 64), `AUDIT_BENCH_SKIP_PG=1` (no PostgreSQL run),
//! `COUNTERSIGN_TEST_PG` (the PostgreSQL server, see `countersign_store::testing`).
//! Without `--bench` (`cargo test --benches`) everything runs at a small size.

use countersign_audit::merkle::Frontier;
use countersign_audit::note::{Checkpoint, SigningKey};
use countersign_audit::{AuditEvent, AuditRecord, EventKind, encode, export};
use countersign_core::{
    Action, Attempt, Principal, PrincipalKind, PrincipalRef, Resource, Timestamp,
};
use countersign_engine::{AuditSigning, CheckOutcome, Engine, EngineConfig, audit_io};
use countersign_policy::LoadedPolicies;
use countersign_store::testing::TestDb;
use countersign_store::{Backend, Store};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ORIGIN: &str = "countersign.bench/audit";
/// Records per transaction while filling.
const FILL_BATCH: u64 = 5_000;
/// A checkpoint per this many records in the filled store, as the gateway's default cadence
/// gives under load.
const FILL_CHECKPOINT_EVERY: u64 = 1_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let median = percentile(&samples, 0.5);
    println!(
        "  {name:<40} median {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}  (n = {})",
        median,
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples.len()
    );
    median
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn main() -> Result<(), Error> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(quick))
}

async fn run(quick: bool) -> Result<(), Error> {
    let seconds: f64 = env_or("AUDIT_BENCH_SECONDS", if quick { 0.5 } else { 5.0 });
    let tasks: usize = env_or("AUDIT_BENCH_TASKS", 64);
    let n: u64 = env_or("AUDIT_BENCH_EVENTS", if quick { 20_000 } else { 1_000_000 });
    println!(
        "audit benchmarks ({} worker threads, {} CPUs)",
        tokio::runtime::Handle::current().metrics().num_workers(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // ---- (a) appending through the engine, checkpoints on ----
    println!(
        "(a) Engine::check allow path, {tasks} concurrent tasks, {seconds} s, default cadence"
    );
    let duration = Duration::from_secs_f64(seconds);
    let sqlite = TestDb::sqlite();
    append(&sqlite, tasks, duration).await?;
    drop(sqlite);
    if std::env::var("AUDIT_BENCH_SKIP_PG").is_ok_and(|v| v == "1") {
        println!("  postgres: skipped (AUDIT_BENCH_SKIP_PG=1)");
    } else {
        let postgres = TestDb::postgres().await;
        append(&postgres, tasks, duration).await?;
        drop(postgres);
    }

    // ---- (b) proofs from a store of n records ----
    let dir = tempfile::Builder::new()
        .prefix("audit-bench-")
        .tempdir_in(target_dir())?;
    let db = dir.path().join("store.sqlite");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url).await?;
    let key = SigningKey::generate(ORIGIN)?;
    println!("(b) proofs from a SQLite store of {n} records");
    let started = Instant::now();
    let checkpoints = fill(&store, n, &key).await?;
    let fill_time = started.elapsed();
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  filled {n} records and {checkpoints} checkpoints in {fill_time:.2?} \
         ({:.0} records/s; database {:.0} MB)",
        n as f64 / fill_time.as_secs_f64(),
        db_bytes as f64 / 1e6
    );
    assert_eq!(store.audit_size().await?, n);
    proofs(&store, n, &key, if quick { 200 } else { 2_000 }).await?;

    // ---- (c) export and offline verification ----
    println!("(c) export of {n} records and offline verification");
    exports(&store, dir.path(), &url, n, &key, quick).await?;
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a)
// ---------------------------------------------------------------------------------------------

fn policies() -> Result<LoadedPolicies, Error> {
    Ok(LoadedPolicies::from_sources(&[(
        "bench.cedar",
        r#"@id("reads") permit (principal, action == Action::"db.read", resource);"#,
    )])?)
}

async fn append(db: &TestDb, tasks: usize, duration: Duration) -> Result<(), Error> {
    let label = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let store = Store::open(&db.url).await?;
    let key = SigningKey::generate(ORIGIN)?;
    let engine = Engine::start(
        store.clone(),
        policies()?,
        EngineConfig {
            public_url: "http://bench.invalid".into(),
            audit: AuditSigning::new(ORIGIN, key.clone(), None),
            journal: None,
        },
    )
    .await?;
    let size_before = engine.audit_size().await?;
    let checkpoints_before = store.checkpoints(1, u64::MAX >> 1).await?.len();
    let agent = Principal::new(PrincipalKind::Agent, "etl-nightly", ["agents"]);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let engine = engine.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let attempt = Attempt {
                        principal: agent.reference(),
                        on_behalf_of: None,
                        action: Action::parse("db.read").expect("action"),
                        resources: vec![Resource::new("Table", format!("analytics.t{task}"))],
                        payload: serde_json::json!({"sql": format!("SELECT * FROM t{task} WHERE id = {i}")}),
                        justification: None,
                        context: Default::default(),
                    };
                    let t = Instant::now();
                    let outcome = engine.check(&agent, attempt, "bench").await;
                    latencies.push(t.elapsed());
                    assert!(
                        matches!(outcome, CheckOutcome::Allow { .. }),
                        "{outcome:?}"
                    );
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await?);
    }
    let elapsed = started.elapsed();
    let size_after = engine.audit_size().await?;
    let checkpoints_after = store.checkpoints(1, u64::MAX >> 1).await?.len();
    let events = size_after - size_before;
    let written = checkpoints_after - checkpoints_before;
    println!(
        "  {label:<8} {events} events in {elapsed:.2?} = {:.0} events/s; {written} checkpoints \
         written ({:.1}/s, {:.0} events each)",
        events as f64 / elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        events as f64 / written.max(1) as f64,
    );
    report(&format!("{label} check() latency"), latencies);
    // The log that was written verifies.
    engine.checkpoint().await?;
    let t = Instant::now();
    let summary = engine.verify_log(vec![key.verifier()]).await??;
    println!(
        "  {label:<8} verify_log of {} records, {} checkpoints: {:.2?}",
        summary.events,
        summary.checkpoints,
        t.elapsed()
    );
    drop(engine);
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (b)
// ---------------------------------------------------------------------------------------------

/// A realistic attempt event, as the engine writes for an allowed query.
fn event(i: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Attempt, Timestamp(1_760_000_000_000 + i as i64));
    let agent = PrincipalRef::agent(format!("etl-nightly-{}", i % 97));
    e.actor = Some(agent.clone());
    e.principal = Some(agent);
    e.action = Some("db.read".into());
    e.resources = vec![Resource::new(
        "Table",
        format!("analytics.events_{}", i % 31),
    )];
    e.payload_digest = Some(format!(
        "sha256:{}",
        hex_of(&countersign_audit::merkle::leaf_hash(&i.to_le_bytes()))
    ));
    e.payload = Some(serde_json::json!({
        "sql": format!("SELECT * FROM analytics.events_{} WHERE id = {i}", i % 31)
    }));
    e.verdict = Some("allow".into());
    e.reason = Some("permitted by policy agents-read".into());
    e.policy_version = Some("v3".into());
    e.policy_ids = vec!["agents-read".into()];
    e.channel = Some("pg-gate".into());
    e
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One transaction's worth of rows, computed off the async runtime.
struct Batch {
    records: Vec<(AuditRecord, Timestamp)>,
    nodes: Vec<(
        countersign_audit::merkle::NodeId,
        countersign_audit::merkle::Hash,
    )>,
    checkpoints: Vec<(u64, String)>,
}

/// Fills `store` with `n` attempt records, their subtree hashes and a checkpoint every
/// [`FILL_CHECKPOINT_EVERY`] records (and at `n`), in transactions of [`FILL_BATCH`] records.
/// Encoding, hashing and signing run on a thread of their own, one batch ahead of the
/// inserts. Returns the number of checkpoints.
async fn fill(store: &Store, n: u64, key: &SigningKey) -> Result<u64, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let key = key.clone();
    let producer = std::thread::spawn(move || -> Result<(), String> {
        let mut frontier = Frontier::new();
        let mut seq = 0;
        while seq < n {
            let end = (seq + FILL_BATCH).min(n);
            let mut batch = Batch {
                records: Vec::with_capacity((end - seq) as usize),
                nodes: Vec::with_capacity((end - seq) as usize),
                checkpoints: Vec::new(),
            };
            for s in seq..end {
                let e = event(s);
                let record = encode(s, &e).expect("an event encodes");
                frontier.push_with(record.leaf_hash, |id, hash| {
                    if id.level > 0 {
                        batch.nodes.push((id, hash));
                    }
                });
                batch.records.push((record, e.time));
                if (s + 1).is_multiple_of(FILL_CHECKPOINT_EVERY) || s + 1 == n {
                    let note = Checkpoint {
                        origin: ORIGIN.into(),
                        size: s + 1,
                        root: frontier.root(),
                    }
                    .sign(&key)
                    .map_err(|e| e.to_string())?;
                    batch.checkpoints.push((s + 1, note));
                }
            }
            if tx.blocking_send(batch).is_err() {
                return Err("the inserting side stopped".into());
            }
            seq = end;
        }
        Ok(())
    });
    let mut checkpoints = 0;
    while let Some(batch) = rx.recv().await {
        let rows: Vec<_> = batch
            .records
            .iter()
            .map(|(r, time)| (r, "attempt", *time, None, None))
            .collect();
        let mut t = store.begin().await?;
        t.append_audits(&rows).await?;
        t.insert_nodes(&batch.nodes).await?;
        for (size, note) in &batch.checkpoints {
            t.insert_checkpoint(*size, Timestamp(1_760_000_000_000 + *size as i64), note)
                .await?;
            checkpoints += 1;
        }
        t.commit().await?;
    }
    producer
        .join()
        .map_err(|_| "the filling thread panicked")??;
    Ok(checkpoints)
}

async fn proofs(store: &Store, n: u64, key: &SigningKey, samples: usize) -> Result<(), Error> {
    let (size, note) = store.latest_checkpoint().await?.ok_or("no checkpoint")?;
    assert_eq!(size, n);
    let signed = Checkpoint::open(&note, &key.verifier(), Some(ORIGIN))?;
    let mut rng = rand::rng();
    // Warm the page cache and the prepared statements first.
    for _ in 0..50 {
        audit_io::inclusion_proof(store, rng.random_range(0..n)).await?;
    }
    let mut inclusion = Vec::with_capacity(samples);
    for _ in 0..samples {
        let seq = rng.random_range(0..n);
        let t = Instant::now();
        let proof = audit_io::inclusion_proof(store, seq).await?;
        inclusion.push(t.elapsed());
        countersign_audit::merkle::verify_inclusion(
            seq,
            n,
            &proof.leaf_hash,
            &proof.path,
            &signed.root,
        )?;
    }
    let median = report(&format!("inclusion_proof (tree of {n})"), inclusion);
    println!(
        "  goal: median < 1 ms: {}",
        if median < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    let mut consistency = Vec::with_capacity(samples);
    let mut old_roots = Vec::with_capacity(samples);
    for _ in 0..samples {
        let old = rng.random_range(1..n);
        let t = Instant::now();
        let proof = audit_io::consistency_proof(store, old, n).await?;
        consistency.push(t.elapsed());
        old_roots.push((old, proof));
    }
    report(&format!("consistency_proof (m, {n})"), consistency);
    // Spot-check a few against roots recomputed from the stored nodes.
    for (old, proof) in old_roots.iter().take(20) {
        let root = audit_io::root_at(store, *old).await?;
        countersign_audit::merkle::verify_consistency(*old, n, &root, &signed.root, proof)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c)
// ---------------------------------------------------------------------------------------------

async fn exports(
    store: &Store,
    dir: &Path,
    url: &str,
    n: u64,
    key: &SigningKey,
    quick: bool,
) -> Result<(), Error> {
    let path = dir.join("export.jsonl");
    let t = Instant::now();
    {
        let file = std::fs::File::create(&path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let summary = audit_io::write_export(store, ORIGIN, 0, None, &mut out, |_| {}).await?;
        assert_eq!(summary.to, n);
    }
    let export_time = t.elapsed();
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "  in-process write_export: {export_time:.2?}; {:.1} MB ({:.0} bytes/record)",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64
    );
    let mut runs = Vec::new();
    for _ in 0..if quick { 1 } else { 3 } {
        let t = Instant::now();
        let file = std::fs::File::open(&path)?;
        let summary = export::verify_reader(
            vec![key.verifier()],
            std::io::BufReader::with_capacity(1 << 20, file),
        )?;
        runs.push(t.elapsed());
        assert_eq!(summary.events, n);
    }
    runs.sort();
    println!(
        "  in-process export::verify_reader: runs {runs:.2?}, best {:.2?} ({:.0} MB/s)",
        runs[0],
        bytes as f64 / 1e6 / runs[0].as_secs_f64()
    );
    let t = Instant::now();
    let summary = audit_io::verify_store(store, ORIGIN, vec![key.verifier()], |_| {}).await??;
    assert_eq!(summary.events, n);
    println!("  in-process audit_io::verify_store: {:.2?}", t.elapsed());

    // The release binary, as an operator and an auditor run it.
    let binary = target_dir().join("release/countersign");
    if !binary.is_file() {
        println!(
            "  release binary: {} not built (cargo build --release -p countersign); skipped",
            binary.display()
        );
        return Ok(());
    }
    let config = dir.join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {url:?}\n\n[audit]\norigin = {ORIGIN:?}\nkey_file = {:?}\n",
            dir.join("audit.key").display().to_string()
        ),
    )?;
    let key_file = dir.join("verifier.key");
    std::fs::write(&key_file, format!("{}\n", key.verifier()))?;
    let cli_export = dir.join("cli-export.jsonl");
    let run = |args: &[&str]| -> Result<(Duration, String), Error> {
        let t = Instant::now();
        let out = std::process::Command::new(&binary).args(args).output()?;
        let elapsed = t.elapsed();
        if !out.status.success() {
            return Err(format!(
                "countersign {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok((
            elapsed,
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    };
    let config_arg = config.display().to_string();
    let export_arg = cli_export.display().to_string();
    let key_arg = format!("@{}", key_file.display());
    let (elapsed, _) = run(&[
        "audit",
        "export",
        "--config",
        &config_arg,
        "--out",
        &export_arg,
    ])?;
    println!(
        "  `countersign audit export` (release): {elapsed:.2?}; {:.1} MB",
        std::fs::metadata(&cli_export)?.len() as f64 / 1e6
    );
    let mut runs = Vec::new();
    let mut said = String::new();
    for _ in 0..if quick { 1 } else { 3 } {
        let (elapsed, stdout) = run(&["audit", "verify", &export_arg, "--key", &key_arg])?;
        runs.push(elapsed);
        said = stdout;
    }
    runs.sort();
    println!(
        "  `countersign audit verify FILE --key K` (release): runs {runs:.2?}, best {:.2?} \
         (goal < 3 s: {})\n    {said}",
        runs[0],
        if runs[0] < Duration::from_secs(3) {
            "met"
        } else {
            "NOT met"
        }
    );
    let (elapsed, _) = run(&[
        "audit",
        "verify",
        "--store",
        "--config",
        &config_arg,
        "--key",
        &key_arg,
    ])?;
    println!("  `countersign audit verify --store` (release): {elapsed:.2?}");
    Ok(())
}
