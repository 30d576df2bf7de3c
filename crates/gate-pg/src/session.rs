//! One client connection, from the first byte to the last: the start-up exchange (TLS, cancel
//! requests, protocol version), authentication with the principal's token, the upstream
//! connection, and then the proxy proper.
//!
//! The proxy runs two halves in one task. The [`Reader`] takes client messages, turns every
//! statement into an attempt for the engine and forwards, holds or refuses it. The
//! [`Forwarder`] streams the upstream's answers back, message by message, and notes each
//! statement's outcome for the audit log.
//!
//! A refused statement is never answered by the gate alone: the gate sends the upstream
//! something that fails by construction (an `EXECUTE` or `Bind` of a prepared statement named
//! by an unguessable marker), so the upstream reaches exactly the state a client expects after
//! an error — a failed transaction block stays failed, an extended-protocol batch skips to
//! Sync — and the forwarder replaces that error, recognised by its marker, with the refusal.

use crate::cancel::{CancelRegistry, CancelTarget};
use crate::classify::{Classification, StatementKind};
use crate::upstream::{self, FrameError, Stream, UpstreamError};
use crate::wire::{self, Frontend, Severity, WireError};
use crate::{Gate, PgLogin, lock};
use bytes::BytesMut;
use countersign_core::{
    Action, Attempt, PayloadDigest, Principal, PrincipalRef, RequestStatus, Resource, ResourceRef,
};
use countersign_engine::{ActionOutcome, CheckOutcome, Logging};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// How long a client may take from connecting to being authenticated.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client the gate has no room for may take to send its start-up message.
const BUSY_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Startup parameters passed on to the upstream. Anything else — `options`, or a setting such
/// as `role` given as a parameter — could change the session's privileges before a single
/// statement is classified, so it is dropped with a notice.
const FORWARDED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "bytea_output",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
];

/// Why a session ended early; logged, and sent to the client as a FATAL error when it can be.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{message}")]
    Fatal { code: &'static str, message: String },
    #[error("the client went away")]
    ClientGone,
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
}

impl End {
    fn fatal(code: &'static str, message: impl Into<String>) -> End {
        End::Fatal {
            code,
            message: message.into(),
        }
    }

    fn protocol(e: WireError) -> End {
        End::fatal("08P01", format!("protocol violation: {e}"))
    }

    /// The FATAL message the client gets, if any.
    fn to_client(&self) -> Option<Vec<u8>> {
        match self {
            End::Fatal { code, message } => {
                Some(wire::error_response(Severity::Fatal, code, message, None))
            }
            End::Upstream(e) => Some(wire::error_response(
                Severity::Fatal,
                "08006",
                &format!("countersign: {e}"),
                None,
            )),
            End::ClientGone => None,
        }
    }
}

/// Serves one client connection to its end.
pub(crate) async fn serve(gate: Arc<Gate>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    match run(&gate, tcp, peer).await {
        Ok(()) | Err(End::ClientGone) => {
            tracing::debug!(%peer, gate = %gate.config.name, "session ended")
        }
        Err(e) => tracing::info!(%peer, gate = %gate.config.name, reason = %e, "session ended"),
    }
}

/// Answers a client the gate has no room for as PostgreSQL does: after the start-up
/// negotiation (so TLS clients read it, and cancel requests still work), with SQLSTATE 53300.
pub(crate) async fn refuse_busy(gate: Arc<Gate>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let started = tokio::time::timeout(BUSY_STARTUP_TIMEOUT, start(&gate, tcp)).await;
    if let Ok(Ok(Some(mut client))) = started {
        let limit = gate.config.max_connections;
        let end = End::fatal(
            "53300",
            format!("sorry, too many clients already (this gate serves at most {limit} sessions)"),
        );
        refuse(&mut client.stream, end).await;
    }
}

async fn run(gate: &Arc<Gate>, tcp: TcpStream, peer: SocketAddr) -> Result<(), End> {
    // One deadline for everything before the session proper, authentication included, so a
    // client that stops answering holds nothing for long.
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let timed_out = || End::fatal("08P01", "authentication timed out");
    let started = tokio::time::timeout_at(deadline, start(gate, tcp)).await;
    let Some(mut client) = started.map_err(|_| timed_out())?? else {
        return Ok(());
    };
    match tokio::time::timeout_at(deadline, login(gate, &mut client)).await {
        Ok(Ok(session)) => session.proxy(gate, client, peer).await,
        Ok(Err(end)) => Err(refuse(&mut client.stream, end).await),
        Err(_) => Err(refuse(&mut client.stream, timed_out()).await),
    }
}

/// A client connection before the proxy starts.
struct Client {
    stream: Stream,
    buf: BytesMut,
    tls: bool,
    minor: u32,
    params: Vec<(String, String)>,
}

impl Client {
    /// One message of the authentication exchange; these are small, so the bound is tight.
    async fn message(&mut self) -> Result<BytesMut, End> {
        upstream::read_frame(&mut self.stream, &mut self.buf, wire::MAX_STARTUP_LEN)
            .await
            .map_err(|e| match e {
                FrameError::Wire(e) => End::protocol(e),
                FrameError::Closed => End::ClientGone,
            })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|_| End::ClientGone)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads startup packets until the client asks for a session: answers SSL and GSS requests,
/// handles cancel requests. `None` when the connection was a cancel request.
async fn start(gate: &Arc<Gate>, tcp: TcpStream) -> Result<Option<Client>, End> {
    let mut stream: Stream = Box::new(tcp);
    let mut tls = false;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let n = loop {
            match wire::startup_len(&buf) {
                Ok(Some(n)) => break n,
                Ok(None) => {}
                Err(e) => return Err(refuse(&mut stream, End::protocol(e)).await),
            }
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|_| End::ClientGone)?
                == 0
            {
                return Err(End::ClientGone);
            }
        };
        let packet = buf.split_to(n);
        let startup = match wire::decode_startup(&packet) {
            Ok(startup) => startup,
            Err(WireError::UnsupportedProtocol(major, minor)) => {
                let end = End::fatal(
                    "0A000",
                    format!(
                        "unsupported frontend protocol {major}.{minor}: the gate speaks 3.0 and 3.2"
                    ),
                );
                return Err(refuse(&mut stream, end).await);
            }
            Err(e) => return Err(refuse(&mut stream, End::protocol(e)).await),
        };
        match startup {
            wire::Startup::SslRequest | wire::Startup::GssEncRequest if !buf.is_empty() => {
                // Bytes sent before the answer could have been injected by anyone on the path
                // (CVE-2021-23222); they must not be read as part of the encrypted session.
                let end = End::fatal("08P01", "received unencrypted data after SSL request");
                return Err(refuse(&mut stream, end).await);
            }
            wire::Startup::SslRequest => match &gate.config.tls {
                Some(config) if !tls => {
                    stream.write_all(b"S").await.map_err(|_| End::ClientGone)?;
                    stream = accept_tls(config.clone(), stream).await?;
                    tls = true;
                }
                _ => stream.write_all(b"N").await.map_err(|_| End::ClientGone)?,
            },
            wire::Startup::GssEncRequest => {
                stream.write_all(b"N").await.map_err(|_| End::ClientGone)?;
            }
            wire::Startup::Cancel { pid, key } => {
                gate.cancels.cancel(pid, &key).await;
                return Ok(None);
            }
            wire::Startup::Session { minor, params } => {
                return Ok(Some(Client {
                    stream,
                    buf,
                    tls,
                    minor,
                    params,
                }));
            }
        }
    }
}

