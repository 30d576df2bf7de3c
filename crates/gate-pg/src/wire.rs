//! The PostgreSQL wire protocol (version 3.0 and 3.2) as far as the gate needs it: framing
//! of both directions, decoding of the messages the gate inspects, and encoding of the
//! messages it writes itself.
//!
//! Decoding never trusts a length: every frame is checked against a bound before a byte of it
//! is buffered, and every field against the frame it sits in. Anything malformed is a
//! [`WireError`] naming what was wrong; the session turns it into a FATAL error and closes.

use std::fmt;

/// Longest startup packet accepted (PostgreSQL's own limit).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Longest regular message accepted from either side. PostgreSQL allows up to 1 GiB; the gate
/// buffers a client message whole before classifying it, so it keeps a tighter bound.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

pub const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest cancel key of protocol 3.2.
pub const MAX_CANCEL_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message length {0} is out of range (at least 4, at most {1} bytes)")]
    BadLength(usize, usize),
    #[error("startup packet length {0} is out of range (8 to {MAX_STARTUP_LEN} bytes)")]
    BadStartupLength(usize),
    #[error("unsupported frontend protocol {0}.{1}: the gate speaks 3.0 and 3.2")]
    UnsupportedProtocol(u32, u32),
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
}

fn malformed(what: &'static str, why: &'static str) -> WireError {
    WireError::Malformed { what, why }
}

/// What a client sends before the session proper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: u32,
        key: Vec<u8>,
    },
    Session {
        /// The minor protocol version asked for (0 or 2 are spoken; others are negotiated).
        minor: u32,
        params: Vec<(String, String)>,
    },
}

/// The length of the startup packet at the head of `buf` once enough of it is there.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = be_u32(head) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(WireError::BadStartupLength(len));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes a whole startup packet (length included).
pub fn decode_startup(packet: &[u8]) -> Result<Startup, WireError> {
    let code = packet
        .get(4..8)
        .map(be_u32)
        .ok_or_else(|| malformed("startup packet", "shorter than 8 bytes"))?;
    let body = &packet[8..];
    match code {
        SSL_REQUEST | GSSENC_REQUEST if !body.is_empty() => {
            Err(malformed("SSL/GSS request", "it carries extra bytes"))
        }
        SSL_REQUEST => Ok(Startup::SslRequest),
        GSSENC_REQUEST => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST => {
            let pid = body
                .get(..4)
                .map(be_u32)
                .ok_or_else(|| malformed("CancelRequest", "no process id"))?;
            let key = &body[4..];
            if key.len() < 4 || key.len() > MAX_CANCEL_KEY_LEN {
                return Err(malformed("CancelRequest", "key length out of range"));
            }
            Ok(Startup::Cancel {
                pid,
                key: key.to_vec(),
            })
        }
        version => {
            let (major, minor) = (version >> 16, version & 0xffff);
            if major != 3 {
                return Err(WireError::UnsupportedProtocol(major, minor));
            }
            let mut params = Vec::new();
            let mut cursor = Cursor::new(body, "startup packet");
            loop {
                let name = cursor.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = cursor.cstr()?;
                if params.iter().any(|(k, _)| k == name) {
                    return Err(malformed("startup packet", "a parameter appears twice"));
                }
                params.push((name.to_owned(), value.to_owned()));
            }
            if !cursor.rest().is_empty() {
                return Err(malformed("startup packet", "bytes after the terminator"));
            }
            Ok(Startup::Session { minor, params })
        }
    }
}

/// The length of the tagged message at the head of `buf` once all of it is there.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    let Some(head) = buf.get(1..5) else {
        return Ok(None);
    };
    let len = be_u32(head) as usize;
    if len < 4 || len > max {
        return Err(WireError::BadLength(len, max));
    }
    Ok((buf.len() > len).then_some(len + 1))
}

