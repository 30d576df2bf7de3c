//! The TOML configuration file, and the embedded development default used when there is none.

use anyhow::{Context, Result, bail};
use countersign_core::{Principal, PrincipalKind};
use countersign_server::ConfiguredPrincipal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";
pub const DEFAULT_URL: &str = "http://127.0.0.1:8480";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    pub store: StoreSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub principals: Vec<PrincipalSection>,
    /// Reviewer channels (Slack, webhooks); read by later versions.
    #[serde(default)]
    pub channels: Option<toml::Table>,
    #[serde(default)]
    pub gates: GatesSection,
}

/// `[gates]`: the protocol gates in front of production systems.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    #[serde(default)]
    pub postgres: Vec<countersign_gate_pg::PgGateSection>,
    /// MCP gates; read by later versions.
    #[serde(default)]
    pub mcp: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_url")]
    pub public_url: String,
    #[serde(default = "default_auditors")]
    pub auditor_groups: BTreeSet<String>,
    #[serde(default = "default_admins")]
    pub admin_groups: BTreeSet<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            public_url: default_url(),
            auditor_groups: default_auditors(),
            admin_groups: default_admins(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_url() -> String {
    DEFAULT_URL.into()
}
fn default_auditors() -> BTreeSet<String> {
    ["auditors".to_string()].into()
}
fn default_admins() -> BTreeSet<String> {
    ["admins".to_string()].into()
}
fn default_max_body() -> usize {
    1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// A directory of `*.cedar` and `*.cedarschema` files; the embedded examples when absent.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The Ed25519 key that signs checkpoints; created (mode 0600) on first start.
    /// Default: `audit.key` beside the config file.
    pub key_file: Option<PathBuf>,
    /// The log's origin line in checkpoints. Default: the host of `public_url` + `/countersign`.
    pub origin: Option<String>,
    /// Sign a checkpoint once this many events are unsigned (default 1000)…
    pub checkpoint_every_events: Option<u64>,
    /// …or once the oldest unsigned event is this old (default `1s`).
    pub checkpoint_every: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSection {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub token_sha256: String,
    /// SCRAM-SHA-256 verifier of the token, so the principal can log in through PostgreSQL
    /// gates without TLS (`countersign token hash` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_scram_sha256: Option<String>,
}

impl PrincipalSection {
    pub fn to_configured(&self) -> Result<ConfiguredPrincipal> {
        let kind = PrincipalKind::parse(&self.kind).with_context(|| {
            format!(
                "principal `{}`: kind must be \"agent\" or \"user\", not {:?}",
                self.id, self.kind
            )
        })?;
        if self.id.trim().is_empty() {
            bail!("a principal has an empty id");
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(self.token_sha256.trim(), &mut hash).with_context(|| {
            format!(
                "principal `{}`: token_sha256 must be 64 hex digits (the SHA-256 of the token)",
                self.id
            )
        })?;
        Ok(ConfiguredPrincipal {
            principal: Principal::new(kind, self.id.clone(), self.groups.iter().cloned()),
            token_sha256: hash,
        })
    }

    /// The principal as PostgreSQL gates know it.
    pub fn to_pg_login(&self) -> Result<countersign_gate_pg::PgLogin> {
        let scram = self
            .pg_scram_sha256
            .as_deref()
            .map(str::parse::<countersign_gate_pg::ScramVerifier>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("principal `{}`: pg_scram_sha256: {e}", self.id))?;
        Ok(countersign_gate_pg::PgLogin {
            credential: self.to_configured()?,
            scram,
        })
    }
}

impl Config {
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut seen_tokens = BTreeSet::new();
        let mut seen_ids = BTreeSet::new();
        for p in &config.principals {
            let configured = p.to_pg_login()?.credential;
            if !seen_tokens.insert(configured.token_sha256) {
                bail!(
                    "{}: two principals share one token (`{}`)",
                    path.display(),
                    p.id
                );
            }
            // One id is one person, whatever its case or kind: otherwise `User::"alice"` could
            // approve what `Agent::"Alice"` asked for.
            if !seen_ids.insert(p.id.trim().to_ascii_lowercase()) {
                bail!(
                    "{}: principal id `{}` is used twice (ids are compared without case, across agents and users)",
                    path.display(),
                    p.id
                );
            }
        }
        Ok(config)
    }
}

/// The server URL named by a config file, for client commands given `--config`.
pub fn server_url_of(path: &Path) -> Result<String> {
    Ok(Config::read(path)?.server.public_url)
}

/// Where a gateway keeps its state: what `serve` uses and what the operator commands
/// (`audit export`, `audit verify --store`, …) read.
#[derive(Debug, Clone)]
pub struct StateLocation {
    pub store_url: String,
    pub key_file: PathBuf,
    pub origin: String,
    pub checkpoint_every_events: u64,
    pub checkpoint_every: std::time::Duration,
}

impl StateLocation {
    /// From a config file, or the development default under `./.countersign/` without one.
    pub fn resolve(config: Option<&Path>) -> Result<StateLocation> {
        match config {
            Some(path) => StateLocation::of_config(&Config::read(path)?, path),
            None => Ok(StateLocation::development()),
        }
    }

    pub fn of_config(config: &Config, path: &Path) -> Result<StateLocation> {
        let beside = path.parent().unwrap_or(Path::new("."));
        let every = match &config.audit.checkpoint_every {
            Some(text) => {
                let ms = countersign_core::parse_duration_ms(text)
                    .map_err(|e| anyhow::anyhow!("[audit] checkpoint_every: {e}"))?;
                std::time::Duration::from_millis(ms)
            }
            None => std::time::Duration::from_secs(1),
        };
        let every_events = config.audit.checkpoint_every_events.unwrap_or(1000);
        if every_events == 0 {
            bail!("[audit] checkpoint_every_events must be at least 1");
        }
        Ok(StateLocation {
            store_url: config.store.url.clone(),
            key_file: config
                .audit
                .key_file
                .clone()
                .unwrap_or_else(|| beside.join("audit.key")),
            origin: match &config.audit.origin {
                Some(o) => o.clone(),
                None => origin_of(&config.server.public_url),
            },
            checkpoint_every_events: every_events,
            checkpoint_every: every,
        })
    }

    /// Opens the gateway's existing store for an operator command. Unlike `serve`, it never
    /// creates one: a wrong `--config` is an error, not a new empty database.
    pub async fn open_store(&self) -> Result<countersign_store::Store> {
        let url = &self.store_url;
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or(rest);
            if !path.is_empty() && !path.contains(":memory:") && !Path::new(path).exists() {
                bail!(
                    "there is no store at {path}: the gateway has not run with this configuration \
                     (check --config and [store] url)"
                );
            }
        }
        countersign_store::Store::open(url)
            .await
            .with_context(|| format!("cannot open the store at {}", redact(url)))
    }

    pub fn development() -> StateLocation {
        let dir = crate::dev::dir();
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        StateLocation {
            store_url: format!("sqlite://{}", dir.join("db.sqlite").display()),
            key_file: dir.join("audit.key"),
            origin: origin_of(DEFAULT_URL),
            checkpoint_every_events: 1000,
            checkpoint_every: std::time::Duration::from_secs(1),
        }
    }
}

/// Hides a password in a database URL before it is logged.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `host[:port]/countersign` from a URL: the default origin line of the audit log.
pub fn origin_of(public_url: &str) -> String {
    let rest = public_url.split_once("://").map_or(public_url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{host}/countersign")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x/y.sqlite"), "sqlite:///x/y.sqlite");
    }
}
