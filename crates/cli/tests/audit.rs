//! End-to-end tests of `countersign audit …`, driving the real binary: a gateway process per test
//! (its own temporary directory, port, SQLite store and key file), traffic over HTTP, then
//! exports, offline verification, proofs, key rotation and direct tampering with the files and
//! the database.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use countersign_audit::merkle;
use countersign_audit::note::{Checkpoint, SigningKey, VerifierKey};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use support::{Config, Output, STEP, Tokens, cli, cli_ok, http, poll, temp_dir};

const TOKENS: Tokens = Tokens {
    agent: "audit-agent-token-0123456789",
    alice: "audit-alice-token-0123456789",
    bob: "audit-bob-token-0123456789",
};
const AGENT_TOKEN: &str = TOKENS.agent;
const ALICE_TOKEN: &str = TOKENS.alice;
const BOB_TOKEN: &str = TOKENS.bob;

/// Runs `countersign ARGS…`, expects exit code `code` and every one of `needles` on stderr.
fn cli_fails(cwd: &Path, args: &[&str], code: i32, needles: &[&str]) -> Output {
    let out = cli(cwd, None, args);
    assert_eq!(
        out.code,
        Some(code),
        "countersign {}: expected exit {code}\n{}",
        args.join(" "),
        out.describe()
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "countersign {}: stderr does not mention {needle:?}\n{}",
            args.join(" "),
            out.describe()
        );
    }
    out
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `countersign audit export --config CONFIG --out OUT [--from N --to M]`, which must succeed.
fn run_export(dir: &Path, config: &str, out: &Path, range: Option<(&str, &str)>) -> Output {
    let mut args = vec![
        "audit",
        "export",
        "--config",
        config,
        "--out",
        path_str(out),
    ];
    if let Some((from, to)) = range {
        args.extend(["--from", from, "--to", to]);
    }
    cli_ok(dir, None, &args)
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------------------------

/// A gateway with an audit key file, and the paths of its files.
struct Gateway {
    server: support::Gateway,
    config: PathBuf,
    db: PathBuf,
    key_file: PathBuf,
}

impl Gateway {
    /// A gateway in `dir` from a config file: SQLite and the key file in `dir`, checkpoints
    /// every `every` (or 1000 events), three principals (alice is a reviewer, administrator and
    /// auditor; bob a reviewer).
    fn start(dir: &Path, every: &str) -> Gateway {
        let key_file = dir.join("keys/audit.key");
        let sections = format!(
            "[audit]\nkey_file = \"{key}\"\ncheckpoint_every = \"{every}\"\n",
            key = key_file.display(),
        );
        let server = support::Gateway::configured(
            dir,
            &Config {
                tokens: &TOKENS,
                alice_groups: &["reviewers", "admins", "auditors"],
                sections,
            },
        );
        Gateway {
            server,
            config: dir.join("countersign.toml"),
            db: dir.join("db.sqlite"),
            key_file,
        }
    }

    fn config(&self) -> &str {
        path_str(&self.config)
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn origin(&self) -> String {
        format!("127.0.0.1:{}/countersign", self.server.port)
    }

    /// Asks as the agent; the decision's JSON.
    fn attempt(&self, action: &str, resource: Value, payload: Value) -> Value {
        let body = json!({"action": action, "resource": resource, "payload": payload});
        let (status, answer) = http(
            self.server.port,
            "POST",
            "/v1/attempts",
            AGENT_TOKEN,
            Some(&body),
        );
        assert_eq!(status, 200, "POST /v1/attempts {body}: {answer}");
        answer
    }

    /// One round of traffic: an allowed read (its payload carries `marker`), a default deny,
    /// and an export held for review that bob approves, then runs under the grant.
    fn traffic(&self, marker: &str) {
        let read = self.attempt(
            "db.read",
            json!({"type": "Database", "id": "prod"}),
            json!({"sql": format!("SELECT '{marker}'")}),
        );
        assert_eq!(read["outcome"], "allow", "{read}");
        let denied = self.attempt(
            "http.request",
            json!({"type": "Endpoint", "id": "x"}),
            json!({"url": "https://example.com"}),
        );
        assert_eq!(denied["outcome"], "deny", "{denied}");
        let export = json!({"sql": format!("COPY events TO STDOUT -- {marker}")});
        let table = json!({"type": "Table", "id": "analytics.events"});
        let held = self.attempt("db.export", table.clone(), export.clone());
        assert_eq!(held["outcome"], "pending", "{held}");
        let id = held["request_id"].as_str().expect("request id");
        let (status, vote) = http(
            self.server.port,
            "POST",
            &format!("/v1/requests/{id}/votes"),
            BOB_TOKEN,
            Some(&json!({"decision": "approve", "reason": "looks fine"})),
        );
        assert_eq!(status, 200, "vote: {vote}");
        let again = self.attempt("db.export", table, export);
        assert_eq!(again["outcome"], "allow", "{again}");
    }

    /// How many audit records are committed (as an auditor sees them).
    fn audit_size(&self) -> u64 {
        let (status, page) = http(
            self.server.port,
            "GET",
            "/v1/audit?limit=10000",
            ALICE_TOKEN,
            None,
        );
        assert_eq!(status, 200, "GET /v1/audit: {page}");
        page["events"].as_array().expect("events").len() as u64
    }

    /// The size of the newest checkpoint, if there is one.
    fn signed_size(&self) -> Option<u64> {
        let (status, body) = http(
            self.server.port,
            "GET",
            "/v1/audit/checkpoint",
            ALICE_TOKEN,
            None,
        );
        match status {
            200 => Some(body["size"].as_u64().expect("size")),
            409 => None,
            _ => panic!("GET /v1/audit/checkpoint: {status} {body}"),
        }
    }

    /// Waits until a checkpoint covers every record; its size.
    fn wait_signed(&self) -> u64 {
        let size = self.audit_size();
        poll("a checkpoint covering every record", STEP, || {
            (self.signed_size() == Some(size)).then_some(size)
        })
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(mut self) -> Output {
        self.server.proc.signal("TERM");
        let out = self.server.proc.wait(STEP);
        assert_eq!(
            out.code,
            Some(0),
            "the gateway did not stop cleanly on SIGTERM\n{}",
            out.describe()
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------------

/// An export read back as lines (without their newlines).
struct Export {
    lines: Vec<String>,
}

impl Export {
    fn read(path: &Path) -> Export {
        let text = std::fs::read_to_string(path).expect("read export");
        assert!(text.ends_with('\n'), "an export ends with a newline");
        Export {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    fn is_event(&self, i: usize) -> bool {
        self.lines[i].starts_with("{\"event\":")
    }

    fn is_checkpoint(&self, i: usize) -> bool {
        self.lines[i].starts_with("{\"checkpoint\":")
    }

    fn seq(&self, i: usize) -> u64 {
        let line: Value = serde_json::from_str(&self.lines[i]).expect("event line is JSON");
        line["event"]["seq"].as_u64().expect("seq")
    }

    fn note(&self, i: usize) -> String {
        let line: Value = serde_json::from_str(&self.lines[i]).expect("checkpoint line is JSON");
        line["checkpoint"].as_str().expect("note").to_owned()
    }

    /// Line indexes of the checkpoints `key` signed, with their sizes.
    fn checkpoints(&self, key: &VerifierKey) -> Vec<(usize, u64)> {
        (0..self.lines.len())
            .filter(|&i| self.is_checkpoint(i))
            .filter_map(|i| {
                let c = Checkpoint::open(&self.note(i), key, None).ok()?;
                Some((i, c.size))
            })
            .collect()
    }

    /// The first line containing `needle`.
    fn find(&self, needle: &str) -> usize {
        self.lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line of the export contains {needle:?}"))
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// The line of a checkpoint whose note is `note`.
fn checkpoint_line(note: &str) -> String {
    json!({ "checkpoint": note }).to_string()
}

/// The text a checkpoint note signs (origin, size and root lines).
fn note_body(note: &str) -> &str {
    let end = note.find("\n\n").expect("a note has a blank line");
    &note[..=end]
}

/// `line` with the first occurrence of `from` replaced by `to`.
fn replace_once(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{from:?} not in {line}");
    line.replacen(from, to, 1)
}

/// An event line with its record bytes changed and its `leaf` recomputed to match.
fn reseal(line: &str) -> String {
    let event = line
        .strip_prefix("{\"event\":")
        .and_then(|rest| rest.get(..rest.len() - 75))
        .expect("event line shape");
    format!(
        "{{\"event\":{event},\"leaf\":\"{}\"}}",
        hex::encode(merkle::leaf_hash(event.as_bytes()))
    )
}

// ---------------------------------------------------------------------------------------------
// SQLite, as someone with direct access to the database file
// ---------------------------------------------------------------------------------------------

fn sqlite(db: &Path, sql: &str) -> String {
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1])\n\
                  rows = c.execute(sys.argv[2]).fetchall()\n\
                  c.commit()\n\
                  print('\\n'.join('|'.join(str(v) for v in r) for r in rows))\n";
    let out = Command::new("python3")
        .args(["-c", script, path_str(db), sql])
        .output()
        .expect("python3 must be available");
    assert!(
        out.status.success(),
        "sqlite {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn export_verify_and_tampering() {
    let dir = temp_dir();
    let dir = dir.path();
    let gateway = Gateway::start(dir, "1s");
    let config = gateway.config();
    // Two rounds with a checkpoint between them, so the export holds several.
    gateway.traffic("marker-one");
    let first = gateway.wait_signed();
    gateway.traffic("marker-two");
    let total = gateway.wait_signed();
    assert!(total > first, "{first} {total}");

    // The verifier key, and a key file only its owner can read.
    let out = cli_ok(dir, None, &["audit", "public-key", "--config", config]);
    let key_text = out.stdout.trim().to_owned();
    let key = VerifierKey::parse(&key_text).expect("public-key prints a verifier key");
    assert_eq!(key.name(), gateway.origin());
    #[cfg(unix)]
    assert_eq!(
        mode_of(&gateway.key_file),
        0o600,
        "the key file must be 0600"
    );

    // A full export verifies, with the key's text, @FILE or a path to a file holding it.
    let file = dir.join("export.jsonl");
    let out = run_export(dir, config, &file, None);
    assert!(
        out.stderr.contains(&format!("exported records 0..{total}")),
        "{}",
        out.describe()
    );
    let f = path_str(&file);
    let out = cli_ok(dir, None, &["audit", "verify", f, "--key", &key_text]);
    assert!(
        out.stdout
            .starts_with(&format!("ok: {total} records (0..{})", total - 1)),
        "{}",
        out.describe()
    );
    let key_path = dir.join("verifier.key");
    std::fs::write(&key_path, format!("{key_text}\n")).expect("write key");
    let at_key = format!("@{}", key_path.display());
    assert!(
        cli_ok(dir, None, &["audit", "verify", f, "--key", &at_key])
            .stdout
            .starts_with("ok:")
    );
    assert!(
        cli_ok(
            dir,
            None,
            &["audit", "verify", f, "--key", path_str(&key_path)]
        )
        .stdout
        .starts_with("ok:")
    );

    let export = Export::read(&file);
    let checkpoints = export.checkpoints(&key);
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    assert_eq!(checkpoints.last().map(|c| c.1), Some(total));
    assert_eq!(
        checkpoints.last().map(|c| c.0),
        Some(export.lines.len() - 1)
    );

    // Copies of the export, each spoiled one way; every one fails with exit 1, naming the line
    // and the record at fault.
    let mut case = 0;
    let mut expect_failure = |text: String, needles: &[String]| {
        case += 1;
        let path = dir.join(format!("tampered-{case}.jsonl"));
        std::fs::write(&path, text).expect("write tampered export");
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        cli_fails(
            dir,
            &["audit", "verify", path_str(&path), "--key", &key_text],
            1,
            &needles,
        )
    };
    let lines = &export.lines;
    // An attempt of the second round (its payload holds the marker) followed by another event
    // (a checkpoint by the clock may fall anywhere).
    let i = (export.find("marker-two")..lines.len())
        .find(|&i| export.is_event(i) && lines[i].contains("marker-two") && export.is_event(i + 1))
        .expect("an attempt of the second round followed by an event");
    let seq = export.seq(i);
    // The checkpoint after it and the one before.
    let (cp_line, cp_size) = *checkpoints.iter().find(|c| c.0 > i).expect("checkpoint");
    let before = checkpoints
        .iter()
        .rev()
        .find(|c| c.0 < i)
        .map_or(0, |c| c.1);

    // One character of the payload.
    let mut t = lines.clone();
    t[i] = replace_once(&t[i], "marker-two", "marker-twO");
    expect_failure(
        Export::text(&t),
        &[format!("line {}:", i + 1), format!("record {seq} altered")],
    );
    // The same, with the leaf recomputed: the next checkpoint no longer matches.
    t[i] = reseal(&t[i]);
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", cp_line + 1),
            format!("checkpoint at size {cp_size} does not match"),
            format!("[{before}, {cp_size})"),
        ],
    );
    // A record removed.
    let mut t = lines.clone();
    t.remove(i);
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", i + 1),
            format!(
                "record {seq} is missing or out of order (found record {}",
                seq + 1
            ),
        ],
    );
    // Two records swapped.
    let mut t = lines.clone();
    t.swap(i, i + 1);
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", i + 1),
            format!("record {seq} is missing or out of order"),
        ],
    );
    // A record duplicated.
    let mut t = lines.clone();
    t.insert(i + 1, lines[i].clone());
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", i + 2),
            format!(
                "record {seq} is out of order or duplicated (expected record {})",
                seq + 1
            ),
        ],
    );
    // Cut mid-line.
    let mut text = Export::text(&lines[..=i]);
    text.push_str(&lines[i + 1][..40]);
    expect_failure(text, &[format!("line {}:", i + 2), "truncated".to_owned()]);
    // Cut after a complete line in the middle: the rest is missing.
    expect_failure(
        Export::text(&lines[..=i]),
        &[
            "truncated".to_owned(),
            format!("records [{}, {total}) are missing", seq + 1),
        ],
    );
    // The last checkpoint dropped: the records after the one before are unsigned.
    let (_, previous) = checkpoints[checkpoints.len() - 2];
    expect_failure(
        Export::text(&lines[..lines.len() - 1]),
        &[format!(
            "events after the last checkpoint (size {previous}) are not covered by a signature"
        )],
    );
    // A garbage line.
    let mut t = lines.clone();
    t.insert(i + 1, "this is not JSON".to_owned());
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", i + 2),
            "not an event or checkpoint line".to_owned(),
        ],
    );
    // An empty file.
    expect_failure(String::new(), &["empty export".to_owned()]);
    // A checkpoint re-signed by another key of the same name.
    let note = export.note(cp_line);
    let other = SigningKey::generate(key.name()).expect("key");
    let mut t = lines.clone();
    t[cp_line] = checkpoint_line(&other.sign_note(note_body(&note)).expect("sign"));
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", cp_line + 1),
            "not signed by the trusted key".to_owned(),
        ],
    );
    // A forged signature under the right key id.
    let (body, signature) = note.rsplit_once(' ').expect("signature line");
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(signature.trim_end())
        .expect("base64 signature");
    blob[10] ^= 1;
    let forged = format!(
        "{body} {}\n",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    let mut t = lines.clone();
    t[cp_line] = checkpoint_line(&forged);
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", cp_line + 1),
            "does not verify".to_owned(),
        ],
    );
    // A checkpoint of another log, signed by the right key.
    let signing = countersign_engine::keyfile::load(&gateway.key_file).expect("key file");
    let genuine = Checkpoint::open(&note, &key, None).expect("genuine checkpoint");
    let foreign = Checkpoint {
        origin: "other.example/countersign".into(),
        ..genuine
    }
    .sign(&signing)
    .expect("sign");
    let mut t = lines.clone();
    t[cp_line] = checkpoint_line(&foreign);
    expect_failure(
        Export::text(&t),
        &[
            format!("line {}:", cp_line + 1),
            "other.example/countersign".to_owned(),
            gateway.origin(),
        ],
    );

    // The wrong key fails the export; a malformed or missing key is a usage error.
    let wrong = SigningKey::generate(key.name()).expect("key").verifier();
    cli_fails(
        dir,
        &["audit", "verify", f, "--key", &wrong.to_string()],
        1,
        &["not signed by the trusted key"],
    );
    cli_fails(
        dir,
        &["audit", "verify", f, "--key", "not-a-key"],
        2,
        &["is not a verifier key"],
    );
    cli_fails(
        dir,
        &["audit", "verify", f, "--key", "@/nonexistent/verifier.key"],
        2,
        &["cannot read key file"],
    );
    cli_fails(dir, &["audit", "verify", f], 2, &["--key"]);
    cli_fails(
        dir,
        &[
            "audit",
            "verify",
            path_str(&dir.join("missing.jsonl")),
            "--key",
            &key_text,
        ],
        2,
        &["missing.jsonl"],
    );

    // Inclusion proofs.
    let proof = dir.join("proof.json");
    let p = path_str(&proof);
    let s = seq.to_string();
    cli_ok(
        dir,
        None,
        &["audit", "prove", &s, "--config", config, "--out", p],
    );
    let out = cli_ok(dir, None, &["audit", "verify-proof", p, "--key", &key_text]);
    assert!(
        out.stdout
            .starts_with(&format!("ok: record {seq} (attempt)")),
        "{}",
        out.describe()
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).expect("read proof")).expect("JSON");
    assert_eq!(doc["tree_size"], total);
    let mut spoiled = 0;
    let mut proof_fails = |doc: &Value, needle: &str| {
        spoiled += 1;
        let path = dir.join(format!("proof-{spoiled}.json"));
        std::fs::write(&path, doc.to_string()).expect("write proof");
        cli_fails(
            dir,
            &["audit", "verify-proof", path_str(&path), "--key", &key_text],
            1,
            &[needle],
        );
    };
    let event = doc["event"].as_str().expect("event").to_owned();
    let changed = replace_once(&event, "marker-two", "marker-twO");
    let mut d = doc.clone();
    d["event"] = json!(changed);
    proof_fails(&d, "altered event");
    let b64 = |h: &[u8]| base64::engine::general_purpose::STANDARD.encode(h);
    d["leaf_hash"] = json!(b64(&merkle::leaf_hash(changed.as_bytes())));
    proof_fails(&d, "does not lead to the signed root");
    let mut d = doc.clone();
    let mut hash = base64::engine::general_purpose::STANDARD
        .decode(d["path"][0].as_str().expect("path hash"))
        .expect("base64");
    hash[0] ^= 0x80;
    d["path"][0] = json!(b64(&hash));
    proof_fails(&d, "does not lead to the signed root");
    let mut d = doc.clone();
    let note = doc["checkpoint"].as_str().expect("checkpoint");
    d["checkpoint"] = json!(other.sign_note(note_body(note)).expect("sign"));
    proof_fails(&d, "no signature by key");
    cli_fails(
        dir,
        &["audit", "prove", "1000000", "--config", config],
        2,
        &["not covered"],
    );

    // A partial export from record 3 to a checkpointed size verifies on its own.
    let part = dir.join("part.jsonl");
    let to = first.to_string();
    run_export(dir, config, &part, Some(("3", &to)));
    let out = cli_ok(
        dir,
        None,
        &["audit", "verify", path_str(&part), "--key", &key_text],
    );
    assert!(
        out.stdout
            .starts_with(&format!("ok: {} records (3..{})", first - 3, first - 1)),
        "{}",
        out.describe()
    );
    let partial = Export::read(&part);
    assert!(
        partial.lines[1].starts_with("{\"prefix\":"),
        "{}",
        partial.lines[1]
    );
    // Its prefix is only trusted through the checkpoint: spoil it and the checkpoint fails.
    let mut t = partial.lines.clone();
    let subtree = t[1].find("\"subtrees\":[\"").expect("subtrees") + 13;
    let flipped = if &t[1][subtree..=subtree] == "0" {
        "1"
    } else {
        "0"
    };
    t[1].replace_range(subtree..=subtree, flipped);
    expect_failure(
        Export::text(&t),
        &["prefix does not match the log".to_owned()],
    );
    // One that ends between checkpoints has records no signature covers.
    let unsigned = (first + 1..total)
        .find(|size| checkpoints.iter().all(|c| c.1 != *size))
        .expect("a size between checkpoints")
        .to_string();
    run_export(dir, config, &part, Some(("3", &unsigned)));
    cli_fails(
        dir,
        &["audit", "verify", path_str(&part), "--key", &key_text],
        1,
        &["not covered by a signature"],
    );

    // The live store verifies as well.
    let out = cli_ok(
        dir,
        None,
        &["audit", "verify", "--store", "--config", config],
    );
    assert!(
        out.stdout.starts_with(&format!("ok: {total} records")),
        "{}",
        out.describe()
    );
    drop(gateway);
}

