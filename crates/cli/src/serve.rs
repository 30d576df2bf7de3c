//! `countersign serve`: run the gateway from a config file, or the development default.

use crate::config::{Config, DEFAULT_LISTEN, DEFAULT_URL, PrincipalSection, StateLocation, redact};
use crate::dev;
use anyhow::{Context, Result};
use countersign_engine::{AuditSigning, Engine, EngineConfig, keyfile};
use countersign_policy::LoadedPolicies;
use countersign_server::{PolicySource, ServerConfig};
use countersign_store::Store;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn run(config_path: Option<&Path>) -> Result<()> {
    let setup = match config_path {
        Some(path) => Setup::from_file(path)?,
        None => Setup::development()?,
    };
    let policies = (setup.policy_source)()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("policies refused")?;
    let state = &setup.state;
    let store = Store::open(&state.store_url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(&state.store_url)))?;
    let key = keyfile::load_or_create(&state.key_file, &state.origin)?;
    let mut audit = AuditSigning::new(state.origin.clone(), key, Some(state.key_file.clone()));
    audit.every_events = state.checkpoint_every_events;
    audit.every = state.checkpoint_every;
    let engine = Engine::start(
        store,
        policies,
        EngineConfig {
            public_url: setup.public_url.clone(),
            audit,
            journal: state.journal.clone(),
        },
    )
    .await
    .context("cannot start the engine")?;
    let listener = tokio::net::TcpListener::bind(&setup.listen)
        .await
        .with_context(|| format!("cannot listen on {}", setup.listen))?;
    let policy_source = setup.policy_source.clone();
    let principals = setup.principals()?;
    let slack = setup
        .slack
        .iter()
        .map(|c| {
            countersign_notify::slack::Slack::new(c.clone(), countersign_notify::Backoff::default())
                .map(Arc::new)
                .with_context(|| format!("Slack workspace {}", c.team_id))
        })
        .collect::<Result<Vec<_>>>()?;
    countersign_server::channels::start(
        &engine,
        &principals,
        &slack,
        setup.webhooks.clone(),
        countersign_notify::Backoff::default(),
    )
    .context("cannot start the reviewer channels")?;
    let router = countersign_server::router(
        engine.clone(),
        ServerConfig {
            principals,
            auditor_groups: setup.auditor_groups.clone(),
            admin_groups: setup.admin_groups.clone(),
            max_body_bytes: setup.max_body_bytes,
            policy_source: policy_source.clone(),
            slack,
        },
    );
    spawn_sighup_reload(engine.clone(), policy_source);
    start_pg_gates(&setup, &engine).await?;
    start_mcp_gates(&setup, &engine).await?;
    let policies = engine.policies();
    tracing::info!(
        listen = %setup.listen,
        store = %redact(&state.store_url),
        policy_version = %policies.version(),
        audit_key = %engine.verifier_key(),
        policies = policies.policy_count(),
        "countersign is serving"
    );
    if let Some(dev) = &setup.dev_principals {
        print_development_banner(&setup.public_url, dev);
    } else {
        eprintln!("countersign serving on {}", setup.public_url);
    }
    countersign_server::serve(listener, router, shutdown_signal())
        .await
        .context("server failed")?;
    // Sign whatever the last checkpoint does not cover yet, so nothing is left unsigned.
    engine
        .checkpoint()
        .await
        .context("cannot sign the final audit checkpoint")?;
    tracing::info!("countersign stopped");
    Ok(())
}

struct Setup {
    listen: String,
    public_url: String,
    state: StateLocation,
    principals: Vec<PrincipalSection>,
    auditor_groups: BTreeSet<String>,
    admin_groups: BTreeSet<String>,
    max_body_bytes: usize,
    policy_source: PolicySource,
    dev_principals: Option<Vec<dev::DevPrincipal>>,
    pg_gates: Vec<countersign_gate_pg::PgGateSection>,
    slack: Vec<countersign_notify::slack::SlackConfig>,
    webhooks: Vec<countersign_notify::webhook::Webhook>,
    mcp_gates: Vec<countersign_gate_mcp::McpGateSection>,
}

impl Setup {
    fn from_file(path: &Path) -> Result<Setup> {
        let config = Config::read(path)?;
        if config.principals.is_empty() {
            tracing::warn!("no [[principals]] configured: every API call will be refused");
        }
        if config.channels.teams.is_some() {
            tracing::warn!(
                "this version has no Microsoft Teams channel; [[channels.teams]] is ignored"
            );
        }
        let beside = path.parent().unwrap_or(Path::new("."));
        let slack = config
            .channels
            .slack
            .iter()
            .map(|s| s.resolve(beside, &config.principals))
            .collect::<Result<Vec<_>>>()?;
        let mut teams = BTreeSet::new();
        for s in &slack {
            if !teams.insert(s.team_id.as_str()) {
                anyhow::bail!(
                    "two [[channels.slack]] sections name workspace {}",
                    s.team_id
                );
            }
        }
        let webhooks = config
            .channels
            .webhook
            .iter()
            .map(|w| w.resolve(beside))
            .collect::<Result<Vec<_>>>()?;
        let policy_source: PolicySource = match config.policy.dir.clone() {
            Some(dir) => directory_source(dir),
            None => Arc::new(LoadedPolicies::examples),
        };
        Ok(Setup {
            state: StateLocation::of_config(&config, path)?,
            listen: config.server.listen,
            public_url: config.server.public_url,
            principals: config.principals,
            auditor_groups: config.server.auditor_groups,
            admin_groups: config.server.admin_groups,
            max_body_bytes: config.server.max_body_bytes,
            policy_source,
            dev_principals: None,
            pg_gates: config.gates.postgres,
            slack,
            webhooks,
            mcp_gates: config.gates.mcp,
        })
    }

