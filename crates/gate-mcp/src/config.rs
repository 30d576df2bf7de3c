//! A `[[gates.mcp]]` section of the configuration and what it resolves to: where the gate
//! listens, the upstream MCP server it fronts (a command over stdio, or a Streamable HTTP URL),
//! and its limits.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One `[[gates.mcp]]` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpGateSection {
    /// The gate's name; its tools are `Tool::"<name>/<tool>"` in `McpServer::"<name>"`.
    pub name: String,
    /// Where the Streamable HTTP endpoint `/mcp` listens.
    pub listen: String,
    /// A stdio MCP server: the program and its arguments, one process per downstream session.
    pub command: Option<Vec<String>>,
    /// A Streamable HTTP MCP server (`http://…/mcp`).
    pub url: Option<String>,
    /// How clients reach this gate, for the protected-resource metadata
    /// [default: `http://<listen>`].
    pub public_url: Option<String>,
    /// Authorization servers named in the protected-resource metadata (for OIDC); none by
    /// default: clients use the gateway's bearer tokens.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The upstream's protocol revision: `auto` (probe `server/discover`, fall back to
    /// `initialize`), or one of `2026-07-28`, `2025-11-25`, `2025-06-18`.
    #[serde(default = "default_protocol")]
    pub upstream_protocol: String,
    /// Longest wait for the upstream's answer to one request, e.g. `5m`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// Sessions with no traffic for this long end, and their upstream process with them.
    #[serde(default = "default_idle_timeout")]
    pub session_idle_timeout: String,
    /// Largest JSON-RPC message accepted from either side, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most sessions (each with its own upstream connection, for stdio its own process) open
    /// at once, over all principals.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most sessions one principal may have open at once.
    #[serde(default = "default_max_sessions_per_principal")]
    pub max_sessions_per_principal: usize,
    /// Variables set for a stdio upstream, given literally. The upstream starts with an empty
    /// environment: only these, `env_pass` and [`BASE_ENV`] reach it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the gateway's own environment passed to a stdio upstream by name.
    #[serde(default)]
    pub env_pass: Vec<String>,
}

/// What a stdio upstream gets from the gateway's environment without asking: enough to find
/// programs and format text, nothing secret.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

fn default_protocol() -> String {
    "auto".into()
}
fn default_request_timeout() -> String {
    "5m".into()
}
fn default_idle_timeout() -> String {
    "30m".into()
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_sessions() -> usize {
    64
}
fn default_max_sessions_per_principal() -> usize {
    8
}

#[derive(Debug, thiserror::Error)]
#[error("MCP gate `{gate}`: {message}")]
pub struct ConfigError {
    pub gate: String,
    pub message: String,
}

/// Where the upstream MCP server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    Command(Vec<String>),
    Url(String),
}

/// The environment a stdio upstream starts with (nothing else of the gateway's reaches it:
/// the gateway holds Slack and webhook secrets an upstream must never see).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    /// Set literally.
    pub set: BTreeMap<String, String>,
    /// Passed from the gateway's environment by name, if set there (with [`BASE_ENV`]).
    pub pass: Vec<String>,
}

impl ChildEnv {
    /// The variables, read from the gateway's environment now; literal values win.
    pub fn resolve(&self) -> Vec<(String, std::ffi::OsString)> {
        let mut vars: BTreeMap<String, std::ffi::OsString> = BASE_ENV
            .iter()
            .map(|k| (*k).to_owned())
            .chain(self.pass.iter().cloned())
            .filter_map(|k| std::env::var_os(&k).map(|v| (k, v)))
            .collect();
        for (k, v) in &self.set {
            vars.insert(k.clone(), v.into());
        }
        vars.into_iter().collect()
    }
}

/// Which revision the gate speaks to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Auto,
    Pinned(&'static str),
}

/// A gate ready to run.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub name: String,
    pub listen: String,
    pub public_url: String,
    pub authorization_servers: Vec<String>,
    pub upstream: UpstreamTarget,
    pub upstream_env: ChildEnv,
    pub upstream_protocol: UpstreamProtocol,
    pub request_timeout: Duration,
    pub session_idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
    pub max_sessions_per_principal: usize,
}

