//! `countersign exec`: ask before running a command, wait for approval with a live progress
//! line, then run it with its exit status passed through.
//!
//! Exit codes besides the command's own: 2 usage or gateway errors, 3 denied, 4 expired,
//! 5 cancelled, 130 interrupted while waiting (the request is cancelled).

use crate::client::{Client, str_of, url_part};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub const EXIT_DENIED: i32 = 3;
pub const EXIT_EXPIRED: i32 = 4;
pub const EXIT_CANCELLED: i32 = 5;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Seconds per long-poll; short enough to survive proxies, long enough to be cheap.
const POLL_SECONDS: u64 = 25;

#[derive(Debug)]
pub struct ExecArgs {
    pub action: String,
    pub resource: String,
    pub reason: Option<String>,
    pub on_behalf_of: Option<String>,
    pub command: Vec<String>,
}

/// Parses `Type::"id"` (the Cedar entity syntax) into its two parts.
pub fn parse_resource(text: &str) -> Result<(String, String)> {
    let (kind, rest) = text.split_once("::").with_context(|| {
        format!("resource `{text}` must look like Type::\"id\", e.g. Host::\"build-1\"")
    })?;
    let id = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .with_context(|| format!("resource `{text}`: the id must be in double quotes"))?;
    if kind.is_empty() || id.is_empty() {
        bail!("resource `{text}`: type and id must not be empty");
    }
    Ok((kind.to_owned(), id.to_owned()))
}

pub async fn run(client: &Client, args: ExecArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!("nothing to run: give the command after `--`");
    }
    let (kind, id) = parse_resource(&args.resource)?;
    let mut attempt = json!({
        "action": args.action,
        "resource": {"type": kind, "id": id},
        "payload": args.command,
        "context": {"gate": "exec"},
    });
    if let Some(reason) = &args.reason {
        attempt["justification"] = json!(reason);
    }
    if let Some(user) = &args.on_behalf_of {
        attempt["on_behalf_of"] = json!(user);
    }
    let first = client.post("/v1/attempts", &attempt).await?;
    match first["outcome"].as_str() {
        Some("allow") => return run_and_report(client, &first, &args.command).await,
        Some("deny") => return Ok(denied(&first)),
        Some("pending") => {}
        other => bail!("unexpected answer from the gateway: {other:?}"),
    }
    let request_id = first["request_id"]
        .as_str()
        .context("pending answer without a request id")?
        .to_owned();
    let review_url = first["review_url"].as_str().unwrap_or("-").to_owned();
    eprintln!(
        "countersign: approval required ({})",
        str_of(&first, "reason")
    );
    eprintln!("countersign: request {request_id}");
    eprintln!("countersign: review at {review_url}");

    let settled = tokio::select! {
        s = wait_for_settlement(client, &request_id, &review_url) => s?,
        _ = tokio::signal::ctrl_c() => {
            finish_progress();
            let cancel = format!("/v1/requests/{}/cancel", url_part(&request_id));
            let _ = client.post(&cancel, &json!({})).await;
            eprintln!("countersign: interrupted; request {request_id} cancelled");
            return Ok(EXIT_INTERRUPTED);
        }
    };
    finish_progress();
    match str_of(&settled, "status") {
        "approved" => {
            // Sending the same attempt again spends the grant the approval issued.
            let second = client.post("/v1/attempts", &attempt).await?;
            match second["outcome"].as_str() {
                Some("allow") => {
                    eprintln!("countersign: approved; running {}", args.command.join(" "));
                    run_and_report(client, &second, &args.command).await
                }
                _ => Ok(denied(&second)),
            }
        }
        "denied" => {
            eprintln!(
                "countersign: denied by a reviewer{}",
                denial_detail(&settled)
            );
            Ok(EXIT_DENIED)
        }
        "expired" => {
            eprintln!("countersign: the request expired before reviewers decided");
            Ok(EXIT_EXPIRED)
        }
        "cancelled" => {
            eprintln!("countersign: the request was cancelled");
            Ok(EXIT_CANCELLED)
        }
        other => bail!("unexpected request status `{other}`"),
    }
}

/// ` (who: why)` of the vote that denied a settled request, or nothing if it has none.
fn denial_detail(request: &Value) -> String {
    let vote = request["votes"]
        .as_array()
        .and_then(|votes| votes.iter().rev().find(|v| v["decision"] == "deny"));
    match vote {
        Some(v) => format!(" ({}: {})", str_of(&v["voter"], "id"), str_of(v, "reason")),
        None => String::new(),
    }
}

fn denied(answer: &Value) -> i32 {
    eprintln!("countersign: denied: {}", str_of(answer, "reason"));
    EXIT_DENIED
}

/// Long-polls until the request settles, redrawing the progress line every second; answers
/// the settled request.
async fn wait_for_settlement(client: &Client, id: &str, review_url: &str) -> Result<Value> {
    let ticker = show_progress(review_url.to_owned());
    let result = loop {
        let body = match client
            .get(
                &format!("/v1/requests/{}?wait={POLL_SECONDS}", url_part(id)),
                Duration::from_secs(POLL_SECONDS + 10),
            )
            .await
        {
            Ok(body) => body,
            Err(e) => break Err(e),
        };
        if str_of(&body, "status") != "pending" {
            break Ok(body);
        }
    };
    ticker.abort();
    result
}

/// Redraws `waiting for approval MM:SS  review: URL` every second while stderr is a terminal.
fn show_progress(review_url: String) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let secs = started.elapsed().as_secs();
            eprint!(
                "\r\x1b[2Kwaiting for approval {:02}:{:02}  review: {review_url}",
                secs / 60,
                secs % 60
            );
            let _ = std::io::stderr().flush();
        }
    })
}

fn finish_progress() {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

/// Runs the allowed command and, when a grant allowed it, reports how it went for the audit
/// log. A report that cannot be delivered is a warning: the command has run either way.
async fn run_and_report(client: &Client, allowed: &Value, command: &[String]) -> Result<i32> {
    let code = run_command(command)?;
    if let Some(grant_id) = allowed["grant_id"].as_str() {
        let report = json!({
            "grant_id": grant_id,
            "outcome": if code == 0 { "succeeded" } else { "failed" },
            "detail": format!("exit status {code}"),
        });
        if let Err(e) = client.post("/v1/executions", &report).await {
            eprintln!("countersign: warning: could not record the outcome: {e:#}");
        }
    }
    Ok(code)
}

fn run_command(command: &[String]) -> Result<i32> {
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("cannot run `{}`", command[0]))?;
    Ok(exit_code(status))
}

#[cfg(unix)]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(not(unix))]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::parse_resource;

    #[test]
    fn resources_use_cedar_syntax() {
        assert_eq!(
            parse_resource(r#"Host::"build-1""#).unwrap(),
            ("Host".into(), "build-1".into())
        );
        assert!(parse_resource("Host:build").is_err());
        assert!(parse_resource(r#"Host::build"#).is_err());
        assert!(parse_resource(r#"::"x""#).is_err());
        assert!(parse_resource(r#"Host::"""#).is_err());
    }
}
