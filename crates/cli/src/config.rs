//! The TOML configuration file, and the embedded development default used when there is none.

use anyhow::{Context, Result, bail};
use countersign_core::{Principal, PrincipalKind};
use countersign_server::ConfiguredPrincipal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Reviewer channels: Slack workspaces and signed webhooks.
    #[serde(default)]
    pub channels: ChannelsSection,
    #[serde(default)]
    pub gates: GatesSection,
}

/// `[channels]`: where reviewers and requesters hear of requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsSection {
    #[serde(default)]
    pub slack: Vec<SlackSection>,
    #[serde(default)]
    pub webhook: Vec<WebhookSection>,
    /// Microsoft Teams; not part of this version.
    #[serde(default)]
    pub teams: Option<toml::Value>,
}

/// `[[channels.slack]]`: one Slack workspace. Secrets come from the environment or a file,
/// never from this file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    pub bot_token_env: Option<String>,
    pub bot_token_file: Option<PathBuf>,
    pub signing_secret_env: Option<String>,
    pub signing_secret_file: Option<PathBuf>,
    /// Clicks from any other workspace are refused.
    pub team_id: String,
    /// The default review channel.
    pub channel: String,
    /// Review channels per reviewer group.
    #[serde(default)]
    pub group_channels: BTreeMap<String, String>,
    /// Explicit Slack user id → principal id, e.g. `{ U0123 = "alice@example.com" }`; others
    /// are known by the e-mail address Slack reports.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Also send each eligible reviewer the review message directly.
    #[serde(default)]
    pub dm_reviewers: bool,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// `[[channels.webhook]]`: an endpoint that receives every request event, signed per
/// Standard Webhooks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
}

/// Reads a secret from exactly one of an environment variable or a file (relative to the
/// config file's directory), trimmed; `what` names it in errors.
fn secret(
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
    beside: &Path,
) -> Result<countersign_notify::Secret> {
    let value = match (env, file) {
        (Some(var), None) => std::env::var(var)
            .with_context(|| format!("{what}: environment variable {var} is not set"))?,
        (None, Some(path)) => {
            let path = beside.join(path);
            std::fs::read_to_string(&path)
                .with_context(|| format!("{what}: cannot read {}", path.display()))?
        }
        (Some(_), Some(_)) => bail!("{what}: give the _env or the _file form, not both"),
        (None, None) => bail!("{what}: missing (set the _env or the _file form)"),
    };
    let value = value.trim();
    if value.is_empty() {
        bail!("{what} is empty");
    }
    Ok(countersign_notify::Secret::new(value))
}

fn http_url(what: &str, url: &str) -> Result<()> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("{what} `{url}` must be an http:// or https:// URL");
    }
    Ok(())
}

impl SlackSection {
    /// The workspace's settings with its secrets read; `principals` are the configured ones,
    /// which every mapped user must name.
    pub fn resolve(
        &self,
        beside: &Path,
        principals: &[PrincipalSection],
    ) -> Result<countersign_notify::slack::SlackConfig> {
        let team = &self.team_id;
        http_url(
            &format!("[[channels.slack]] {team}: api_url"),
            &self.api_url,
        )?;
        if team.trim().is_empty() || self.channel.trim().is_empty() {
            bail!("[[channels.slack]]: team_id and channel must not be empty");
        }
        let bot_token = secret(
            &format!("[[channels.slack]] {team}: bot token"),
            self.bot_token_env.as_deref(),
            self.bot_token_file.as_deref(),
            beside,
        )?;
        if !bot_token.expose().starts_with("xoxb-") {
            bail!("[[channels.slack]] {team}: the bot token must be a bot token (xoxb-…)");
        }
        let signing_secret = secret(
            &format!("[[channels.slack]] {team}: signing secret"),
            self.signing_secret_env.as_deref(),
            self.signing_secret_file.as_deref(),
            beside,
        )?;
        for (slack_user, id) in &self.users {
            let known = principals
                .iter()
                .any(|p| p.kind == "user" && countersign_core::same_person(&p.id, id));
            if !known {
                bail!(
                    "[[channels.slack]] {team}: users maps {slack_user} to `{id}`, which is not a configured user"
                );
            }
        }
        Ok(countersign_notify::slack::SlackConfig {
            api_url: self.api_url.clone(),
            bot_token,
            signing_secret,
            team_id: team.clone(),
            channel: self.channel.clone(),
            group_channels: self.group_channels.clone(),
            users: self.users.clone(),
            dm_reviewers: self.dm_reviewers,
        })
    }
}

impl WebhookSection {
    pub fn resolve(&self, beside: &Path) -> Result<countersign_notify::webhook::Webhook> {
        let what = format!("[[channels.webhook]] {}", self.url);
        http_url(&what, &self.url)?;
        let text = secret(
            &format!("{what}: secret"),
            self.secret_env.as_deref(),
            self.secret_file.as_deref(),
            beside,
        )?;
        let secret = countersign_notify::webhook::WebhookSecret::parse(text.expose())
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(countersign_notify::webhook::Webhook {
            url: self.url.clone(),
            secret,
        })
    }
}

/// `[gates]`: the protocol gates in front of production systems.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    #[serde(default)]
    pub postgres: Vec<countersign_gate_pg::PgGateSection>,
    #[serde(default)]
    pub mcp: Vec<countersign_gate_mcp::McpGateSection>,
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
    /// A directory for the audit journal: decisions of reads are journaled there and acted
    /// on at once, reaching the store within `journal_commit_every`. Without it they wait for
    /// the store's commit.
    pub journal: Option<PathBuf>,
    /// How often the journal is synced to disk (default `10ms`, at most `1s`): what a crash of
    /// the whole machine can lose, against the cost of a sync.
    pub journal_sync_every: Option<String>,
    /// Longest a journaled record waits for its commit to the store (default `200ms`, at most
    /// `1s`): how far the stored log lags, against the cost of a commit.
    pub journal_commit_every: Option<String>,
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
    pub journal: Option<countersign_engine::JournalConfig>,
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
        let journal = journal_config(&config.audit)?;
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
            journal,
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
            journal: Some(countersign_engine::JournalConfig::new(
                dir.join("audit-journal"),
            )),
        }
    }
}

/// The `[audit]` journal settings.
fn journal_config(audit: &AuditSection) -> Result<Option<countersign_engine::JournalConfig>> {
    use countersign_engine::JournalConfig;
    let Some(dir) = &audit.journal else {
        for (name, value) in [
            ("journal_sync_every", &audit.journal_sync_every),
            ("journal_commit_every", &audit.journal_commit_every),
        ] {
            if value.is_some() {
                bail!("[audit] {name} needs [audit] journal");
            }
        }
        return Ok(None);
    };
    let mut journal = JournalConfig::new(dir);
    for (name, value, setting) in [
        (
            "journal_sync_every",
            &audit.journal_sync_every,
            &mut journal.sync_every,
        ),
        (
            "journal_commit_every",
            &audit.journal_commit_every,
            &mut journal.commit_every,
        ),
    ] {
        let Some(text) = value else { continue };
        let ms = countersign_core::parse_duration_ms(text)
            .map_err(|e| anyhow::anyhow!("[audit] {name}: {e}"))?;
        let every = std::time::Duration::from_millis(ms);
        if every > JournalConfig::MAX_EVERY {
            bail!(
                "[audit] {name} must be between 1ms and {}ms, not {text}",
                JournalConfig::MAX_EVERY.as_millis()
            );
        }
        *setting = every;
    }
    Ok(Some(journal))
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
