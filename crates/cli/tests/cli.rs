//! End-to-end tests of the `countersign` binary, driven the way a user drives it: a real
//! gateway process per test (its own temporary directory and port), and the client commands
//! run as separate processes against it.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;
use support::{
    Config, Gateway, Proc, STEP, Tokens, bin, cli, cli_ok, free_port, http, poll, sha256_hex,
    temp_dir, try_http,
};

const TOKENS: Tokens = Tokens {
    agent: "test-agent-token-0123456789",
    alice: "test-alice-token-0123456789",
    bob: "test-bob-token-0123456789",
};
const AGENT_TOKEN: &str = TOKENS.agent;
const BOB_TOKEN: &str = TOKENS.bob;
/// A well-formed tool fingerprint that names no definition.
const ZERO_FINGERPRINT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A gateway from a config file in `dir`: our three principals (alice a reviewer and
/// administrator), SQLite in that directory, and `policy_dir` (else the embedded example
/// policies).
fn configured(dir: &Path, policy_dir: Option<&Path>) -> Gateway {
    let sections = policy_dir
        .map(|d| format!("[policy]\ndir = {:?}\n", d.display().to_string()))
        .unwrap_or_default();
    Gateway::configured(
        dir,
        &Config {
            tokens: &TOKENS,
            alice_groups: &["reviewers", "admins"],
            sections,
        },
    )
}

/// The policy set the gateway has in force, from `GET /v1/policies`.
fn policies(port: u16) -> Value {
    let (status, body) = http(port, "GET", "/v1/policies", AGENT_TOKEN, None);
    assert_eq!(status, 200, "GET /v1/policies: {body}");
    body
}

/// Starts `countersign exec` as the agent in the background.
fn exec_in_background(cwd: &Path, server: Option<&str>, args: &[&str]) -> Proc {
    let mut command = bin();
    command
        .current_dir(cwd)
        .env("COUNTERSIGN_TOKEN", AGENT_TOKEN)
        .arg("exec")
        .args(args);
    if let Some(server) = server {
        command.env("COUNTERSIGN_URL", server);
    }
    Proc::spawn(format!("countersign exec {}", args.join(" ")), &mut command)
}

/// Waits until `reviewer` sees a pending request from `agent_id` (while `exec` still waits)
/// and answers its id.
fn pending_request_id(
    cwd: &Path,
    server: Option<&str>,
    reviewer: &str,
    agent_id: &str,
    exec: &mut Proc,
) -> String {
    let mut args = vec!["requests", "--json"];
    if let Some(server) = server {
        args.extend(["--server", server]);
    }
    poll("the pending request to be listed", STEP, || {
        if let Some(code) = exec.exited() {
            let out = exec.finished(code);
            panic!("exec ended before approval\n{}", out.describe());
        }
        let out = cli_ok(cwd, Some(reviewer), &args);
        let listed: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("requests --json is not JSON ({e}): {}", out.stdout));
        listed["requests"]
            .as_array()
            .expect("requests array")
            .iter()
            .find(|r| r["principal"]["id"] == agent_id && r["status"] == "pending")
            .map(|r| r["id"].as_str().expect("request id").to_owned())
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The development tokens the no-config banner prints, as `(kind, id, token)`.
fn banner_tokens(stderr: &str) -> Vec<(String, String, String)> {
    stderr
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (first, last) = (words.first()?, words.last()?);
            let token = last.strip_prefix("token=")?;
            (matches!(*first, "agent" | "user") && words.len() >= 3)
                .then(|| (first.to_string(), words[1].to_string(), token.to_string()))
        })
        .collect()
}

fn token_of(tokens: &[(String, String, String)], id: &str) -> String {
    tokens
        .iter()
        .find(|(_, i, _)| i == id)
        .map(|(_, _, t)| t.clone())
        .unwrap_or_else(|| panic!("no development token for {id} in {tokens:?}"))
}

/// Starts the no-config gateway (the only test on the fixed port 8480) and reads its tokens.
fn start_quick_start(cwd: &Path) -> (Gateway, Vec<(String, String, String)>) {
    const PORT: u16 = 8480;
    if let Err(e) = TcpListener::bind(("127.0.0.1", PORT)) {
        panic!("port {PORT} is in use ({e}); the quick-start test needs it free");
    }
    let gateway = Gateway::try_start(cwd, &[], PORT)
        .unwrap_or_else(|out| panic!("`countersign serve` exited\n{}", out.describe()));
    // Ready implies the banner was written; give the reader thread a moment to see it.
    let tokens = poll("the development token banner", STEP, || {
        let tokens = banner_tokens(&gateway.proc.stderr());
        (tokens.len() == 3).then_some(tokens)
    });
    (gateway, tokens)
}

#[test]
fn quick_start_without_config() {
    let cwd = temp_dir();
    let cwd = cwd.path();
    let (gateway, tokens) = start_quick_start(cwd);
    let kinds: Vec<(&str, &str)> = tokens
        .iter()
        .map(|(k, i, _)| (k.as_str(), i.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("agent", "demo-agent"),
            ("user", "alice@example.com"),
            ("user", "bob@example.com")
        ]
    );
    let agent = token_of(&tokens, "demo-agent");
    let alice = token_of(&tokens, "alice@example.com");
    let bob = token_of(&tokens, "bob@example.com");

    let token_file = cwd.join(".countersign/dev-tokens.toml");
    let meta = std::fs::metadata(&token_file).expect(".countersign/dev-tokens.toml is missing");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "dev-tokens.toml must be readable by its owner only"
        );
    }

    // The agent asks; two reviewers approve; the command runs with its exit status.
    let mut command = bin();
    command
        .current_dir(cwd)
        .env("COUNTERSIGN_TOKEN", &agent)
        .args([
            "exec",
            "--action",
            "exec",
            "--resource",
            r#"Host::"build-1""#,
            "--reason",
            "smoke",
            "--",
            "sh",
            "-c",
            "echo ran; exit 7",
        ]);
    let mut exec = Proc::spawn("countersign exec (quick start)", &mut command);
    let id = pending_request_id(cwd, None, &alice, "demo-agent", &mut exec);

    let own = cli(cwd, Some(&agent), &["approve", &id, "--reason", "ok"]);
    assert_ne!(
        own.code,
        Some(0),
        "self-approval succeeded\n{}",
        own.describe()
    );
    assert!(
        own.stderr.contains("self_approval"),
        "self-approval refusal does not say why\n{}",
        own.describe()
    );

    cli_ok(cwd, Some(&alice), &["approve", &id, "--reason", "ok"]);
    assert!(
        exec.exited().is_none(),
        "exec ran after one approval of two\n{}",
        exec.stderr()
    );
    let second = cli_ok(cwd, Some(&bob), &["approve", &id, "--reason", "ok"]);
    assert!(
        second.stdout.contains("request is approved"),
        "{}",
        second.describe()
    );

    let out = exec.wait(STEP);
    assert_eq!(
        out.code,
        Some(7),
        "exit status not passed through\n{}",
        out.describe()
    );
    assert!(out.stdout.contains("ran"), "{}", out.describe());

    // A restart in the same directory reuses the tokens and remembers the request.
    drop(gateway);
    let (gateway, again) = start_quick_start(cwd);
    assert_eq!(
        again, tokens,
        "restart printed different development tokens"
    );
    let approved = cli_ok(
        cwd,
        Some(&alice),
        &["requests", "--status", "approved", "--json"],
    );
    assert!(approved.stdout.contains(&id), "{}", approved.describe());
    drop(gateway);
}

