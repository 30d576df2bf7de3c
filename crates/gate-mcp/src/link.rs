//! Transports to an MCP peer at the message level: a child process over stdio (newline-
//! delimited JSON-RPC) and a Streamable HTTP endpoint (a POST per message, answered with JSON
//! or an SSE stream). Both deliver what the peer sends to one sink, bounded in size; a peer that
//! breaks the framing is reported once, as fatal.

use crate::protocol;
use serde_json::Value;
use std::sync::Mutex;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// What a link hands its owner: a message, or the reason the link is finished.
pub(crate) type Inbound = Result<Value, String>;

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads one `\n`-terminated line of at most `max` bytes into `buf` (without the newline).
/// `Ok(false)` at a clean end of input.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, LineError> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await.map_err(LineError::Io)?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match memchr_newline(available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max + 1 {
            return Err(LineError::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// A stdio MCP server: the way to write to it, and the switch that ends it. Sending on (or
/// dropping) `kill` kills the process; it is reaped either way.
#[derive(Debug)]
pub(crate) struct StdioLink {
    pub tx: mpsc::Sender<Vec<u8>>,
    pub kill: oneshot::Sender<()>,
    pub pid: Option<u32>,
}

impl StdioLink {
    /// Starts `command` with only `env` in its environment; what it prints goes to `sink`.
    pub(crate) fn spawn(
        gate: &str,
        command: &[String],
        env: &crate::config::ChildEnv,
        max_bytes: usize,
        sink: mpsc::Sender<Inbound>,
    ) -> std::io::Result<StdioLink> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.resolve())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child pipes missing"));
        };
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let (kill, mut killed) = oneshot::channel::<()>();
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        let out_sink = sink.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                let why = match read_line_bounded(&mut reader, max_bytes, &mut buf).await {
                    Ok(true) if buf.iter().all(u8::is_ascii_whitespace) => continue,
                    Ok(true) => match serde_json::from_slice::<Value>(&buf) {
                        Ok(v) => {
                            if out_sink.send(Ok(v)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Err(_) => format!(
                            "the upstream server wrote {} bytes on stdout that are not JSON-RPC",
                            buf.len()
                        ),
                    },
                    Ok(false) => {
                        "the upstream server closed its stdout (it exited or crashed)".to_owned()
                    }
                    Err(LineError::TooLong) => {
                        format!("the upstream server sent a message over {max_bytes} bytes")
                    }
                    Err(LineError::Io(e)) => format!("reading the upstream server failed: {e}"),
                };
                let _ = out_sink.send(Err(why)).await;
                return;
            }
        });
        let gate_name = gate.to_owned();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr);
            let mut buf = Vec::new();
            while let Ok(true) = read_line_bounded(&mut reader, 64 * 1024, &mut buf).await {
                tracing::info!(gate = %gate_name, "upstream stderr: {}", String::from_utf8_lossy(&buf));
            }
        });
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = &mut killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let why = match status {
                Ok(s) => format!("the upstream server exited ({s})"),
                Err(e) => format!("the upstream server could not be waited for: {e}"),
            };
            let _ = sink.send(Err(why)).await;
        });
        Ok(StdioLink { tx, kill, pid })
    }
}

/// A Streamable HTTP MCP endpoint. Remembers the session id and the negotiated revision of
/// the 2025 revisions, and sets the 2026-07-28 headers from each message.
#[derive(Debug)]
pub struct HttpLink {
    client: reqwest::Client,
    url: String,
    bearer: Option<String>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    max_bytes: usize,
}

/// An HTTP answer that carried no JSON-RPC message, as text for an error.
fn status_error(status: reqwest::StatusCode) -> String {
    format!("the MCP endpoint answered HTTP {status}")
}

