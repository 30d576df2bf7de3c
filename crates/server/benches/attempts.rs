//! Throughput and latency of `POST /v1/attempts` on the allow path, over loopback HTTP/1.1 with
//! keep-alive, with every decision's audit event durably committed (group commit), against a
//! `GET /healthz` baseline on the same server and client.
//!
//! Run: `cargo bench -p countersign-server --bench attempts`
//!
//! Knobs (environment variables):
//! - `BENCH_CONNS` connections, comma-separated for several runs (default `32,64,128`)
//! - `BENCH_SECS` measured seconds per run (default `5`), `BENCH_WARMUP` warm-up seconds (`1`)
//! - `BENCH_SERVER_THREADS` worker threads of the server runtime (default: CPU count, as
//!   `countersign serve`), `BENCH_CLIENT_THREADS` of the load generator's runtime (default `1`)
//! - `BENCH_HEALTHZ` `0` skips the `GET /healthz` baseline
//! - `BENCH_PG` `0` skips the PostgreSQL run, `1` requires it (default: run it when the server
//!   at `COUNTERSIGN_TEST_PG` / `postgres://postgres@127.0.0.1:5432/postgres` answers)
//!
//! The stack is built the way `countersign serve` builds it: `Store::open` on a URL (a SQLite
//! file in a temporary directory: WAL, `synchronous = FULL`), `Engine::start` with the embedded
//! example policies, `countersign_server::router` served by `countersign_server::serve` on
//! `127.0.0.1:0`. The load generator runs on its own runtime and speaks raw HTTP/1.1 over
//! `TcpStream` (one request in flight per connection), so its cost per request stays small.

#![allow(clippy::unwrap_used)]

use countersign_core::{Principal, PrincipalKind};
use countersign_engine::{Engine, EngineConfig};
use countersign_policy::LoadedPolicies;
use countersign_server::{ConfiguredPrincipal, ServerConfig};
use countersign_store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

const TOKEN: &str = "cs_agent_bench_token";
const ATTEMPT_BODY: &str =
    r#"{"action":"db.read","resource":{"type":"Database","id":"prod"},"payload":"SELECT 1"}"#;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Settings {
    conns: Vec<usize>,
    secs: u64,
    warmup: u64,
    server_threads: usize,
    client_threads: usize,
    pg: Option<bool>,
    healthz: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let conns = std::env::var("BENCH_CONNS")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .filter(|&n| n > 0)
                    .collect::<Vec<usize>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![32, 64, 128]);
        Settings {
            conns,
            secs: env_num("BENCH_SECS", 5).max(1),
            warmup: env_num("BENCH_WARMUP", 1),
            server_threads: usize::try_from(env_num("BENCH_SERVER_THREADS", cpus as u64))
                .unwrap_or(cpus)
                .max(1),
            client_threads: usize::try_from(env_num("BENCH_CLIENT_THREADS", 1))
                .unwrap_or(1)
                .max(1),
            pg: match std::env::var("BENCH_PG").as_deref() {
                Ok("0") => Some(false),
                Ok("1") => Some(true),
                _ => None,
            },
            healthz: std::env::var("BENCH_HEALTHZ").as_deref() != Ok("0"),
        }
    }
}