#[test]
fn denied_request_does_not_run() {
    let dir = temp_dir();
    let dir = dir.path();
    let gateway = configured(dir, None);
    let url = gateway.url();
    let marker = dir.join("ran.marker");
    let script = format!("touch '{}'", marker.display());
    let mut exec = exec_in_background(
        dir,
        Some(&url),
        &[
            "--action",
            "exec",
            "--resource",
            r#"Host::"build-1""#,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let id = pending_request_id(dir, Some(&url), BOB_TOKEN, "ci-agent", &mut exec);
    let config = dir.join("countersign.toml");
    let config = config.to_str().expect("utf-8");
    // Client commands find the gateway through --config as well.
    let vote = cli_ok(
        dir,
        Some(BOB_TOKEN),
        &["deny", &id, "--reason", "not today", "--config", config],
    );
    assert!(
        vote.stdout.contains("request is denied"),
        "{}",
        vote.describe()
    );

    let out = exec.wait(STEP);
    assert_eq!(
        out.code,
        Some(3),
        "a denied exec must exit 3\n{}",
        out.describe()
    );
    assert!(out.stderr.contains("denied"), "{}", out.describe());
    assert!(
        out.stderr.contains("bob@example.com: not today"),
        "the reviewer and reason are not shown\n{}",
        out.describe()
    );
    assert!(!marker.exists(), "the denied command ran");
}

#[test]
fn policy_check() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let examples = examples.to_str().expect("utf-8");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = cli_ok(here, None, &["policy", "check", examples]);
    assert!(out.stdout.starts_with("ok:"), "{}", out.describe());

    let dir = temp_dir();
    let broken = dir.path().join("broken.cedar");
    std::fs::write(
        &broken,
        "// a policy with a syntax error\n@id(\"x\")\npermit (principal, action, resource)\nwhen { resource.classification == };\n",
    )
    .expect("write policy");
    let out = cli(
        here,
        None,
        &["policy", "check", dir.path().to_str().expect("utf-8")],
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("broken.cedar:4"),
        "the error must name the file and line\n{}",
        out.describe()
    );

    let missing = dir.path().join("no-such-dir");
    let out = cli(
        here,
        None,
        &["policy", "check", missing.to_str().expect("utf-8")],
    );
    assert!(
        !matches!(out.code, Some(0) | None),
        "a missing directory must fail\n{}",
        out.describe()
    );
    assert!(out.stderr.contains("no-such-dir"), "{}", out.describe());
}

#[test]
fn operator_commands_never_create_a_store() {
    let dir = temp_dir();
    let config = dir.path().join("countersign.toml");
    let db = dir.path().join("missing.sqlite");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://{}\"\n", db.display()),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8");
    let out_file = dir.path().join("x.jsonl");
    for args in [
        vec![
            "audit",
            "export",
            "--config",
            config,
            "--out",
            out_file.to_str().expect("utf-8"),
        ],
        vec!["audit", "prove", "0", "--config", config],
    ] {
        let out = cli(dir.path(), None, &args);
        assert_eq!(out.code, Some(2), "{args:?}\n{}", out.describe());
        assert!(
            out.stderr.contains("no store"),
            "{args:?}\n{}",
            out.describe()
        );
    }
    assert!(
        !db.exists(),
        "a wrong --config must not leave an empty database behind"
    );
    assert!(!out_file.exists());
}

#[test]
fn config_errors_stop_serve() {
    let cases = [
        (
            "malformed token_sha256",
            "token_sha256 = \"not-hex\"",
            "token_sha256",
        ),
        ("unknown key", "colour = \"blue\"", "colour"),
        (
            "unknown kind",
            "\n[[principals]]\nkind = \"robot\"\nid = \"r2\"\ntoken_sha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"",
            "kind must be",
        ),
        (
            "one id twice, other case and kind",
            "\n[[principals]]\nkind = \"user\"\nid = \"CI-Agent\"\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
            "used twice",
        ),
        (
            "no checkpoints",
            "\n[audit]\ncheckpoint_every_events = 0",
            "checkpoint_every_events",
        ),
        (
            "bad interval",
            "\n[audit]\ncheckpoint_every = \"soon\"",
            "checkpoint_every",
        ),
        (
            "journal commits too rarely",
            "\n[audit]\njournal = \"journal\"\njournal_commit_every = \"5s\"",
            "journal_commit_every must be between 1ms and 1000ms",
        ),
        (
            "journal commit interval that is no duration",
            "\n[audit]\njournal = \"journal\"\njournal_commit_every = \"soon\"",
            "journal_commit_every",
        ),
        (
            "journal that never waits",
            "\n[audit]\njournal = \"journal\"\njournal_commit_every = \"0ms\"",
            "journal_commit_every: duration `0ms` is zero",
        ),
        (
            "journal commit interval without a journal",
            "\n[audit]\njournal_commit_every = \"20ms\"",
            "journal_commit_every needs [audit] journal",
        ),
        (
            "journal synced too rarely",
            "\n[audit]\njournal = \"journal\"\njournal_sync_every = \"2s\"",
            "journal_sync_every must be between 1ms and 1000ms",
        ),
        (
            "journal sync interval that is no duration",
            "\n[audit]\njournal = \"journal\"\njournal_sync_every = \"often\"",
            "journal_sync_every",
        ),
        (
            "journal sync interval without a journal",
            "\n[audit]\njournal_sync_every = \"5ms\"",
            "journal_sync_every needs [audit] journal",
        ),
        (
            "two PostgreSQL gates under one name",
            &"\n[[gates.postgres]]\nname = \"prod\"\nlisten = \"127.0.0.1:0\"\nupstream = \"postgres://app@127.0.0.1/app\"".repeat(2),
            "two PostgreSQL gates are named `prod`",
        ),
        (
            "two MCP gates under one name",
            &"\n[[gates.mcp]]\nname = \"tools\"\nlisten = \"127.0.0.1:0\"\ncommand = [\"true\"]".repeat(2),
            "two MCP gates are named `tools`",
        ),
    ];
    for (case, line, expected) in cases {
        let dir = temp_dir();
        let port = free_port();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
             [store]\nurl = \"sqlite://{db}\"\n\n\
             [[principals]]\nkind = \"agent\"\nid = \"ci-agent\"\n{token}{line}\n",
            db = dir.path().join("db.sqlite").display(),
            token = if line.starts_with("token_sha256") {
                String::new()
            } else {
                format!("token_sha256 = \"{}\"\n", sha256_hex(AGENT_TOKEN))
            },
        );
        let config = dir.path().join("countersign.toml");
        std::fs::write(&config, text).expect("write config");
        let mut command = bin();
        command.current_dir(dir.path()).args([
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
        ]);
        let out = Proc::spawn(format!("countersign serve ({case})"), &mut command)
            .wait(Duration::from_secs(10));
        assert!(
            !matches!(out.code, Some(0) | None),
            "{case}: serve must fail\n{}",
            out.describe()
        );
        assert!(
            out.stderr.contains(expected),
            "{case}: the error must name `{expected}`\n{}",
            out.describe()
        );
    }
}