/// A message from the client, borrowed from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend<'a> {
    Query(&'a [u8]),
    Parse {
        name: &'a [u8],
        sql: &'a [u8],
    },
    Bind {
        portal: &'a [u8],
        statement: &'a [u8],
        formats: Vec<i16>,
        params: Vec<Option<&'a [u8]>>,
    },
    Describe,
    Execute {
        portal: &'a [u8],
    },
    Close {
        /// `S` for a prepared statement, `P` for a portal.
        kind: u8,
        name: &'a [u8],
    },
    Sync,
    Flush,
    Terminate,
    CopyData,
    CopyDone,
    CopyFail,
    FunctionCall {
        oid: u32,
    },
    /// `p`: a password, SASL initial response or SASL response, depending on the exchange.
    Password(&'a [u8]),
}

/// Decodes one whole client message (tag and length included).
pub fn decode_frontend(frame: &[u8]) -> Result<Frontend<'_>, WireError> {
    let (tag, body) = split_tag(frame)?;
    let mut c = Cursor::new(body, frontend_name(tag));
    let msg = match tag {
        b'Q' => Frontend::Query(c.cstr_bytes()?),
        b'P' => {
            let name = c.cstr_bytes()?;
            let sql = c.cstr_bytes()?;
            let n = c.u16()? as usize;
            c.take(n * 4)?;
            Frontend::Parse { name, sql }
        }
        b'B' => {
            let portal = c.cstr_bytes()?;
            let statement = c.cstr_bytes()?;
            let nformats = c.u16()? as usize;
            let mut formats = Vec::with_capacity(nformats.min(body.len() / 2));
            for _ in 0..nformats {
                formats.push(c.i16()?);
            }
            let nparams = c.u16()? as usize;
            let mut params = Vec::with_capacity(nparams.min(body.len() / 4));
            for _ in 0..nparams {
                let len = c.i32()?;
                params.push(match len {
                    -1 => None,
                    n if n < 0 => return Err(malformed("Bind", "negative parameter length")),
                    n => Some(c.take(n as usize)?),
                });
            }
            let nresults = c.u16()? as usize;
            c.take(nresults * 2)?;
            Frontend::Bind {
                portal,
                statement,
                formats,
                params,
            }
        }
        b'D' => {
            c.kind_byte()?;
            c.cstr_bytes()?;
            Frontend::Describe
        }
        b'E' => {
            let portal = c.cstr_bytes()?;
            c.i32()?;
            Frontend::Execute { portal }
        }
        b'C' => Frontend::Close {
            kind: c.kind_byte()?,
            name: c.cstr_bytes()?,
        },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'd' => return Ok(Frontend::CopyData),
        b'c' => Frontend::CopyDone,
        b'f' => {
            c.cstr_bytes()?;
            Frontend::CopyFail
        }
        b'F' => {
            let oid = c.u32()?;
            // The arguments follow; the gate never runs a fast-path call, so it need not read them.
            return Ok(Frontend::FunctionCall { oid });
        }
        b'p' => return Ok(Frontend::Password(body)),
        _ => return Err(malformed("message", "unknown message type from the client")),
    };
    if !c.rest().is_empty() {
        return Err(malformed(c.what, "bytes after the last field"));
    }
    Ok(msg)
}

fn frontend_name(tag: u8) -> &'static str {
    match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'E' => "Execute",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        _ => "message",
    }
}

