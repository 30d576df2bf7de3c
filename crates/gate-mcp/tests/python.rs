//! The MCP gate with the official MCP Python SDK on either side: as a client through the gate
//! (the handshake era and the 2026-07-28 era), and as the upstream server over stdio and over
//! Streamable HTTP.
//!
//! The SDK is installed by `.ci/run` into a virtual environment whose interpreter it exports as
//! `COUNTERSIGN_MCP_PYTHON`. Without it these tests say so loudly and skip, except under CI
//! (`CI` set), where a missing SDK fails them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use support::{AGENT, Client, Harness, harness, section, test_server};

fn python() -> Option<String> {
    match std::env::var("COUNTERSIGN_MCP_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "COUNTERSIGN_MCP_PYTHON is not set: CI must run the MCP Python SDK tests (.ci/run installs the SDK)"
            )
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPED: the MCP Python SDK tests need COUNTERSIGN_MCP_PYTHON (a python with `mcp` installed; .ci/run sets it up) !!!\n"
            );
            None
        }
    }
}

fn script(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
        .display()
        .to_string()
}

/// Approves the next held request through the API while `work` runs.
async fn approving<T>(h: &Harness, work: impl std::future::Future<Output = T>) -> T {
    let approve = async {
        let id = h.pending_request().await;
        assert_eq!(h.vote(&id, "approve", "fine").await, 200);
    };
    let (out, ()) = tokio::join!(work, approve);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_through_the_gate() {
    let Some(python) = python() else { return };
    let h = harness(section(json!({"command": [test_server()]}))).await;
    for mode in ["legacy", "auto"] {
        let run = tokio::process::Command::new(&python)
            .args([
                script("client.py"),
                h.mcp_url.clone(),
                AGENT.into(),
                mode.into(),
            ])
            .kill_on_drop(true)
            .output();
        let output = approving(&h, run).await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stderr}");
        let seen: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{mode}: {e}: {}\n{stderr}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        let tools: Vec<&str> = seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tools.contains(&"echo") && tools.contains(&"delete_file"),
            "{mode}: {tools:?}"
        );
        assert!(
            !tools.contains(&"format_disk"),
            "{mode}: forbidden tools are hidden"
        );
        assert_eq!(seen["echo"], "from python");
        assert_eq!(seen["held"], "deleted /tmp/py", "{mode}: {seen}");
        assert_eq!(seen["held_error"], false);
        let progress = seen["progress"].as_array().unwrap();
        assert!(
            progress.iter().any(|p| p
                .as_str()
                .unwrap()
                .contains(&format!("{}/v1/requests/", h.api_url))),
            "{mode}: {progress:?}"
        );
    }
}

/// Lists and calls the Python server's tools through the gate, in both eras.
async fn drive_python_upstream(h: &Harness) {
    for legacy in [true, false] {
        let mut c = Client::new(&h.mcp_url, AGENT);
        if legacy {
            c.initialize("2025-06-18").await;
        }
        let list = c.call(1, "tools/list", json!({})).await;
        let names: Vec<&str> = list.response()["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{list:?}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"lookup") && names.contains(&"drop_table"),
            "{names:?}"
        );
        let read = c.tool(2, "lookup", json!({"key": "k"})).await;
        assert_eq!(read.text(), "value of k", "{read:?}");
        let held = approving(h, c.tool(3, "drop_table", json!({"table": "t"}))).await;
        assert_eq!(
            (held.text(), held.is_error()),
            ("dropped t".into(), false),
            "{held:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_server_as_a_stdio_upstream() {
    let Some(python) = python() else { return };
    let h = harness(section(
        json!({"command": [python, script("server.py")], "request_timeout": "30s"}),
    ))
    .await;
    drive_python_upstream(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_server_as_a_streamable_http_upstream() {
    let Some(python) = python() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(&python)
        .args([script("server.py"), "http".into(), port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the Python MCP server did not start on port {port}");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let h = harness(section(json!({"url": url, "request_timeout": "30s"}))).await;
    drive_python_upstream(&h).await;
    server.kill().await.unwrap();
}