    fn development() -> Result<Setup> {
        let dir = dev::dir();
        let dev_principals = dev::principals(&dir)?;
        let defaults = crate::config::ServerSection::default();
        Ok(Setup {
            listen: DEFAULT_LISTEN.into(),
            public_url: DEFAULT_URL.into(),
            state: StateLocation::development(),
            principals: dev_principals
                .iter()
                .map(dev::DevPrincipal::section)
                .collect(),
            auditor_groups: defaults.auditor_groups,
            admin_groups: defaults.admin_groups,
            max_body_bytes: defaults.max_body_bytes,
            policy_source: Arc::new(LoadedPolicies::examples),
            dev_principals: Some(dev_principals),
            pg_gates: Vec::new(),
            slack: Vec::new(),
            webhooks: Vec::new(),
            mcp_gates: Vec::new(),
        })
    }

    fn principals(&self) -> Result<Vec<countersign_server::ConfiguredPrincipal>> {
        self.principals
            .iter()
            .map(PrincipalSection::to_configured)
            .collect()
    }
}

/// Resolves, binds and starts every `[[gates.postgres]]`; any failure stops start-up, so a
/// gate that is configured is a gate that runs.
async fn start_pg_gates(setup: &Setup, engine: &Engine) -> Result<()> {
    if setup.pg_gates.is_empty() {
        return Ok(());
    }
    let logins = setup
        .principals
        .iter()
        .map(PrincipalSection::to_pg_login)
        .collect::<Result<Vec<_>>>()?;
    unique_names("PostgreSQL", setup.pg_gates.iter().map(|s| s.name.as_str()))?;
    for section in &setup.pg_gates {
        let config = section.resolve()?;
        let listen = config.listen.clone();
        let gate = countersign_gate_pg::Gate::new(config, engine.clone(), logins.clone());
        let listener = gate
            .bind()
            .await
            .with_context(|| format!("gate `{}`: cannot listen on {listen}", section.name))?;
        tracing::info!(gate = %section.name, %listen, "PostgreSQL gate is serving");
        tokio::spawn(gate.serve(listener));
    }
    Ok(())
}

/// Refuses two gates of one kind under one name: their resources would be the same ones.
fn unique_names<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            anyhow::bail!("two {kind} gates are named `{name}`");
        }
    }
    Ok(())
}

/// Resolves, binds and starts every `[[gates.mcp]]`, like the PostgreSQL gates.
async fn start_mcp_gates(setup: &Setup, engine: &Engine) -> Result<()> {
    if setup.mcp_gates.is_empty() {
        return Ok(());
    }
    let principals = setup.principals()?;
    unique_names("MCP", setup.mcp_gates.iter().map(|s| s.name.as_str()))?;
    for section in &setup.mcp_gates {
        let config = section.resolve()?;
        let listen = config.listen.clone();
        let gate = countersign_gate_mcp::Gate::new(config, engine.clone(), principals.clone());
        let listener = gate
            .bind()
            .await
            .with_context(|| format!("MCP gate `{}`: cannot listen on {listen}", section.name))?;
        tracing::info!(gate = %section.name, %listen, "MCP gate is serving at /mcp");
        let name = section.name.clone();
        tokio::spawn(async move {
            if let Err(e) = gate.serve(listener).await {
                tracing::error!(gate = %name, error = %e, "MCP gate stopped");
            }
        });
    }
    Ok(())
}

fn directory_source(dir: PathBuf) -> PolicySource {
    Arc::new(move || LoadedPolicies::load_dir(&dir))
}

fn print_development_banner(url: &str, principals: &[dev::DevPrincipal]) {
    eprintln!();
    eprintln!("countersign development gateway on {url}");
    eprintln!(
        "  state: ./{}/ (SQLite, audit signing key, development tokens)",
        dev::DIR
    );
    eprintln!("  policies: the embedded examples (examples/policies)");
    eprintln!();
    eprintln!("Development tokens (do not use in production):");
    for p in principals {
        eprintln!(
            "  {:<5} {:<20} groups={:<28} token={}",
            p.kind,
            p.id,
            p.groups.join(","),
            p.token
        );
    }
    if let Some(agent) = principals.iter().find(|p| p.kind == "agent") {
        eprintln!();
        eprintln!("Try it:");
        eprintln!(
            "  COUNTERSIGN_TOKEN={} countersign exec --action exec --resource 'Host::\"build-1\"' --reason 'smoke test' -- echo hello",
            agent.token
        );
        eprintln!(
            "  then approve with each reviewer token:  COUNTERSIGN_TOKEN=<reviewer token> countersign approve <ID> --reason ok"
        );
    }
    eprintln!();
}

#[cfg(unix)]
fn spawn_sighup_reload(engine: Engine, source: PolicySource) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload through POST /v1/policies/reload");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match countersign_server::reload_policies(&engine, &source).await {
                Ok(p) => tracing::info!(version = %p.version(), "policies reloaded on SIGHUP"),
                Err(e) => tracing::error!(error = %e, "policy reload on SIGHUP refused"),
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup_reload(_engine: Engine, _source: PolicySource) {}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