/// Sends `end` to the client as a FATAL error, if it is one, and returns it.
async fn refuse(stream: &mut Stream, end: End) -> End {
    if let Some(bytes) = end.to_client() {
        let _ = stream.write_all(&bytes).await;
    }
    end
}

async fn accept_tls(config: Arc<rustls::ServerConfig>, stream: Stream) -> Result<Stream, End> {
    tokio_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map(|s| Box::new(s) as Stream)
        .map_err(|e| End::fatal("08P01", format!("TLS handshake failed: {e}")))
}

/// An authenticated client with its upstream session.
struct Session {
    principal: Principal,
    upstream: upstream::Connected,
}

/// Checks the startup parameters, authenticates the client and connects upstream.
async fn login(gate: &Arc<Gate>, client: &mut Client) -> Result<Session, End> {
    // 3.0 and 3.2 differ only in the cancel key length; other versions are negotiated down.
    let unknown_options: Vec<&str> = client
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    let spoken = if client.minor >= 2 { 2 } else { 0 };
    if spoken != client.minor || !unknown_options.is_empty() {
        let msg = wire::negotiate_protocol(spoken, &unknown_options);
        client.send(&msg).await?;
        client.minor = spoken;
    }
    let user = client
        .param("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            End::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    if client
        .param("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        return Err(End::fatal(
            "28000",
            "replication connections are not served through countersign",
        ));
    }
    // libpq names the user's own database when none is given; that one is let through too.
    let served = |d: &&str| {
        d.is_empty() || *d == user || *d == gate.config.name || *d == gate.config.upstream.database
    };
    if let Some(db) = client.param("database").filter(|d| !served(d)) {
        return Err(End::fatal(
            "3D000",
            format!(
                "database \"{db}\" is not served here: this gate serves \"{}\"",
                gate.config.name
            ),
        ));
    }
    let principal = authenticate(gate, client, &user).await?;
    let mut forwarded = Vec::new();
    let mut dropped = Vec::new();
    for (k, v) in &client.params {
        if FORWARDED_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
            forwarded.push((k.clone(), v.clone()));
        } else if !matches!(k.as_str(), "user" | "database" | "replication")
            && !k.starts_with("_pq_.")
        {
            dropped.push(k.clone());
        }
    }
    let upstream = upstream::connect(&gate.config.upstream, &forwarded)
        .await
        .map_err(|e| {
            tracing::warn!(gate = %gate.config.name, error = %e, "upstream connection failed");
            e
        })?;
    client.send(&wire::authentication(0, &[])).await?;
    for name in dropped {
        client
            .send(&wire::error_response(
                Severity::Notice,
                "01000",
                &format!("countersign: startup parameter \"{name}\" is not passed on; use SET, which is classified like every statement"),
                None,
            ))
            .await?;
    }
    Ok(Session {
        principal,
        upstream,
    })
}

/// Authenticates the client as principal `user` with its token as password: a cleartext
/// password over TLS (checked like a bearer token), SCRAM-SHA-256 against the principal's
/// verifier otherwise. An unknown user goes through the same exchange as a wrong password and
/// fails the same way.
async fn authenticate(gate: &Arc<Gate>, client: &mut Client, user: &str) -> Result<Principal, End> {
    let failed = || {
        End::fatal(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        )
    };
    let mut matching = gate
        .logins
        .iter()
        .filter(|l| l.credential.principal.id == user);
    let login: Option<&PgLogin> = match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    };
    // Each transport asks every user the same way, so the question does not tell who exists.
    if client.tls {
        client.send(&wire::authentication(3, &[])).await?;
        let frame = client.message().await?;
        let Frontend::Password(body) = wire::decode_frontend(&frame).map_err(End::protocol)? else {
            return Err(End::fatal("08P01", "expected a password message"));
        };
        let token = wire::decode_password(body).map_err(End::protocol)?;
        let all: Vec<_> = gate.logins.iter().map(|l| l.credential.clone()).collect();
        return match countersign_core::authenticate(&all, token) {
            Some(c) if c.principal.id == user => Ok(c.principal.clone()),
            _ => Err(failed()),
        };
    }
    if let Some(verifier) = login.and_then(|l| l.scram.as_ref()) {
        let mut server = crate::scram::ScramServer::new(verifier);
        scram_exchange(client, &mut server).await.map_err(|e| {
            tracing::info!(user, reason = %e, "SCRAM authentication failed");
            failed()
        })?;
        return login
            .map(|l| l.credential.principal.clone())
            .ok_or_else(failed);
    }
    if login.is_some() {
        tracing::warn!(
            user,
            "principal has no pg_scram_sha256 verifier, so it can connect only over TLS; see `countersign token hash`"
        );
    }
    let mut server = crate::scram::ScramServer::for_unknown_user(&gate.mock_secret, user);
    let _ = scram_exchange(client, &mut server).await;
    Err(failed())
}

async fn scram_exchange(
    client: &mut Client,
    server: &mut crate::scram::ScramServer,
) -> Result<(), String> {
    let send = |e: End| e.to_string();
    client
        .send(&wire::authentication(
            10,
            crate::scram::ScramServer::mechanisms(),
        ))
        .await
        .map_err(send)?;
    let frame = client.message().await.map_err(send)?;
    let Ok(Frontend::Password(body)) = wire::decode_frontend(&frame) else {
        return Err("expected a SASLInitialResponse".into());
    };
    let (mechanism, data) = wire::decode_sasl_initial(body).map_err(|e| e.to_string())?;
    let first = server
        .client_first(mechanism, data)
        .map_err(|e| e.to_string())?;
    client
        .send(&wire::authentication(11, &first))
        .await
        .map_err(send)?;
    let frame = client.message().await.map_err(send)?;
    let Ok(Frontend::Password(body)) = wire::decode_frontend(&frame) else {
        return Err("expected a SASLResponse".into());
    };
    let last = server.client_final(body).map_err(|e| e.to_string())?;
    client
        .send(&wire::authentication(12, &last))
        .await
        .map_err(send)
}

/// A statement the gate let through, for its outcome event.
#[derive(Debug)]
struct Forwarded {
    attempt: Attempt,
    digest: PayloadDigest,
    grant_id: Option<String>,
    /// How many answers (command tags, errors) the upstream gives it.
    answers: u64,
    /// Whether it may be COPY FROM STDIN: its text names `stdin`, or the gate cannot see it.
    may_copy_in: bool,
}

/// What the engine said about an attempt: decided, or held for approval.
enum Checked {
    Decided(Disposition),
    Pending {
        attempt: Box<Attempt>,
        request_id: String,
        review_url: String,
    },
}

/// What the forwarder expects of the upstream for one forwarded message.
#[derive(Debug)]
struct Expect {
    /// Which ReadyForQuery ends the answer (counting from the first after start-up).
    unit: u64,
    /// The statement it runs, when the gate let one through.
    statement: Option<Arc<Forwarded>>,
    /// A simple query answers with a result per statement in its text; an Execute with one.
    simple: bool,
}

