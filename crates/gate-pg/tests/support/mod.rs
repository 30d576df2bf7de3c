//! What the gate's end-to-end tests stand on: a private PostgreSQL cluster that demands
//! SCRAM-SHA-256 (and offers TLS), certificates made with the openssl tool, and a gateway —
//! engine, HTTP API and the gate — on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use countersign_core::{ConfiguredPrincipal, Principal, PrincipalKind};
use countersign_engine::{AuditSigning, Engine, EngineConfig};
use countersign_gate_pg::{Gate, PgGateSection, PgLogin, ScramVerifier};
use countersign_policy::LoadedPolicies;
use countersign_server::ServerConfig;
use countersign_store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const UPSTREAM_USER: &str = "gate_owner";
pub const UPSTREAM_PASSWORD: &str = "upstream-secret-9f2c";
pub const UPSTREAM_DB: &str = "app";

pub const AGENT: &str = "etl-nightly";
pub const AGENT_TOKEN: &str = "cs_agent_test_token_0001";
/// An agent without a SCRAM verifier: it can log in over TLS only.
pub const TLS_AGENT: &str = "tls-only-agent";
pub const TLS_AGENT_TOKEN: &str = "cs_agent_test_token_0002";
/// Configured as `restricted` in the gate's `tables`.
pub const RESTRICTED_TABLE: &str = "public.cardholders";
pub const ALICE_TOKEN: &str = "cs_user_alice_token";
pub const BOB_TOKEN: &str = "cs_user_bob_token";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 that it signed.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let o = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(d));
        o(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=countersign test CA",
        ]);
        o(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
        o(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A private PostgreSQL 15 cluster on its own port: SCRAM-SHA-256 for TCP, TLS on, and a role
/// and database for the gate. Stopped and removed on drop.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    pub fn start(certs: &Certs) -> Cluster {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("countersign-gate-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        for f in ["server.pem", "server.key"] {
            std::fs::copy(certs.path(f), dir.join(f)).unwrap();
        }
        run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&dir));
        run(Command::new("chmod").arg("600").arg(dir.join("server.key")));
        let as_pg = |bin: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/{bin}"));
            c
        };
        run(as_pg("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            dir.display(),
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        run(as_pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.join("log"))
            .args(["-w", "start"]));
        let cluster = Cluster { dir, port };
        cluster.psql_admin(&format!(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE {UPSTREAM_USER} LOGIN PASSWORD '{UPSTREAM_PASSWORD}'"
        ));
        cluster.psql_admin(&format!(
            "CREATE DATABASE {UPSTREAM_DB} OWNER {UPSTREAM_USER}"
        ));
        cluster
    }

    /// Runs SQL as the superuser over the cluster's socket.
    pub fn psql_admin(&self, sql: &str) -> String {
        run(Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "psql",
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]))
    }

    /// A direct connection to the upstream as the gate's role, for setting up and checking.
    pub async fn direct(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(UPSTREAM_USER)
            .password(UPSTREAM_PASSWORD)
            .dbname(UPSTREAM_DB)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn principal(kind: PrincipalKind, id: &str, groups: &[&str], token: &str, scram: bool) -> PgLogin {
    PgLogin {
        credential: ConfiguredPrincipal {
            principal: Principal::new(kind, id, groups.iter().copied()),
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        },
        scram: scram.then(|| ScramVerifier::generate(token)),
    }
}

pub fn logins() -> Vec<PgLogin> {
    vec![
        principal(PrincipalKind::Agent, AGENT, &["agents"], AGENT_TOKEN, true),
        principal(
            PrincipalKind::Agent,
            TLS_AGENT,
            &["agents"],
            TLS_AGENT_TOKEN,
            false,
        ),
        principal(
            PrincipalKind::User,
            "alice@example.com",
            &["reviewers"],
            ALICE_TOKEN,
            true,
        ),
        principal(
            PrincipalKind::User,
            "bob@example.com",
            &["reviewers"],
            BOB_TOKEN,
            true,
        ),
    ]
}

/// Engine, HTTP API and one gate named `prod` in front of the cluster.
pub struct Gateway {
    pub engine: Engine,
    /// The engine's store, for tests that make it fail.
    pub store: Store,
    pub api: String,
    pub gate: SocketAddr,
    /// The audit journal's directory, when the gateway keeps one.
    pub journal: Option<tempfile::TempDir>,
    _db: countersign_store::testing::TestDb,
}

#[derive(Default)]
pub struct GateOptions<'a> {
    pub upstream_port: u16,
    pub upstream_tls_root: Option<&'a Path>,
    pub client_tls: Option<&'a Certs>,
    /// The gate's session cap; the default when `None`.
    pub max_connections: Option<usize>,
    /// Keep an audit journal, so reads are acted on before their commit.
    pub journal: bool,
}

