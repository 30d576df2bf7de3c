//! `countersign mcp-stdio` (an MCP gate over stdio, bridged to the gate's `/mcp`) and
//! `countersign mcp accept` / `mcp tools` (pinned tool definitions, through the API).

use crate::client::{Client, str_of};
use crate::config::Config;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;

/// Relays the agent's stdio to the `/mcp` endpoint of gate `gate` until stdin ends.
pub async fn stdio(gate: &str, config: Option<&Path>, token: Option<String>) -> Result<()> {
    let Some(path) = config else {
        bail!("mcp-stdio needs the gateway's configuration to find gate `{gate}`: --config FILE");
    };
    let config = Config::read(path)?;
    let section = config
        .gates
        .mcp
        .iter()
        .find(|g| g.name == gate)
        .with_context(|| format!("{} has no [[gates.mcp]] named `{gate}`", path.display()))?;
    let resolved = section.resolve()?;
    let token = token.context("mcp-stdio needs the agent's token: COUNTERSIGN_TOKEN or --token")?;
    let url = format!("{}/mcp", resolved.public_url);
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    countersign_gate_mcp::bridge::run(
        &url,
        token,
        resolved.max_message_bytes,
        input,
        tokio::io::stdout(),
    )
    .await
    .with_context(|| format!("relaying to {url}"))
}

fn describe(tool: &Value) -> String {
    format!(
        "{}/{}  {}  pinned {}{}",
        str_of(tool, "gate"),
        str_of(tool, "tool"),
        str_of(tool, "status"),
        str_of(tool, "fingerprint"),
        tool["changed_fingerprint"]
            .as_str()
            .map(|c| format!("  changed to {c}"))
            .unwrap_or_default()
    )
}

pub async fn accept(client: &Client, gate: &str, tool: &str, fingerprint: &str) -> Result<()> {
    let body = client
        .post(
            "/v1/mcp/tools/accept",
            &json!({"gate": gate, "tool": tool, "fingerprint": fingerprint}),
        )
        .await?;
    println!("accepted: {}", describe(&body));
    Ok(())
}

pub async fn tools(client: &Client, gate: Option<&str>) -> Result<()> {
    let path = match gate {
        Some(g) => format!("/v1/mcp/tools?gate={}", crate::client::url_part(g)),
        None => "/v1/mcp/tools".to_owned(),
    };
    let body = client
        .get(&path, std::time::Duration::from_secs(30))
        .await?;
    for tool in body["tools"].as_array().into_iter().flatten() {
        println!("{}", describe(tool));
    }
    Ok(())
}
