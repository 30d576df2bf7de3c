//! `countersign audit report`: a gateway's state is built in-process (a SQLite store, an engine
//! with a key file, real attempts, votes, expiries, a revocation, a rejected policy reload and a
//! key rotation), then the binary reports on it, and the report's own verification commands are
//! run.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use countersign_core::{
    Action, Attempt, Classification, Decision, Principal, PrincipalKind, Resource,
};
use countersign_engine::{AuditSigning, CheckOutcome, Engine, EngineConfig, keyfile};
use countersign_policy::LoadedPolicies;
use countersign_store::Store;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use support::{cli, cli_ok};

const ORIGIN: &str = "report.test/countersign";
/// The hostile payload: if it is not escaped, the report runs it.
const HOSTILE: &str = "COPY (SELECT '<script>alert(1)</script>' FROM users) TO STDOUT";

const POLICIES: &str = r#"
@id("agents-read")
permit (principal in Group::"agents", action == Action::"db.read", resource);

@id("exports-need-review")
@approval("reviewers")
@timeout("2s")
permit (principal in Group::"agents", action == Action::"db.export", resource);

@id("deploys-need-review")
@approval("reviewers")
@grant("1h")
permit (principal in Group::"agents", action == Action::"deploy", resource);

@id("no-destroying-restricted-data")
forbid (principal, action == Action::"db.destructive", resource)
when { resource has classification && resource.classification == "restricted" };
"#;

/// What the scenario produced.
struct Scenario {
    dir: PathBuf,
    config: PathBuf,
    approved: String,
    denied: String,
    expired: String,
    cancelled: String,
    revoked: String,
    late: String,
    /// Between the creation of `late` and its approval.
    mid: String,
}

fn rfc3339_ms(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn date(t: SystemTime) -> String {
    rfc3339_ms(t)[..10].to_owned()
}

/// Built once for every test of this file (the expiry takes a couple of seconds).
fn scenario() -> &'static Scenario {
    static SCENARIO: OnceLock<Scenario> = OnceLock::new();
    SCENARIO.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(build())
    })
}

fn request_id(outcome: CheckOutcome) -> String {
    match outcome {
        CheckOutcome::Pending { request, .. } => request.id.clone(),
        other => panic!("expected a pending request, got {other:?}"),
    }
}