impl Gateway {
    pub async fn start(options: GateOptions<'_>) -> Gateway {
        let db = countersign_store::testing::TestDb::sqlite();
        let store = Store::open(&db.url).await.unwrap();
        let journal = options.journal.then(|| tempfile::tempdir().unwrap());
        let engine = Engine::start(
            store.clone(),
            LoadedPolicies::examples().unwrap(),
            EngineConfig {
                public_url: "http://127.0.0.1:8480".into(),
                audit: AuditSigning::ephemeral("test.example/countersign").unwrap(),
                journal: journal
                    .as_ref()
                    .map(|d| countersign_engine::JournalConfig::new(d.path())),
            },
        )
        .await
        .unwrap();
        let logins = logins();
        let router = countersign_server::router(
            engine.clone(),
            ServerConfig {
                principals: logins.iter().map(|l| l.credential.clone()).collect(),
                auditor_groups: BTreeSet::from(["auditors".to_owned()]),
                admin_groups: BTreeSet::from(["admins".to_owned()]),
                max_body_bytes: 1 << 20,
                policy_source: Arc::new(LoadedPolicies::examples),
                slack: Vec::new(),
            },
        );
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", api_listener.local_addr().unwrap());
        tokio::spawn(countersign_server::serve(
            api_listener,
            router,
            std::future::pending(),
        ));
        let mut upstream = format!(
            "postgres://{UPSTREAM_USER}@{}:{}/{UPSTREAM_DB}",
            if options.upstream_tls_root.is_some() {
                "localhost"
            } else {
                "127.0.0.1"
            },
            options.upstream_port
        );
        if let Some(root) = options.upstream_tls_root {
            upstream.push_str(&format!(
                "?sslmode=verify-full&sslrootcert={}",
                root.display()
            ));
        }
        let password_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(password_file.path(), UPSTREAM_PASSWORD).unwrap();
        let section = PgGateSection {
            name: "prod".into(),
            listen: "127.0.0.1:0".into(),
            upstream,
            upstream_password_env: None,
            upstream_password_file: Some(password_file.path().to_owned()),
            tls_cert: options.client_tls.map(|c| c.path("server.pem")),
            tls_key: options.client_tls.map(|c| c.path("server.key")),
            tables: [(
                RESTRICTED_TABLE.to_owned(),
                countersign_core::Classification::Restricted,
            )]
            .into(),
            max_connections: options
                .max_connections
                .unwrap_or(countersign_gate_pg::DEFAULT_MAX_CONNECTIONS),
        };
        let gate = Gate::new(section.resolve().unwrap(), engine.clone(), logins);
        let listener = gate.bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(gate.serve(listener));
        Gateway {
            engine,
            store,
            journal,
            api,
            gate: addr,
            _db: db,
        }
    }

