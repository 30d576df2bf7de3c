//! A stdio upstream starts with an empty environment plus what the configuration names: the
//! gateway's secrets (here a stand-in for `SLACK_SIGNING_SECRET`) never reach it. The gateway
//! must hold the secret in its own environment, so the test runs itself again as a child
//! process with the secret set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{AGENT, Client, harness, section, test_server};

const CHILD: &str = "gateway_with_secrets_in_its_environment";

#[test]
fn a_stdio_upstream_sees_only_the_allowlist_and_what_is_configured() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([CHILD, "--exact", "--nocapture", "--include-ignored"])
        .env("SLACK_SIGNING_SECRET", "gateway-secret")
        .env("UPSTREAM_API_KEY", "passed-by-name")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("1 passed"), "{report}");
}

/// Run only by the test above, in a process whose environment holds the secret.
#[test]
#[ignore = "run by a_stdio_upstream_sees_only_the_allowlist_and_what_is_configured"]
fn gateway_with_secrets_in_its_environment() {
    assert_eq!(
        std::env::var("SLACK_SIGNING_SECRET").as_deref(),
        Ok("gateway-secret")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let h = harness(section(json!({
            "command": [test_server()],
            "env": {"UPSTREAM_MODE": "literal"},
            "env_pass": ["UPSTREAM_API_KEY", "NOT_SET_ANYWHERE"],
        })))
        .await;
        let mut c = Client::new(&h.mcp_url, AGENT);
        c.initialize("2025-11-25").await;
        let seen: Value = serde_json::from_str(&c.tool(1, "env", json!({})).await.text()).unwrap();
        let seen = seen.as_object().unwrap();
        assert!(!seen.contains_key("SLACK_SIGNING_SECRET"), "{seen:?}");
        assert_eq!(seen["UPSTREAM_MODE"], "literal");
        assert_eq!(seen["UPSTREAM_API_KEY"], "passed-by-name");
        assert_eq!(
            seen.get("PATH").and_then(Value::as_str),
            std::env::var("PATH").ok().as_deref()
        );
        let allowed = [
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "TZ",
            "TMPDIR",
            "UPSTREAM_MODE",
            "UPSTREAM_API_KEY",
        ];
        let extra: Vec<&String> = seen
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "unexpected variables reached the upstream: {extra:?}"
        );
    });
}
