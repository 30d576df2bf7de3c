//! SCRAM-SHA-256 (RFC 5802 with the SHA-256 parameters of RFC 7677) as PostgreSQL speaks it, on
//! both sides of the gate, as pure functions over message bodies: no sockets, no framing.
//!
//! - [`ScramVerifier`] is the stored secret, in the format of `pg_authid.rolpassword`:
//!   `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
//! - [`ScramServer`] is the gate facing a client, which authenticates with its countersign token
//!   as password. [`ScramServer::for_unknown_user`] runs the same exchange for a user the gate
//!   does not know and fails it exactly as a wrong password would.
//! - [`ScramClient`] is the gate facing the upstream server, with credentials only the gate holds.
//!
//! The exchange, message by message (the bodies of SASLInitialResponse, AuthenticationSASLContinue,
//! SASLResponse and AuthenticationSASLFinal):
//!
//! ```text
//! client-first   n,,n=,r=<client nonce>
//! server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final   c=biws,r=<client nonce><server nonce>,p=<base64 ClientProof>
//! server-final   v=<base64 ServerSignature>
//! ```
//!
//! As in PostgreSQL, the user name in client-first is ignored (libpq sends it empty; the user is
//! the one of the startup message). No channel binding is done in either direction: the gate
//! offers only `SCRAM-SHA-256`, never `SCRAM-SHA-256-PLUS`, so it accepts the GS2 flags `n` and
//! `y` and refuses `p=<type>`. Authorization identities (`a=`) and mandatory extensions (`m=`)
//! are refused; optional extensions are ignored where RFC 5802 allows them.
//!
//! Passwords are used as their raw UTF-8 bytes. PostgreSQL applies SASLprep (RFC 4013: NFKC,
//! mapping of non-ASCII spaces, removal of some characters) to non-ASCII passwords and leaves
//! ASCII passwords alone, so for ASCII passwords — countersign tokens are ASCII — both agree
//! byte for byte. A non-ASCII password that SASLprep would change (a no-break space, a ligature,
//! a decomposed accent) yields a different verifier here than in PostgreSQL, and authentication
//! against one made by the other fails: it fails closed, never open. Already normalized non-ASCII
//! passwords agree (both cases are pinned by tests against PostgreSQL 15).
//!
//! Every step takes the whole message body, refuses empty, oversized ([`MAX_MESSAGE_LEN`]),
//! NUL-containing and non-UTF-8 input, and ends the exchange on any error: after an error, or
//! after the last step, every further call is an error too.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

#[cfg(test)]
mod tests;

type HmacSha256 = Hmac<Sha256>;

/// The only SASL mechanism the gate speaks, in either direction.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The channel-binding variant, recognised only to explain why it is refused.
const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// PostgreSQL's default iteration count (`scram_iterations`), used for generated verifiers and
/// for the mock verifier of unknown users.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// The most iterations accepted from a stored verifier or an upstream server. Deriving the salted
/// password costs one HMAC per iteration; this bounds that to a few seconds of CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The shortest salt accepted in a stored verifier.
pub const MIN_SALT_LEN: usize = 8;
/// The longest SCRAM message accepted, in bytes. Real messages are around 100 bytes (client) and
/// 90 bytes (server); anything near this bound is garbage or an attack.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Salt length of generated and mock verifiers (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
const SALT_LEN: usize = 16;
/// Random bytes in a nonce before base64 (PostgreSQL's `SCRAM_RAW_NONCE_LEN`): 24 characters.
const RAW_NONCE_LEN: usize = 18;
const KEY_LEN: usize = 32;
/// Attribute names RFC 5802 defines. An extension may not reuse one, so that a repeated or
/// misplaced attribute is an error instead of something silently ignored.
const DEFINED_ATTRIBUTES: &str = "acimnprsve";
/// How much of a peer-chosen name (mechanism, channel-binding type) an error message repeats.
const MAX_ECHO: usize = 64;

/// Which SCRAM message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMessage {
    ClientFirst,
    ServerFirst,
    ClientFinal,
    ServerFinal,
}

