//! A small client of the gateway's HTTP API, and the commands built on it: `requests`,
//! `approve`, `deny`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::time::Duration;

/// Where the gateway is and who we are.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// An error answer from the API, with its stable code.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code}, HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Client> {
        let token = token
            .filter(|t| !t.trim().is_empty())
            .context("no token: pass --token or set COUNTERSIGN_TOKEN")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Value> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout);
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(30));
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the gateway answered HTTP {status} without a JSON body"))?;
        if status.is_success() {
            return Ok(body);
        }
        let text = |key: &str| body["error"][key].as_str().unwrap_or("unknown").to_owned();
        Err(ApiFailure {
            status: status.as_u16(),
            code: text("code"),
            message: text("message"),
        }
        .into())
    }
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// `text` as one URL path segment or query value: everything but unreserved characters
/// percent-encoded, so an argument like `../x?y` cannot reach another route.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `.` and `..` alone are path navigation even when unencoded characters are fine.
    match out.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => out,
    }
}

/// One line per request: id, status, who, action, resources, age.
pub async fn list_requests(client: &Client, status: &str, json: bool) -> Result<()> {
    let body = client
        .get(
            &format!("/v1/requests?status={}", url_part(status)),
            Duration::from_secs(30),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() {
        println!("no {status} requests");
        return Ok(());
    }
    println!(
        "{:<36}  {:<9}  {:<24}  {:<14}  {:<24}  PAYLOAD",
        "ID", "STATUS", "REQUESTER", "ACTION", "RESOURCE"
    );
    for r in requests {
        let resource = r["resources"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|x| format!("{}::{}", str_of(x, "type"), str_of(x, "id")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut payload = match &r["payload"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if payload.chars().count() > 60 {
            payload = payload.chars().take(57).collect::<String>() + "...";
        }
        println!(
            "{:<36}  {:<9}  {:<24}  {:<14}  {:<24}  {}",
            str_of(&r, "id"),
            str_of(&r, "status"),
            str_of(&r["principal"], "id"),
            str_of(&r, "action"),
            resource,
            payload.replace('\n', " ")
        );
    }
    Ok(())
}

/// Casts `decision` on request `id`.
/// Votes `decision` on request `id`; `break_glass` makes it the requester's own approval
/// under a break-glass policy.
pub async fn vote(
    client: &Client,
    id: &str,
    decision: &str,
    reason: &str,
    break_glass: bool,
) -> Result<()> {
    if reason.trim().is_empty() {
        bail!("give a --reason: reviewers' reasons go into the audit log");
    }
    let mut vote = serde_json::json!({"decision": decision, "reason": reason});
    if break_glass {
        vote["break_glass"] = serde_json::json!(true);
    }
    let body = client
        .post(&format!("/v1/requests/{}/votes", url_part(id)), &vote)
        .await?;
    let rules = body["requirements"]["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| format!("{}/{}", r["approvals"], r["quorum"]))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "{} {}: request is {} (approvals {})",
        if decision == "approve" {
            "approved"
        } else {
            "denied"
        },
        id,
        str_of(&body, "status"),
        rules
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::url_part;

    #[test]
    fn arguments_cannot_leave_their_url_segment() {
        assert_eq!(url_part("01a1fc91-2083-76d5"), "01a1fc91-2083-76d5");
        assert_eq!(
            url_part("../requests/R/cancel?"),
            "..%2Frequests%2FR%2Fcancel%3F"
        );
        assert_eq!(url_part(".."), "%2E%2E");
        assert_eq!(url_part("a b&c=d#e"), "a%20b%26c%3Dd%23e");
        assert_eq!(url_part("é"), "%C3%A9");
    }
}
