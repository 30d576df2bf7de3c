//! `tools/call` through the gate against the same call made directly, on loopback: the allow
//! path (a read-only tool that policy permits), with the audit log on (each decision committed
//! to a SQLite store before the call is forwarded). Both sides speak 2026-07-28 over Streamable
//! HTTP to a minimal upstream MCP server in this process. Prints the latency distribution of
//! each and the median the gate adds.
//!
//! `cargo bench -p countersign-gate-mcp --bench calls` (store in `$TMPDIR`; set
//! `TMPDIR=/dev/shm` to take the disk's fsync out of the figure). `BENCH_CALLS` sets the count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use axum::routing::post;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{AGENT, Client, harness, section};

/// A minimal 2026-07-28 MCP server: discover, one read-only tool, JSON answers.
async fn upstream() -> String {
    async fn mcp(axum::Json(msg): axum::Json<Value>) -> axum::Json<Value> {
        let id = msg["id"].clone();
        let result = match msg["method"].as_str().unwrap_or("") {
            "server/discover" => {
                json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench", "version": "1"}, "ttlMs": 0, "cacheScope": "private"})
            }
            "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"},
                "annotations": {"readOnlyHint": true}}], "ttlMs": 0, "cacheScope": "private"}),
            "tools/call" => {
                json!({"content": [{"type": "text", "text": msg["params"]["arguments"]["message"]}], "isError": false})
            }
            _ => {
                return axum::Json(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
                );
            }
        };
        let mut result = result;
        result["resultType"] = json!("complete");
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/mcp", post(mcp)))
            .await
            .unwrap();
    });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(client: &Client, calls: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        let answer = client
            .tool(i as i64, "echo", json!({"message": "hi"}))
            .await;
        times.push(started.elapsed());
        assert_eq!(answer.text(), "hi", "{answer:?}");
    }
    times.sort_unstable();
    times
}

fn report(label: &str, t: &[Duration]) {
    println!(
        "{label:<28} median {:>8.3} ms   p90 {:>8.3} ms   p99 {:>8.3} ms",
        percentile(t, 0.5).as_secs_f64() * 1e3,
        percentile(t, 0.9).as_secs_f64() * 1e3,
        percentile(t, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = upstream().await;
        let h = harness(section(
            json!({"url": url, "upstream_protocol": "2026-07-28"}),
        ))
        .await;
        let direct = Client::new(&url, AGENT);
        let gated = Client::new(&h.mcp_url, AGENT);
        // Warm up connections, the gate's upstream connection and its tool pins.
        measure(&direct, 200).await;
        measure(&gated, 200).await;
        // Interleave halves so drift (page cache, CPU frequency) hits both alike.
        let mut d = measure(&direct, calls / 2).await;
        let mut g = measure(&gated, calls / 2).await;
        d.extend(measure(&direct, calls / 2).await);
        g.extend(measure(&gated, calls / 2).await);
        d.sort_unstable();
        g.sort_unstable();
        let tmp = std::env::temp_dir();
        println!(
            "tools/call, {calls} sequential calls each, store under {}",
            tmp.display()
        );
        report("direct to the server", &d);
        report("through the gate", &g);
        let added = percentile(&g, 0.5).as_secs_f64() - percentile(&d, 0.5).as_secs_f64();
        println!(
            "median added by the gate: {:.3} ms (goal < 1 ms)",
            added * 1e3
        );
        let decisions = h.events("attempt").await.len();
        println!("audit: {decisions} attempt events recorded");
    });
}