/// A running gateway: engine, HTTP server, and the means to stop it.
struct Gateway {
    engine: Engine,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn start_gateway(url: &str) -> Gateway {
    let policies = LoadedPolicies::examples().expect("example policies load");
    let store = Store::open(url).await.expect("store opens");
    let engine = Engine::start(
        store,
        policies,
        EngineConfig {
            public_url: "http://127.0.0.1:8480".into(),
            audit: countersign_engine::AuditSigning::ephemeral("test.example/countersign").unwrap(),
            journal: None,
        },
    )
    .await
    .expect("engine starts");
    let config = ServerConfig {
        principals: vec![ConfiguredPrincipal {
            principal: Principal::new(PrincipalKind::Agent, "bench-agent", ["agents"]),
            token_sha256: Sha256::digest(TOKEN.as_bytes()).into(),
        }],
        auditor_groups: BTreeSet::from(["auditors".to_owned()]),
        admin_groups: BTreeSet::from(["admins".to_owned()]),
        max_body_bytes: 1 << 20,
        policy_source: Arc::new(LoadedPolicies::examples),
        slack: Vec::new(),
    };
    let router = countersign_server::router(engine.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(countersign_server::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    Gateway {
        engine,
        addr,
        stop: Some(stop),
        served: Some(served),
    }
}

impl Gateway {
    async fn audit_events(&self) -> u64 {
        self.engine.audit_size().await.expect("audit size")
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
        }
    }
}

/// One keep-alive HTTP/1.1 connection with at most one request in flight.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` (a complete HTTP/1.1 request) and returns the status and whether `needle`
    /// occurs in the body.
    async fn exchange(&mut self, request: &[u8], needle: &[u8]) -> std::io::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let (head_end, status, length) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            self.fill().await?;
        };
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        if self.buf.len() != head_end + length {
            return Err(bad("bytes after the response (pipelining is not used)"));
        }
        let body = &self.buf[head_end..];
        let found = needle.is_empty() || body.windows(needle.len()).any(|w| w == needle);
        Ok((status, found))
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// `(end of head, status, content length)` once the head is complete.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(usize, u16, usize)>> {
    let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..pos]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported"));
            }
        }
    }
    let length = length.ok_or_else(|| bad("no content-length"))?;
    Ok(Some((pos + 4, status, length)))
}

#[derive(Default)]
struct Tally {
    /// Good responses completed inside the measured window, with their latency in µs.
    latencies_us: Vec<u32>,
    /// Good responses over the whole run (warm-up and tail included).
    good_total: u64,
    bad: u64,
    errors: u64,
    first_bad: Option<String>,
}

struct Figures {
    label: String,
    conns: usize,
    per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    good_total: u64,
    bad: u64,
    errors: u64,
}

