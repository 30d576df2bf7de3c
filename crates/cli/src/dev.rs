//! The no-config development default: SQLite under `./.countersign/`, the embedded example
//! policies, and development tokens for one agent and two reviewers, kept across restarts in
//! `./.countersign/dev-tokens.toml` (readable by the owner only).

use crate::config::PrincipalSection;
use crate::token::new_token;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const DIR: &str = ".countersign";

/// A development principal with its clear-text token (printed once at start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevPrincipal {
    pub kind: String,
    pub id: String,
    pub groups: Vec<String>,
    pub token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DevTokens {
    principals: Vec<DevPrincipal>,
}

fn defaults() -> Vec<DevPrincipal> {
    vec![
        DevPrincipal {
            kind: "agent".into(),
            id: "demo-agent".into(),
            groups: vec!["agents".into()],
            token: new_token("agent"),
        },
        DevPrincipal {
            kind: "user".into(),
            id: "alice@example.com".into(),
            groups: vec!["reviewers".into(), "admins".into(), "auditors".into()],
            token: new_token("user"),
        },
        DevPrincipal {
            kind: "user".into(),
            id: "bob@example.com".into(),
            groups: vec!["reviewers".into()],
            token: new_token("user"),
        },
    ]
}

/// The state directory of the development default.
pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// Loads the development principals, creating them on first start.
pub fn principals(dir: &Path) -> Result<Vec<DevPrincipal>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("dev-tokens.toml");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let tokens: DevTokens = toml::from_str(&text)
            .with_context(|| format!("{} is malformed; delete it to start over", path.display()))?;
        return Ok(tokens.principals);
    }
    let principals = defaults();
    let text = toml::to_string(&DevTokens {
        principals: principals.clone(),
    })?;
    write_private(&path, &text)?;
    Ok(principals)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

impl DevPrincipal {
    pub fn section(&self) -> PrincipalSection {
        PrincipalSection {
            kind: self.kind.clone(),
            id: self.id.clone(),
            groups: self.groups.clone(),
            token_sha256: hex::encode(Sha256::digest(self.token.as_bytes())),
            pg_scram_sha256: None,
        }
    }
}