fn split_tag(frame: &[u8]) -> Result<(u8, &[u8]), WireError> {
    match frame {
        [tag, a, b, c, d, body @ ..] if be_u32(&[*a, *b, *c, *d]) as usize == body.len() + 4 => {
            Ok((*tag, body))
        }
        _ => Err(malformed("message", "its length does not match its frame")),
    }
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// A message from the upstream server that the gate looks into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend<'a> {
    Authentication {
        code: u32,
        data: &'a [u8],
    },
    ParameterStatus {
        name: &'a str,
        value: &'a str,
    },
    BackendKeyData {
        pid: u32,
        key: &'a [u8],
    },
    ReadyForQuery(u8),
    CommandComplete(&'a str),
    Error(Fields),
    Notice,
    /// Anything the gate passes through without looking.
    Other(u8),
}

/// Decodes one whole server message (tag and length included).
pub fn decode_backend(frame: &[u8]) -> Result<Backend<'_>, WireError> {
    let (tag, body) = split_tag(frame)?;
    let mut c = Cursor::new(body, "server message");
    Ok(match tag {
        b'R' => Backend::Authentication {
            code: c.u32()?,
            data: c.rest(),
        },
        b'S' => Backend::ParameterStatus {
            name: c.cstr()?,
            value: c.cstr()?,
        },
        b'K' => Backend::BackendKeyData {
            pid: c.u32()?,
            key: c.rest(),
        },
        b'Z' => Backend::ReadyForQuery(c.kind_byte()?),
        b'C' => Backend::CommandComplete(c.cstr()?),
        b'E' => Backend::Error(decode_fields(body)?),
        b'N' => Backend::Notice,
        other => Backend::Other(other),
    })
}

fn decode_fields(body: &[u8]) -> Result<Fields, WireError> {
    let mut fields = Fields::default();
    let mut c = Cursor::new(body, "ErrorResponse");
    loop {
        let kind = c.kind_byte()?;
        if kind == 0 {
            break;
        }
        let value = String::from_utf8_lossy(c.cstr_bytes()?).into_owned();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
    Ok(fields)
}

/// Reads fields out of a message body, each read checked against what is left.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(malformed(self.what, "a field runs past the end"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn kind_byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn i16(&mut self) -> Result<i16, WireError> {
        Ok(self.u16()? as i16)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(be_u32(self.take(4)?))
    }

    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(self.u32()? as i32)
    }

    fn cstr_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let end = memchr(self.buf)
            .ok_or_else(|| malformed(self.what, "a string is not NUL-terminated"))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn cstr(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.cstr_bytes()?)
            .map_err(|_| malformed(self.what, "a string is not UTF-8"))
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == 0)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Builds one tagged message.
pub struct MessageBuilder {
    buf: Vec<u8>,
    /// Where the length field starts: after the tag, if there is one.
    len_at: usize,
}

impl fmt::Debug for MessageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBuilder").finish_non_exhaustive()
    }
}

impl MessageBuilder {
    /// A message with `tag`; `None` for the untagged startup packets.
    pub fn new(tag: Option<u8>) -> MessageBuilder {
        let mut buf = Vec::with_capacity(64);
        buf.extend(tag);
        let len_at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        MessageBuilder { buf, len_at }
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.buf.push(v);
        self
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A string with its NUL terminator; interior NULs are dropped, as the protocol cannot
    /// carry them.
    pub fn cstr(mut self, v: &str) -> Self {
        self.buf.extend(v.bytes().filter(|&b| b != 0));
        self.buf.push(0);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        let at = self.len_at;
        let len = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Severity of an error or notice the gate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Notice => "NOTICE",
        }
    }
}

/// An ErrorResponse (or, for [`Severity::Notice`], a NoticeResponse).
pub fn error_response(
    severity: Severity,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> Vec<u8> {
    let tag = if severity == Severity::Notice {
        b'N'
    } else {
        b'E'
    };
    let mut m = MessageBuilder::new(Some(tag))
        .u8(b'S')
        .cstr(severity.as_str())
        .u8(b'V')
        .cstr(severity.as_str())
        .u8(b'C')
        .cstr(code)
        .u8(b'M')
        .cstr(message);
    if let Some(hint) = hint {
        m = m.u8(b'H').cstr(hint);
    }
    m.u8(0).finish()
}

pub fn authentication(code: u32, data: &[u8]) -> Vec<u8> {
    MessageBuilder::new(Some(b'R'))
        .u32(code)
        .bytes(data)
        .finish()
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    MessageBuilder::new(Some(b'S'))
        .cstr(name)
        .cstr(value)
        .finish()
}

pub fn backend_key_data(pid: u32, key: &[u8]) -> Vec<u8> {
    MessageBuilder::new(Some(b'K')).u32(pid).bytes(key).finish()
}

pub fn ready_for_query(status: u8) -> Vec<u8> {
    MessageBuilder::new(Some(b'Z')).u8(status).finish()
}

/// NegotiateProtocolVersion: the newest minor version spoken and the options not understood.
pub fn negotiate_protocol(minor: u32, unknown: &[&str]) -> Vec<u8> {
    let mut m = MessageBuilder::new(Some(b'v'))
        .u32(minor)
        .u32(unknown.len() as u32);
    for name in unknown {
        m = m.cstr(name);
    }
    m.finish()
}

pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut m = MessageBuilder::new(None).u32(PROTOCOL_3_0);
    for (k, v) in params {
        m = m.cstr(k).cstr(v);
    }
    m.u8(0).finish()
}