/// A refusal waiting for the upstream error its marker provokes.
#[derive(Debug)]
struct Refusal {
    unit: u64,
    marker: String,
    code: &'static str,
    message: String,
}

/// What the gate knows of one prepared statement.
#[derive(Debug, Clone)]
struct Prepared {
    /// Its text; `None` when the gate cannot be sure what the upstream holds under the name
    /// (its Parse was not confirmed, or SQL may have replaced it): a Bind is then `db.unknown`.
    text: Option<Arc<[u8]>>,
    /// The Parse that set `text`, while its unit's answer has not said whether it took effect.
    pending: Option<ParseId>,
}

/// Prepared statements by client name, with the bytes their texts hold: a session may keep
/// at most [`MAX_NAMED`] names and [`MAX_TEXT_BYTES`] of text.
#[derive(Debug, Default)]
struct Statements {
    by_name: HashMap<Vec<u8>, Prepared>,
    text_bytes: usize,
}

impl Statements {
    fn text(&self, name: &[u8]) -> Option<Arc<[u8]>> {
        self.by_name.get(name).and_then(|p| p.text.clone())
    }

    fn pending(&self, name: &[u8]) -> Option<ParseId> {
        self.by_name.get(name).and_then(|p| p.pending)
    }

    /// Records the text a Parse sends under `name`, unless that would pass a limit.
    fn parse(&mut self, name: &[u8], text: &[u8], id: ParseId) -> Result<(), End> {
        let replaced = self.by_name.get(name).map(Prepared::bytes);
        if replaced.is_none() && self.by_name.len() >= MAX_NAMED {
            return Err(End::fatal(
                "53400",
                format!("too many prepared statements (at most {MAX_NAMED})"),
            ));
        }
        let bytes = self.text_bytes - replaced.unwrap_or(0) + text.len();
        if bytes > MAX_TEXT_BYTES {
            return Err(End::fatal(
                "53400",
                format!(
                    "prepared statement texts would take more than {} MiB",
                    MAX_TEXT_BYTES >> 20
                ),
            ));
        }
        self.text_bytes = bytes;
        self.by_name.insert(
            name.to_vec(),
            Prepared {
                text: Some(Arc::from(text)),
                pending: Some(id),
            },
        );
        Ok(())
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some(p) = self.by_name.remove(name) {
            self.text_bytes -= p.bytes();
        }
    }

    /// The upstream answered the Parse `id` of `name`: its text counts if it took effect.
    fn settle(&mut self, name: &[u8], id: ParseId, took_effect: bool) {
        // Only the name's latest Parse sets what the gate believes it holds.
        if let Some(entry) = self.by_name.get_mut(name).filter(|e| e.pending == Some(id)) {
            entry.pending = None;
            if !took_effect {
                self.text_bytes -= entry.bytes();
                entry.text = None;
            }
        }
    }

    /// The gate no longer vouches for any text (SQL may have replaced them).
    fn forget_texts(&mut self) {
        for p in self.by_name.values_mut() {
            p.text = None;
        }
        self.text_bytes = 0;
    }
}

impl Prepared {
    fn bytes(&self) -> usize {
        self.text.as_ref().map_or(0, |t| t.len())
    }
}

/// One Parse sent upstream: a sequence number and the unit it went out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParseId {
    seq: u64,
    unit: u64,
}

/// Running counts of the upstream's answers to statements.
#[derive(Debug, Clone, Copy, Default)]
struct Answers {
    /// Statements answered: each Execute, Query or function call that ran gets one.
    results: u64,
    errors: u64,
    copy_ins: u64,
}

/// A forwarded statement that may start COPY FROM STDIN, and the answers seen before it.
#[derive(Debug, Clone, Copy)]
struct CopyWatch {
    statement: u64,
    before: Answers,
}

/// A Parse sent upstream, waiting for its unit's answer to say whether it took effect.
#[derive(Debug)]
struct SentParse {
    id: ParseId,
    name: Vec<u8>,
}

/// What the two halves of a session share.
#[derive(Debug)]
struct Shared {
    expected: Mutex<VecDeque<Expect>>,
    refusals: Mutex<Vec<Refusal>>,
    /// Prepared statements by client name. A Parse counts only once the upstream confirmed it
    /// (ParseComplete): a failed or skipped Parse must not let a Bind be decided on a text the
    /// upstream does not hold.
    statements: Mutex<Statements>,
    parses: Mutex<VecDeque<SentParse>>,
    /// How many units the upstream has answered, confirmations applied.
    units_done: watch::Sender<u64>,
    /// What the upstream has answered so far, for the reader to tell whether a COPY FROM STDIN
    /// entered copy-in mode (where the upstream ignores Sync).
    answers: watch::Sender<Answers>,
    /// The upstream reported `standard_conforming_strings = off`: backslashes in plain string
    /// literals are escapes then, so texts with backslashes are classified as unknown.
    backslash_escapes: AtomicBool,
    /// The client encoding is not UTF-8: texts with non-ASCII bytes are classified as unknown.
    foreign_encoding: AtomicBool,
    /// Audit records of reads forwarded before they were durable, in the order sent: the
    /// forwarder releases nothing to the client until every one of them is.
    unlogged: Mutex<VecDeque<Logging>>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            expected: Mutex::default(),
            refusals: Mutex::default(),
            statements: Mutex::default(),
            parses: Mutex::default(),
            units_done: watch::channel(0).0,
            answers: watch::channel(Answers::default()).0,
            backslash_escapes: AtomicBool::default(),
            foreign_encoding: AtomicBool::default(),
            unlogged: Mutex::default(),
        }
    }
}

impl Session {
    async fn proxy(
        self,
        gate: &Arc<Gate>,
        mut client: Client,
        peer: SocketAddr,
    ) -> Result<(), End> {
        let Session {
            principal,
            upstream,
        } = self;
        let key_len = if client.minor >= 2 { 32 } else { 4 };
        let registration = gate.cancels.register(
            key_len,
            gate.config.upstream.clone(),
            upstream.pid,
            upstream.key.clone(),
        );
        let shared = Arc::new(Shared::default());
        let mut hello = Vec::new();
        for p in &upstream.parameters {
            note_parameter(&shared, p);
            hello.extend_from_slice(p);
        }
        for n in &upstream.notices {
            hello.extend_from_slice(n);
        }
        hello.extend(wire::backend_key_data(
            registration.pid,
            CancelRegistry::key(&registration),
        ));
        hello.extend(wire::ready_for_query(b'I'));
        client.send(&hello).await?;
        let (client_rd, client_wr) = tokio::io::split(client.stream);
        let (upstream_rd, upstream_wr) = tokio::io::split(upstream.stream);
        let (inject_tx, inject_rx) = mpsc::channel(16);
        let mut reader = Reader {
            gate: gate.clone(),
            principal: principal.clone(),
            source: peer.ip().to_string(),
            client: client_rd,
            buf: client.buf,
            upstream: upstream_wr,
            out: Vec::with_capacity(8192),
            shared: shared.clone(),
            inject: inject_tx,
            cancel: registration.target.clone(),
            portals: HashMap::new(),
            units_sent: 0,
            executes_in_unit: 0,
            parses_sent: 0,
            statements_sent: 0,
            copy_watch: None,
            in_copy_in: false,
            extended_open: false,
        };
        let mut forwarder = Forwarder {
            gate: gate.clone(),
            principal,
            upstream: upstream_rd,
            buf: upstream.leftover,
            client: client_wr,
            out: Vec::with_capacity(16 * 1024),
            shared,
            inject: inject_rx,
            passthrough: 0,
            units_done: 0,
            parse_completes: 0,
            in_copy: false,
            results: Vec::new(),
            outcomes: Vec::new(),
        };
        let end = tokio::select! {
            end = reader.run() => end,
            end = forwarder.run() => end,
        };
        // Statements that ran upstream have their outcome logged even when the session ended
        // before their answers reached the client.
        forwarder.log_outcomes();
        // A FATAL goes out only between messages, never inside a row being streamed.
        let fatal = end.as_ref().err().and_then(End::to_client);
        if let Some(bytes) = fatal.filter(|_| forwarder.passthrough == 0) {
            let _ = forwarder.client.write_all(&bytes).await;
        }
        let _ = reader.upstream.write_all(&[b'X', 0, 0, 0, 4]).await;
        let _ = reader.upstream.shutdown().await;
        drop(registration);
        end
    }
}

