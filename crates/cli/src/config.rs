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
    /// Protocol gates (PostgreSQL, MCP); read by later versions.
    #[serde(default)]
    pub gates: Option<toml::Table>,
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
    /// The Ed25519 audit signing key (used by signed checkpoints).
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSection {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub token_sha256: String,
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
            let configured = p.to_configured()?;
            if !seen_tokens.insert(configured.token_sha256) {
                bail!(
                    "{}: two principals share one token (`{}`)",
                    path.display(),
                    p.id
                );
            }
            if !seen_ids.insert((p.kind.clone(), p.id.clone())) {
                bail!(
                    "{}: principal {} `{}` is listed twice",
                    path.display(),
                    p.kind,
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