impl McpGateSection {
    pub fn resolve(&self) -> Result<GateConfig, ConfigError> {
        let invalid = |message: String| ConfigError {
            gate: self.name.clone(),
            message,
        };
        // Tool ids are `<gate>/<tool>`, so a slash in the name would make them ambiguous.
        if self.name.trim().is_empty() || self.name.contains('/') {
            return Err(invalid(
                "`name` must be non-empty and contain no `/`".into(),
            ));
        }
        let upstream = match (&self.command, &self.url) {
            (Some(cmd), None) if !cmd.is_empty() && !cmd[0].is_empty() => {
                UpstreamTarget::Command(cmd.clone())
            }
            (Some(_), None) => return Err(invalid("`command` names no program".into())),
            (None, Some(url)) if url.starts_with("http://") => UpstreamTarget::Url(url.clone()),
            (None, Some(url)) => {
                return Err(invalid(format!(
                    "`url` must be an http:// URL (https upstreams are not supported yet): {url}"
                )));
            }
            _ => {
                return Err(invalid(
                    "set exactly one of `command` (stdio) or `url` (Streamable HTTP)".into(),
                ));
            }
        };
        let has_env = !self.env.is_empty() || !self.env_pass.is_empty();
        if has_env && matches!(upstream, UpstreamTarget::Url(_)) {
            return Err(invalid(
                "`env` and `env_pass` are for a `command` upstream only".into(),
            ));
        }
        if let Some(bad) = self
            .env
            .keys()
            .chain(self.env_pass.iter())
            .find(|k| k.is_empty() || k.contains(['=', '\0']))
        {
            return Err(invalid(format!(
                "environment variable name `{bad}` is empty or has `=` or NUL in it"
            )));
        }
        if let Some((k, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            return Err(invalid(format!("the value of `env.{k}` has a NUL in it")));
        }
        let upstream_protocol = match self.upstream_protocol.as_str() {
            "auto" => UpstreamProtocol::Auto,
            v => match crate::protocol::ALL_REVISIONS.iter().find(|r| **r == v) {
                Some(r) => UpstreamProtocol::Pinned(r),
                None => {
                    return Err(invalid(format!(
                        "upstream_protocol `{v}`: use auto, {}",
                        crate::protocol::ALL_REVISIONS.join(", ")
                    )));
                }
            },
        };
        let duration = |key: &str, text: &str| {
            countersign_core::parse_duration_ms(text)
                .map(Duration::from_millis)
                .map_err(|e| invalid(format!("{key}: {e}")))
        };
        if self.max_sessions == 0 || self.max_sessions_per_principal == 0 {
            return Err(invalid(
                "max_sessions and max_sessions_per_principal must be at least 1".into(),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes must be at least 1024".into()));
        }
        Ok(GateConfig {
            name: self.name.clone(),
            listen: self.listen.clone(),
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.listen))
                .trim_end_matches('/')
                .to_owned(),
            authorization_servers: self.authorization_servers.clone(),
            upstream,
            upstream_env: ChildEnv {
                set: self.env.clone(),
                pass: self.env_pass.clone(),
            },
            upstream_protocol,
            request_timeout: duration("request_timeout", &self.request_timeout)?,
            session_idle_timeout: duration("session_idle_timeout", &self.session_idle_timeout)?,
            max_message_bytes: self.max_message_bytes,
            max_sessions: self.max_sessions,
            max_sessions_per_principal: self.max_sessions_per_principal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> McpGateSection {
        toml_from(toml_text)
    }

    fn toml_from(text: &str) -> McpGateSection {
        serde_json::from_value(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_owned(),
                        serde_json::from_str::<serde_json::Value>(v.trim()).expect("json value"),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        )
        .expect("section")
    }

    #[test]
    fn exactly_one_upstream_and_a_clean_name() {
        let ok = section(
            "name = \"tools\"\nlisten = \"127.0.0.1:1\"\ncommand = [\"python3\", \"s.py\"]",
        );
        let config = ok.resolve().expect("valid");
        assert_eq!(
            config.upstream,
            UpstreamTarget::Command(vec!["python3".into(), "s.py".into()])
        );
        assert_eq!(config.public_url, "http://127.0.0.1:1");
        assert_eq!(config.request_timeout, Duration::from_secs(300));
        for bad in [
            "name = \"tools\"\nlisten = \"x\"",
            "name = \"tools\"\nlisten = \"x\"\ncommand = []",
            "name = \"tools\"\nlisten = \"x\"\ncommand = [\"a\"]\nurl = \"http://h/mcp\"",
            "name = \"a/b\"\nlisten = \"x\"\ncommand = [\"a\"]",
            "name = \"t\"\nlisten = \"x\"\nurl = \"ftp://h/mcp\"",
            "name = \"t\"\nlisten = \"x\"\nurl = \"http://h/mcp\"\nupstream_protocol = \"2024-11-05\"",
            "name = \"t\"\nlisten = \"x\"\nurl = \"http://h/mcp\"\nrequest_timeout = \"soon\"",
            "name = \"t\"\nlisten = \"x\"\nurl = \"http://h/mcp\"\nenv_pass = [\"HOME\"]",
            "name = \"t\"\nlisten = \"x\"\nurl = \"http://h/mcp\"\nmax_sessions = 0",
            "name = \"t\"\nlisten = \"x\"\ncommand = [\"a\"]\nenv_pass = [\"A=B\"]",
            "name = \"t\"\nlisten = \"x\"\ncommand = [\"a\"]\nenv = {\"\": \"x\"}",
        ] {
            assert!(section(bad).resolve().is_err(), "{bad}");
        }
    }
}