fn note_parameter(shared: &Shared, frame: &[u8]) {
    if let Ok(wire::Backend::ParameterStatus { name, value }) = wire::decode_backend(frame) {
        match name {
            "standard_conforming_strings" => shared
                .backslash_escapes
                .store(!value.eq_ignore_ascii_case("on"), Ordering::Relaxed),
            "client_encoding" => shared.foreign_encoding.store(
                !matches!(
                    value.to_ascii_uppercase().as_str(),
                    "UTF8" | "UTF-8" | "UNICODE"
                ),
                Ordering::Relaxed,
            ),
            _ => {}
        }
    }
}

/// What the gate does with one statement.
enum Disposition {
    Forward(Arc<Forwarded>),
    Refuse { code: &'static str, message: String },
}

/// Client → upstream.
struct Reader {
    gate: Arc<Gate>,
    principal: Principal,
    /// The client's address, as the `source` of every attempt's context (made once, not per
    /// statement).
    source: String,
    client: ReadHalf<Stream>,
    buf: BytesMut,
    upstream: WriteHalf<Stream>,
    /// Messages to send upstream, flushed when the client's pipeline is drained or before a
    /// statement is held.
    out: Vec<u8>,
    shared: Arc<Shared>,
    inject: mpsc::Sender<Vec<u8>>,
    cancel: Arc<CancelTarget>,
    /// Portals by name: the statement each runs, for the outcome of its Executes.
    portals: HashMap<Vec<u8>, Option<Arc<Forwarded>>>,
    units_sent: u64,
    /// Statements forwarded in the unit not yet closed by a Sync.
    executes_in_unit: u64,
    parses_sent: u64,
    /// Statements forwarded (Executes, Queries, function calls), counted like `Answers::results`.
    statements_sent: u64,
    copy_watch: Option<CopyWatch>,
    /// The upstream is in copy-in mode, where it ignores Sync: Syncs are not passed on.
    in_copy_in: bool,
    /// Extended-protocol messages were sent since the last Sync.
    extended_open: bool,
}

/// Bytes a held session reads ahead from its client (to notice a disconnect) at most.
const HOLD_BUFFER_MAX: usize = 1024 * 1024;

/// Texts up to this length are classified on the session's own task.
const CLASSIFY_INLINE_MAX: usize = 16 * 1024;

/// Named statements and portals a session may keep; PostgreSQL has no limit, but the gate
/// keeps each one's text in memory.
const MAX_NAMED: usize = 10_000;

/// Bytes of prepared statement text a session may keep.
const MAX_TEXT_BYTES: usize = 64 << 20;

/// Statements a session may have forwarded and not yet seen answered. The upstream answers as
/// it goes, so only a client that never reads its answers gets near this.
const MAX_UNANSWERED: usize = 100_000;

impl Reader {
    async fn run(&mut self) -> Result<(), End> {
        loop {
            while let Some(n) =
                wire::frame_len(&self.buf, wire::MAX_MESSAGE_LEN).map_err(End::protocol)?
            {
                let frame = self.buf.split_to(n);
                if !self.handle(&frame).await? {
                    self.flush().await?;
                    return Ok(());
                }
            }
            self.flush().await?;
            if self
                .client
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| End::ClientGone)?
                == 0
            {
                return Err(End::ClientGone);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.upstream
                .write_all(&self.out)
                .await
                .map_err(|_| UpstreamError::Closed)?;
            self.out.clear();
        }
        Ok(())
    }

    fn expect(&self, statement: Option<Arc<Forwarded>>, simple: bool) -> Result<(), End> {
        let mut expected = lock(&self.shared.expected);
        if expected.len() >= MAX_UNANSWERED {
            return Err(End::fatal(
                "54000",
                format!(
                    "more than {MAX_UNANSWERED} statements sent and not yet answered; read the answers before sending more"
                ),
            ));
        }
        expected.push_back(Expect {
            unit: self.units_sent,
            statement,
            simple,
        });
        Ok(())
    }