    /// Why a login through the gate fails (the server's message, else the client's error).
    pub async fn refused_login(&self) -> String {
        match self.connect().await {
            Ok(_) => panic!("the login was expected to fail"),
            Err(e) => e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string()),
        }
    }

    /// A tokio-postgres connection through the gate as the test agent.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_as(AGENT, AGENT_TOKEN).await
    }

    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.gate.port())
            .user(user)
            .password(password)
            .dbname("prod")
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// `psql` through the gate; returns (success, stdout, stderr).
    pub fn psql(&self, conninfo_extra: &str, password: &str, sql: &str) -> (bool, String, String) {
        let out = Command::new("psql")
            .arg("-X")
            .arg("-At")
            .arg(format!(
                "host=127.0.0.1 port={} user={AGENT} dbname=prod {conninfo_extra}",
                self.gate.port()
            ))
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The ids of pending requests whose JSON mentions `needle`, as a reviewer sees them
    /// through the API.
    pub async fn pending(&self, needle: &str) -> Vec<String> {
        let body: serde_json::Value = http()
            .get(format!("{}/v1/requests?status=pending", self.api))
            .bearer_auth(ALICE_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["requests"]
            .as_array()
            .unwrap_or_else(|| panic!("unexpected listing {body}"))
            .iter()
            .filter(|r| r.to_string().contains(needle))
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until a request about `needle` is pending and returns its id.
    pub async fn next_pending_for(&self, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(id) = self.pending(needle).await.into_iter().next() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no request became pending");
    }

    /// Votes through the API as `token`.
    pub async fn vote(&self, token: &str, id: &str, decision: &str, reason: &str) {
        let r = http()
            .post(format!("{}/v1/requests/{id}/votes", self.api))
            .bearer_auth(token)
            .json(&serde_json::json!({ "decision": decision, "reason": reason }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "vote refused: {}",
            r.text().await.unwrap()
        );
    }

    /// The kinds and outcomes of the audit events so far, as (kind, action, verdict/outcome, reason).
    /// The audit records, once `ready` holds for them (or after 10 s, whatever they are then):
    /// the records of a journaled read reach the store with the next commit, after its answer.
    pub async fn audit_when(
        &self,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.audit().await;
            if ready(&records) || Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn audit(&self) -> Vec<serde_json::Value> {
        self.engine
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.event_json).unwrap())
            .collect()
    }
}

/// A client that speaks the protocol message by message, for sequences no library sends.
pub struct RawSession {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawSession {
    /// Connects and logs in as the test agent with SCRAM-SHA-256.
    pub async fn connect(gate: SocketAddr) -> RawSession {
        use countersign_gate_pg::{scram::ScramClient, wire};
        let stream = tokio::net::TcpStream::connect(gate).await.unwrap();
        let mut s = RawSession {
            stream,
            buf: Vec::new(),
        };
        s.send(&wire::startup_message(&[
            ("user", AGENT),
            ("database", "prod"),
        ]))
        .await;
        let mut scram = ScramClient::new(AGENT_TOKEN);
        loop {
            let (tag, body) = s.next().await;
            match (
                tag,
                body.get(..4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
            ) {
                (b'R', Some(10)) => {
                    let first = scram.client_first();
                    s.send(&wire::sasl_initial_response("SCRAM-SHA-256", &first))
                        .await;
                }
                (b'R', Some(11)) => {
                    let last = scram.server_first(&body[4..]).unwrap();
                    s.send(&wire::password_message(&last)).await;
                }
                (b'R', Some(12)) => scram.server_final(&body[4..]).unwrap(),
                (b'Z', _) => return s,
                (b'E', _) => panic!("login refused: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message: its tag and body.
    pub async fn next(&mut self) -> (u8, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let frame: Vec<u8> = self.buf.drain(..=len).collect();
                    return (frame[0], frame[5..].to_vec());
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the gate closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await;
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

/// Frontend messages of the extended protocol, for [`RawSession`].
pub mod msg {
    use countersign_gate_pg::wire::MessageBuilder;

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        MessageBuilder::new(Some(b'P'))
            .cstr(name)
            .cstr(sql)
            .bytes(&[0, 0])
            .finish()
    }
    pub fn bind(statement: &str) -> Vec<u8> {
        countersign_gate_pg::wire::bind(b"", statement)
    }
    pub fn execute() -> Vec<u8> {
        MessageBuilder::new(Some(b'E')).cstr("").u32(0).finish()
    }
    pub fn sync() -> Vec<u8> {
        MessageBuilder::new(Some(b'S')).finish()
    }
}

/// An HTTP client for the gateway's API. Built with rustls when the reviewer channels are in the
/// build, so the one crypto provider is installed first.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