pub fn ssl_request() -> Vec<u8> {
    MessageBuilder::new(None).u32(SSL_REQUEST).finish()
}

pub fn cancel_request(pid: u32, key: &[u8]) -> Vec<u8> {
    MessageBuilder::new(None)
        .u32(CANCEL_REQUEST)
        .u32(pid)
        .bytes(key)
        .finish()
}

pub fn password_message(data: &[u8]) -> Vec<u8> {
    MessageBuilder::new(Some(b'p')).bytes(data).finish()
}

/// A PasswordMessage carrying `text` (a cleartext or md5 password) with its terminator.
pub fn password_text(text: &str) -> Vec<u8> {
    MessageBuilder::new(Some(b'p')).cstr(text).finish()
}

pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    MessageBuilder::new(Some(b'p'))
        .cstr(mechanism)
        .u32(data.len() as u32)
        .bytes(data)
        .finish()
}

/// Splits a SASLInitialResponse body into mechanism and data.
pub fn decode_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let mut c = Cursor::new(body, "SASLInitialResponse");
    let mechanism = c.cstr()?;
    let len = c.i32()?;
    let data = if len < 0 {
        &[][..]
    } else {
        c.take(len as usize)?
    };
    if !c.rest().is_empty() {
        return Err(malformed("SASLInitialResponse", "bytes after the data"));
    }
    Ok((mechanism, data))
}

/// A cleartext password message body: the password and its NUL.
pub fn decode_password(body: &[u8]) -> Result<&str, WireError> {
    let mut c = Cursor::new(body, "PasswordMessage");
    let password = c.cstr()?;
    if !c.rest().is_empty() {
        return Err(malformed("PasswordMessage", "bytes after the password"));
    }
    Ok(password)
}

pub fn query(sql: &str) -> Vec<u8> {
    MessageBuilder::new(Some(b'Q')).cstr(sql).finish()
}