impl HttpLink {
    pub fn new(url: &str, bearer: Option<String>, max_bytes: usize) -> Result<HttpLink, String> {
        // Where the build gives reqwest rustls without a provider of its own (the reviewer
        // channels speak HTTPS), a client is built only once one is installed; ring is the one
        // provider of the build. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpLink {
            client,
            url: url.to_owned(),
            bearer,
            session: Mutex::new(None),
            version: Mutex::new(None),
            max_bytes,
        })
    }

    /// The revision negotiated by `initialize`, sent as `MCP-Protocol-Version` from now on.
    pub fn set_version(&self, version: &str) {
        *crate::lock(&self.version) = Some(version.to_owned());
    }

    pub fn session(&self) -> Option<String> {
        crate::lock(&self.session).clone()
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        if let Some(session) = crate::lock(&self.session).as_deref() {
            req = req.header(protocol::HEADER_SESSION_ID, session);
        }
        req
    }

    /// Sends `message`; every message of the answer goes to `sink`. An error means no message
    /// answered it (the caller turns that into an error for the request).
    pub async fn post(&self, message: &Value, sink: &mpsc::Sender<Inbound>) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let mut req = self
            .request(reqwest::Method::POST)
            .header("content-type", "application/json");
        let method = message.get("method").and_then(Value::as_str);
        let params = message.get("params");
        match protocol::request_version(params).and_then(Value::as_str) {
            Some(version) => {
                req = req.header(protocol::HEADER_PROTOCOL_VERSION, version);
                if let Some(method) = method {
                    req = req.header(protocol::HEADER_METHOD, method);
                    if let Some(name) =
                        protocol::name_param(method).and_then(|k| params?.get(k)?.as_str())
                    {
                        req =
                            req.header(protocol::HEADER_NAME, protocol::encode_header_value(name));
                    }
                }
            }
            None => {
                if let Some(v) = crate::lock(&self.version).clone() {
                    req = req.header(protocol::HEADER_PROTOCOL_VERSION, v);
                }
            }
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the MCP endpoint {}: {e}", self.url))?;
        if let Some(id) = resp
            .headers()
            .get(protocol::HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
        {
            *crate::lock(&self.session) = Some(id.to_owned());
        }
        self.read_answer(resp, sink).await
    }

    /// Opens the 2025 revisions' GET stream for messages the server sends on its own; returns
    /// when it ends. A server without one (405) is not an error.
    pub async fn listen(&self, sink: &mpsc::Sender<Inbound>) -> Result<(), String> {
        let mut req = self.request(reqwest::Method::GET);
        if let Some(v) = crate::lock(&self.version).clone() {
            req = req.header(protocol::HEADER_PROTOCOL_VERSION, v);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        self.read_answer(resp, sink).await
    }

    /// Ends the session at the server, if there is one.
    pub async fn close(&self) {
        if self.session().is_some() {
            let mut req = self.request(reqwest::Method::DELETE);
            if let Some(v) = crate::lock(&self.version).clone() {
                req = req.header(protocol::HEADER_PROTOCOL_VERSION, v);
            }
            let _ = req.send().await;
        }
    }

    async fn read_answer(
        &self,
        mut resp: reqwest::Response,
        sink: &mpsc::Sender<Inbound>,
    ) -> Result<(), String> {
        let status = resp.status();
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(());
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse && status.is_success() {
            let mut events = SseParser::new(self.max_bytes);
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                for data in events.push(&chunk)? {
                    let value: Value = serde_json::from_str(&data).map_err(|_| {
                        "the MCP endpoint sent an SSE event that is not JSON".to_owned()
                    })?;
                    if sink.send(Ok(value)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            return Ok(());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(format!(
                    "the MCP endpoint sent a message over {} bytes",
                    self.max_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            // An error answer with a JSON-RPC body is a message like any other.
            Ok(value) if value.get("jsonrpc").is_some() => {
                let _ = sink.send(Ok(value)).await;
                Ok(())
            }
            _ if status.is_success() && body.is_empty() => Ok(()),
            _ => Err(status_error(status)),
        }
    }
}

/// Cuts an SSE byte stream into the `data` of its events.
#[derive(Debug)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    max: usize,
}

impl SseParser {
    pub(crate) fn new(max: usize) -> SseParser {
        SseParser {
            buf: Vec::new(),
            max,
        }
    }

    /// Adds `chunk`; returns the data of every event it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&event[..end]).into_owned();
            let mut data = Vec::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("data:") {
                    data.push(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if !data.is_empty() {
                let joined = data.join("\n");
                if !joined.trim().is_empty() {
                    out.push(joined);
                }
            }
        }
        if self.buf.len() > self.max {
            return Err(format!("an SSE event over {} bytes", self.max));
        }
        Ok(out)
    }
}

fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::new(1024);
        assert!(p.push(b"event: message\ndata: {\"a\":").unwrap().is_empty());
        assert_eq!(
            p.push(b"1}\n\n: ping\n\ndata: 2\r\n\r\n").unwrap(),
            vec!["{\"a\":1}", "2"]
        );
        let mut small = SseParser::new(8);
        assert!(small.push(b"data: 0123456789").is_err());
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let input = b"short\r\n0123456789abcdef\nlast".to_vec();
        let mut reader = tokio::io::BufReader::with_capacity(4, &input[..]);
        let mut buf = Vec::new();
        assert!(read_line_bounded(&mut reader, 10, &mut buf).await.unwrap());
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line_bounded(&mut reader, 10, &mut buf).await,
            Err(LineError::TooLong)
        ));
    }
}
