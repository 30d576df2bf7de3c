//! The gate's own connection to the upstream server: TCP, TLS when configured, the startup
//! exchange and authentication with the credentials only the gate holds.

use crate::config::Upstream;
use crate::scram::ScramClient;
use crate::wire::{self, Backend, Fields};
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream in either direction: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// How long connecting and authenticating to the upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the upstream server: {0}")]
    Unreachable(String),
    #[error("the upstream server did not answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("the upstream server refused TLS")]
    TlsRefused,
    #[error("TLS with the upstream server failed: {0}")]
    Tls(String),
    #[error("the upstream server refused the connection: {} ({})", .0.message, .0.code)]
    Refused(Fields),
    #[error("the upstream server asks for a password and none is configured")]
    NoPassword,
    #[error(
        "the upstream server asks for authentication method {0}, which the gate does not speak"
    )]
    UnsupportedAuth(u32),
    #[error("upstream authentication failed: {0}")]
    Auth(String),
    #[error("the upstream server broke the protocol: {0}")]
    Protocol(String),
    #[error("the upstream connection closed")]
    Closed,
}

impl From<wire::WireError> for UpstreamError {
    fn from(e: wire::WireError) -> Self {
        UpstreamError::Protocol(e.to_string())
    }
}

/// An authenticated upstream session, ready for queries.
pub struct Connected {
    pub stream: Stream,
    /// Bytes read past the first ReadyForQuery (none from a well-behaved server).
    pub leftover: BytesMut,
    pub pid: u32,
    pub key: Vec<u8>,
    /// ParameterStatus messages as the server sent them, to pass on to the client.
    pub parameters: Vec<Vec<u8>>,
    /// NoticeResponse messages sent during start-up, to pass on to the client.
    pub notices: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Opens a byte stream to the upstream: TCP, then TLS when configured.
pub async fn open(upstream: &Upstream) -> Result<Stream, UpstreamError> {
    let tcp = TcpStream::connect((upstream.host.as_str(), upstream.port))
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let Some(tls) = &upstream.tls else {
        return Ok(Box::new(tcp));
    };
    let mut tcp = tcp;
    tcp.write_all(&wire::ssl_request())
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|_| UpstreamError::Closed)?;
    if answer[0] != b'S' {
        return Err(UpstreamError::TlsRefused);
    }
    let name = ServerName::try_from(upstream.host.clone())
        .map_err(|e| UpstreamError::Tls(format!("`{}`: {e}", upstream.host)))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// Connects and authenticates as the configured upstream user, passing `params` (the client's
/// session parameters the gate forwards) in the startup packet.
pub async fn connect(
    upstream: &Upstream,
    params: &[(String, String)],
) -> Result<Connected, UpstreamError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(upstream, params))
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

async fn connect_inner(
    upstream: &Upstream,
    params: &[(String, String)],
) -> Result<Connected, UpstreamError> {
    let mut stream = open(upstream).await?;
    let mut startup: Vec<(&str, &str)> = vec![
        ("user", upstream.user.as_str()),
        ("database", upstream.database.as_str()),
    ];
    startup.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    write(&mut stream, &wire::startup_message(&startup)).await?;
    let mut buf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramClient> = None;
    let mut parameters = Vec::new();
    let mut notices = Vec::new();
    let mut backend_key = None;
    let password = || {
        upstream
            .password
            .as_deref()
            .ok_or(UpstreamError::NoPassword)
    };
    loop {
        let frame = read_frame(&mut stream, &mut buf, wire::MAX_MESSAGE_LEN).await?;
        match wire::decode_backend(&frame)? {
            Backend::Authentication { code: 0, .. } => {}
            Backend::Authentication { code: 3, .. } => {
                write(&mut stream, &wire::password_text(password()?)).await?;
            }
            Backend::Authentication { code: 5, data } => {
                let salt: [u8; 4] = data
                    .try_into()
                    .map_err(|_| UpstreamError::Protocol("md5 salt is not 4 bytes".into()))?;
                let response = crate::md5::md5_password(&upstream.user, password()?, salt);
                write(&mut stream, &wire::password_text(&response)).await?;
            }
            Backend::Authentication { code: 10, data } => {
                let mechanism = crate::scram::choose_mechanism(data)
                    .map_err(|e| UpstreamError::Auth(e.to_string()))?;
                let client = ScramClient::new(password()?);
                let first = client.client_first();
                write(&mut stream, &wire::sasl_initial_response(mechanism, &first)).await?;
                scram = Some(client);
            }
            Backend::Authentication { code: 11, data } => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASLContinue before SASL".into()))?;
                let last = client
                    .server_first(data)
                    .map_err(|e| UpstreamError::Auth(e.to_string()))?;
                write(&mut stream, &wire::password_message(&last)).await?;
            }
            Backend::Authentication { code: 12, data } => {
                scram
                    .as_ref()
                    .ok_or_else(|| UpstreamError::Protocol("SASLFinal before SASL".into()))?
                    .server_final(data)
                    .map_err(|e| UpstreamError::Auth(e.to_string()))?;
            }
            Backend::Authentication { code, .. } => {
                return Err(UpstreamError::UnsupportedAuth(code));
            }
            Backend::ParameterStatus { .. } => parameters.push(frame.to_vec()),
            Backend::BackendKeyData { pid, key } => backend_key = Some((pid, key.to_vec())),
            Backend::Notice => notices.push(frame.to_vec()),
            Backend::Error(fields) => return Err(UpstreamError::Refused(fields)),
            Backend::ReadyForQuery(_) => {
                let (pid, key) = backend_key.ok_or_else(|| {
                    UpstreamError::Protocol("no BackendKeyData before ReadyForQuery".into())
                })?;
                return Ok(Connected {
                    stream,
                    leftover: buf,
                    pid,
                    key,
                    parameters,
                    notices,
                });
            }
            // NegotiateProtocolVersion and anything else informational: the gate asks for 3.0
            // and needs nothing more.
            _ => {}
        }
    }
}

/// Asks the upstream to cancel what backend `pid` is running.
pub async fn cancel(upstream: &Upstream, pid: u32, key: &[u8]) -> Result<(), UpstreamError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, open(upstream))
        .await
        .map_err(|_| UpstreamError::Timeout)??;
    write(&mut stream, &wire::cancel_request(pid, key)).await?;
    // The server closes the connection without an answer.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut sink)).await;
    Ok(())
}

async fn write(stream: &mut Stream, bytes: &[u8]) -> Result<(), UpstreamError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|_| UpstreamError::Closed)
}

/// Why a message could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    Wire(wire::WireError),
    Closed,
}

impl From<FrameError> for UpstreamError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Wire(e) => e.into(),
            FrameError::Closed => UpstreamError::Closed,
        }
    }
}

/// Reads one whole message of at most `max` bytes from `stream`, buffering in `buf`.
pub(crate) async fn read_frame(
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, FrameError> {
    loop {
        if let Some(n) = wire::frame_len(buf, max).map_err(FrameError::Wire)? {
            return Ok(buf.split_to(n));
        }
        if stream.read_buf(buf).await.map_err(|_| FrameError::Closed)? == 0 {
            return Err(FrameError::Closed);
        }
    }
}