    /// Handles one client message; `false` once the client said goodbye.
    async fn handle(&mut self, frame: &[u8]) -> Result<bool, End> {
        let message = wire::decode_frontend(frame).map_err(End::protocol)?;
        match message {
            Frontend::Query(_) | Frontend::FunctionCall { .. } if self.extended_open => {
                // After an error the upstream would drop it unanswered while skipping to Sync,
                // and the gate could no longer tell which answer belongs to which statement.
                return Err(End::fatal(
                    "08P01",
                    "a simple query or function call inside an unfinished extended-protocol batch; send Sync first",
                ));
            }
            Frontend::Parse { .. }
            | Frontend::Bind { .. }
            | Frontend::Describe
            | Frontend::Execute { .. }
            | Frontend::Close { .. } => self.extended_open = true,
            Frontend::Sync => self.extended_open = false,
            _ => {}
        }
        match message {
            Frontend::Query(sql) => {
                let disposition = self.decide(sql, None).await?;
                self.send_unit(frame, disposition)?;
            }
            Frontend::FunctionCall { oid } => {
                // The arguments travel with the call: the payload holds the whole message.
                let payload =
                    serde_json::json!({ "function_call": oid, "message": hex::encode(frame) });
                let class = Classification::unknown("a fast-path function call".into(), 1);
                let disposition = self.decide_payload(&class, payload).await?;
                self.send_unit(frame, disposition)?;
            }
            Frontend::Parse { name, sql } => {
                self.settle_parse_of(name).await?;
                // Binds later in this unit may use the text: if this Parse fails, the upstream
                // skips them too. Later units wait for the confirmation.
                let id = ParseId {
                    seq: self.parses_sent + 1,
                    unit: self.units_sent,
                };
                lock(&self.shared.statements).parse(name, sql, id)?;
                self.parses_sent += 1;
                lock(&self.shared.parses).push_back(SentParse {
                    id,
                    name: name.to_vec(),
                });
                self.out.extend_from_slice(frame);
            }
            Frontend::Bind {
                portal,
                statement,
                formats,
                params,
            } => {
                let params = render_params(&formats, &params);
                self.settle_parse_of(statement).await?;
                let text = lock(&self.shared.statements).text(statement);
                let disposition = match text {
                    Some(sql) => self.decide(&sql, Some(params)).await?,
                    None => {
                        // A statement prepared with SQL PREPARE, never prepared, or whose Parse
                        // the upstream did not confirm: the gate cannot know what it runs.
                        let name = String::from_utf8_lossy(statement).into_owned();
                        let note = format!(
                            "binds prepared statement \"{name}\", whose text the gate cannot vouch for"
                        );
                        let payload = serde_json::json!({ "statement": name, "params": params });
                        self.decide_payload(&Classification::unknown(note, 1), payload)
                            .await?
                    }
                };
                if self.portals.len() >= MAX_NAMED && !self.portals.contains_key(portal) {
                    self.portals.clear();
                }
                match disposition {
                    Disposition::Forward(f) => {
                        self.portals.insert(portal.to_vec(), Some(f));
                        self.out.extend_from_slice(frame);
                    }
                    Disposition::Refuse { code, message } => {
                        self.portals.insert(portal.to_vec(), None);
                        let marker = self.refusal(code, message);
                        self.out.extend(wire::bind(portal, &marker));
                    }
                }
            }
            Frontend::Execute { portal } => {
                let statement = self.portals.get(portal).cloned().flatten();
                let copy_in = statement.as_ref().is_some_and(|f| f.may_copy_in);
                self.expect(statement, false)?;
                self.executes_in_unit += 1;
                self.sent_statement(1, copy_in);
                self.out.extend_from_slice(frame);
            }
            Frontend::Close { kind, name } => {
                if kind == b'S' {
                    // Gone from the gate's view even if the upstream skips the Close: a later
                    // Bind of the name is then `db.unknown`, never allowed on an old text.
                    lock(&self.shared.statements).remove(name);
                } else {
                    self.portals.remove(name);
                }
                self.out.extend_from_slice(frame);
            }
            Frontend::Sync => {
                if self.sync_is_ignored_upstream().await? {
                    return Ok(true);
                }
                self.units_sent += 1;
                self.executes_in_unit = 0;
                self.out.extend_from_slice(frame);
            }
            Frontend::Terminate => return Ok(false),
            Frontend::CopyDone | Frontend::CopyFail => {
                self.in_copy_in = false;
                self.copy_watch = None;
                self.out.extend_from_slice(frame);
            }
            Frontend::Describe | Frontend::Flush | Frontend::CopyData => {
                self.out.extend_from_slice(frame)
            }
            Frontend::Password(_) => {
                return Err(End::fatal(
                    "08P01",
                    "unexpected password message after authentication",
                ));
            }
        }
        Ok(true)
    }

    /// Sends a message that is a unit of its own (a simple query or a function call), or its
    /// refusal: a text that fails to parse upstream whatever state the session is in, naming
    /// the marker the forwarder recognises.
    fn send_unit(&mut self, frame: &[u8], disposition: Disposition) -> Result<(), End> {
        match disposition {
            Disposition::Forward(f) => {
                let (answers, copy_in) = (f.answers, f.may_copy_in);
                self.expect(Some(f), true)?;
                self.sent_statement(answers, copy_in);
                self.out.extend_from_slice(frame);
            }
            Disposition::Refuse { code, message } => {
                let marker = self.refusal(code, message);
                self.expect(None, true)?;
                self.out.extend(wire::query(&format!("\"{marker}\"")));
            }
        }
        self.units_sent += 1;
        Ok(())
    }

    /// Counts a forwarded statement; one that may be COPY FROM STDIN is watched, since its
    /// copy-in mode makes the upstream ignore Syncs.
    fn sent_statement(&mut self, answers: u64, may_copy_in: bool) {
        self.statements_sent += answers;
        if may_copy_in {
            self.copy_watch = Some(CopyWatch {
                statement: self.statements_sent,
                before: *self.shared.answers.borrow(),
            });
        }
    }

    /// Whether the upstream will ignore this Sync because a COPY FROM STDIN put it in copy-in
    /// mode. Such a Sync is not passed on, so the gate's count of units stays the upstream's.
    /// After a watched statement the gate waits for the upstream's answer to it.
    async fn sync_is_ignored_upstream(&mut self) -> Result<bool, End> {
        if self.in_copy_in {
            return Ok(true);
        }
        let Some(watch) = self.copy_watch.take() else {
            return Ok(false);
        };
        self.flush().await?;
        let mut answers = self.shared.answers.subscribe();
        let answered = answers
            .wait_for(|a| a.results >= watch.statement || a.errors > watch.before.errors)
            .await
            .map_err(|_| End::fatal("08006", "countersign: the upstream connection ended"))?;
        self.in_copy_in =
            answered.copy_ins > watch.before.copy_ins && answered.errors == watch.before.errors;
        Ok(self.in_copy_in)
    }

    /// Waits, when the last Parse of `name` went out in an earlier unit that the upstream has
    /// not answered yet, until that answer says whether it took effect.
    async fn settle_parse_of(&mut self, name: &[u8]) -> Result<(), End> {
        let pending = lock(&self.shared.statements)
            .pending(name)
            .map(|id| id.unit)
            .filter(|&unit| unit < self.units_sent);
        if let Some(unit) = pending {
            self.flush().await?;
            let mut done = self.shared.units_done.subscribe();
            done.wait_for(|&d| d > unit)
                .await
                .map_err(|_| End::fatal("08006", "countersign: the upstream connection ended"))?;
        }
        Ok(())
    }

    /// Whether everything forwarded so far has been answered, so that the session settings
    /// the classification relies on are the ones in force.
    fn settled(&self) -> bool {
        self.executes_in_unit == 0 && *self.shared.units_done.borrow() >= self.units_sent
    }

    /// Registers a refusal and returns the marker that provokes its error upstream: 128 random
    /// bits, fresh for each refusal, so no client can prepare a statement under it.
    fn refusal(&mut self, code: &'static str, message: String) -> String {
        let marker = format!("cs_deny_{:032x}", rand::random::<u128>());
        lock(&self.shared.refusals).push(Refusal {
            unit: self.units_sent,
            marker: marker.clone(),
            code,
            message,
        });
        marker
    }