#[test]
fn shutdown_signs_and_the_store_is_checked() {
    let dir = temp_dir();
    let dir = dir.path();
    // No checkpoint by the clock during the test: only the one at shutdown.
    let gateway = Gateway::start(dir, "1h");
    gateway.traffic("marker-shutdown");
    let size = gateway.audit_size();
    assert_eq!(gateway.signed_size(), None, "nothing is signed yet");
    let config = gateway.config.clone();
    let config = path_str(&config);
    let db = gateway.db.clone();
    gateway.terminate();

    let out = cli_ok(
        dir,
        None,
        &["audit", "verify", "--store", "--config", config],
    );
    assert!(
        out.stdout
            .starts_with(&format!("ok: {size} records (0..{})", size - 1))
            && out.stdout.contains(&format!("(last: size {size})")),
        "the final checkpoint must cover all {size} records\n{}",
        out.describe()
    );
    assert!(!out.stdout.contains("note:"), "{}", out.describe());

    // Someone with access to the database file drops the guard and edits a record.
    let seq: u64 = sqlite(
        &db,
        "SELECT seq FROM audit_events WHERE event LIKE '%SELECT ''marker-shutdown''%'",
    )
    .parse()
    .expect("the read's record");
    sqlite(&db, "DROP TRIGGER audit_events_no_update");
    let edit = |from: &str, to: &str| {
        sqlite(
            &db,
            &format!(
                "UPDATE audit_events SET event = replace(event, '{from}', '{to}') WHERE seq = {seq}"
            ),
        );
    };
    edit("marker-shutdown", "marker-shutdowN");
    cli_fails(
        dir,
        &["audit", "verify", "--store", "--config", config],
        1,
        &[&format!("record {seq} altered")],
    );
    // The leaf column rewritten to match: the checkpoint catches it.
    sqlite(
        &db,
        &format!(
            "UPDATE audit_events SET leaf_hash = '{}' WHERE seq = {seq}",
            hex::encode(merkle::leaf_hash(
                sqlite(
                    &db,
                    &format!("SELECT event FROM audit_events WHERE seq = {seq}")
                )
                .as_bytes()
            ))
        ),
    );
    cli_fails(
        dir,
        &["audit", "verify", "--store", "--config", config],
        1,
        &[&format!("checkpoint at size {size} does not match")],
    );
    // Put back, it verifies again.
    edit("marker-shutdowN", "marker-shutdown");
    sqlite(
        &db,
        &format!(
            "UPDATE audit_events SET leaf_hash = '{}' WHERE seq = {seq}",
            hex::encode(merkle::leaf_hash(
                sqlite(
                    &db,
                    &format!("SELECT event FROM audit_events WHERE seq = {seq}")
                )
                .as_bytes()
            ))
        ),
    );
    cli_ok(
        dir,
        None,
        &["audit", "verify", "--store", "--config", config],
    );
    // The last record deleted: the checkpoint claims more records than there are.
    sqlite(&db, "DROP TRIGGER audit_events_no_delete");
    sqlite(
        &db,
        &format!("DELETE FROM audit_events WHERE seq = {}", size - 1),
    );
    cli_fails(
        dir,
        &["audit", "verify", "--store", "--config", config],
        1,
        &[&format!(
            "checkpoint at size {size} claims more records than precede it ({})",
            size - 1
        )],
    );
    // A record in the middle deleted as well: named first.
    sqlite(&db, &format!("DELETE FROM audit_events WHERE seq = {seq}"));
    cli_fails(
        dir,
        &["audit", "verify", "--store", "--config", config],
        1,
        &[&format!("record {seq} is missing")],
    );
}

