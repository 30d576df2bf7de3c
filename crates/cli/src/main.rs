//! The `countersign` binary: the gateway (`serve`), the client commands (`exec`, `requests`,
//! `approve`, `deny`, `mcp-stdio`) and operator tools (`policy check`, `mcp accept`).

mod audit;
mod client;
mod config;
mod dev;
mod exec;
mod mcp;
mod report;
mod serve;
mod token;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "Human approval in front of privileged actions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. Without --config: a development gateway on http://127.0.0.1:8480 with
    /// SQLite under ./.countersign/, the example policies and printed development tokens.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask for approval, wait, then run CMD with its exit status passed through.
    Exec {
        #[command(flatten)]
        conn: Connection,
        /// Action kind, e.g. exec, deploy, db.export.
        #[arg(long)]
        action: String,
        /// Resource in Cedar syntax, e.g. 'Host::"build-1"'.
        #[arg(long)]
        resource: String,
        /// Why this should run; shown to reviewers.
        #[arg(long)]
        reason: Option<String>,
        /// The user this agent acts for (who then cannot approve it).
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List approval requests you may see.
    Requests {
        #[command(flatten)]
        conn: Connection,
        /// pending, approved, denied, expired, cancelled or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request.
    Approve {
        #[command(flatten)]
        conn: Connection,
        id: String,
        #[arg(long)]
        reason: String,
        /// Approve your own request where policy allows break-glass (`@break_glass("true")`):
        /// needs a reason of at least 20 characters; every reviewer is told, and the request is
        /// listed for review after the fact.
        #[arg(long)]
        break_glass: bool,
    },
    /// Deny a request.
    Deny {
        #[command(flatten)]
        conn: Connection,
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The tamper-evident audit log: keys, exports, offline verification, proofs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve an MCP gate over stdio, for agents that launch their MCP servers as processes:
    /// messages go to the gate's /mcp endpoint with your token.
    McpStdio {
        /// The [[gates.mcp]] name.
        #[arg(long)]
        gate: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The agent's bearer token.
        #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// MCP gate administration.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Principals' tokens: new ones, and the hashes the configuration keeps.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum McpCommand {
    /// Accept the changed definition of TOOL at MCP gate GATE (administrators): it becomes
    /// the pinned definition and its calls are no longer refused. FINGERPRINT is the changed
    /// definition you reviewed (`changed to …` in `mcp tools`); if the server changed the tool
    /// again since, nothing is accepted.
    Accept {
        #[command(flatten)]
        conn: Connection,
        gate: String,
        tool: String,
        fingerprint: String,
    },
    /// List the tool definitions the MCP gates pinned, and changed ones awaiting acceptance.
    Tools {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        gate: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random token and the [[principals]] section that admits it.
    New {
        /// agent or user.
        #[arg(long, default_value = "agent")]
        kind: String,
        /// The principal id (for PostgreSQL gates, the user name).
        #[arg(long)]
        id: String,
        /// Groups, comma separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// Read a token on standard input; print its token_sha256 and pg_scram_sha256.
    Hash,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the verifier key of the audit signing key.
    PublicKey {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write records and checkpoints as JSONL, for offline verification.
    Export {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// First record: a sequence number or a date (2026-11-01, or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// End (exclusive): a sequence number or a date [default: the latest checkpoint].
        #[arg(long)]
        to: Option<String>,
    },
    /// Verify an export offline (FILE --key KEY), or the live database (--store).
    Verify {
        /// The export to verify.
        #[arg(required_unless_present = "store", conflicts_with = "store")]
        file: Option<PathBuf>,
        /// The verifier key (its text, or @FILE); for --store, the gateway's own by default.
        #[arg(long)]
        key: Option<String>,
        /// Verify the gateway's database instead of an export.
        #[arg(long)]
        store: bool,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a self-contained inclusion proof of record SEQ.
    Prove {
        seq: u64,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write the proof here instead of to standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a proof from `audit prove` against a verifier key, offline.
    VerifyProof {
        file: PathBuf,
        #[arg(long)]
        key: String,
    },
    /// Write a report of a period's privileged actions, approvals, denials and grants, with
    /// charts and the commands to verify it (HTML, or one CSV row per approval request).
    Report {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Start: a date (2026-11-01, midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// End, exclusive: a date or an RFC 3339 time.
        #[arg(long)]
        to: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "html")]
        format: report::Format,
    },
    /// Replace the audit signing key of the running gateway (administrators).
    RotateKey {
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory against the schema; exits non-zero on any problem.
    Check { dir: PathBuf },
}

/// Where the gateway is and how to authenticate.
#[derive(Debug, Args)]
struct Connection {
    /// Gateway URL [default: http://127.0.0.1:8480, or [server] public_url of --config].
    #[arg(long, env = "COUNTERSIGN_URL")]
    server: Option<String>,
    /// Bearer token.
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the gateway URL from this config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Connection {
    fn client(self) -> Result<client::Client> {
        let url = match (self.server, self.config) {
            (Some(url), _) => url,
            (None, Some(path)) => config::server_url_of(&path)?,
            (None, None) => config::DEFAULT_URL.to_owned(),
        };
        client::Client::new(&url, self.token)
    }
}

fn main() -> ExitCode {
    // Before any HTTPS client exists: the build's one TLS provider (see countersign-notify).
    countersign_notify::install_crypto_provider();
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve { .. }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(command: Command) -> Result<i32> {
    match command {
        Command::Serve { config } => serve::run(config.as_deref()).await.map(|()| 0),
        Command::Exec {
            conn,
            action,
            resource,
            reason,
            on_behalf_of,
            command,
        } => {
            let client = conn.client()?;
            exec::run(
                &client,
                exec::ExecArgs {
                    action,
                    resource,
                    reason,
                    on_behalf_of,
                    command,
                },
            )
            .await
        }
        Command::Requests { conn, status, json } => {
            client::list_requests(&conn.client()?, &status, json).await?;
            Ok(0)
        }
        Command::Approve {
            conn,
            id,
            reason,
            break_glass,
        } => {
            client::vote(&conn.client()?, &id, "approve", &reason, break_glass).await?;
            Ok(0)
        }
        Command::Deny { conn, id, reason } => {
            client::vote(&conn.client()?, &id, "deny", &reason, false).await?;
            Ok(0)
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Audit { command } => run_audit(command).await,
        Command::McpStdio {
            gate,
            config,
            token,
        } => mcp::stdio(&gate, config.as_deref(), token)
            .await
            .map(|()| 0),
        Command::Mcp {
            command:
                McpCommand::Accept {
                    conn,
                    gate,
                    tool,
                    fingerprint,
                },
        } => mcp::accept(&conn.client()?, &gate, &tool, &fingerprint)
            .await
            .map(|()| 0),
        Command::Mcp {
            command: McpCommand::Tools { conn, gate },
        } => mcp::tools(&conn.client()?, gate.as_deref())
            .await
            .map(|()| 0),
        Command::Token {
            command: TokenCommand::New { kind, id, groups },
        } => token::new(&kind, &id, groups).map(|()| 0),
        Command::Token {
            command: TokenCommand::Hash,
        } => token::hash().map(|()| 0),
    }
}

async fn run_audit(command: AuditCommand) -> Result<i32> {
    use config::StateLocation;
    match command {
        AuditCommand::PublicKey { config } => {
            audit::public_key(&StateLocation::resolve(config.as_deref())?)?;
            Ok(0)
        }
        AuditCommand::Export {
            config,
            out,
            from,
            to,
        } => {
            let state = StateLocation::resolve(config.as_deref())?;
            audit::export(&state, &out, from.as_deref(), to.as_deref()).await?;
            Ok(0)
        }
        AuditCommand::Verify {
            file: Some(file),
            key,
            ..
        } => {
            let key = key.context("offline verification needs the verifier key: --key KEY")?;
            audit::verify_file(&file, vec![audit::read_key(&key)?])
        }
        AuditCommand::Verify {
            file: None,
            key,
            config,
            ..
        } => {
            let state = StateLocation::resolve(config.as_deref())?;
            let key = match key {
                Some(k) => audit::read_key(&k)?,
                // The first key: verification follows the rotations the log announces.
                None => countersign_engine::keyfile::original(&state.key_file)?.verifier(),
            };
            audit::verify_store(&state, vec![key]).await
        }
        AuditCommand::Prove { seq, config, out } => {
            let state = StateLocation::resolve(config.as_deref())?;
            audit::prove(&state, seq, out.as_ref()).await?;
            Ok(0)
        }
        AuditCommand::VerifyProof { file, key } => {
            audit::verify_proof(&file, &audit::read_key(&key)?)
        }
        AuditCommand::Report {
            config,
            from,
            to,
            out,
            format,
        } => {
            let state = StateLocation::resolve(config.as_deref())?;
            let args = report::ReportArgs {
                from,
                to,
                out,
                format,
                config,
            };
            report::run(&state, &args).await?;
            Ok(0)
        }
        AuditCommand::RotateKey { conn } => {
            audit::rotate_key(&conn.client()?).await?;
            Ok(0)
        }
    }
}

fn policy_check(dir: &Path) -> Result<i32> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    match countersign_policy::LoadedPolicies::load_dir(dir) {
        Ok(p) => {
            for w in p.warnings() {
                eprintln!("warning: {w}");
            }
            println!(
                "ok: {} policies in {} ({}), version {}",
                p.policy_count(),
                dir.display(),
                p.files().join(", "),
                p.version()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}