    /// Classifies `sql` and decides it.
    async fn decide(
        &mut self,
        sql: &[u8],
        params: Option<Vec<serde_json::Value>>,
    ) -> Result<Disposition, End> {
        let text = String::from_utf8_lossy(sql).into_owned();
        let backslash_or_foreign = !text.is_ascii() || text.contains('\\');
        let doubt = if std::str::from_utf8(sql).is_err() {
            Some("the text is not UTF-8")
        } else if backslash_or_foreign && !self.settled() {
            Some(
                "backslashes or non-ASCII text sent before earlier statements were answered, which may change how it is read",
            )
        } else if !text.is_ascii() && self.shared.foreign_encoding.load(Ordering::Relaxed) {
            Some("non-ASCII text in a client encoding other than UTF-8")
        } else if text.contains('\\') && self.shared.backslash_escapes.load(Ordering::Relaxed) {
            Some("backslashes while standard_conforming_strings is off")
        } else {
            None
        };
        let class = match doubt {
            Some(why) => Arc::new(Classification::unknown(why.to_owned(), 1)),
            None => classify(self.gate.clone(), &text).await,
        };
        // SQL PREPARE, DEALLOCATE and DISCARD change the statements a Bind can name behind
        // the gate's back: once one is let through, the gate vouches for none of the texts.
        let replaces_prepared = ["prepare", "deallocate", "discard"]
            .iter()
            .any(|k| contains_ignoring_case(&text, k));
        // Members in name order, which the digest and the audit record write without sorting.
        let mut payload = serde_json::Map::new();
        if let Some(params) = params {
            payload.insert("params".into(), serde_json::Value::Array(params));
        }
        payload.insert("sql".into(), serde_json::Value::String(text));
        let disposition = self
            .decide_payload(&class, serde_json::Value::Object(payload))
            .await?;
        if replaces_prepared && matches!(disposition, Disposition::Forward(_)) {
            lock(&self.shared.statements).forget_texts();
        }
        Ok(disposition)
    }

    /// Decides the attempt `class` and `payload` make, holding it when it needs approval.
    async fn decide_payload(
        &mut self,
        class: &Classification,
        payload: serde_json::Value,
    ) -> Result<Disposition, End> {
        let attempt = self.attempt(class, payload);
        // A simple query answers once per statement of its text (an empty text once).
        let answers = class.statements.max(1) as u64;
        // A query's only effect is the rows it returns, which the forwarder withholds until
        // the decision is durable: it may run while the decision is being written. Reads that
        // change session state (COMMIT, SET, cursors) wait for the record like writes.
        let ahead = (class.kind == StatementKind::Read && class.rows_only).then_some(&*self.shared);
        match check(&self.gate, &self.principal, attempt, answers, ahead).await {
            Checked::Decided(d) => Ok(d),
            Checked::Pending {
                attempt,
                request_id,
                review_url,
            } => self.hold(*attempt, answers, request_id, review_url).await,
        }
    }

    fn attempt(&self, class: &Classification, payload: serde_json::Value) -> Attempt {
        let gate = &self.gate.config.name;
        let database = Resource::new("Database", gate.clone());
        let parent = database.reference();
        let mut resources = vec![database];
        resources.extend(class.tables.iter().map(|t| Resource {
            parent: Some(ResourceRef {
                kind: parent.kind.clone(),
                id: parent.id.clone(),
            }),
            classification: self.gate.config.tables.of(t),
            ..Resource::new("Table", format!("{gate}/{t}"))
        }));
        let mut context = BTreeMap::from([
            ("gate".to_owned(), gate.clone()),
            ("source".to_owned(), self.source.clone()),
        ]);
        if let Some(note) = &class.note {
            context.insert("classification_note".to_owned(), note.clone());
        }
        Attempt {
            principal: PrincipalRef {
                kind: self.principal.kind,
                id: self.principal.id.clone(),
            },
            on_behalf_of: None,
            action: action_of(class.kind),
            resources,
            payload,
            justification: None,
            context,
        }
    }

    /// Holds a statement until its request settles: tells the client where it is reviewed,
    /// then waits, watching the client and cancel requests. On approval the statement is
    /// decided again, which consumes the grant the approval issued.
    async fn hold(
        &mut self,
        attempt: Attempt,
        answers: u64,
        request_id: String,
        review_url: String,
    ) -> Result<Disposition, End> {
        self.flush().await?;
        let notice = wire::error_response(
            Severity::Notice,
            "01000",
            &format!(
                "countersign: this statement awaits approval (request {request_id}); review it at {review_url}"
            ),
            Some("It runs once approved. Cancel the query to withdraw the request."),
        );
        self.inject
            .send(notice)
            .await
            .map_err(|_| End::ClientGone)?;
        let cancelled = self.cancel.hold();
        let mut guard = HeldRequest {
            engine: self.gate.engine.clone(),
            principal: self.principal.clone(),
            id: Some(request_id.clone()),
            cancel: self.cancel.clone(),
        };
        let settled = loop {
            tokio::select! {
                r = self.gate.engine.wait(&request_id, Duration::from_secs(60)) => match r {
                    Ok(request) if request.status == RequestStatus::Pending => continue,
                    Ok(request) => break Ok(request),
                    Err(e) => break Err(e.to_string()),
                },
                // Past the cap the client is not read until the hold ends: its pipelined bytes
                // wait in the socket rather than in the gate's memory.
                n = self.client.read_buf(&mut self.buf), if self.buf.len() < HOLD_BUFFER_MAX => {
                    if matches!(n, Ok(0) | Err(_)) {
                        return Err(End::ClientGone);
                    }
                }
                () = cancelled.notified() => {
                    guard.withdraw().await;
                    return Ok(Disposition::Refuse {
                        code: "57014",
                        message: format!("canceling statement due to user request: approval request {request_id} withdrawn"),
                    });
                }
            }
        };
        guard.id = None;
        drop(guard);
        let request = match settled {
            Ok(request) => request,
            Err(e) => {
                return Ok(refused(&format!(
                    "the approval request could not be followed ({e})"
                )));
            }
        };
        if request.status != RequestStatus::Approved {
            let why = request
                .votes
                .iter()
                .rev()
                .find_map(|v| {
                    v.reason
                        .as_ref()
                        .map(|r| format!(" by {}: {r}", v.voter.id))
                })
                .unwrap_or_default();
            return Ok(refused(&format!(
                "approval request {request_id} was {}{why}",
                request.status.as_str()
            )));
        }
        match check(&self.gate, &self.principal, attempt, answers, None).await {
            Checked::Decided(d) => Ok(d),
            Checked::Pending { request_id, .. } => Ok(refused(&format!(
                "approved, but the approval did not cover the statement; a new request {request_id} was opened"
            ))),
        }
    }
}

/// Asks the engine about `attempt`. With `ahead`, an allow may come before its audit record
/// is durable; the record then joins the session's unlogged ones, which the forwarder waits for.
async fn check(
    gate: &Gate,
    principal: &Principal,
    attempt: Attempt,
    answers: u64,
    ahead: Option<&Shared>,
) -> Checked {
    let channel = &gate.config.name;
    let outcome = match ahead {
        Some(shared) => {
            let (outcome, logging) = gate
                .engine
                .check_ahead(principal, attempt.clone(), channel)
                .await;
            lock(&shared.unlogged).extend(logging);
            outcome
        }
        None => gate.engine.check(principal, attempt.clone(), channel).await,
    };
    match outcome {
        CheckOutcome::Allow {
            grant_id, digest, ..
        } => Checked::Decided(Disposition::Forward(Arc::new(Forwarded {
            may_copy_in: attempt.payload["sql"]
                .as_str()
                .is_none_or(|sql| contains_ignoring_case(sql, "stdin")),
            attempt,
            digest,
            grant_id,
            answers,
        }))),
        CheckOutcome::Deny { reason, .. } => Checked::Decided(refused(&reason)),
        CheckOutcome::Pending {
            request,
            review_url,
            ..
        } => Checked::Pending {
            attempt: Box::new(attempt),
            request_id: request.id,
            review_url,
        },
    }
}

/// Classifies `text`; long texts (which can take seconds to parse) on a blocking thread,
/// so that one hostile client does not stall the sessions that share its worker.
async fn classify(gate: Arc<Gate>, text: &str) -> Arc<crate::classify::Classification> {
    if text.len() <= CLASSIFY_INLINE_MAX {
        return gate.shapes.classify(text);
    }
    let owned = text.to_owned();
    match tokio::task::spawn_blocking(move || gate.shapes.classify(&owned)).await {
        Ok(c) => c,
        Err(_) => Arc::new(crate::classify::Classification {
            kind: StatementKind::Unknown,
            tables: Vec::new(),
            note: Some("classification failed".to_owned()),
            statements: 1,
            rows_only: false,
        }),
    }
}

fn contains_ignoring_case(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

fn action_of(kind: StatementKind) -> Action {
    #[allow(clippy::expect_used)]
    Action::parse(kind.action()).expect("every statement kind names a built-in action")
}

fn refused(reason: &str) -> Disposition {
    Disposition::Refuse {
        code: "42501",
        message: format!("countersign: {reason}"),
    }
}

/// A request the session is waiting on: withdrawn if the session ends while it is pending,
/// and cancel requests stop reaching it once it is over.
struct HeldRequest {
    engine: countersign_engine::Engine,
    principal: Principal,
    id: Option<String>,
    cancel: Arc<CancelTarget>,
}

impl HeldRequest {
    async fn withdraw(&mut self) {
        if let Some(id) = self.id.take()
            && let Err(e) = self.engine.cancel(&self.principal, &id, false).await
        {
            tracing::warn!(request = %id, error = %e, "withdrawing a held request failed");
        }
    }
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.cancel.release();
        if let Some(id) = self.id.take() {
            let engine = self.engine.clone();
            let principal = self.principal.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.cancel(&principal, &id, false).await {
                    tracing::warn!(request = %id, error = %e, "withdrawing the request of a vanished client failed");
                }
            });
        }
    }
}