impl fmt::Display for ScramMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientFirst => "client-first-message",
            Self::ServerFirst => "server-first-message",
            Self::ClientFinal => "client-final-message",
            Self::ServerFinal => "server-final-message",
        })
    }
}

/// Why a SCRAM exchange failed.
///
/// Towards a client, [`ScramError::AuthenticationFailed`] is the only answer about the password
/// (PostgreSQL's SQLSTATE 28P01); every other variant is a protocol violation (08P01) and says
/// nothing about whether the user exists or the password was right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM step {step} called out of order: {reason}")]
    OutOfOrder {
        step: &'static str,
        reason: &'static str,
    },
    #[error("client chose SASL mechanism {0:?}, but only SCRAM-SHA-256 is offered")]
    UnsupportedMechanism(String),
    #[error(
        "the server offers no SASL mechanism this gate supports (offered: {offered}); \
         SCRAM-SHA-256 is required"
    )]
    NoSupportedMechanism { offered: String },
    #[error(
        "the server offers only SCRAM-SHA-256-PLUS, which requires channel binding; this gate \
         does not do channel binding, so the server must also offer SCRAM-SHA-256"
    )]
    OnlyChannelBindingOffered,
    #[error("nonce must be non-empty printable ASCII without commas")]
    InvalidNonce,
    #[error("SCRAM {message} is empty")]
    Empty { message: ScramMessage },
    #[error("SCRAM {message} is {len} bytes, more than the limit of {limit}", limit = MAX_MESSAGE_LEN)]
    TooLong { message: ScramMessage, len: usize },
    #[error("SCRAM {message} is not valid UTF-8")]
    NotUtf8 { message: ScramMessage },
    #[error("malformed SCRAM {message}: {reason}")]
    Malformed {
        message: ScramMessage,
        reason: String,
    },
    #[error("attribute {attribute:?} of SCRAM {message} is not valid base64")]
    Base64 {
        message: ScramMessage,
        attribute: char,
    },
    #[error(
        "client requires channel binding {name:?}, but this server offers SCRAM-SHA-256 without \
         channel binding"
    )]
    ChannelBindingNotSupported { name: String },
    #[error("client sent an authorization identity (a=), which is not supported")]
    AuthzidNotSupported,
    #[error("SCRAM {message} requires a mandatory extension (m=), and none is supported")]
    MandatoryExtension { message: ScramMessage },
    #[error("channel binding attribute c= does not match the GS2 header of client-first-message")]
    ChannelBindingMismatch,
    #[error("nonce in client-final-message does not match the nonce of this exchange")]
    NonceMismatch,
    #[error("server nonce does not extend the client nonce")]
    ServerNonceMismatch,
    #[error("SCRAM iteration count {iterations} is outside 1..={max}", max = MAX_ITERATIONS)]
    IterationsOutOfRange { iterations: u64 },
    /// Wrong password, or a user the gate does not know: deliberately indistinguishable.
    #[error("password authentication failed")]
    AuthenticationFailed,
    #[error(
        "server signature does not verify: the server does not hold this password's verifier, \
         or the exchange was tampered with"
    )]
    ServerSignatureMismatch,
    /// The `e=` attribute of server-final, with the server's text.
    #[error("server refused SCRAM authentication: {0}")]
    ServerError(String),
}

/// Why a [`ScramVerifier`] could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error("SCRAM verifier does not start with \"SCRAM-SHA-256$\"")]
    Scheme,
    #[error(
        "SCRAM verifier is not of the form \
         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
    )]
    Shape,
    #[error("SCRAM verifier iteration count is not a decimal number")]
    IterationsNotANumber,
    #[error("SCRAM iteration count {iterations} is outside 1..={max}", max = MAX_ITERATIONS)]
    IterationsOutOfRange { iterations: u64 },
    #[error("SCRAM verifier {0} is not valid base64")]
    Base64(VerifierField),
    #[error("SCRAM salt is {len} bytes, shorter than the minimum of {min}", min = MIN_SALT_LEN)]
    SaltTooShort { len: usize },
    #[error("SCRAM verifier {field} is {len} bytes; it must be 32")]
    KeyLength { field: VerifierField, len: usize },
}