async fn load(
    addr: SocketAddr,
    conns: usize,
    request: Arc<Vec<u8>>,
    needle: &'static [u8],
    warmup: Duration,
    measure: Duration,
) -> (Tally, Duration) {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + measure;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut conn = match Conn::open(addr).await {
                Ok(c) => c,
                Err(e) => {
                    t.errors += 1;
                    t.first_bad = Some(format!("connect: {e}"));
                    return t;
                }
            };
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                match conn.exchange(&request, needle).await {
                    Ok((200, true)) => {
                        let done = Instant::now();
                        t.good_total += 1;
                        if done >= from && done < until {
                            let us = done.duration_since(sent).as_micros();
                            t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                    }
                    Ok((status, _)) => {
                        t.bad += 1;
                        t.first_bad
                            .get_or_insert_with(|| format!("status {status}"));
                    }
                    Err(e) => {
                        t.errors += 1;
                        t.first_bad.get_or_insert_with(|| format!("I/O: {e}"));
                        match Conn::open(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("load task");
        all.latencies_us.extend(t.latencies_us);
        all.good_total += t.good_total;
        all.bad += t.bad;
        all.errors += t.errors;
        if all.first_bad.is_none() {
            all.first_bad = t.first_bad;
        }
    }
    (all, measure)
}

fn figures(label: &str, conns: usize, mut tally: Tally, window: Duration) -> Figures {
    tally.latencies_us.sort_unstable();
    let n = tally.latencies_us.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        f64::from(tally.latencies_us[i.clamp(1, n) - 1]) / 1000.0
    };
    if let Some(why) = &tally.first_bad {
        eprintln!(
            "  {label}: {} unexpected responses, {} I/O errors; first: {why}",
            tally.bad, tally.errors
        );
    }
    Figures {
        label: label.to_owned(),
        conns,
        per_sec: n as f64 / window.as_secs_f64(),
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        max_ms: pct(100.0),
        good_total: tally.good_total,
        bad: tally.bad,
        errors: tally.errors,
    }
}

fn http_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

fn http_attempt() -> Vec<u8> {
    format!(
        "POST /v1/attempts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{ATTEMPT_BODY}",
        ATTEMPT_BODY.len()
    )
    .into_bytes()
}

/// Runs the healthz baseline and the allow path against one backend; returns the rows and
/// whether the audit sanity check held.
fn run_backend(
    backend: &str,
    url: &str,
    settings: &Settings,
    server: &Runtime,
    client: &Runtime,
) -> (Vec<Figures>, bool) {
    let gateway = server.block_on(start_gateway(url));
    let addr = gateway.addr;
    let warmup = Duration::from_secs(settings.warmup);
    let measure = Duration::from_secs(settings.secs);
    let mut rows = Vec::new();
    let mut sane = true;
    for &conns in &settings.conns {
        if settings.healthz {
            let (tally, window) = client.block_on(load(
                addr,
                conns,
                Arc::new(http_get("/healthz")),
                b"",
                warmup,
                measure,
            ));
            rows.push(figures(
                &format!("{backend} GET /healthz"),
                conns,
                tally,
                window,
            ));
        }

        let before = server.block_on(gateway.audit_events());
        let (tally, window) = client.block_on(load(
            addr,
            conns,
            Arc::new(http_attempt()),
            br#""outcome":"allow""#,
            warmup,
            measure,
        ));
        let after = server.block_on(gateway.audit_events());
        let row = figures(
            &format!("{backend} POST /v1/attempts"),
            conns,
            tally,
            window,
        );
        let written = after - before;
        let ok = written == row.good_total;
        sane &= ok;
        println!(
            "  [{backend}, {conns} conns] allowed decisions answered: {}, audit events committed: {} -> {}",
            row.good_total,
            written,
            if ok { "equal" } else { "MISMATCH" }
        );
        rows.push(row);
    }
    server.block_on(gateway.shutdown());
    (rows, sane)
}

fn postgres_reachable() -> bool {
    let admin = countersign_store::testing::postgres_admin_url();
    let host = admin
        .split_once('@')
        .map_or(admin.as_str(), |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    use std::net::ToSocketAddrs;
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

fn main() {
    let settings = Settings::from_env();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server_threads)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .expect("client runtime");

    println!(
        "countersign attempts bench: {} CPUs; server runtime {} worker threads, load generator \
         runtime {} worker threads; connections {:?}; {}s warm-up + {}s measured per run",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.server_threads,
        settings.client_threads,
        settings.conns,
        settings.warmup,
        settings.secs
    );

    let mut rows = Vec::new();
    let mut sane = true;

    // A SQLite file in a fresh temporary directory, removed afterwards.
    let db = countersign_store::testing::TestDb::sqlite();
    println!("SQLite store: {} (WAL, synchronous = FULL)", db.url);
    let (r, s) = run_backend("sqlite", &db.url, &settings, &server, &client);
    rows.extend(r);
    sane &= s;
    drop(db);

    let run_pg = settings.pg.unwrap_or_else(postgres_reachable);
    if run_pg {
        let db = server.block_on(countersign_store::testing::TestDb::postgres());
        println!("PostgreSQL store: fresh database (dropped afterwards)");
        let (r, s) = run_backend("postgres", &db.url, &settings, &server, &client);
        rows.extend(r);
        sane &= s;
        drop(db);
    } else {
        println!("PostgreSQL run skipped (BENCH_PG=0 or server unreachable)");
    }

    println!();
    println!(
        "{:<28} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "scenario", "conns", "per second", "p50 ms", "p90 ms", "p99 ms", "max ms", "bad"
    );
    for f in &rows {
        println!(
            "{:<28} {:>6} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6}",
            f.label,
            f.conns,
            f.per_sec,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.max_ms,
            f.bad + f.errors
        );
    }
    println!();
    for backend in ["sqlite", "postgres"] {
        let label = format!("{backend} POST /v1/attempts");
        if let Some(best) = rows
            .iter()
            .filter(|f| f.label == label)
            .max_by(|a, b| a.per_sec.total_cmp(&b.per_sec))
        {
            println!(
                "best {backend} allow path: {:.0} decisions/s with {} connections ({} 10000/s)",
                best.per_sec,
                best.conns,
                if best.per_sec >= 10_000.0 {
                    "meets"
                } else {
                    "below"
                }
            );
        }
    }
    println!(
        "audit sanity (every allowed decision has a committed event): {}",
        if sane { "ok" } else { "FAILED" }
    );
    if !sane {
        std::process::exit(1);
    }
}