async fn build() -> Scenario {
    // Under the target directory, kept after the run for inspection.
    let dir = tempfile::Builder::new()
        .prefix("report-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("policies.cedar"), POLICIES).unwrap();
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("bad.cedar"),
        "permit (principal, action, resource",
    )
    .unwrap();
    let db = dir.join("db.sqlite");
    let key_file = dir.join("audit.key");
    let config = dir.join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"http://127.0.0.1:9\"\n\n[store]\nurl = \"sqlite://{}\"\n\n\
             [audit]\nkey_file = {:?}\norigin = \"{ORIGIN}\"\n",
            db.display(),
            key_file.display().to_string()
        ),
    )
    .unwrap();

    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let key = keyfile::load_or_create(&key_file, ORIGIN).unwrap();
    let engine = Engine::start(
        store,
        LoadedPolicies::load_dir(&policies).unwrap(),
        EngineConfig {
            public_url: "http://127.0.0.1:9".into(),
            audit: AuditSigning::new(ORIGIN, key, Some(key_file.clone())),
            journal: None,
        },
    )
    .await
    .unwrap();

    let agent = Principal::new(PrincipalKind::Agent, "ci-agent", ["agents"]);
    let alice = Principal::new(
        PrincipalKind::User,
        "alice@example.com",
        ["reviewers", "admins"],
    );
    let bob = Principal::new(PrincipalKind::User, "bob@example.com", ["reviewers"]);
    let carol = Principal::new(PrincipalKind::User, "carol@example.com", ["developers"]);
    let prod = Resource {
        classification: Some(Classification::Confidential),
        ..Resource::new("Database", "prod")
    };
    let attempt = |action: &str, resource: &Resource, payload: &str| Attempt {
        principal: agent.reference(),
        on_behalf_of: Some("alice@example.com".into()),
        action: Action::parse(action).unwrap(),
        resources: vec![resource.clone()],
        payload: serde_json::json!(payload),
        justification: Some("quarterly <b>audit</b> & \"review\"".into()),
        context: Default::default(),
    };

    // Allowed reads.
    for i in 0..3 {
        let r = engine
            .check(
                &agent,
                attempt("db.read", &prod, &format!("SELECT {i}")),
                "api",
            )
            .await;
        assert_eq!(r.label(), "allow");
    }
    // A forbidden attempt, with a hostile payload of its own.
    let users = Resource {
        classification: Some(Classification::Restricted),
        ..Resource::new("Table", "users")
    };
    let r = engine
        .check(
            &agent,
            attempt(
                "db.destructive",
                &users,
                &format!(
                    "DROP TABLE users; -- {}<img src=x onerror=alert(2)>",
                    "x".repeat(200)
                ),
            ),
            "api",
        )
        .await;
    assert_eq!(r.label(), "deny");

    // Approved after a self-approval attempt and an ineligible vote, then used once.
    let approved = request_id(
        engine
            .check(&agent, attempt("db.export", &prod, HOSTILE), "api")
            .await,
    );
    let self_vote = engine
        .vote(
            &alice,
            &approved,
            Decision::Approve,
            Some("mine".into()),
            "api",
        )
        .await;
    assert!(self_vote.is_err(), "self-approval must be refused");
    assert!(
        engine
            .vote(&carol, &approved, Decision::Approve, None, "slack")
            .await
            .is_err()
    );
    engine
        .vote(
            &bob,
            &approved,
            Decision::Approve,
            Some("ticket OPS-1 <ok>".into()),
            "cli",
        )
        .await
        .unwrap();
    let used = engine
        .check(&agent, attempt("db.export", &prod, HOSTILE), "api")
        .await;
    assert_eq!(used.label(), "allow", "{used:?}");

    // Denied by a reviewer.
    let denied = request_id(
        engine
            .check(
                &agent,
                attempt("db.export", &prod, "COPY orders TO STDOUT"),
                "api",
            )
            .await,
    );
    engine
        .vote(
            &bob,
            &denied,
            Decision::Deny,
            Some("not during the freeze".into()),
            "api",
        )
        .await
        .unwrap();

    // Cancelled by its requester.
    let web = Resource::new("Service", "web");
    let cancelled = request_id(
        engine
            .check(&agent, attempt("deploy", &web, "v1.2.3"), "api")
            .await,
    );
    engine.cancel(&agent, &cancelled, false).await.unwrap();

    // Approved, then its window grant revoked.
    let revoked = request_id(
        engine
            .check(&agent, attempt("deploy", &web, "v1.2.4"), "api")
            .await,
    );
    engine
        .vote(&bob, &revoked, Decision::Approve, Some("go".into()), "api")
        .await
        .unwrap();
    let grant = engine.grant_for_request(&revoked).await.unwrap().unwrap();
    engine
        .revoke(&alice, &grant.id, true, Some("rolled back".into()))
        .await
        .unwrap();

    // Left to expire (2 s timeout).
    let expired = request_id(
        engine
            .check(
                &agent,
                attempt("db.export", &prod, "COPY big TO STDOUT"),
                "api",
            )
            .await,
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    engine.expire_due().await.unwrap();
    assert_eq!(
        engine.request(&expired).await.unwrap().status.as_str(),
        "expired"
    );

    // A policy reload that fails, and a key rotation.
    assert!(
        engine
            .reload(LoadedPolicies::load_dir(&broken))
            .await
            .is_err()
    );
    engine.rotate_audit_key(&alice).await.unwrap();

    // Created, then approved a little later: a report ending in between sees it settle after.
    let late = request_id(
        engine
            .check(&agent, attempt("deploy", &web, "v2.0.0"), "api")
            .await,
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mid = rfc3339_ms(SystemTime::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine
        .vote(&bob, &late, Decision::Approve, None, "api")
        .await
        .unwrap();

    engine.checkpoint().await.unwrap();
    drop(engine);
    Scenario {
        dir,
        config,
        approved,
        denied,
        expired,
        cancelled,
        revoked,
        late,
        mid,
    }
}

/// The whole period: from yesterday to the day after tomorrow.
fn period() -> (String, String) {
    let now = SystemTime::now();
    (
        date(now - Duration::from_secs(86_400)),
        date(now + Duration::from_secs(2 * 86_400)),
    )
}

fn report(s: &Scenario, name: &str, from: &str, to: &str, format: &str) -> String {
    let out = s.dir.join(name);
    cli_ok(
        &s.dir,
        None,
        &[
            "audit",
            "report",
            "--config",
            s.config.to_str().unwrap(),
            "--from",
            from,
            "--to",
            to,
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(out).unwrap()
}

fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Words of a command line: whitespace-separated, `'…'` quoted.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Runs the export and verify commands printed in the report's integrity section.
fn run_printed_commands(s: &Scenario, html: &str) -> String {
    let start = html
        .find("<pre class=\"cmd\" id=\"verify-commands\">")
        .expect("the report prints verification commands");
    let body = &html[start..];
    let body = &body[body.find('>').unwrap() + 1..body.find("</pre>").unwrap()];
    let lines: Vec<String> = unescape(body).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("countersign audit export --config "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("countersign audit verify period.jsonl --key '"),
        "{}",
        lines[1]
    );
    let work = tempfile::tempdir_in(&s.dir).unwrap();
    let mut verified = String::new();
    for line in &lines {
        let words = shell_words(line);
        assert_eq!(words[0], "countersign");
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        verified = cli_ok(work.path(), None, &args).stdout;
    }
    assert!(verified.starts_with("ok: "), "{verified}");
    verified
}

#[test]
fn html_report_lists_every_privileged_action_escaped_with_charts_and_proof() {
    let s = scenario();
    let (from, to) = period();
    let html = report(s, "report.html", &from, &to, "html");
    // Keep a copy where a person (or a headless browser) can look at it.
    let _ = std::fs::write(std::env::temp_dir().join("countersign-report.html"), &html);

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    // Self-contained: no scripts, no external anything.
    let lower = html.to_ascii_lowercase();
    assert!(
        !lower.contains("<script"),
        "the report must hold no script element"
    );
    assert!(
        !lower.contains("<img"),
        "hostile markup must not become an element"
    );
    assert!(!lower.contains("<link") && !lower.contains("href=\"http"));
    // Hostile text rendered as text.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // A long payload: folded, with its full text (escaped too) in a details element.
    let folded = html
        .find("<details><summary>full payload (")
        .expect("a long payload is folded");
    assert!(html[folded..].contains("&lt;img src=x onerror=alert(2)&gt;</pre>"));
    assert!(html.contains("quarterly &lt;b&gt;audit&lt;/b&gt; &amp; &quot;review&quot;"));
    assert!(html.contains("ticket OPS-1 &lt;ok&gt;"));

    // Every request with its outcome.
    for (id, outcome) in [
        (&s.approved, "approved"),
        (&s.denied, "denied"),
        (&s.expired, "expired"),
        (&s.cancelled, "cancelled"),
        (&s.revoked, "approved"),
        (&s.late, "approved"),
    ] {
        let at = html
            .find(id.as_str())
            .unwrap_or_else(|| panic!("request {id} missing"));
        let row = &html[at..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains(&format!("badge {outcome}\">{outcome}<")),
            "request {id} should be {outcome}: {row}"
        );
    }
    let approved_row = {
        let at = html.find(s.approved.as_str()).unwrap();
        let row = &html[at..];
        row[..row.find("</tr>").unwrap()].replace("<wbr>", "")
    };
    assert!(approved_row.contains("bob@example.com"));
    assert!(approved_row.contains("self-approval"));
    assert!(
        approved_row.contains("used "),
        "the grant use: {approved_row}"
    );
    assert!(approved_row.contains("exports-need-review"));
    assert!(approved_row.contains("cls-confidential"));
    assert!(approved_row.contains("on behalf of"));
    let revoked_row = {
        let at = html.find(s.revoked.as_str()).unwrap();
        let row = &html[at..];
        row[..row.find("</tr>").unwrap()].replace("<wbr>", "")
    };
    assert!(revoked_row.contains("rolled back"), "{revoked_row}");

    // Summary counts.
    assert!(html.contains("<tr><td>self-approval attempts</td><td class=\"num\">1</td></tr>"));
    assert!(html.contains("<tr><td>other refusals</td><td class=\"num\">1</td></tr>"));
    assert!(html.contains("<tr><td>deny</td><td class=\"num\">1</td></tr>"));
    assert!(html.contains("<tr><td>revoked</td><td class=\"num\">1</td></tr>"));
    assert!(html.contains("<tr><td>created in the period</td><td class=\"num\">6</td></tr>"));
    assert!(html.contains("<tr><td>policy reloads rejected</td><td class=\"num\">1</td></tr>"));
    assert!(html.contains("<tr><td>audit key rotations</td><td class=\"num\">1</td></tr>"));
    // Denials, refusals, policy and key sections.
    assert!(html.contains("no-destroying-restricted-data"));
    assert!(html.contains("carol@example.com"));
    assert!(html.contains("cannot vote on their own request"));
    assert!(html.contains("badge rejected"));
    assert!(html.contains("<section id=\"keys\">"));

    // Charts: inline SVG with accessible titles, axes and legends.
    assert_eq!(html.matches("<svg ").count(), 2);
    assert!(html.contains("role=\"img\""));
    assert!(html.contains("<title id=\"chart-decisions-title\">Decisions per day</title>"));
    assert!(html.contains("<title id=\"chart-approval-time-title\">Time to approve</title>"));
    assert!(html.contains(">approval</text>") && html.contains(">Attempts</text>"));
    assert!(html.contains(">&lt; 1m</text>"));

    // Integrity: the covering checkpoint's note and commands that verify.
    assert!(html.contains(&format!("<pre class=\"note-text\">{ORIGIN}\n")));
    assert!(html.contains("Checked while generating this report"));
    // The period began before the rotation: the first checkpoint is the retired key's.
    assert!(html.contains("a key retired by a rotation"));
    let verified = run_printed_commands(s, &html);
    assert!(verified.contains("verified against"), "{verified}");
}

/// Splits RFC 4180 text into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty(), "a quote inside an unquoted field");
                quoted = true;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("bare LF outside quotes"),
            c => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quote");
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record lacks CRLF"
    );
    records
}

#[test]
fn csv_report_has_one_row_per_request() {
    let s = scenario();
    let (from, to) = period();
    let csv = report(s, "report.csv", &from, &to, "csv");
    let rows = parse_csv(&csv);
    let header = &rows[0];
    assert_eq!(header[0], "request_id");
    assert_eq!(rows.len(), 1 + 6, "{csv}");
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row_of = |id: &str| rows.iter().find(|r| r[0] == id).unwrap();
    let approved = row_of(&s.approved);
    assert_eq!(approved[col("outcome")], "approved");
    assert_eq!(approved[col("payload")], HOSTILE);
    assert_eq!(approved[col("requester")], "ci-agent");
    assert_eq!(approved[col("on_behalf_of")], "alice@example.com");
    assert_eq!(
        approved[col("resources")],
        "Database::\"prod\" [confidential]"
    );
    assert_eq!(approved[col("grant_uses")], "1");
    assert_eq!(approved[col("grant_end")], "used");
    assert_eq!(approved[col("self_approval_attempts")], "1");
    assert!(approved[col("approvers")].starts_with("bob@example.com approve at "));
    assert!(approved[col("refused_votes")].contains("carol@example.com"));
    assert_eq!(
        approved[col("justification")],
        "quarterly <b>audit</b> & \"review\""
    );
    assert_eq!(row_of(&s.denied)[col("outcome")], "denied");
    assert_eq!(row_of(&s.expired)[col("outcome")], "expired");
    assert_eq!(row_of(&s.expired)[col("decided_by")], "");
    assert_eq!(row_of(&s.cancelled)[col("outcome")], "cancelled");
    assert!(row_of(&s.revoked)[col("grant_end")].starts_with("revoked by alice@example.com"));
    assert!(!row_of(&s.approved)[col("checkpoint_size")].is_empty());
}

#[test]
fn settlement_after_the_period_is_followed_and_marked() {
    let s = scenario();
    let (from, _) = period();
    let html = report(s, "partial.html", &from, &s.mid, "html");
    let at = html
        .find(s.late.as_str())
        .expect("the late request is in the period");
    let row = &html[at..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("badge approved"), "{row}");
    assert!(row.contains("after the period"), "{row}");
    assert!(html.contains("<tr><td>settled after the period</td><td class=\"num\">1</td></tr>"));
    // The covering checkpoint lies past the period's end; its export verifies too.
    assert!(html.contains("logged after the period"));
    run_printed_commands(s, &html);

    let csv = report(s, "partial.csv", &from, &s.mid, "csv");
    let rows = parse_csv(&csv);
    let col = rows[0]
        .iter()
        .position(|h| h == "settled_after_period")
        .unwrap();
    let late = rows.iter().find(|r| r[0] == s.late).unwrap();
    assert_eq!(late[col], "true");
}

#[test]
fn empty_period_is_a_valid_report_that_says_so() {
    let s = scenario();
    let html = report(s, "empty.html", "2001-01-01", "2001-02-01", "html");
    assert!(html.contains("Nothing happened in this period"));
    assert!(html.contains("No approval requests were created in this period."));
    assert!(html.contains("nothing to verify"));
    assert_eq!(html.matches("<svg ").count(), 2);
    assert!(html.trim_end().ends_with("</html>"));
    let csv = report(s, "empty.csv", "2001-01-01", "2001-02-01", "csv");
    assert_eq!(parse_csv(&csv).len(), 1, "only the header");
}

#[test]
fn bad_input_is_refused() {
    let s = scenario();
    let config = s.config.to_str().unwrap();
    let out = s.dir.join("never.html");
    let out = out.to_str().unwrap();
    let fails = |args: &[&str], message: &str| {
        let r = cli(&s.dir, None, args);
        assert_ne!(r.code, Some(0), "{args:?} should fail");
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
    };
    let base = ["audit", "report", "--config", config, "--out", out];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    fails(
        &with(&["--from", "2026-11-02", "--to", "2026-11-01"]),
        "must be before",
    );
    fails(
        &with(&["--from", "2026-11-01", "--to", "2026-11-01"]),
        "must be before",
    );
    fails(
        &with(&["--from", "yesterday", "--to", "2026-11-01"]),
        "--from",
    );
    fails(
        &with(&["--from", "2026-11-01", "--to", "2026-13-45"]),
        "--to",
    );
    fails(
        &with(&[
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--format",
            "pdf",
        ]),
        "pdf",
    );
    assert!(!Path::new(out).exists(), "nothing is written on bad input");

    // A configuration whose store does not exist: no empty database is created.
    let missing = s.dir.join("missing.toml");
    let db = s.dir.join("nowhere.sqlite");
    std::fs::write(
        &missing,
        format!("[store]\nurl = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    let r = cli(
        &s.dir,
        None,
        &[
            "audit",
            "report",
            "--config",
            missing.to_str().unwrap(),
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--out",
            out,
        ],
    );
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("there is no store at"), "{}", r.stderr);
    assert!(!db.exists(), "the report must not create a store");
}