/// A part of a stored verifier, named in [`VerifierError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierField {
    Salt,
    StoredKey,
    ServerKey,
}

impl fmt::Display for VerifierField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Salt => "salt",
            Self::StoredKey => "StoredKey",
            Self::ServerKey => "ServerKey",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------------

fn hmac_keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed), so this cannot fail; the hmac
    // crate's own `KeyInit::new` makes the same call and the same assumption.
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = hmac_keyed(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256 and one output block, which is all SCRAM needs.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    // Keying HMAC costs two compressions; cloning the keyed state costs none.
    let prf = hmac_keyed(password);
    let mut mac = prf.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; KEY_LEN] = mac.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (r, b) in result.iter_mut().zip(u) {
            *r ^= b;
        }
    }
    result
}

fn xor(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut out = *a;
    for (o, b) in out.iter_mut().zip(b) {
        *o ^= b;
    }
    out
}

/// A fresh nonce: 18 random bytes from the OS-seeded CSPRNG, base64 (24 printable characters).
fn random_nonce() -> String {
    let mut raw = [0u8; RAW_NONCE_LEN];
    rand::rng().fill_bytes(&mut raw);
    BASE64.encode(raw)
}

/// `printable` of RFC 5802: `%x21-2B / %x2D-7E`, which is what a nonce is made of.
fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn checked_nonce(nonce: &str) -> Result<String, ScramError> {
    if nonce.is_empty() || !is_printable(nonce) {
        return Err(ScramError::InvalidNonce);
    }
    Ok(nonce.to_owned())
}

/// A peer-chosen name, cut short enough to repeat in an error message.
fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

enum IterationsError {
    NotANumber,
    OutOfRange(u64),
}

/// Parses a decimal iteration count and bounds it to `1..=MAX_ITERATIONS`. Overlong numbers
/// saturate, so they are reported as out of range rather than as garbage.
fn parse_iterations(s: &str) -> Result<u32, IterationsError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IterationsError::NotANumber);
    }
    let n = s.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    match u32::try_from(n) {
        Ok(i) if (1..=MAX_ITERATIONS).contains(&i) => Ok(i),
        _ => Err(IterationsError::OutOfRange(n)),
    }
}

// ---------------------------------------------------------------------------------------------
// Message parsing
// ---------------------------------------------------------------------------------------------

fn malformed(message: ScramMessage, reason: impl Into<String>) -> ScramError {
    ScramError::Malformed {
        message,
        reason: reason.into(),
    }
}

/// The common gate for every incoming message: bounded, non-empty, UTF-8 and free of NUL (which
/// PostgreSQL, reading C strings, would treat as the end of the message).
fn message_text(message: ScramMessage, data: &[u8]) -> Result<&str, ScramError> {
    if data.is_empty() {
        return Err(ScramError::Empty { message });
    }
    if data.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::TooLong {
            message,
            len: data.len(),
        });
    }
    if data.contains(&0) {
        return Err(malformed(message, "contains a NUL byte"));
    }
    std::str::from_utf8(data).map_err(|_| ScramError::NotUtf8 { message })
}

/// The comma-separated `<letter>=<value>` attributes of a message, read in the order RFC 5802
/// fixes. Values cannot contain commas, so splitting on them is exact.
struct Attributes<'a> {
    message: ScramMessage,
    parts: std::iter::Peekable<std::str::Split<'a, char>>,
}

impl<'a> Attributes<'a> {
    fn new(message: ScramMessage, text: &'a str) -> Self {
        Self {
            message,
            parts: text.split(',').peekable(),
        }
    }

    fn split(message: ScramMessage, part: &str) -> Result<(char, &str), ScramError> {
        let bytes = part.as_bytes();
        match bytes {
            [name, b'=', ..] if name.is_ascii_alphabetic() => Ok((char::from(*name), &part[2..])),
            [] => Err(malformed(message, "empty attribute")),
            _ => Err(malformed(
                message,
                "an attribute is not of the form <letter>=<value>",
            )),
        }
    }