/// Bind parameters as the payload shows them: text as strings, binary as hex, NULL as null.
fn render_params(formats: &[i16], params: &[Option<&[u8]>]) -> Vec<serde_json::Value> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let binary = match formats {
                [] => false,
                [one] => *one == 1,
                many => many.get(i).is_some_and(|f| *f == 1),
            };
            match p {
                None => serde_json::Value::Null,
                Some(bytes) => match (binary, std::str::from_utf8(bytes)) {
                    (false, Ok(text)) => serde_json::Value::String(text.to_owned()),
                    _ => serde_json::json!({ "binary": hex::encode(bytes) }),
                },
            }
        })
        .collect()
}

/// One result of a forwarded statement: its command tag, or its error.
type StatementResult = Result<String, String>;

/// Upstream → client.
struct Forwarder {
    gate: Arc<Gate>,
    principal: Principal,
    upstream: ReadHalf<Stream>,
    buf: BytesMut,
    client: WriteHalf<Stream>,
    out: Vec<u8>,
    shared: Arc<Shared>,
    inject: mpsc::Receiver<Vec<u8>>,
    /// Bytes of a large row or COPY message still to pass through before the next message.
    passthrough: usize,
    units_done: u64,
    /// ParseComplete messages since the last ReadyForQuery.
    parse_completes: usize,
    /// Between a CopyIn/CopyOutResponse and the end of that COPY.
    in_copy: bool,
    /// Results seen since the last ReadyForQuery.
    results: Vec<StatementResult>,
    /// Outcomes of finished statements, logged once their answers are on their way to the
    /// client: whether each succeeded, and its command tags or error.
    outcomes: Vec<(Arc<Forwarded>, bool, String)>,
}

/// Messages larger than this stream through without being buffered whole.
const STREAM_ABOVE: usize = 64 * 1024;

impl Forwarder {
    async fn run(&mut self) -> Result<(), End> {
        let mut injected: Vec<Vec<u8>> = Vec::new();
        loop {
            tokio::select! {
                biased;
                Some(notice) = self.inject.recv() => {
                    injected.push(notice);
                }
                n = self.upstream.read_buf(&mut self.buf) => {
                    match n {
                        Ok(0) | Err(_) => return Err(End::fatal("08006", "countersign: the upstream server closed the connection")),
                        Ok(_) => self.process().await?,
                    }
                }
            }
            if self.passthrough == 0 {
                for notice in injected.drain(..) {
                    self.out.extend(notice);
                }
            }
            if !self.out.is_empty() {
                self.await_records().await?;
                let written = self.client.write_all(&self.out).await;
                self.out.clear();
                self.log_outcomes();
                written.map_err(|_| End::ClientGone)?;
            }
        }
    }

    /// Logs what became of the statements answered so far. After the client's write: the
    /// answer does not wait for its after-the-fact record. Whatever ends the session on the
    /// way (a record that failed, a client gone, the reader's end) leaves the outcomes queued,
    /// and the session logs them as it closes.
    fn log_outcomes(&mut self) {
        for (statement, succeeded, detail) in self.outcomes.drain(..) {
            let outcome = ActionOutcome {
                attempt: &statement.attempt,
                digest: &statement.digest,
                grant_id: statement.grant_id.as_deref(),
                succeeded,
                detail,
            };
            self.gate
                .engine
                .record_outcome(&self.principal, &self.gate.config.name, outcome);
        }
    }

