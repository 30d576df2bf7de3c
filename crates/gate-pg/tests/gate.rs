//! The gate end to end: real clients (tokio-postgres, psql) through the gate to a real
//! PostgreSQL that demands SCRAM-SHA-256, with approvals through the HTTP API.
//!
//! One private cluster serves every test, so this binary runs its own tests in sequence
//! (`harness = false`) and stops the cluster at the end, whatever happened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::time::Duration;
use support::*;

struct Ctx {
    cluster: Cluster,
    certs: Certs,
    gw: Gateway,
}

type TestFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        const TESTS: &[(&str, TestFn)] = &[$((stringify!($name), |c| Box::pin($name(c)))),*];
    };
}

tests!(
    reads_pass_in_simple_and_extended_protocol,
    forbidden_statement_is_refused_with_42501_and_session_stays_usable,
    refusal_inside_a_transaction_fails_the_transaction,
    held_statement_runs_after_approval_through_the_api,
    held_statement_denied_through_the_api_is_42501,
    changed_statement_after_approval_needs_a_new_approval,
    extended_protocol_parameters_are_bound_into_the_approval,
    client_that_vanishes_while_held_withdraws_its_request,
    cancel_request_while_held_withdraws_the_request,
    cancel_request_reaches_the_upstream_query,
    copy_in_streams_and_copy_out_is_held,
    wrong_password_and_unknown_user_fail_alike,
    tls_only_principal_logs_in_over_tls_with_cleartext,
    psql_over_tls,
    statement_outcomes_are_audited,
    startup_parameters_that_change_privileges_are_dropped,
    malformed_input_gets_clear_errors_and_other_sessions_continue,
    upstream_down_is_a_clear_fatal_error,
    reads_whose_decision_cannot_be_recorded_return_nothing,
    a_journaled_gate_keeps_the_records_of_the_rows_it_released,
    sessions_beyond_the_cap_are_refused_with_53300,
    upstream_over_verified_tls,
    configured_classification_reaches_policy,
    a_parse_the_upstream_did_not_take_never_decides_a_bind,
);

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let certs = Certs::new();
    let cluster = Cluster::start(&certs);
    // The shared gate keeps an audit journal, as deployments that read at wire speed do;
    // `own_gateway` gates wait for the store instead.
    let gw = rt.block_on(Gateway::start(GateOptions {
        upstream_port: cluster.port,
        client_tls: Some(&certs),
        journal: true,
        ..Default::default()
    }));
    let ctx = Ctx { cluster, certs, gw };
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in TESTS {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), test(&ctx))
                    .await
                    .expect("test timed out")
            })
        }));
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    drop(ctx);
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(1);
    }
}

impl Ctx {
    /// Checks that the gate every test shares still serves: what one test broke stayed there.
    async fn shared_gate_still_serves(&self) {
        self.gw
            .connect()
            .await
            .unwrap()
            .batch_execute("SELECT 1")
            .await
            .unwrap();
    }

    /// A gateway of its own in front of the cluster, without TLS, for a test that breaks it.
    async fn own_gateway(&self, max_connections: Option<usize>, journal: bool) -> Gateway {
        Gateway::start(GateOptions {
            upstream_port: self.cluster.port,
            max_connections,
            journal,
            ..Default::default()
        })
        .await
    }

    /// Runs `sql` on the upstream directly, as its owner: setting up what a test needs.
    async fn setup(&self, sql: &str) {
        self.cluster
            .direct()
            .await
            .batch_execute(sql)
            .await
            .unwrap();
    }
}