    /// The name of the next attribute, without consuming it.
    fn peek_name(&mut self) -> Option<char> {
        let part = self.parts.peek()?;
        Self::split(self.message, part).ok().map(|(name, _)| name)
    }

    /// The value of the next attribute, which must be `name`.
    fn expect(&mut self, name: char) -> Result<&'a str, ScramError> {
        let Some(part) = self.parts.next() else {
            return Err(malformed(
                self.message,
                format!("attribute {name:?} is missing"),
            ));
        };
        let (found, value) = Self::split(self.message, part)?;
        if found != name {
            return Err(malformed(
                self.message,
                format!("expected attribute {name:?}, found {found:?}"),
            ));
        }
        Ok(value)
    }

    /// The rest must be optional extensions, which are ignored; a defined attribute here is out
    /// of place (a repeat, or a wrong order).
    fn extensions(mut self) -> Result<(), ScramError> {
        for part in self.parts.by_ref() {
            let (name, _) = Self::split(self.message, part)?;
            if DEFINED_ATTRIBUTES.contains(name) {
                return Err(malformed(
                    self.message,
                    format!("attribute {name:?} is out of place"),
                ));
            }
        }
        Ok(())
    }
}

fn decode_base64(
    message: ScramMessage,
    attribute: char,
    value: &str,
) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| ScramError::Base64 { message, attribute })
}

fn decode_key(
    message: ScramMessage,
    attribute: char,
    value: &str,
    what: &str,
) -> Result<[u8; KEY_LEN], ScramError> {
    let bytes = decode_base64(message, attribute, value)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        malformed(
            message,
            format!("{what} is {} bytes, not {KEY_LEN}", bytes.len()),
        )
    })
}

/// The parts of client-first-message the server keeps.
struct ClientFirst<'a> {
    /// `n,,` or `y,,`, echoed (base64) in `c=` of client-final.
    gs2_header: &'a str,
    bare: &'a str,
    nonce: &'a str,
}

fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, ScramError> {
    let message = ScramMessage::ClientFirst;
    let Some((flag, rest)) = text.split_once(',') else {
        return Err(malformed(message, "no GS2 header"));
    };
    match flag {
        // `y`: the client could bind but believes the server cannot. PostgreSQL refuses it when
        // it advertised SCRAM-SHA-256-PLUS (a downgrade); this server never does, so it is fine.
        "n" | "y" => {}
        _ => match flag.strip_prefix("p=") {
            Some(name) => {
                return Err(ScramError::ChannelBindingNotSupported { name: echo(name) });
            }
            None => {
                return Err(malformed(
                    message,
                    "GS2 channel-binding flag must be \"n\", \"y\" or \"p=<type>\"",
                ));
            }
        },
    }
    let Some((authzid, bare)) = rest.split_once(',') else {
        return Err(malformed(message, "GS2 header is not terminated"));
    };
    if authzid.starts_with("a=") {
        return Err(ScramError::AuthzidNotSupported);
    }
    if !authzid.is_empty() {
        return Err(malformed(
            message,
            "GS2 header has something other than an authorization identity",
        ));
    }
    let gs2_header = &text[..flag.len() + authzid.len() + 2];

    let mut attrs = Attributes::new(message, bare);
    if attrs.peek_name() == Some('m') {
        return Err(ScramError::MandatoryExtension { message });
    }
    // The user name is ignored, as PostgreSQL does: the user is the startup message's.
    attrs.expect('n')?;
    let nonce = attrs.expect('r')?;
    if nonce.is_empty() {
        return Err(malformed(message, "nonce is empty"));
    }
    if !is_printable(nonce) {
        return Err(malformed(
            message,
            "nonce has characters outside printable ASCII",
        ));
    }
    attrs.extensions()?;
    Ok(ClientFirst {
        gs2_header,
        bare,
        nonce,
    })
}

struct ClientFinal<'a> {
    without_proof: &'a str,
    channel_binding: Vec<u8>,
    nonce: &'a str,
    proof: [u8; KEY_LEN],
}