    /// Waits until the audit records of the reads forwarded ahead of them are durable. Any
    /// answer in `out` comes from a statement sent before the forwarder read it, whose record
    /// (if any) was queued before it was sent. A record that cannot be written ends the
    /// session: the upstream then drops whatever it ran, and the client sees none of it.
    async fn await_records(&mut self) -> Result<(), End> {
        let pending: Vec<Logging> = lock(&self.shared.unlogged).drain(..).collect();
        for logging in pending {
            if let Err(e) = logging.durable().await {
                tracing::error!(error = %e, "a read's decision could not be recorded; ending the session");
                return Err(End::fatal(
                    "58000",
                    format!(
                        "countersign: the decision could not be recorded ({e}); results withheld"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Moves every complete message (and the head of a large one) from `buf` to `out`.
    async fn process(&mut self) -> Result<(), End> {
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(self.buf.len());
                self.out.extend_from_slice(&self.buf.split_to(n));
                self.passthrough -= n;
                if self.passthrough > 0 {
                    return Ok(());
                }
            }
            if self.buf.len() < 5 {
                return Ok(());
            }
            let tag = self.buf[0];
            let total = match wire::frame_len(&self.buf, wire::MAX_MESSAGE_LEN) {
                Err(e) => {
                    return Err(End::fatal(
                        "08006",
                        format!("countersign: the upstream server broke the protocol: {e}"),
                    ));
                }
                Ok(Some(n)) => n,
                Ok(None) => {
                    let len =
                        u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                            as usize
                            + 1;
                    if matches!(tag, b'D' | b'd') && len > STREAM_ABOVE {
                        let n = self.buf.len();
                        self.out.extend_from_slice(&self.buf.split_to(n));
                        self.passthrough = len - n;
                    }
                    return Ok(());
                }
            };
            let frame = self.buf.split_to(total);
            match tag {
                b'Z' => {
                    self.out.extend_from_slice(&frame);
                    self.finish_unit();
                }
                b'C' => {
                    if let Ok(wire::Backend::CommandComplete(tag)) = wire::decode_backend(&frame) {
                        self.results.push(Ok(tag.to_owned()));
                    }
                    // A COPY was answered when it started; its CommandComplete is not a new answer.
                    if !std::mem::take(&mut self.in_copy) {
                        self.answered();
                    }
                    self.out.extend_from_slice(&frame);
                }
                b'G' | b'H' => {
                    self.in_copy = true;
                    self.shared.answers.send_modify(|a| {
                        a.results += 1;
                        a.copy_ins += u64::from(tag == b'G');
                    });
                    self.out.extend_from_slice(&frame);
                }
                b'1' => {
                    self.parse_completes += 1;
                    self.out.extend_from_slice(&frame);
                }
                // Answers without a command tag: a function call's result, an empty query, a
                // portal suspended at its row limit.
                b'V' | b'I' | b's' => {
                    let what = match tag {
                        b'V' => "FUNCTION CALL",
                        b'I' => "EMPTY",
                        _ => "SUSPENDED",
                    };
                    self.results.push(Ok(what.to_owned()));
                    self.answered();
                    self.out.extend_from_slice(&frame);
                }
                b'E' => {
                    self.in_copy = false;
                    self.shared.answers.send_modify(|a| a.errors += 1);
                    match wire::decode_backend(&frame) {
                        Ok(wire::Backend::Error(fields)) => {
                            match self.take_refusal(&fields.message) {
                                Some(r) => self.out.extend(wire::error_response(
                                    Severity::Error,
                                    r.code,
                                    &r.message,
                                    None,
                                )),
                                None => {
                                    self.results
                                        .push(Err(format!("{}: {}", fields.code, fields.message)));
                                    self.out.extend_from_slice(&frame);
                                }
                            }
                        }
                        _ => self.out.extend_from_slice(&frame),
                    }
                }
                b'S' => {
                    note_parameter(&self.shared, &frame);
                    self.out.extend_from_slice(&frame);
                }
                _ => self.out.extend_from_slice(&frame),
            }
        }
    }

    fn answered(&self) {
        self.shared.answers.send_modify(|a| a.results += 1);
    }

    /// The Parses of `unit` took effect up to the number of ParseCompletes it answered; the
    /// first one without is where the upstream failed or started skipping, and from there on
    /// the gate vouches for none of the names.
    fn confirm_parses(&mut self, unit: u64) {
        let mut confirmed = std::mem::take(&mut self.parse_completes);
        let mut parses = lock(&self.shared.parses);
        let mut statements = lock(&self.shared.statements);
        while parses.front().is_some_and(|p| p.id.unit <= unit) {
            let Some(parse) = parses.pop_front() else {
                break;
            };
            statements.settle(&parse.name, parse.id, confirmed > 0);
            confirmed = confirmed.saturating_sub(1);
        }
    }

    fn take_refusal(&self, message: &str) -> Option<Refusal> {
        let mut refusals = lock(&self.shared.refusals);
        let at = refusals.iter().position(|r| {
            message.find(&r.marker).is_some_and(|i| {
                !message[i + r.marker.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })?;
        Some(refusals.remove(at))
    }

    /// A ReadyForQuery ended the answer to one unit: pair its results with the statements
    /// that produced them, and queue each statement's outcome for logging.
    fn finish_unit(&mut self) {
        let unit = self.units_done;
        self.units_done += 1;
        self.confirm_parses(unit);
        self.shared.units_done.send_replace(self.units_done);
        lock(&self.shared.refusals).retain(|r| r.unit > unit);
        let expected: Vec<Expect> = {
            let mut q = lock(&self.shared.expected);
            let n = q.iter().take_while(|e| e.unit <= unit).count();
            q.drain(..n).collect()
        };
        let mut results = std::mem::take(&mut self.results).into_iter();
        for e in expected {
            let outcome: Vec<StatementResult> = if e.simple {
                results.by_ref().collect()
            } else {
                results.next().into_iter().collect()
            };
            let Some(statement) = e.statement else {
                continue;
            };
            let failed = outcome.iter().find_map(|r| r.as_ref().err());
            let (succeeded, detail) = match (failed, outcome.is_empty()) {
                (Some(err), _) => (false, err.clone()),
                (None, true) => (
                    false,
                    "not run: an earlier statement in the same batch failed".to_owned(),
                ),
                (None, false) => (
                    true,
                    outcome
                        .iter()
                        .filter_map(|r| r.as_ref().ok())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            self.outcomes.push((statement, succeeded, detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> ParseId {
        ParseId { seq, unit: 0 }
    }

    fn sum(s: &Statements) -> usize {
        s.by_name.values().map(Prepared::bytes).sum()
    }

    #[test]
    fn statement_text_bytes_follow_every_change_and_are_bounded() {
        let mut s = Statements::default();
        s.parse(b"a", b"SELECT 1", id(1)).unwrap();
        s.parse(b"b", b"SELECT 22", id(2)).unwrap();
        assert_eq!((s.text_bytes, sum(&s)), (17, 17));
        // A name parsed again counts its new text only.
        s.parse(b"a", b"SELECT 333", id(3)).unwrap();
        assert_eq!((s.text_bytes, sum(&s)), (19, 19));
        // An older Parse of a name settles nothing; the latest one that failed drops its text.
        s.settle(b"a", id(1), false);
        assert_eq!(s.text(b"a").as_deref(), Some(&b"SELECT 333"[..]));
        s.settle(b"a", id(3), false);
        assert_eq!((s.text(b"a"), s.text_bytes, sum(&s)), (None, 9, 9));
        s.remove(b"b");
        assert_eq!(s.text_bytes, 0);
        s.parse(b"c", b"SELECT 4", id(4)).unwrap();
        s.forget_texts();
        assert_eq!((s.text_bytes, sum(&s), s.text(b"c")), (0, 0, None));

        let half = vec![b' '; MAX_TEXT_BYTES / 2];
        s.parse(b"big1", &half, id(5)).unwrap();
        s.parse(b"big2", &half, id(6)).unwrap();
        assert!(
            s.parse(b"big3", b"x", id(7)).is_err(),
            "past the byte budget"
        );
        // Replacing a text within the budget is fine, and a refused Parse changed nothing.
        s.parse(b"big2", b"SELECT 1", id(8)).unwrap();
        assert_eq!(s.text_bytes, sum(&s));
        assert!(s.text(b"big3").is_none());
    }

    #[test]
    fn statement_names_are_bounded() {
        let mut s = Statements::default();
        for n in 0..MAX_NAMED {
            s.parse(n.to_string().as_bytes(), b"", id(n as u64))
                .unwrap();
        }
        assert!(s.parse(b"one more", b"", id(0)).is_err());
        // An existing name may still be parsed again.
        s.parse(b"0", b"SELECT 1", id(0)).unwrap();
    }
}