#[test]
fn exec_refusals() {
    let dir = temp_dir();
    let dir = dir.path();
    let gateway = configured(dir, None);
    let url = gateway.url();
    let marker = dir.join("ran.marker");
    let marker = marker.to_str().expect("utf-8");
    let exec = |token: Option<&str>, action: &str, resource: &str| {
        cli(
            dir,
            token,
            &[
                "exec",
                "--server",
                &url,
                "--action",
                action,
                "--resource",
                resource,
                "--",
                "touch",
                marker,
            ],
        )
    };

    let out = exec(Some(AGENT_TOKEN), "http.request", r#"Endpoint::"x""#);
    assert_eq!(
        out.code,
        Some(3),
        "default deny must exit 3\n{}",
        out.describe()
    );
    assert!(out.stderr.contains("denied"), "{}", out.describe());

    let out = exec(Some(AGENT_TOKEN), "no.such.action", r#"Host::"build-1""#);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("unknown_action"), "{}", out.describe());

    let out = exec(None, "exec", r#"Host::"build-1""#);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("token"), "{}", out.describe());

    assert!(!Path::new(marker).exists(), "a refused command ran");
}

#[test]
fn sighup_reloads_policies() {
    let dir = temp_dir();
    let dir = dir.path();
    let policy_dir = dir.join("policies");
    std::fs::create_dir(&policy_dir).expect("policy dir");
    let first = "@id(\"exec-needs-review\")\n@approval(\"reviewers\")\n\
                 permit (principal in Group::\"agents\", action == Action::\"exec\", resource is Host);\n";
    std::fs::write(policy_dir.join("main.cedar"), first).expect("write policy");
    let gateway = configured(dir, Some(&policy_dir));
    let hup = || gateway.proc.signal("HUP");

    let v1 = policies(gateway.port);
    assert_eq!(v1["policy_ids"], serde_json::json!(["exec-needs-review"]));
    let v1 = v1["version"].as_str().expect("version").to_owned();

    let second = format!(
        "{first}\n@id(\"agents-read\")\npermit (principal in Group::\"agents\", action == Action::\"db.read\", resource);\n"
    );
    std::fs::write(policy_dir.join("main.cedar"), second).expect("write policy");
    hup();
    let v2 = poll("the reloaded policy version", STEP, || {
        let p = policies(gateway.port);
        (p["version"] != v1.as_str()).then_some(p)
    });
    assert_eq!(v2["policy_count"], 2, "{v2}");
    let v2 = v2["version"].as_str().expect("version").to_owned();

    std::fs::write(
        policy_dir.join("broken.cedar"),
        "permit (principal, action, resource\n",
    )
    .expect("write policy");
    hup();
    poll("the refused reload to be logged", STEP, || {
        gateway
            .proc
            .stderr()
            .contains("reload on SIGHUP refused")
            .then_some(())
    });
    assert_eq!(
        policies(gateway.port)["version"],
        v2.as_str(),
        "a broken policy set replaced the working one"
    );
    assert!(
        matches!(
            try_http(gateway.port, "GET", "/readyz", None, None),
            Some((200, _))
        ),
        "the gateway stopped answering after a refused reload"
    );
}

#[test]
fn token_commands_print_what_the_configuration_stores() {
    let dir = temp_dir();
    let out = cli(
        dir.path(),
        None,
        &[
            "token",
            "new",
            "--id",
            "etl-nightly",
            "--groups",
            "pipelines,etl",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let (token, block) = out.stdout.split_once('\n').unwrap();
    assert!(
        token.starts_with("cs_agent_") && token.len() > 60,
        "{token}"
    );
    let config: toml::Table = toml::from_str(block).unwrap();
    let section = &config["principals"].as_array().unwrap()[0];
    assert_eq!(section["id"].as_str(), Some("etl-nightly"));
    assert_eq!(section["kind"].as_str(), Some("agent"));
    assert_eq!(section["groups"].as_array().unwrap().len(), 2);
    let sha = sha256_hex(token);
    assert_eq!(section["token_sha256"].as_str(), Some(sha.as_str()));
    // The verifier is derived from this very token.
    let verifier: countersign_gate_pg::ScramVerifier = section["pg_scram_sha256"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let again = countersign_gate_pg::ScramVerifier::from_password(
        token,
        verifier.salt(),
        verifier.iterations(),
    )
    .unwrap();
    assert_eq!(verifier, again);

    // `token hash` reads the token on stdin and prints the same hash.
    let mut child = bin()
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(printed["token_sha256"].as_str(), Some(sha.as_str()));
    let other: countersign_gate_pg::ScramVerifier = printed["pg_scram_sha256"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        countersign_gate_pg::ScramVerifier::from_password(token, other.salt(), other.iterations())
            .unwrap(),
        other
    );

    // Nothing on stdin, or a kind that does not exist, is refused.
    let out = bin()
        .args(["token", "hash"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));
    let out = cli(
        dir.path(),
        None,
        &["token", "new", "--kind", "robot", "--id", "x"],
    );
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("kind must be"), "{}", out.describe());
}

/// `serve` starts every `[[gates.mcp]]`: the gate answers on its own listener, asks for a
/// token the way the MCP authorization specification says, and the `mcp` commands reach the
/// API's tool pins.
#[test]
fn serve_starts_mcp_gates_and_the_mcp_commands_reach_the_api() {
    let dir = temp_dir();
    let mcp_port = free_port();
    let sections = format!(
        "[[gates.mcp]]\nname = \"tools\"\nlisten = \"127.0.0.1:{mcp_port}\"\ncommand = [\"cat\"]\n"
    );
    let gateway = Gateway::configured(
        dir.path(),
        &Config {
            tokens: &TOKENS,
            alice_groups: &["reviewers", "admins"],
            sections,
        },
    );
    let (status, body) = poll("the MCP gate's metadata", STEP, || {
        try_http(
            mcp_port,
            "GET",
            "/.well-known/oauth-protected-resource",
            None,
            None,
        )
    });
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["resource"], format!("http://127.0.0.1:{mcp_port}/mcp"));
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let (status, _) = try_http(mcp_port, "POST", "/mcp", None, Some(&init)).unwrap();
    assert_eq!(status, 401);

    let config = dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    // A reviewer is not an administrator; an administrator cannot accept a tool never seen.
    for (token, why) in [
        (BOB_TOKEN, "administrators"),
        (TOKENS.alice, "never seen a tool named `rm`"),
    ] {
        let refused = cli(
            dir.path(),
            Some(token),
            &[
                "mcp",
                "accept",
                "tools",
                "rm",
                ZERO_FINGERPRINT,
                "--config",
                config,
            ],
        );
        assert_ne!(refused.code, Some(0));
        assert!(refused.stderr.contains(why), "{}", refused.describe());
    }
    cli_ok(
        dir.path(),
        Some(TOKENS.alice),
        &["mcp", "tools", "--config", config],
    );
    let no_gate = cli(
        dir.path(),
        Some(AGENT_TOKEN),
        &["mcp-stdio", "--gate", "nope", "--config", config],
    );
    assert_ne!(no_gate.code, Some(0));
    assert!(
        no_gate.stderr.contains("no [[gates.mcp]] named `nope`"),
        "{}",
        no_gate.describe()
    );
    drop(gateway);
}