fn parse_client_final(text: &str) -> Result<ClientFinal<'_>, ScramError> {
    let message = ScramMessage::ClientFinal;
    // The proof is always last, and AuthMessage covers everything before it.
    let Some((without_proof, last)) = text.rsplit_once(',') else {
        return Err(malformed(message, "attribute 'p' is missing"));
    };
    let (name, proof) = Attributes::split(message, last)?;
    if name != 'p' {
        return Err(malformed(
            message,
            format!("the last attribute must be 'p', found {name:?}"),
        ));
    }
    let mut attrs = Attributes::new(message, without_proof);
    let channel_binding = attrs.expect('c')?;
    if channel_binding.is_empty() {
        return Err(malformed(message, "channel binding attribute is empty"));
    }
    let channel_binding = decode_base64(message, 'c', channel_binding)?;
    let nonce = attrs.expect('r')?;
    attrs.extensions()?;
    let proof = decode_key(message, 'p', proof, "client proof")?;
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(text: &str) -> Result<ServerFirst<'_>, ScramError> {
    let message = ScramMessage::ServerFirst;
    let mut attrs = Attributes::new(message, text);
    if attrs.peek_name() == Some('m') {
        return Err(ScramError::MandatoryExtension { message });
    }
    let nonce = attrs.expect('r')?;
    if !is_printable(nonce) {
        return Err(malformed(
            message,
            "nonce has characters outside printable ASCII",
        ));
    }
    let salt = decode_base64(message, 's', attrs.expect('s')?)?;
    if salt.is_empty() {
        return Err(malformed(message, "salt is empty"));
    }
    let iterations = match parse_iterations(attrs.expect('i')?) {
        Ok(i) => i,
        Err(IterationsError::NotANumber) => {
            return Err(malformed(
                message,
                "iteration count is not a decimal number",
            ));
        }
        Err(IterationsError::OutOfRange(iterations)) => {
            return Err(ScramError::IterationsOutOfRange { iterations });
        }
    };
    attrs.extensions()?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

// ---------------------------------------------------------------------------------------------
// The verifier
// ---------------------------------------------------------------------------------------------

/// The stored secret of SCRAM-SHA-256: what a server keeps instead of the password.
///
/// `Display` and `FromStr` use PostgreSQL's format (the `rolpassword` column of `pg_authid`),
/// which includes the keys: the string is as secret as a password hash. `Debug` leaves the keys
/// out. Equality compares the keys in constant time.
#[derive(Clone)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// The verifier of `password` with this salt and iteration count. The password is used as its
    /// UTF-8 bytes, without SASLprep (see the module documentation).
    pub fn from_password(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, VerifierError> {
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(VerifierError::IterationsOutOfRange {
                iterations: u64::from(iterations),
            });
        }
        if salt.len() < MIN_SALT_LEN {
            return Err(VerifierError::SaltTooShort { len: salt.len() });
        }
        Ok(Self::derive(password, salt, iterations))
    }

    /// A verifier of `password` with a random 16-byte salt and PostgreSQL's default 4096
    /// iterations.
    pub fn generate(password: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(password, &salt, DEFAULT_ITERATIONS)
    }

    fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let keys = ClientKeys::derive(password, salt, iterations);
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        }
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

impl PartialEq for ScramVerifier {
    fn eq(&self, other: &Self) -> bool {
        let keys =
            self.stored_key.ct_eq(&other.stored_key) & self.server_key.ct_eq(&other.server_key);
        self.iterations == other.iterations && self.salt == other.salt && bool::from(keys)
    }
}

impl Eq for ScramVerifier {}

impl FromStr for ScramVerifier {
    type Err = VerifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(MECHANISM)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(VerifierError::Scheme)?;
        let (params, keys) = rest.split_once('$').ok_or(VerifierError::Shape)?;
        let (iterations, salt) = params.split_once(':').ok_or(VerifierError::Shape)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(VerifierError::Shape)?;