#[test]
fn key_rotation_is_followed_from_the_old_key() {
    let dir = temp_dir();
    let dir = dir.path();
    let gateway = Gateway::start(dir, "1s");
    let config = gateway.config.clone();
    let config = path_str(&config);
    gateway.traffic("marker-before");
    gateway.wait_signed();
    let old = cli_ok(dir, None, &["audit", "public-key", "--config", config])
        .stdout
        .trim()
        .to_owned();

    // Only administrators may rotate.
    let url = gateway.url();
    let refused = cli(
        dir,
        Some(BOB_TOKEN),
        &["audit", "rotate-key", "--server", &url],
    );
    assert!(
        !matches!(refused.code, Some(0) | None),
        "a reviewer rotated the key\n{}",
        refused.describe()
    );
    assert!(
        refused.stderr.contains("administrators"),
        "{}",
        refused.describe()
    );
    let out = cli(
        dir,
        Some(ALICE_TOKEN),
        &["audit", "rotate-key", "--server", &url],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let new = out
        .stdout
        .trim()
        .strip_prefix("rotated; new verifier key: ")
        .unwrap_or_else(|| panic!("no new key printed\n{}", out.describe()))
        .to_owned();
    VerifierKey::parse(&new).expect("the new key is a verifier key");
    assert_ne!(new, old);
    let now = cli_ok(dir, None, &["audit", "public-key", "--config", config]);
    assert_eq!(now.stdout.trim(), new, "the key file holds the new key");
    #[cfg(unix)]
    assert_eq!(mode_of(&gateway.key_file), 0o600);
    let retired: Vec<_> = std::fs::read_dir(gateway.key_file.parent().expect("key dir"))
        .expect("key dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".retired-"))
        .collect();
    assert_eq!(retired.len(), 1, "the old key is kept: {retired:?}");
    #[cfg(unix)]
    assert_eq!(mode_of(&retired[0]), 0o600);

    gateway.traffic("marker-after");
    let total = gateway.wait_signed();
    let file = dir.join("export.jsonl");
    let f = path_str(&file);
    cli_ok(
        dir,
        None,
        &["audit", "export", "--config", config, "--out", f],
    );
    let out = cli_ok(dir, None, &["audit", "verify", f, "--key", &old]);
    assert!(
        out.stdout.starts_with(&format!("ok: {total} records")),
        "{}",
        out.describe()
    );
    cli_fails(
        dir,
        &["audit", "verify", f, "--key", &new],
        1,
        &["not signed by the trusted key"],
    );
    // The store, checked from the original key, follows the rotation too.
    cli_ok(
        dir,
        None,
        &[
            "audit", "verify", "--store", "--config", config, "--key", &old,
        ],
    );
    // A checkpoint after the rotation signed by the retired key is refused.
    let export = Export::read(&file);
    let (cp_line, _) = *export
        .checkpoints(&VerifierKey::parse(&new).expect("key"))
        .last()
        .expect("a checkpoint by the new key");
    let old_signing = countersign_engine::keyfile::load(&retired[0]).expect("retired key");
    let note = export.note(cp_line);
    let mut t = export.lines.clone();
    t[cp_line] = checkpoint_line(&old_signing.sign_note(note_body(&note)).expect("sign"));
    let path = dir.join("retired.jsonl");
    std::fs::write(&path, Export::text(&t)).expect("write");
    cli_fails(
        dir,
        &["audit", "verify", path_str(&path), "--key", &old],
        1,
        &[&format!("line {}:", cp_line + 1), "retired key"],
    );
    drop(gateway);
}

#[test]
fn exports_and_store_checks_next_to_a_busy_gateway() {
    let dir = temp_dir();
    let dir = dir.path();
    let gateway = Gateway::start(dir, "1s");
    let config = gateway.config();
    let key = cli_ok(dir, None, &["audit", "public-key", "--config", config])
        .stdout
        .trim()
        .to_owned();
    // Allowed reads, as fast as one client can send them, until told to stop.
    let port = gateway.server.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({
                    "action": "db.read",
                    "resource": {"type": "Database", "id": "prod"},
                    "payload": sent,
                });
                let (status, answer) = http(port, "POST", "/v1/attempts", AGENT_TOKEN, Some(&body));
                assert_eq!(status, 200, "{answer}");
                sent += 1;
            }
            sent
        })
    };
    poll("a first checkpoint", STEP, || gateway.signed_size());
    // While records and checkpoints keep coming, the store verifies up to its newest checkpoint
    // (the records after it are not signed yet, not missing), and exports verify offline.
    let file = dir.join("export.jsonl");
    for round in 0..3 {
        let out = cli_ok(
            dir,
            None,
            &["audit", "verify", "--store", "--config", config],
        );
        assert!(
            out.stdout.starts_with("ok: "),
            "round {round}\n{}",
            out.describe()
        );
        run_export(dir, config, &file, None);
        cli_ok(
            dir,
            None,
            &["audit", "verify", path_str(&file), "--key", &key],
        );
        thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.join().expect("traffic thread");
    assert!(sent > 0);
    drop(gateway);
}