fn table(name: &str) -> String {
    format!("{name}_{}", rand::random::<u32>())
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

async fn reads_pass_in_simple_and_extended_protocol(c: &Ctx) {
    let t = table("accounts");
    c.setup(&format!(
            "CREATE TABLE {t} (id int primary key, name text); INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 100) g;"
        )).await;
    let db = c.gw.connect().await.unwrap();
    let rows = db
        .simple_query(&format!("SELECT count(*) FROM {t}"))
        .await
        .unwrap();
    let count = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(count.as_deref(), Some("100"));
    let stmt = db
        .prepare(&format!("SELECT name FROM {t} WHERE id = $1"))
        .await
        .unwrap();
    for id in [1, 42, 100] {
        let row = db.query_one(&stmt, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), format!("n{id}"));
    }
    // Pipelined extended-protocol queries on one connection.
    let (a, b, d) = tokio::join!(
        db.query_one(&stmt, &[&7]),
        db.query_one(&stmt, &[&8]),
        db.query_one(&stmt, &[&9])
    );
    assert_eq!(
        (
            a.unwrap().get::<_, String>(0),
            b.unwrap().get::<_, String>(0),
            d.unwrap().get::<_, String>(0)
        ),
        ("n7".into(), "n8".into(), "n9".into())
    );
    // Writes with a WHERE pass under the example policies.
    let n = db
        .execute(&format!("UPDATE {t} SET name = 'x' WHERE id = $1"), &[&5])
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn forbidden_statement_is_refused_with_42501_and_session_stays_usable(c: &Ctx) {
    let db = c.gw.connect().await.unwrap();
    // Agents never change privileges on Database::"prod" (a forbid in the example policies).
    let e = db
        .simple_query("GRANT ALL ON SCHEMA public TO PUBLIC")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let msg = e.as_db_error().unwrap().message();
    assert!(
        msg.contains("countersign") && msg.contains("no-agent-privilege-changes-on-prod"),
        "{msg}"
    );
    // The same refusal in the extended protocol.
    let e = db
        .execute("ALTER ROLE CURRENT_USER SET work_mem = '1MB'", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    // The session goes on.
    let row = db.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}

async fn refusal_inside_a_transaction_fails_the_transaction(c: &Ctx) {
    let t = table("tx");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let db = c.gw.connect().await.unwrap();
    db.batch_execute("BEGIN").await.unwrap();
    db.batch_execute(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap();
    let e = db
        .batch_execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    // As after any error: the transaction is failed until it ends.
    let e = db.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02", "{e:?}");
    db.batch_execute("COMMIT").await.unwrap();
    let n: i64 = c
        .cluster
        .direct()
        .await
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the failed transaction must not commit");
}

async fn held_statement_runs_after_approval_through_the_api(c: &Ctx) {
    let t = table("doomed");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let sql = format!("DROP TABLE {t}");
    let gw = &c.gw;
    let (psql, approve) = tokio::join!(
        tokio::task::spawn_blocking({
            let port = gw.gate.port();
            move || {
                std::process::Command::new("psql")
                    .args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
                    .arg(format!(
                        "host=127.0.0.1 port={port} user={AGENT} dbname=prod"
                    ))
                    .args(["-c", &sql])
                    .env("PGPASSWORD", AGENT_TOKEN)
                    .output()
                    .unwrap()
            }
        }),
        async {
            let id = gw.next_pending_for(&t).await;
            gw.vote(ALICE_TOKEN, &id, "approve", "cleanup of a scratch table")
                .await;
            id
        }
    );
    let out = psql.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql failed: {stderr}");
    assert!(
        stderr.contains("awaits approval") && stderr.contains(&approve),
        "{stderr}"
    );
    assert!(
        stderr.contains("/v1/requests/"),
        "the notice names the review URL: {stderr}"
    );
    let exists: bool = c
        .cluster
        .direct()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the approved DROP ran");
}

async fn held_statement_denied_through_the_api_is_42501(c: &Ctx) {
    let t = table("kept");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let db = c.gw.connect().await.unwrap();
    let sql = format!("TRUNCATE {t}");
    let (r, ()) = tokio::join!(db.batch_execute(&sql), async {
        let id = c.gw.next_pending_for(&t).await;
        c.gw.vote(BOB_TOKEN, &id, "deny", "not during business hours")
            .await;
    });
    let e = r.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let msg = e.as_db_error().unwrap().message();
    assert!(
        msg.contains("denied") && msg.contains("not during business hours"),
        "{msg}"
    );
    db.batch_execute("SELECT 1").await.unwrap();
}

async fn changed_statement_after_approval_needs_a_new_approval(c: &Ctx) {
    let a = table("a");
    let b = table("b");
    c.setup(&format!(
        "CREATE TABLE {a} (v int); CREATE TABLE {b} (v int)"
    ))
    .await;
    let db = c.gw.connect().await.unwrap();
    let sql = format!("DELETE FROM {a}");
    let (r, ()) = tokio::join!(db.batch_execute(&sql), async {
        let id = c.gw.next_pending_for(&sql).await;
        c.gw.vote(ALICE_TOKEN, &id, "approve", "ok").await;
    });
    r.unwrap();
    // The grant was single use and bound to that text: another table is a new request, and
    // the same text again is one too.
    for sql in [format!("DELETE FROM {b}"), format!("DELETE FROM {a}")] {
        let (r, ()) = tokio::join!(db.batch_execute(&sql), async {
            let id = c.gw.next_pending_for(&sql).await;
            c.gw.vote(ALICE_TOKEN, &id, "deny", "no").await;
        });
        assert_eq!(sqlstate(&r.unwrap_err()), "42501", "{sql}");
    }
}

async fn extended_protocol_parameters_are_bound_into_the_approval(c: &Ctx) {
    let t = table("params");
    c.setup(&format!("CREATE TABLE {t} (v text)")).await;
    let db = c.gw.connect().await.unwrap();
    // COPY (query) TO STDOUT is an export; the prepared form is held with its parameters.
    let stmt = format!("SELECT $1::text FROM {t} FOR UPDATE");
    let row = db.query(&stmt, &[&"x"]).await.unwrap();
    assert!(row.is_empty());
    let records = c.gw.audit().await;
    let last = records
        .iter()
        .rev()
        .find(|e| e["kind"] == "attempt" && e["payload"]["sql"] == stmt.as_str())
        .expect("the attempt is logged");
    // tokio-postgres sends parameters in binary; the payload keeps their exact bytes.
    assert_eq!(
        last["payload"]["params"],
        serde_json::json!([{ "binary": "78" }])
    );
    assert_eq!(last["action"], "db.write");
}

async fn client_that_vanishes_while_held_withdraws_its_request(c: &Ctx) {
    let t = table("vanish");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let mut psql = std::process::Command::new("psql")
        .args(["-X", "-c", &format!("DROP TABLE {t}")])
        .arg(format!(
            "host=127.0.0.1 port={} user={AGENT} dbname=prod",
            c.gw.gate.port()
        ))
        .env("PGPASSWORD", AGENT_TOKEN)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = c.gw.next_pending_for(&t).await;
    psql.kill().unwrap();
    psql.wait().unwrap();
    let request =
        c.gw.engine
            .wait(&id, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(request.status.as_str(), "cancelled");
}

async fn cancel_request_while_held_withdraws_the_request(c: &Ctx) {
    let t = table("cancelme");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let db = c.gw.connect().await.unwrap();
    let token = db.cancel_token();
    let sql = format!("DROP TABLE {t}");
    let (r, id) = tokio::join!(db.batch_execute(&sql), async {
        let id = c.gw.next_pending_for(&t).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        id
    });
    assert_eq!(sqlstate(&r.unwrap_err()), "57014");
    let request =
        c.gw.engine
            .wait(&id, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(request.status.as_str(), "cancelled");
    db.batch_execute("SELECT 1").await.unwrap();
}

async fn cancel_request_reaches_the_upstream_query(c: &Ctx) {
    let db = c.gw.connect().await.unwrap();
    let token = db.cancel_token();
    let (r, ()) = tokio::join!(db.batch_execute("SELECT pg_sleep(20)"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let e = r.unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
}

async fn copy_in_streams_and_copy_out_is_held(c: &Ctx) {
    use futures_util::SinkExt;
    let t = table("copied");
    c.setup(&format!("CREATE TABLE {t} (id int, body text)"))
        .await;
    let db = c.gw.connect().await.unwrap();
    let sink = db.copy_in(&format!("COPY {t} FROM STDIN")).await.unwrap();
    futures_util::pin_mut!(sink);
    let line = "x".repeat(1000);
    for chunk in 0..50 {
        let mut buf = String::new();
        for i in 0..200 {
            buf.push_str(&format!("{}\t{line}\n", chunk * 200 + i));
        }
        sink.send(bytes::Bytes::from(buf)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    // Data leaving the database is an export: held, and denied here.
    let sql = format!("COPY {t} TO STDOUT");
    let (r, ()) = tokio::join!(db.copy_out(&sql), async {
        let id = c.gw.next_pending_for(&t).await;
        c.gw.vote(ALICE_TOKEN, &id, "deny", "no exports").await;
    });
    let e = r.err().expect("the export is refused");
    assert_eq!(sqlstate(&e), "42501");
}

async fn wrong_password_and_unknown_user_fail_alike(c: &Ctx) {
    let wrong = c.gw.connect_as(AGENT, "not-the-token").await.err().unwrap();
    let unknown = c.gw.connect_as("nobody", AGENT_TOKEN).await.err().unwrap();
    assert_eq!(sqlstate(&wrong), "28P01");
    assert_eq!(sqlstate(&unknown), "28P01");
    // Another principal's token is not this principal's password.
    let other = c.gw.connect_as(AGENT, ALICE_TOKEN).await.err().unwrap();
    assert_eq!(sqlstate(&other), "28P01");
    // A principal without a verifier cannot log in without TLS, even with its token.
    let plain =
        c.gw.connect_as(TLS_AGENT, TLS_AGENT_TOKEN)
            .await
            .err()
            .unwrap();
    assert_eq!(sqlstate(&plain), "28P01");
}

async fn tls_only_principal_logs_in_over_tls_with_cleartext(c: &Ctx) {
    let root = c.certs.path("ca.pem");
    let out = std::process::Command::new("psql")
        .args(["-X", "-At", "-c", "SELECT current_setting('ssl') IS NOT NULL"])
        .arg(format!(
            "host=localhost port={} user={TLS_AGENT} dbname=prod sslmode=verify-full sslrootcert={}",
            c.gw.gate.port(),
            root.display()
        ))
        .env("PGPASSWORD", TLS_AGENT_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _, stderr) = c.gw.psql("sslmode=disable", TLS_AGENT_TOKEN, "SELECT 1");
    assert!(
        !ok && stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

async fn psql_over_tls(c: &Ctx) {
    let (ok, stdout, stderr) =
        c.gw.psql("sslmode=require", AGENT_TOKEN, "SELECT 'through the gate'");
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "through the gate");
    // Bytes pipelined after an SSLRequest are refused (CVE-2021-23222).
    let mut s = TcpStream::connect(c.gw.gate).unwrap();
    let mut bytes = vec![0, 0, 0, 8, 4, 210, 22, 47];
    bytes.extend_from_slice(b"Qjunk");
    s.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("unencrypted data after SSL request"));
}

async fn statement_outcomes_are_audited(c: &Ctx) {
    let db = c.gw.connect().await.unwrap();
    let marker = format!("audit_marker_{}", rand::random::<u32>());
    let ok_sql = format!("SELECT '{marker}'");
    let bad_sql = format!("SELECT '{marker}' FROM no_such_table");
    db.batch_execute(&ok_sql).await.unwrap();
    let _ = db.batch_execute(&bad_sql).await;
    // The outcome record of a statement: the execution record with its attempt's digest.
    let outcome_of = |records: &[serde_json::Value], sql: &str| {
        let attempt = records
            .iter()
            .find(|e| e["kind"] == "attempt" && e["payload"]["sql"] == sql)?;
        records
            .iter()
            .find(|e| e["kind"] == "execution" && e["payload_digest"] == attempt["payload_digest"])
            .cloned()
    };
    let records =
        c.gw.audit_when(|r| outcome_of(r, &ok_sql).is_some() && outcome_of(r, &bad_sql).is_some())
            .await;
    let outcome = |sql: &str| {
        outcome_of(&records, sql).unwrap_or_else(|| panic!("no attempt and outcome for {sql}"))
    };
    let o = outcome(&ok_sql);
    assert_eq!(
        (o["outcome"].as_str(), o["reason"].as_str()),
        (Some("succeeded"), Some("SELECT 1"))
    );
    let o = outcome(&bad_sql);
    assert_eq!(o["outcome"], "failed");
    assert!(o["reason"].as_str().unwrap().starts_with("42P01"), "{o}");
    assert_eq!(o["channel"], "prod");
}

async fn startup_parameters_that_change_privileges_are_dropped(c: &Ctx) {
    let (ok, stdout, stderr) = c.gw.psql(
        "options='-c default_transaction_read_only=on'",
        AGENT_TOKEN,
        "SHOW default_transaction_read_only",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "off", "options must not reach the upstream");
    assert!(stderr.contains("\"options\" is not passed on"), "{stderr}");
}

/// Sends `bytes` on a fresh connection and returns what the gate answered before closing.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    countersign_gate_pg::wire::startup_message(params)
}

async fn malformed_input_gets_clear_errors_and_other_sessions_continue(c: &Ctx) {
    let db = c.gw.connect().await.unwrap();
    let addr = c.gw.gate;
    // Protocol 2.
    let mut v2 = startup(&[("user", AGENT)]);
    v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
    let answer = raw_exchange(addr, &v2);
    assert!(
        answer.contains("unsupported frontend protocol 2.0"),
        "{answer:?}"
    );
    // No user.
    assert!(
        raw_exchange(addr, &startup(&[("database", "prod")])).contains("no PostgreSQL user name")
    );
    // A length that lies, or is huge.
    assert!(
        raw_exchange(addr, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).contains("startup packet length")
    );
    assert!(raw_exchange(addr, &[0, 0, 0, 2]).contains("startup packet length"));
    // Replication connections are not served.
    assert!(
        raw_exchange(
            addr,
            &startup(&[("user", AGENT), ("replication", "database")])
        )
        .contains("replication")
    );
    // A database the gate does not serve.
    assert!(
        raw_exchange(addr, &startup(&[("user", AGENT), ("database", "other")]))
            .contains("not served here")
    );
    // Truncated and garbage messages after authentication end that session only.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    drop(stream);
    for garbage in [
        &b"\x00\x00\x00\x08\x00\x03\x00"[..],
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let _ = raw_exchange(addr, garbage);
    }
    let row = db.query_one("SELECT 'still here'", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "still here");
    // After login, a message declaring a huge length is refused from its header, before
    // anything of it is buffered, and the session ends with a clear error.
    let mut raw = RawSession::connect(addr).await;
    raw.send(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).await;
    let (tag, body) = raw.next().await;
    assert_eq!(tag, b'E');
    assert!(
        String::from_utf8_lossy(&body).contains("message length"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A message type the protocol does not have ends it too.
    let mut raw = RawSession::connect(addr).await;
    raw.send(&[b'!', 0, 0, 0, 4]).await;
    let (tag, body) = raw.next().await;
    assert_eq!(tag, b'E');
    assert!(String::from_utf8_lossy(&body).contains("unknown message type"));
    // A client that sends statement after statement and never reads an answer is stopped
    // at the gate's bound instead of growing its memory.
    let mut raw = RawSession::connect(addr).await;
    raw.send(&msg::execute().repeat(100_001)).await;
    let mut ended = None;
    while ended.is_none() {
        let (tag, body) = raw.next().await;
        let text = String::from_utf8_lossy(&body).into_owned();
        if tag == b'E' && text.contains("54000") {
            ended = Some(text);
        }
    }
    assert!(ended.unwrap().contains("not yet answered"));
    // The session opened at the start still works.
    let row = db.query_one("SELECT 'still here'", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "still here");
}

async fn upstream_down_is_a_clear_fatal_error(c: &Ctx) {
    let dead = Gateway::start(GateOptions {
        upstream_port: free_port(),
        ..Default::default()
    })
    .await;
    let msg = dead.refused_login().await;
    assert!(msg.contains("cannot reach the upstream server"), "{msg}");
    // The gate in front of the live cluster is untouched.
    c.shared_gate_still_serves().await;
}

/// Reads run while their decision is being written, but their rows wait for it: a decision
/// that cannot be recorded ends the session before any row reaches the client.
async fn reads_whose_decision_cannot_be_recorded_return_nothing(c: &Ctx) {
    let gw = c.own_gateway(None, false).await;
    let db = gw.connect().await.unwrap();
    let row = db.query_one("SELECT 41 + $1::int", &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    gw.store.close().await;
    for sql in ["SELECT 'secret'", "SELECT 'secret', $1::int"] {
        let fresh = gw.connect().await.unwrap();
        let result = if sql.contains('$') {
            fresh.query(sql, &[&7i32]).await.map(|rows| rows.len())
        } else {
            fresh.simple_query(sql).await.map(|m| m.len())
        };
        let e = result.expect_err("no row may pass without its record");
        let db_error = e.as_db_error().expect("a server error");
        assert_eq!(db_error.code().code(), "58000", "{db_error:?}");
        assert!(
            db_error.message().contains("could not be recorded"),
            "{}",
            db_error.message()
        );
        assert!(fresh.is_closed() || fresh.simple_query("SELECT 1").await.is_err());
    }
    // The gate in front of a working store is untouched.
    c.shared_gate_still_serves().await;
}

/// With a journal, a read's rows go out once its record is journaled; when the store fails,
/// the reads already journaled keep their records in the journal for the next start, and from
/// the first failed commit on, reads wait for the store again and return nothing.
async fn a_journaled_gate_keeps_the_records_of_the_rows_it_released(c: &Ctx) {
    let gw = c.own_gateway(None, true).await;
    let db = gw.connect().await.unwrap();
    gw.store.close().await;
    let mut released = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let sql = format!("SELECT 'journaled {i}'");
        match db.simple_query(&sql).await {
            Ok(_) => released.push(sql),
            Err(e) => {
                let db_error = e.as_db_error().expect("a server error");
                assert_eq!(db_error.code().code(), "58000", "{db_error:?}");
                refused += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !released.is_empty(),
        "the first read is journaled before any commit fails"
    );
    assert_eq!(refused, 1, "once a commit failed, reads fail closed");
    let dir = gw.journal.as_ref().unwrap().path();
    let mut journaled = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            journaled.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    for sql in &released {
        let line = journaled
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["kind"] == "attempt" && e["payload"]["sql"] == sql.as_str());
        assert!(
            line.is_some(),
            "{sql} was answered without its record journaled"
        );
    }
    c.shared_gate_still_serves().await;
}

async fn sessions_beyond_the_cap_are_refused_with_53300(c: &Ctx) {
    let gw = c.own_gateway(Some(2), false).await;
    let first = gw.connect().await.unwrap();
    let second = gw.connect().await.unwrap();
    let Err(e) = gw.connect().await else {
        panic!("a third session is refused");
    };
    let db_error = e.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "53300", "{db_error:?}");
    assert!(
        db_error.message().contains("too many clients"),
        "{db_error:?}"
    );
    // The sessions being served are untouched, and a slot that frees up is used again.
    second.batch_execute("SELECT 1").await.unwrap();
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        if let Ok(client) = gw.connect().await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    third
        .expect("a freed slot takes a new session")
        .batch_execute("SELECT 1")
        .await
        .unwrap();
}

async fn upstream_over_verified_tls(c: &Ctx) {
    let root = c.certs.path("ca.pem");
    let tls = Gateway::start(GateOptions {
        upstream_port: c.cluster.port,
        upstream_tls_root: Some(&root),
        ..Default::default()
    })
    .await;
    let db = tls.connect().await.unwrap();
    let row = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "the gate's upstream connection uses TLS"
    );
    // A root that did not sign the upstream's certificate is refused.
    let other = Certs::new();
    let wrong_root = other.path("ca.pem");
    let bad = Gateway::start(GateOptions {
        upstream_port: c.cluster.port,
        upstream_tls_root: Some(&wrong_root),
        ..Default::default()
    })
    .await;
    let msg = bad.refused_login().await;
    assert!(msg.contains("TLS"), "{msg}");
}

async fn configured_classification_reaches_policy(c: &Ctx) {
    c.setup("CREATE TABLE IF NOT EXISTS cardholders (id int, pan text)")
        .await;
    let db = c.gw.connect().await.unwrap();
    // Reads pass whatever the classification.
    db.batch_execute("SELECT count(*) FROM cardholders")
        .await
        .unwrap();
    // Nothing destroys restricted data (a forbid), with or without the schema written.
    for sql in ["TRUNCATE cardholders", "DELETE FROM public.cardholders"] {
        let e = db.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}");
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(
            msg.contains("no-destroying-restricted-data"),
            "{sql}: {msg}"
        );
    }
    // Writes to restricted data are held for a reviewer.
    let sql = "UPDATE cardholders SET pan = 'x' WHERE id = 1";
    let (r, ()) = tokio::join!(db.batch_execute(sql), async {
        let id = c.gw.next_pending_for(sql).await;
        c.gw.vote(ALICE_TOKEN, &id, "approve", "card rotation")
            .await;
    });
    r.unwrap();
    let attempt =
        c.gw.audit()
            .await
            .into_iter()
            .find(|e| e["kind"] == "attempt" && e["payload"]["sql"] == sql)
            .unwrap();
    assert_eq!(attempt["resources"][1]["classification"], "restricted");
    assert_eq!(attempt["resources"][1]["id"], "prod/cardholders");
}

/// The gate decides a Bind on the statement text the upstream holds, never on a Parse that
/// failed or was skipped.
async fn a_parse_the_upstream_did_not_take_never_decides_a_bind(c: &Ctx) {
    let t = table("victim");
    c.setup(&format!("CREATE TABLE {t} (v int)")).await;
    let exists = || async {
        c.cluster
            .direct()
            .await
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    let mut raw = RawSession::connect(c.gw.gate).await;
    let name = format!("s_{t}");
    // A named statement prepared as a DROP, then "redefined" (the upstream refuses: it exists).
    raw.send(&[msg::parse(&name, &format!("DROP TABLE {t}")), msg::sync()].concat())
        .await;
    raw.until_ready().await;
    raw.send(&[msg::parse(&name, "SELECT 1"), msg::sync()].concat())
        .await;
    let answer = raw.until_ready().await;
    assert!(
        answer.iter().any(|(tag, _)| *tag == b'E'),
        "the upstream refuses the second Parse"
    );
    // Binding it is not a read: the gate cannot vouch for the text, so it is held.
    raw.send(&[msg::bind(&name), msg::execute(), msg::sync()].concat())
        .await;
    let id = c.gw.next_pending_for(&name).await;
    c.gw.vote(ALICE_TOKEN, &id, "deny", "unknown statement")
        .await;
    let answer = raw.until_ready().await;
    let error = answer
        .iter()
        .find(|(tag, _)| *tag == b'E')
        .expect("refused");
    assert!(String::from_utf8_lossy(&error.1).contains("42501"));
    assert!(exists().await, "the DROP did not run");

    // The unnamed statement: a Parse skipped after an error leaves the old text upstream.
    raw.send(&[msg::parse("", &format!("DROP TABLE {t}")), msg::sync()].concat())
        .await;
    raw.until_ready().await;
    raw.send(
        &[
            msg::parse("broken", "SELEC garbage"),
            msg::parse("", "SELECT 1"),
            msg::sync(),
        ]
        .concat(),
    )
    .await;
    raw.until_ready().await;
    raw.send(&[msg::bind(""), msg::execute(), msg::sync()].concat())
        .await;
    let id = c.gw.next_pending_for("\"statement\":\"\"").await;
    c.gw.vote(ALICE_TOKEN, &id, "deny", "unknown statement")
        .await;
    let answer = raw.until_ready().await;
    assert!(
        answer
            .iter()
            .any(|(tag, body)| *tag == b'E' && String::from_utf8_lossy(body).contains("42501"))
    );
    assert!(exists().await, "the DROP did not run");
}