        let iterations = match parse_iterations(iterations) {
            Ok(i) => i,
            Err(IterationsError::NotANumber) => return Err(VerifierError::IterationsNotANumber),
            Err(IterationsError::OutOfRange(iterations)) => {
                return Err(VerifierError::IterationsOutOfRange { iterations });
            }
        };
        let salt = BASE64
            .decode(salt)
            .map_err(|_| VerifierError::Base64(VerifierField::Salt))?;
        if salt.len() < MIN_SALT_LEN {
            return Err(VerifierError::SaltTooShort { len: salt.len() });
        }
        let key = |text: &str, field| {
            let bytes = BASE64
                .decode(text)
                .map_err(|_| VerifierError::Base64(field))?;
            <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| VerifierError::KeyLength {
                field,
                len: bytes.len(),
            })
        };
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored_key, VerifierField::StoredKey)?,
            server_key: key(server_key, VerifierField::ServerKey)?,
        })
    }
}

/// The keys a client derives from the password, salt and iteration count.
struct ClientKeys {
    client_key: [u8; KEY_LEN],
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ClientKeys {
    fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hi(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            client_key,
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server: the gate facing a client
// ---------------------------------------------------------------------------------------------

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal {
        gs2_header: String,
        /// `client-first-message-bare "," server-first-message ","`: the head of AuthMessage.
        auth_head: String,
        /// Client nonce followed by server nonce.
        nonce: String,
    },
    Finished,
}

/// The server side of one SCRAM-SHA-256 exchange: the gate authenticating a client.
///
/// Call [`ScramServer::client_first`] with the SASLInitialResponse, send its answer as
/// AuthenticationSASLContinue, call [`ScramServer::client_final`] with the SASLResponse and send
/// its answer as AuthenticationSASLFinal, then AuthenticationOk. `Ok` from `client_final` is the
/// proof that the client knows the password.
pub struct ScramServer {
    verifier: ScramVerifier,
    server_nonce: String,
    /// Set for unknown users: the exchange runs in full and then fails as a wrong password does.
    doomed: bool,
    state: ServerState,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whether the exchange is doomed is left out on purpose: it is what must not leak.
        let state = match self.state {
            ServerState::AwaitingClientFirst => "awaiting client-first-message",
            ServerState::AwaitingClientFinal { .. } => "awaiting client-final-message",
            ServerState::Finished => "finished",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// An exchange against `verifier` with a fresh random server nonce.
    pub fn new(verifier: &ScramVerifier) -> Self {
        Self::build(verifier.clone(), random_nonce(), false)
    }

    /// An exchange with a chosen server nonce, for known-answer tests. Never reuse a nonce.
    pub fn with_nonce(verifier: &ScramVerifier, nonce: &str) -> Result<Self, ScramError> {
        Ok(Self::build(verifier.clone(), checked_nonce(nonce)?, false))
    }

    /// An exchange for a user the gate does not know, which must look like any other until it
    /// fails at `client_final` with [`ScramError::AuthenticationFailed`], as a wrong password does.
    ///
    /// Like PostgreSQL's mock authentication, the salt is derived from the user name with a
    /// secret, so repeated attempts for one name see one salt (a real user's salt does not change
    /// either) and names cannot be told apart from real ones by their salts. `mock_salt_seed`
    /// must be random, secret, and the same for the life of the process (e.g. 32 bytes from
    /// `rand` at start-up). The iteration count is [`DEFAULT_ITERATIONS`], so real verifiers
    /// should use it too.
    pub fn for_unknown_user(mock_salt_seed: &[u8; 32], username: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&hmac(mock_salt_seed, username.as_bytes())[..SALT_LEN]);
        // Random keys: the client-final check does the same work as for a real verifier, and
        // `doomed` makes it fail even in the impossible case that a proof matched.
        let mut stored_key = [0u8; KEY_LEN];
        let mut server_key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut stored_key);
        rand::rng().fill_bytes(&mut server_key);
        let verifier = ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        };
        Self::build(verifier, random_nonce(), true)
    }

    fn build(verifier: ScramVerifier, server_nonce: String, doomed: bool) -> Self {
        Self {
            verifier,
            server_nonce,
            doomed,
            state: ServerState::AwaitingClientFirst,
        }
    }