/// A Bind of `portal` to `statement` with no parameters and default formats.
pub fn bind(portal: &[u8], statement: &str) -> Vec<u8> {
    MessageBuilder::new(Some(b'B'))
        .bytes(portal)
        .u8(0)
        .cstr(statement)
        .bytes(&[0, 0, 0, 0, 0, 0])
        .finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn startup_round_trip() {
        let packet = startup_message(&[("user", "etl"), ("database", "prod")]);
        assert_eq!(startup_len(&packet).unwrap(), Some(packet.len()));
        let s = decode_startup(&packet).unwrap();
        let expected = vec![
            ("user".to_owned(), "etl".to_owned()),
            ("database".to_owned(), "prod".to_owned()),
        ];
        assert_eq!(
            s,
            Startup::Session {
                minor: 0,
                params: expected
            }
        );
    }

    #[test]
    fn special_requests() {
        assert_eq!(decode_startup(&ssl_request()).unwrap(), Startup::SslRequest);
        let cancel = cancel_request(42, &[1, 2, 3, 4]);
        assert_eq!(
            decode_startup(&cancel).unwrap(),
            Startup::Cancel {
                pid: 42,
                key: vec![1, 2, 3, 4]
            }
        );
        let long = cancel_request(7, &[9; 32]);
        assert!(
            matches!(decode_startup(&long).unwrap(), Startup::Cancel { key, .. } if key.len() == 32)
        );
        assert!(decode_startup(&cancel_request(7, &[1, 2])).is_err());
    }

    #[test]
    fn protocol_2_and_bad_lengths_are_refused() {
        let mut v2 = startup_message(&[("user", "x")]);
        v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        assert_eq!(
            decode_startup(&v2),
            Err(WireError::UnsupportedProtocol(2, 0))
        );
        assert_eq!(
            startup_len(&[0, 0, 0, 3]),
            Err(WireError::BadStartupLength(3))
        );
        assert_eq!(
            startup_len(&[0x7f, 0, 0, 0]),
            Err(WireError::BadStartupLength(0x7f00_0000))
        );
        assert!(frame_len(&[b'Q', 0, 0, 0, 2], MAX_MESSAGE_LEN).is_err());
        assert!(frame_len(&[b'Q', 0x7f, 0xff, 0xff, 0xff], MAX_MESSAGE_LEN).is_err());
        assert_eq!(frame_len(&[b'Q', 0, 0, 0, 9], MAX_MESSAGE_LEN), Ok(None));
    }

    #[test]
    fn duplicate_and_unterminated_parameters_are_refused() {
        let mut p = startup_message(&[("user", "a"), ("user", "b")]);
        assert!(decode_startup(&p).is_err());
        p = startup_message(&[("user", "a")]);
        p.pop();
        let n = p.len() as u32;
        p[0..4].copy_from_slice(&n.to_be_bytes());
        assert!(decode_startup(&p).is_err());
    }

    #[test]
    fn bind_decodes_parameters() {
        let mut frame = MessageBuilder::new(Some(b'B'))
            .cstr("")
            .cstr("s1")
            .bytes(&[0, 1, 0, 0])
            .bytes(&[0, 2])
            .u32(3)
            .bytes(b"abc")
            .u32(u32::MAX)
            .bytes(&[0, 0])
            .finish();
        let m = decode_frontend(&frame).unwrap();
        assert_eq!(
            m,
            Frontend::Bind {
                portal: b"",
                statement: b"s1",
                formats: vec![0],
                params: vec![Some(&b"abc"[..]), None],
            }
        );
        // A parameter length that runs past the frame.
        frame[17] = 200;
        assert!(decode_frontend(&frame).is_err());
    }

    #[test]
    fn error_response_round_trip() {
        let e = error_response(Severity::Error, "42501", "denied", Some("ask"));
        match decode_backend(&e).unwrap() {
            Backend::Error(f) => {
                assert_eq!((f.severity.as_str(), f.code.as_str()), ("ERROR", "42501"));
                assert_eq!(f.message, "denied");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Arbitrary bytes never panic the decoders, and every frame the framer accepts is
        /// within its bound.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some(n)) = startup_len(&bytes) {
                prop_assert!(n <= MAX_STARTUP_LEN && n <= bytes.len());
                let _ = decode_startup(&bytes[..n]);
            }
            if let Ok(Some(n)) = frame_len(&bytes, 200) {
                prop_assert!(n <= bytes.len() && n <= 201);
                let _ = decode_frontend(&bytes[..n]);
                let _ = decode_backend(&bytes[..n]);
            }
            let _ = decode_frontend(&bytes);
            let _ = decode_backend(&bytes);
            let _ = decode_sasl_initial(&bytes);
            let _ = decode_password(&bytes);
        }

        /// Well-framed messages with arbitrary bodies and every tag decode or fail cleanly.
        #[test]
        fn framed_arbitrary_bodies(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let frame = MessageBuilder::new(Some(tag)).bytes(&body).finish();
            prop_assert_eq!(frame_len(&frame, MAX_MESSAGE_LEN).ok().flatten(), Some(frame.len()));
            let _ = decode_frontend(&frame);
            let _ = decode_backend(&frame);
        }
    }
}