    /// The body of AuthenticationSASL: the offered mechanisms, each NUL-terminated, and a final
    /// NUL. Only `SCRAM-SHA-256`: the gate does no channel binding.
    pub fn mechanisms() -> &'static [u8] {
        b"SCRAM-SHA-256\0\0"
    }

    /// Takes the mechanism and data of SASLInitialResponse; returns server-first-message, the
    /// body of AuthenticationSASLContinue.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        match std::mem::replace(&mut self.state, ServerState::Finished) {
            ServerState::AwaitingClientFirst => {}
            ServerState::AwaitingClientFinal { .. } | ServerState::Finished => {
                return Err(ScramError::OutOfOrder {
                    step: "client_first",
                    reason: "client-first-message was already received",
                });
            }
        }
        if mechanism != MECHANISM {
            return Err(ScramError::UnsupportedMechanism(echo(mechanism)));
        }
        let text = message_text(ScramMessage::ClientFirst, data)?;
        let client_first = parse_client_first(text)?;
        let nonce = format!("{}{}", client_first.nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = ServerState::AwaitingClientFinal {
            gs2_header: client_first.gs2_header.to_owned(),
            auth_head: format!("{},{server_first},", client_first.bare),
            nonce,
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the data of SASLResponse; returns server-final-message (`v=<ServerSignature>`), the
    /// body of AuthenticationSASLFinal. `Ok` means the client proved it knows the password.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let (gs2_header, auth_head, nonce) =
            match std::mem::replace(&mut self.state, ServerState::Finished) {
                ServerState::AwaitingClientFinal {
                    gs2_header,
                    auth_head,
                    nonce,
                } => (gs2_header, auth_head, nonce),
                ServerState::AwaitingClientFirst => {
                    return Err(ScramError::OutOfOrder {
                        step: "client_final",
                        reason: "client-first-message has not been received",
                    });
                }
                ServerState::Finished => {
                    return Err(ScramError::OutOfOrder {
                        step: "client_final",
                        reason: "the exchange is already finished",
                    });
                }
            };
        let text = message_text(ScramMessage::ClientFinal, data)?;
        let client_final = parse_client_final(text)?;
        if client_final.channel_binding != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if !bool::from(client_final.nonce.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(ScramError::NonceMismatch);
        }

        let auth_message = format!("{auth_head}{}", client_final.without_proof);
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = xor(&client_final.proof, &client_signature);
        let proven = sha256(&client_key).ct_eq(&self.verifier.stored_key)
            & Choice::from(u8::from(!self.doomed));
        if !bool::from(proven) {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// The client: the gate facing the upstream server
// ---------------------------------------------------------------------------------------------

/// Picks the mechanism to answer AuthenticationSASL with, from its body (NUL-terminated names,
/// ended by an empty one). Only `SCRAM-SHA-256`: the gate does no channel binding upstream.
pub fn choose_mechanism(sasl_body: &[u8]) -> Result<&'static str, ScramError> {
    let offered: Vec<&[u8]> = sasl_body
        .split(|&b| b == 0)
        .take_while(|name| !name.is_empty())
        .collect();
    if offered.contains(&MECHANISM.as_bytes()) {
        return Ok(MECHANISM);
    }
    if offered.contains(&MECHANISM_PLUS.as_bytes()) {
        return Err(ScramError::OnlyChannelBindingOffered);
    }
    let offered = offered
        .iter()
        .map(|name| format!("{:?}", echo(&String::from_utf8_lossy(name))))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ScramError::NoSupportedMechanism { offered })
}

enum ClientState {
    AwaitingServerFirst,
    AwaitingServerFinal { server_signature: [u8; KEY_LEN] },
    Finished,
}

/// The client side of one SCRAM-SHA-256 exchange: the gate authenticating to the upstream.
///
/// Send [`ScramClient::client_first`] in SASLInitialResponse (mechanism from
/// [`choose_mechanism`]), feed AuthenticationSASLContinue to [`ScramClient::server_first`] and
/// send its answer in SASLResponse, then feed AuthenticationSASLFinal to
/// [`ScramClient::server_final`]: only when it returns `Ok` has the upstream proved it holds the
/// password's verifier. `server_first` runs PBKDF2 with the server's iteration count (up to
/// [`MAX_ITERATIONS`], seconds of CPU): call it off the async executor's worker threads.
pub struct ScramClient {
    password: String,
    nonce: String,
    client_first_bare: String,
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ClientState::AwaitingServerFirst => "awaiting server-first-message",
            ClientState::AwaitingServerFinal { .. } => "awaiting server-final-message",
            ClientState::Finished => "finished",
        };
        f.debug_struct("ScramClient")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// An exchange with a fresh random client nonce. The password is used as its UTF-8 bytes,
    /// without SASLprep (see the module documentation).
    pub fn new(password: &str) -> Self {
        Self::build(password, "", random_nonce())
    }

    /// An exchange with a chosen client nonce, for known-answer tests. Never reuse a nonce.
    pub fn with_nonce(password: &str, nonce: &str) -> Result<Self, ScramError> {
        Ok(Self::build(password, "", checked_nonce(nonce)?))
    }

    /// PostgreSQL ignores the SCRAM user name, so the gate sends it empty as libpq does; tests
    /// set it to reproduce RFC 7677's exchange, which names `user`. The name must be a saslname
    /// that needs no escaping (no `,` or `=`).
    fn build(password: &str, username: &str, nonce: String) -> Self {
        debug_assert!(!username.contains([',', '=']));
        Self {
            password: password.to_owned(),
            client_first_bare: format!("n={username},r={nonce}"),
            nonce,
            state: ClientState::AwaitingServerFirst,
        }
    }

    /// client-first-message, the data of SASLInitialResponse: `n,,n=,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes server-first-message (the body of AuthenticationSASLContinue); returns
    /// client-final-message, the data of SASLResponse.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        match std::mem::replace(&mut self.state, ClientState::Finished) {
            ClientState::AwaitingServerFirst => {}
            ClientState::AwaitingServerFinal { .. } | ClientState::Finished => {
                return Err(ScramError::OutOfOrder {
                    step: "server_first",
                    reason: "server-first-message was already received",
                });
            }
        }
        let text = message_text(ScramMessage::ServerFirst, data)?;
        let server_first = parse_server_first(text)?;
        // The server must add a nonce of its own: without one, its signature could be replayed.
        if server_first.nonce.len() <= self.nonce.len()
            || !server_first.nonce.starts_with(&self.nonce)
        {
            return Err(ScramError::ServerNonceMismatch);
        }

        let keys = ClientKeys::derive(&self.password, &server_first.salt, server_first.iterations);
        // `biws` is base64 of the GS2 header `n,,`.
        let without_proof = format!("c=biws,r={}", server_first.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let proof = xor(&keys.client_key, &client_signature);
        self.state = ClientState::AwaitingServerFinal {
            server_signature: hmac(&keys.server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Takes server-final-message (the body of AuthenticationSASLFinal) and checks the server's
    /// signature; an `e=` attribute comes back as [`ScramError::ServerError`].
    pub fn server_final(&self, data: &[u8]) -> Result<(), ScramError> {
        let ClientState::AwaitingServerFinal { server_signature } = &self.state else {
            return Err(ScramError::OutOfOrder {
                step: "server_final",
                reason: match self.state {
                    ClientState::AwaitingServerFirst => {
                        "server-first-message has not been received"
                    }
                    _ => "the exchange already failed",
                },
            });
        };
        let message = ScramMessage::ServerFinal;
        let text = message_text(message, data)?;
        let mut attrs = Attributes::new(message, text);
        if attrs.peek_name() == Some('e') {
            let error = attrs.expect('e')?;
            return Err(ScramError::ServerError(error.to_owned()));
        }
        let signature = decode_key(message, 'v', attrs.expect('v')?, "server signature")?;
        attrs.extensions()?;
        if !bool::from(signature.ct_eq(server_signature)) {
            return Err(ScramError::ServerSignatureMismatch);
        }
        Ok(())
    }
}
