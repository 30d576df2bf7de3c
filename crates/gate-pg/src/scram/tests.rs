#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

// RFC 7677, section 3: user "user", password "pencil".
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// PostgreSQL 15.20, by:
//   psql -h 127.0.0.1 -U postgres -Atc "SET password_encryption='scram-sha-256';
//     CREATE ROLE cs_vec_test LOGIN PASSWORD 'pencil';
//     SELECT rolpassword FROM pg_authid WHERE rolname='cs_vec_test'; DROP ROLE cs_vec_test;"
const PG_PENCIL: &str = "SCRAM-SHA-256$4096:R+GD8SzItZR2daDoTQsJHw==$\
                         HGIZqT6o8aZiaw5BjX7+H3sCQWHMlVQFWgSeS2Jvl9g=:\
                         j70qbslYLVrnPKNxgAz2IqqJ11j5F3SqpvmO7MHmxmA=";
// The same, with PASSWORD E'p\u00e4ssw\u00f6rd' (precomposed, so SASLprep leaves it unchanged).
const PG_PASSWORD_NFKC: &str = "SCRAM-SHA-256$4096:iJ1LAUjKEKci2zgYu7em9g==$\
                                QH03JjyDOCw8wm+Si24iq5e/gGzp0dbI/vKx7vP3Fp4=:\
                                Tkh4GM0r7BkKNUVKgJxSX2Tznv/4gPTEZpWnVqaUDT0=";
// The same, with PASSWORD E'a\u00a0b': SASLprep maps the no-break space to a space.
const PG_NBSP: &str = "SCRAM-SHA-256$4096:rrQd2WQEJgqn17dPGGqlPw==$\
                       QFA1CuxuHIYDpYAIkrTr5VXu2K/kwSe4fm7Qio8RP9g=:\
                       FdV5cIbZ/+en0tcXgSd5DGo5dbkAZjKfeUsBYj0Xq3U=";

const SEED: [u8; 32] = [7; 32];

fn rfc_verifier() -> ScramVerifier {
    ScramVerifier::from_password("pencil", &BASE64.decode(RFC_SALT).unwrap(), 4096).unwrap()
}

/// A cheap verifier (few iterations) for tests that run many exchanges.
fn cheap_verifier(password: &str) -> ScramVerifier {
    ScramVerifier::from_password(password, b"saltsaltsalt", 8).unwrap()
}

fn rfc_server() -> ScramServer {
    ScramServer::with_nonce(&rfc_verifier(), RFC_SERVER_NONCE).unwrap()
}

/// An RFC 7677 server that has answered client-first, awaiting client-final.
fn rfc_server_after_first() -> ScramServer {
    let mut server = rfc_server();
    server
        .client_first(MECHANISM, RFC_CLIENT_FIRST.as_bytes())
        .unwrap();
    server
}

fn rfc_client() -> ScramClient {
    ScramClient::build("pencil", "user", RFC_CLIENT_NONCE.to_owned())
}

/// Client and server through client-final; returns the server's answer.
fn exchange(client_password: &str, verifier: &ScramVerifier) -> Result<Vec<u8>, ScramError> {
    let mut client = ScramClient::new(client_password);
    let mut server = ScramServer::new(verifier);
    let server_first = server.client_first(MECHANISM, &client.client_first())?;
    let client_final = client.server_first(&server_first)?;
    let server_final = server.client_final(&client_final)?;
    client.server_final(&server_final)?;
    Ok(server_final)
}

fn is_malformed(result: Result<Vec<u8>, ScramError>, message: ScramMessage) -> bool {
    matches!(result, Err(ScramError::Malformed { message: m, .. }) if m == message)
}

/// Splits an RFC 7677 client-final into the part before the proof and the decoded proof.
fn rfc_proof() -> (&'static str, [u8; 32]) {
    let (head, proof) = RFC_CLIENT_FINAL.rsplit_once(",p=").unwrap();
    (head, BASE64.decode(proof).unwrap().try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Known-answer vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7677_server_side() {
    let mut server = rfc_server();
    let server_first = server
        .client_first(MECHANISM, RFC_CLIENT_FIRST.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
    let server_final = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
}

#[test]
fn rfc7677_client_side() {
    let mut client = rfc_client();
    assert_eq!(
        String::from_utf8(client.client_first()).unwrap(),
        RFC_CLIENT_FIRST
    );
    let client_final = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn postgresql_verifier_is_reproduced() {
    let pg: ScramVerifier = PG_PENCIL.parse().unwrap();
    assert_eq!(pg.iterations(), 4096);
    assert_eq!(pg.salt().len(), 16);
    let ours = ScramVerifier::from_password("pencil", pg.salt(), pg.iterations()).unwrap();
    assert_eq!(ours, pg);
    assert_eq!(ours.to_string(), PG_PENCIL);
    let other = ScramVerifier::from_password("pencil2", pg.salt(), pg.iterations()).unwrap();
    assert_ne!(other, pg);
}

#[test]
fn normalized_non_ascii_password_matches_postgresql() {
    let pg: ScramVerifier = PG_PASSWORD_NFKC.parse().unwrap();
    let ours = ScramVerifier::from_password("p\u{e4}ssw\u{f6}rd", pg.salt(), 4096).unwrap();
    assert_eq!(ours.to_string(), PG_PASSWORD_NFKC);
}

/// Pins the documented limitation: no SASLprep, so a password SASLprep would change does not
/// match PostgreSQL's verifier (authentication fails closed), while its normalized form does.
#[test]
fn password_sasl_prep_would_change_does_not_match_postgresql() {
    let pg: ScramVerifier = PG_NBSP.parse().unwrap();
    let raw = ScramVerifier::from_password("a\u{a0}b", pg.salt(), 4096).unwrap();
    assert_ne!(raw, pg);
    let normalized = ScramVerifier::from_password("a b", pg.salt(), 4096).unwrap();
    assert_eq!(normalized, pg);
}

#[test]
fn client_authenticates_against_postgresql_verifier() {
    let pg: ScramVerifier = PG_PENCIL.parse().unwrap();
    exchange("pencil", &pg).unwrap();
    assert_eq!(
        exchange("pencil!", &pg),
        Err(ScramError::AuthenticationFailed)
    );
}

#[test]
fn hi_matches_pbkdf2_hmac_sha256_vectors() {
    // PBKDF2-HMAC-SHA256 vectors (RFC 7914 section 11 and the widely used set derived from
    // RFC 6070), first 32 bytes of output.
    let cases: [(&[u8], &[u8], u32, &str); 3] = [
        (
            b"password",
            b"salt",
            1,
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
        ),
        (
            b"password",
            b"salt",
            4096,
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
        ),
        (
            b"passwd",
            b"salt",
            1,
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc",
        ),
    ];
    for (password, salt, iterations, expected) in cases {
        assert_eq!(hex::encode(hi(password, salt, iterations)), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// The verifier
// ---------------------------------------------------------------------------------------------

#[test]
fn generated_verifier_has_postgresql_defaults_and_round_trips() {
    let v = ScramVerifier::generate("s3cret token");
    assert_eq!(v.iterations(), DEFAULT_ITERATIONS);
    assert_eq!(v.salt().len(), 16);
    let text = v.to_string();
    assert!(text.starts_with("SCRAM-SHA-256$4096:"));
    assert_eq!(text.parse::<ScramVerifier>().unwrap(), v);
    assert_ne!(ScramVerifier::generate("s3cret token").salt(), v.salt());
    exchange("s3cret token", &v).unwrap();
}

#[test]
fn verifier_debug_hides_keys() {
    let v: ScramVerifier = PG_PENCIL.parse().unwrap();
    let debug = format!("{v:?}");
    assert!(debug.contains("4096"));
    assert!(!debug.contains("HGIZqT6o8aZiaw5BjX7"));
    assert!(!debug.contains("j70qbslYLVrnPKNxgAz2"));
}

#[test]
fn verifier_parse_errors_are_precise() {
    let key = BASE64.encode([1u8; 32]);
    let salt = BASE64.encode([2u8; 16]);
    let cases = [
        (String::new(), VerifierError::Scheme),
        ("md5abc".to_owned(), VerifierError::Scheme),
        (
            format!("SCRAM-SHA-1$4096:{salt}${key}:{key}"),
            VerifierError::Scheme,
        ),
        (format!("SCRAM-SHA-256${key}"), VerifierError::Shape),
        (
            format!("SCRAM-SHA-256$4096{salt}${key}:{key}"),
            VerifierError::Shape,
        ),
        (
            format!("SCRAM-SHA-256$4096:{salt}${key}{key}"),
            VerifierError::Shape,
        ),
        (
            format!("SCRAM-SHA-256$x:{salt}${key}:{key}"),
            VerifierError::IterationsNotANumber,
        ),
        (
            format!("SCRAM-SHA-256$:{salt}${key}:{key}"),
            VerifierError::IterationsNotANumber,
        ),
        (
            format!("SCRAM-SHA-256$-1:{salt}${key}:{key}"),
            VerifierError::IterationsNotANumber,
        ),
        (
            format!("SCRAM-SHA-256$+4096:{salt}${key}:{key}"),
            VerifierError::IterationsNotANumber,
        ),
        (
            format!("SCRAM-SHA-256$0:{salt}${key}:{key}"),
            VerifierError::IterationsOutOfRange { iterations: 0 },
        ),
        (
            format!("SCRAM-SHA-256$10000001:{salt}${key}:{key}"),
            VerifierError::IterationsOutOfRange {
                iterations: 10_000_001,
            },
        ),
        (
            format!("SCRAM-SHA-256$99999999999999999999999:{salt}${key}:{key}"),
            VerifierError::IterationsOutOfRange {
                iterations: u64::MAX,
            },
        ),
        (
            format!("SCRAM-SHA-256$4096:not*base64${key}:{key}"),
            VerifierError::Base64(VerifierField::Salt),
        ),
        (
            format!("SCRAM-SHA-256$4096:{}${key}:{key}", BASE64.encode([2u8; 7])),
            VerifierError::SaltTooShort { len: 7 },
        ),
        (
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            VerifierError::SaltTooShort { len: 0 },
        ),
        (
            format!("SCRAM-SHA-256$4096:{salt}$%%%:{key}"),
            VerifierError::Base64(VerifierField::StoredKey),
        ),
        (
            format!("SCRAM-SHA-256$4096:{salt}${key}:{key}:{key}"),
            VerifierError::Base64(VerifierField::ServerKey),
        ),
        (
            format!(
                "SCRAM-SHA-256$4096:{salt}${}:{key}",
                BASE64.encode([1u8; 31])
            ),
            VerifierError::KeyLength {
                field: VerifierField::StoredKey,
                len: 31,
            },
        ),
        (
            format!(
                "SCRAM-SHA-256$4096:{salt}${key}:{}",
                BASE64.encode([1u8; 33])
            ),
            VerifierError::KeyLength {
                field: VerifierField::ServerKey,
                len: 33,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            text.parse::<ScramVerifier>().err(),
            Some(expected),
            "{text}"
        );
    }
    // The largest count is accepted.
    let max = format!("SCRAM-SHA-256$10000000:{salt}${key}:{key}");
    assert_eq!(
        max.parse::<ScramVerifier>().unwrap().iterations(),
        MAX_ITERATIONS
    );
}

#[test]
fn from_password_refuses_bad_parameters() {
    assert_eq!(
        ScramVerifier::from_password("pencil", b"saltsalt", 0).err(),
        Some(VerifierError::IterationsOutOfRange { iterations: 0 })
    );
    assert_eq!(
        ScramVerifier::from_password("pencil", b"saltsalt", MAX_ITERATIONS + 1).err(),
        Some(VerifierError::IterationsOutOfRange {
            iterations: u64::from(MAX_ITERATIONS) + 1
        })
    );
    assert_eq!(
        ScramVerifier::from_password("pencil", b"salt", 4096).err(),
        Some(VerifierError::SaltTooShort { len: 4 })
    );
    assert!(ScramVerifier::from_password("pencil", b"saltsalt", 1).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trip_with_random_nonces() {
    let verifier = ScramVerifier::generate("cs_tok_0123456789abcdef");
    let mut client = ScramClient::new("cs_tok_0123456789abcdef");
    let mut server = ScramServer::new(&verifier);
    let client_first = client.client_first();
    assert!(client_first.starts_with(b"n,,n=,r="));
    assert_eq!(client_first.len(), "n,,n=,r=".len() + 24);
    let server_first = server.client_first(MECHANISM, &client_first).unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    let server_final = server.client_final(&client_final).unwrap();
    client.server_final(&server_final).unwrap();

    // Fresh nonces each time.
    assert_ne!(ScramClient::new("x").client_first(), client_first);
}

#[test]
fn gs2_flag_y_is_accepted() {
    let verifier = cheap_verifier("pencil");
    let mut server = ScramServer::with_nonce(&verifier, "SERVERNONCE").unwrap();
    let server_first = server
        .client_first(MECHANISM, b"y,,n=,r=clientnonce")
        .unwrap();
    // Compute the proof as a client would for the header "y,,": c=eSws.
    let keys = ClientKeys::derive("pencil", b"saltsaltsalt", 8);
    let without_proof = "c=eSws,r=clientnonceSERVERNONCE";
    let auth = format!(
        "n=,r=clientnonce,{},{without_proof}",
        String::from_utf8(server_first).unwrap()
    );
    let proof = xor(&keys.client_key, &hmac(&keys.stored_key, auth.as_bytes()));
    let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
    server.client_final(client_final.as_bytes()).unwrap();
}

#[test]
fn user_name_in_client_first_is_ignored_and_extensions_are_tolerated() {
    // The RFC exchange names "user"; any other name gives the same server-first.
    let mut server = rfc_server();
    let first = server
        .client_first(
            MECHANISM,
            b"n,,n=someone=2Celse,r=rOprNGfwEbeRWgbNEkqO,x=ext",
        )
        .unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), RFC_SERVER_FIRST);
}

// ---------------------------------------------------------------------------------------------
// Server: refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn mechanisms_offers_only_scram_sha_256() {
    assert_eq!(ScramServer::mechanisms(), b"SCRAM-SHA-256\0\0");
}

#[test]
fn server_refuses_other_mechanisms() {
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "", "scram-sha-256"] {
        let mut server = rfc_server();
        assert_eq!(
            server.client_first(mechanism, RFC_CLIENT_FIRST.as_bytes()),
            Err(ScramError::UnsupportedMechanism(mechanism.to_owned()))
        );
    }
    // A long name is cut short in the error.
    let long = "X".repeat(1000);
    let err = rfc_server()
        .client_first(&long, RFC_CLIENT_FIRST.as_bytes())
        .unwrap_err();
    assert_eq!(err, ScramError::UnsupportedMechanism("X".repeat(64)));
}

#[test]
fn wrong_password_fails() {
    let verifier = ScramVerifier::generate("right");
    assert_eq!(
        exchange("wrong", &verifier),
        Err(ScramError::AuthenticationFailed)
    );
    assert_eq!(
        exchange("", &verifier),
        Err(ScramError::AuthenticationFailed)
    );
    assert_eq!(
        exchange("right ", &verifier),
        Err(ScramError::AuthenticationFailed)
    );
}

#[test]
fn tampered_proof_fails_at_every_byte() {
    let (head, proof) = rfc_proof();
    for position in 0..proof.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut tampered = proof;
            tampered[position] ^= flip;
            let message = format!("{head},p={}", BASE64.encode(tampered));
            assert_eq!(
                rfc_server_after_first().client_final(message.as_bytes()),
                Err(ScramError::AuthenticationFailed),
                "byte {position} flipped with {flip:#x}"
            );
        }
    }
}

#[test]
fn proof_of_wrong_length_or_encoding_is_malformed() {
    let (head, proof) = rfc_proof();
    for bad in [
        BASE64.encode(&proof[..31]),
        BASE64.encode([proof.as_slice(), &[0]].concat()),
        BASE64.encode([]),
    ] {
        let message = format!("{head},p={bad}");
        assert!(
            is_malformed(
                rfc_server_after_first().client_final(message.as_bytes()),
                ScramMessage::ClientFinal
            ),
            "{message}"
        );
    }
    // Missing padding, stray characters, non-canonical trailing bits.
    let encoded = BASE64.encode(proof);
    let unpadded = encoded.trim_end_matches('=');
    let noncanonical = format!("{}5=", &encoded[..encoded.len() - 2]);
    for bad in [unpadded, "dHzb*ZapWIk4", noncanonical.as_str()] {
        let message = format!("{head},p={bad}");
        assert_eq!(
            rfc_server_after_first().client_final(message.as_bytes()),
            Err(ScramError::Base64 {
                message: ScramMessage::ClientFinal,
                attribute: 'p'
            }),
            "{message}"
        );
    }
}

#[test]
fn tampered_nonce_fails() {
    let (_, proof) = rfc_proof();
    let proof = BASE64.encode(proof);
    let full = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    let mut changed_last = full.clone();
    changed_last.pop();
    changed_last.push('1');
    for nonce in [
        // Only the client's part: the server nonce dropped.
        RFC_CLIENT_NONCE.to_owned(),
        // Not extending the client nonce.
        format!("XOprNGfwEbeRWgbNEkqO{RFC_SERVER_NONCE}"),
        // A different server nonce.
        format!("{RFC_CLIENT_NONCE}%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1"),
        changed_last,
        format!("{full}x"),
        String::new(),
    ] {
        let message = format!("c=biws,r={nonce},p={proof}");
        assert_eq!(
            rfc_server_after_first().client_final(message.as_bytes()),
            Err(ScramError::NonceMismatch),
            "{message}"
        );
    }
}

#[test]
fn wrong_channel_binding_value_fails() {
    let (_, proof) = rfc_proof();
    let proof = BASE64.encode(proof);
    let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    // "eSws" is "y,,", but client-first said "n,,"; then "p=x,,", "n,a=u,", "" and "n,".
    for binding in ["eSws", "cD14LCw=", "bixhPXUs", "biw="] {
        let message = format!("c={binding},r={nonce},p={proof}");
        assert_eq!(
            rfc_server_after_first().client_final(message.as_bytes()),
            Err(ScramError::ChannelBindingMismatch),
            "{message}"
        );
    }
    let message = format!("c=,r={nonce},p={proof}");
    assert!(is_malformed(
        rfc_server_after_first().client_final(message.as_bytes()),
        ScramMessage::ClientFinal
    ));
    let message = format!("c=biws!,r={nonce},p={proof}");
    assert_eq!(
        rfc_server_after_first().client_final(message.as_bytes()),
        Err(ScramError::Base64 {
            message: ScramMessage::ClientFinal,
            attribute: 'c'
        })
    );
}

#[test]
fn channel_binding_request_is_refused() {
    let mut server = rfc_server();
    assert_eq!(
        server.client_first(
            MECHANISM,
            b"p=tls-server-end-point,,n=,r=rOprNGfwEbeRWgbNEkqO"
        ),
        Err(ScramError::ChannelBindingNotSupported {
            name: "tls-server-end-point".to_owned()
        })
    );
    let err = ScramError::ChannelBindingNotSupported {
        name: "tls-server-end-point".to_owned(),
    };
    assert_eq!(
        err.to_string(),
        "client requires channel binding \"tls-server-end-point\", but this server offers \
         SCRAM-SHA-256 without channel binding"
    );
}

#[test]
fn authorization_identity_is_refused() {
    assert_eq!(
        rfc_server().client_first(MECHANISM, b"n,a=admin,n=,r=rOprNGfwEbeRWgbNEkqO"),
        Err(ScramError::AuthzidNotSupported)
    );
}

#[test]
fn mandatory_extension_is_refused() {
    assert_eq!(
        rfc_server().client_first(MECHANISM, b"n,,m=ext,n=,r=rOprNGfwEbeRWgbNEkqO"),
        Err(ScramError::MandatoryExtension {
            message: ScramMessage::ClientFirst
        })
    );
    let mut client = rfc_client();
    assert_eq!(
        client.server_first(format!("m=ext,{RFC_SERVER_FIRST}").as_bytes()),
        Err(ScramError::MandatoryExtension {
            message: ScramMessage::ServerFirst
        })
    );
}

#[test]
fn malformed_client_first_is_refused() {
    let cases: &[&[u8]] = &[
        // No GS2 header or an unterminated one.
        b"n=,r=abc",
        b"n",
        b"n,",
        b"x,,n=,r=abc",
        b"nn,,n=,r=abc",
        b"n,x,n=,r=abc",
        // Missing attributes.
        b"n,,",
        b"n,,n=",
        b"n,,r=abc",
        b"n,,n=user",
        // Attributes in the wrong order.
        b"n,,r=abc,n=",
        // Empty or non-printable nonce.
        b"n,,n=,r=",
        b"n,,n=,r=ab c",
        "n,,n=,r=ab\u{e9}".as_bytes(),
        b"n,,n=,r=ab\x7f",
        // Not attributes.
        b"n,,n=,r=abc,,",
        b"n,,n=,r=abc,xyz",
        b"n,,n=,r=abc,1=2",
        // A defined attribute where extensions go.
        b"n,,n=,r=abc,r=def",
        b"n,,n=,r=abc,p=def",
    ];
    for &case in cases {
        assert!(
            is_malformed(
                rfc_server().client_first(MECHANISM, case),
                ScramMessage::ClientFirst
            ),
            "{:?}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn nul_bytes_are_refused_anywhere() {
    // PostgreSQL reads these messages as C strings and would stop at the NUL; refuse instead of
    // reading a different message than the peer meant. Here it sits in the ignored user name.
    let nul = || ScramError::Malformed {
        message: ScramMessage::ClientFirst,
        reason: "contains a NUL byte".to_owned(),
    };
    assert_eq!(
        rfc_server().client_first(MECHANISM, b"n,,n=us\0er,r=rOprNGfwEbeRWgbNEkqO"),
        Err(nul())
    );
    assert_eq!(
        rfc_server().client_first(MECHANISM, b"n,,n=,r=abc\0"),
        Err(nul())
    );
}

#[test]
fn malformed_client_final_is_refused() {
    let (_, proof) = rfc_proof();
    let proof = BASE64.encode(proof);
    let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    let cases = [
        // Missing attributes.
        format!("c=biws,r={nonce}"),
        format!("r={nonce},p={proof}"),
        format!("c=biws,p={proof}"),
        format!("p={proof}"),
        "c=biws".to_owned(),
        // Wrong order.
        format!("r={nonce},c=biws,p={proof}"),
        format!("c=biws,p={proof},r={nonce}"),
        // Repeated attributes.
        format!("c=biws,r={nonce},p={proof},p={proof}"),
        format!("c=biws,r={nonce},r={nonce},p={proof}"),
        // Not attributes.
        format!("c=biws,r={nonce},,p={proof}"),
        format!("c=biws,r={nonce},p={proof},"),
        format!("c=biws,r={nonce},pp={proof}"),
    ];
    for case in cases {
        assert!(
            is_malformed(
                rfc_server_after_first().client_final(case.as_bytes()),
                ScramMessage::ClientFinal
            ),
            "{case}"
        );
    }
}

#[test]
fn client_final_extension_is_covered_by_the_proof() {
    // An extension before the proof is allowed, but it is part of AuthMessage: inserting one
    // into the RFC's message invalidates the proof.
    let (head, proof) = rfc_proof();
    let message = format!("{head},x=1,p={}", BASE64.encode(proof));
    assert_eq!(
        rfc_server_after_first().client_final(message.as_bytes()),
        Err(ScramError::AuthenticationFailed)
    );
}

#[test]
fn non_utf8_messages_are_refused() {
    assert_eq!(
        rfc_server().client_first(MECHANISM, b"n,,n=\xff,r=abc"),
        Err(ScramError::NotUtf8 {
            message: ScramMessage::ClientFirst
        })
    );
    assert_eq!(
        rfc_server_after_first().client_final(b"c=biws,r=\xc3\x28,p=abc"),
        Err(ScramError::NotUtf8 {
            message: ScramMessage::ClientFinal
        })
    );
    assert_eq!(
        rfc_client().server_first(b"r=\xfe,s=abc,i=1"),
        Err(ScramError::NotUtf8 {
            message: ScramMessage::ServerFirst
        })
    );
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(b"v=\x80"),
        Err(ScramError::NotUtf8 {
            message: ScramMessage::ServerFinal
        })
    );
}

#[test]
fn empty_messages_are_refused() {
    assert_eq!(
        rfc_server().client_first(MECHANISM, b""),
        Err(ScramError::Empty {
            message: ScramMessage::ClientFirst
        })
    );
    assert_eq!(
        rfc_server_after_first().client_final(b""),
        Err(ScramError::Empty {
            message: ScramMessage::ClientFinal
        })
    );
    assert_eq!(
        rfc_client().server_first(b""),
        Err(ScramError::Empty {
            message: ScramMessage::ServerFirst
        })
    );
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(b""),
        Err(ScramError::Empty {
            message: ScramMessage::ServerFinal
        })
    );
}

#[test]
fn huge_messages_are_refused() {
    // A valid message padded with a (tolerated) extension past the bound.
    let padding = "x".repeat(MAX_MESSAGE_LEN);
    let first = format!("{RFC_CLIENT_FIRST},x={padding}");
    assert_eq!(
        rfc_server().client_first(MECHANISM, first.as_bytes()),
        Err(ScramError::TooLong {
            message: ScramMessage::ClientFirst,
            len: first.len()
        })
    );
    let last = format!("{RFC_CLIENT_FINAL}{padding}");
    assert_eq!(
        rfc_server_after_first().client_final(last.as_bytes()),
        Err(ScramError::TooLong {
            message: ScramMessage::ClientFinal,
            len: last.len()
        })
    );
    let server_first = format!("{RFC_SERVER_FIRST},x={padding}");
    assert_eq!(
        rfc_client().server_first(server_first.as_bytes()),
        Err(ScramError::TooLong {
            message: ScramMessage::ServerFirst,
            len: server_first.len()
        })
    );
    // Exactly at the bound is still parsed (here: accepted, the extension being ignored).
    let at_bound = format!(
        "{RFC_CLIENT_FIRST},x={}",
        "x".repeat(MAX_MESSAGE_LEN - RFC_CLIENT_FIRST.len() - 3)
    );
    assert_eq!(at_bound.len(), MAX_MESSAGE_LEN);
    assert!(
        rfc_server()
            .client_first(MECHANISM, at_bound.as_bytes())
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Server: unknown users
// ---------------------------------------------------------------------------------------------

/// The shape of a server-first: nonce length, salt length, iterations.
fn shape(server_first: &[u8]) -> (usize, usize, u32) {
    let parsed = parse_server_first(std::str::from_utf8(server_first).unwrap()).unwrap();
    (parsed.nonce.len(), parsed.salt.len(), parsed.iterations)
}

#[test]
fn unknown_user_looks_like_a_known_one_and_fails_as_a_wrong_password() {
    let known = ScramVerifier::generate("the token");

    let mut client = ScramClient::new("the token");
    let mut real = ScramServer::new(&known);
    let real_first = real
        .client_first(MECHANISM, &client.client_first())
        .unwrap();

    let mut client2 = ScramClient::new("the token");
    let mut mock = ScramServer::for_unknown_user(&SEED, "nobody");
    let mock_first = mock
        .client_first(MECHANISM, &client2.client_first())
        .unwrap();
    assert_eq!(shape(&real_first), shape(&mock_first));

    // Even with the "right" password, the mock fails exactly as a wrong password does.
    let mock_final = client2.server_first(&mock_first).unwrap();
    let mock_err = mock.client_final(&mock_final).unwrap_err();

    let mut wrong = ScramClient::new("not the token");
    let mut real2 = ScramServer::new(&known);
    let first = real2
        .client_first(MECHANISM, &wrong.client_first())
        .unwrap();
    let wrong_final = wrong.server_first(&first).unwrap();
    let wrong_err = real2.client_final(&wrong_final).unwrap_err();

    assert_eq!(mock_err, ScramError::AuthenticationFailed);
    assert_eq!(mock_err, wrong_err);
    assert_eq!(mock_err.to_string(), wrong_err.to_string());

    // And the real one still works with the right password.
    let real_final = client.server_first(&real_first).unwrap();
    real.client_final(&real_final).unwrap();
}

#[test]
fn unknown_user_fails_even_if_the_proof_were_right() {
    // The mock's keys are random, so no proof matches them; the doomed flag must fail the
    // exchange on its own all the same. Give the mock a real verifier to show it.
    let verifier = cheap_verifier("pencil");
    let mut mock = ScramServer::for_unknown_user(&SEED, "nobody");
    mock.verifier = verifier.clone();
    let mut client = ScramClient::new("pencil");
    let server_first = mock
        .client_first(MECHANISM, &client.client_first())
        .unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    assert_eq!(
        mock.client_final(&client_final),
        Err(ScramError::AuthenticationFailed)
    );
}

#[test]
fn unknown_user_salt_is_stable_per_name_and_secret() {
    let salt_of = |seed: &[u8; 32], name: &str| {
        let mut server = ScramServer::for_unknown_user(seed, name);
        let first = server.client_first(MECHANISM, b"n,,n=,r=abc").unwrap();
        parse_server_first(std::str::from_utf8(&first).unwrap())
            .unwrap()
            .salt
    };
    assert_eq!(salt_of(&SEED, "nobody"), salt_of(&SEED, "nobody"));
    assert_ne!(salt_of(&SEED, "nobody"), salt_of(&SEED, "somebody"));
    assert_ne!(salt_of(&SEED, "nobody"), salt_of(&[8; 32], "nobody"));
    assert_eq!(salt_of(&SEED, "nobody").len(), 16);
}

#[test]
fn unknown_user_checks_messages_like_a_known_one() {
    // Protocol errors come out the same for unknown users: only the password check differs.
    let mut mock = ScramServer::for_unknown_user(&SEED, "nobody");
    assert_eq!(
        mock.client_first(MECHANISM, b"p=tls-unique,,n=,r=abc"),
        Err(ScramError::ChannelBindingNotSupported {
            name: "tls-unique".to_owned()
        })
    );
    let mut mock = ScramServer::for_unknown_user(&SEED, "nobody");
    mock.client_first(MECHANISM, b"n,,n=,r=abc").unwrap();
    let wrong_nonce = format!("c=biws,r=abcdef,p={}", BASE64.encode([0u8; 32]));
    assert_eq!(
        mock.client_final(wrong_nonce.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
    let debug = format!("{:?}", ScramServer::for_unknown_user(&SEED, "nobody"));
    assert!(!debug.contains("doomed"));
}

// ---------------------------------------------------------------------------------------------
// Server: order of steps
// ---------------------------------------------------------------------------------------------

#[test]
fn server_steps_out_of_order_are_refused() {
    // client_final first.
    let mut server = rfc_server();
    assert!(matches!(
        server.client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "client_final",
            ..
        })
    ));
    // ... and that ended the exchange.
    assert!(matches!(
        server.client_first(MECHANISM, RFC_CLIENT_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "client_first",
            ..
        })
    ));

    // client_first twice.
    let mut server = rfc_server_after_first();
    assert!(matches!(
        server.client_first(MECHANISM, RFC_CLIENT_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "client_first",
            ..
        })
    ));
    assert!(matches!(
        server.client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder { .. })
    ));

    // client_final twice, after success.
    let mut server = rfc_server_after_first();
    server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(
        server.client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "client_final",
            reason: "the exchange is already finished"
        })
    );

    // A failed proof cannot be retried in the same exchange.
    let mut server = rfc_server_after_first();
    let (head, mut proof) = rfc_proof();
    proof[0] ^= 1;
    let bad = format!("{head},p={}", BASE64.encode(proof));
    assert_eq!(
        server.client_final(bad.as_bytes()),
        Err(ScramError::AuthenticationFailed)
    );
    assert!(matches!(
        server.client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder { .. })
    ));

    // A malformed client-first ends the exchange too.
    let mut server = rfc_server();
    assert!(server.client_first(MECHANISM, b"garbage").is_err());
    assert!(matches!(
        server.client_first(MECHANISM, RFC_CLIENT_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder { .. })
    ));
}

#[test]
fn injected_nonces_are_checked() {
    let v = rfc_verifier();
    for nonce in ["", "a,b", "a b", "é"] {
        assert_eq!(
            ScramServer::with_nonce(&v, nonce).err(),
            Some(ScramError::InvalidNonce)
        );
        assert_eq!(
            ScramClient::with_nonce("pencil", nonce).err(),
            Some(ScramError::InvalidNonce)
        );
    }
    let client = ScramClient::with_nonce("pencil", RFC_CLIENT_NONCE).unwrap();
    assert_eq!(
        client.client_first(),
        format!("n,,n=,r={RFC_CLIENT_NONCE}").into_bytes()
    );
}

// ---------------------------------------------------------------------------------------------
// Client: refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn choose_mechanism_picks_scram_sha_256() {
    assert_eq!(choose_mechanism(b"SCRAM-SHA-256\0\0"), Ok("SCRAM-SHA-256"));
    assert_eq!(
        choose_mechanism(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
        Ok("SCRAM-SHA-256")
    );
    // Without the final terminator.
    assert_eq!(choose_mechanism(b"SCRAM-SHA-256"), Ok("SCRAM-SHA-256"));
    assert_eq!(
        choose_mechanism(b"SCRAM-SHA-256-PLUS\0\0"),
        Err(ScramError::OnlyChannelBindingOffered)
    );
    assert_eq!(
        choose_mechanism(b"OAUTHBEARER\0SCRAM-SHA-1\0\0"),
        Err(ScramError::NoSupportedMechanism {
            offered: "\"OAUTHBEARER\", \"SCRAM-SHA-1\"".to_owned()
        })
    );
    assert_eq!(
        choose_mechanism(b"\0"),
        Err(ScramError::NoSupportedMechanism {
            offered: String::new()
        })
    );
    // Names after the empty terminator are not part of the list.
    assert!(choose_mechanism(b"X\0\0SCRAM-SHA-256\0\0").is_err());
    // A prefix or extension of the name is not the name.
    assert!(choose_mechanism(b"SCRAM-SHA-25\0SCRAM-SHA-2566\0\0").is_err());
}

#[test]
fn server_nonce_must_extend_ours() {
    let rest = "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    for nonce in [
        // Ours alone: the server added nothing.
        RFC_CLIENT_NONCE.to_owned(),
        // A prefix of ours.
        RFC_CLIENT_NONCE[..10].to_owned(),
        // Someone else's.
        format!("X{}", &RFC_CLIENT_NONCE[1..]) + RFC_SERVER_NONCE,
        format!("{RFC_SERVER_NONCE}{RFC_CLIENT_NONCE}"),
    ] {
        assert_eq!(
            rfc_client().server_first(format!("r={nonce},{rest}").as_bytes()),
            Err(ScramError::ServerNonceMismatch),
            "{nonce}"
        );
    }
}

#[test]
fn server_iteration_count_is_bounded() {
    let with = |i: &str| format!("r={RFC_CLIENT_NONCE}{RFC_SERVER_NONCE},s={RFC_SALT},i={i}");
    for (i, iterations) in [
        ("0", 0),
        ("10000001", 10_000_001),
        ("4294967296", 4_294_967_296),
        ("123456789012345678901234567890", u64::MAX),
    ] {
        assert_eq!(
            rfc_client().server_first(with(i).as_bytes()),
            Err(ScramError::IterationsOutOfRange { iterations })
        );
    }
    for i in ["", "-1", "4096x", "0x10", " 4096"] {
        assert!(
            is_malformed(
                rfc_client().server_first(with(i).as_bytes()),
                ScramMessage::ServerFirst
            ),
            "{i}"
        );
    }
    assert!(rfc_client().server_first(with("1").as_bytes()).is_ok());
}

#[test]
fn malformed_server_first_is_refused() {
    let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    let cases = [
        // Missing attributes.
        format!("r={nonce},s={RFC_SALT}"),
        format!("r={nonce},i=4096"),
        format!("s={RFC_SALT},i=4096"),
        // Wrong order.
        format!("s={RFC_SALT},r={nonce},i=4096"),
        format!("r={nonce},i=4096,s={RFC_SALT}"),
        // Empty salt.
        format!("r={nonce},s=,i=4096"),
        // Non-printable nonce.
        format!("r={nonce}\u{e9},s={RFC_SALT},i=4096"),
        // Repeated attribute where extensions go.
        format!("{RFC_SERVER_FIRST},i=1"),
        // An error attribute is not valid here.
        "e=other-error".to_owned(),
    ];
    for case in cases {
        assert!(
            is_malformed(
                rfc_client().server_first(case.as_bytes()),
                ScramMessage::ServerFirst
            ),
            "{case}"
        );
    }
    assert_eq!(
        rfc_client().server_first(format!("r={nonce},s=***,i=4096").as_bytes()),
        Err(ScramError::Base64 {
            message: ScramMessage::ServerFirst,
            attribute: 's'
        })
    );
}

#[test]
fn server_final_with_wrong_signature_fails() {
    let signature: [u8; 32] = BASE64
        .decode(RFC_SERVER_FINAL.strip_prefix("v=").unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    for position in [0, 1, 15, 16, 30, 31] {
        let mut tampered = signature;
        tampered[position] ^= 0x40;
        let mut client = rfc_client();
        client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            client.server_final(format!("v={}", BASE64.encode(tampered)).as_bytes()),
            Err(ScramError::ServerSignatureMismatch),
            "byte {position}"
        );
    }
    // An impostor that stole StoredKey (enough to accept the client's proof) but not ServerKey
    // cannot produce the signature.
    let mut impostor = cheap_verifier("pencil");
    impostor.server_key = [9; 32];
    assert_eq!(
        exchange("pencil", &impostor),
        Err(ScramError::ServerSignatureMismatch)
    );
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    for bad in [
        "v=".to_owned(),
        format!("v={}", BASE64.encode(&signature[..16])),
        format!("{RFC_SERVER_FINAL},v=AAAA"),
        format!("x=1,{RFC_SERVER_FINAL}"),
        "garbage".to_owned(),
    ] {
        assert!(
            is_malformed(
                client.server_final(bad.as_bytes()).map(|()| Vec::new()),
                ScramMessage::ServerFinal
            ),
            "{bad}"
        );
    }
    // Extensions after the signature are ignored.
    client
        .server_final(format!("{RFC_SERVER_FINAL},x=1").as_bytes())
        .unwrap();
}

#[test]
fn server_error_attribute_is_surfaced() {
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    let err = client.server_final(b"e=invalid-proof").unwrap_err();
    assert_eq!(err, ScramError::ServerError("invalid-proof".to_owned()));
    assert_eq!(
        err.to_string(),
        "server refused SCRAM authentication: invalid-proof"
    );
}

#[test]
fn client_steps_out_of_order_are_refused() {
    let client = rfc_client();
    assert_eq!(
        client.server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "server_final",
            reason: "server-first-message has not been received"
        })
    );

    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert!(matches!(
        client.server_first(RFC_SERVER_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "server_first",
            ..
        })
    ));
    // The second call ended the exchange: no signature is accepted any more.
    assert!(matches!(
        client.server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder {
            step: "server_final",
            ..
        })
    ));

    // A failed server-first ends it too.
    let mut client = rfc_client();
    assert!(client.server_first(b"garbage").is_err());
    assert!(matches!(
        client.server_first(RFC_SERVER_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder { .. })
    ));
    assert!(matches!(
        client.server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder { .. })
    ));
}

#[test]
fn client_debug_hides_password() {
    let client = ScramClient::new("hunter2-secret");
    assert!(!format!("{client:?}").contains("hunter2"));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A cheap exchange with fixed nonces: (server awaiting client-final, client-final,
/// server-final, client awaiting server-final).
fn cheap_exchange() -> (ScramServer, Vec<u8>, Vec<u8>, ScramClient) {
    let verifier = cheap_verifier("pencil");
    let mut server = ScramServer::with_nonce(&verifier, "servernonce").unwrap();
    let mut client = ScramClient::with_nonce("pencil", "clientnonce").unwrap();
    let server_first = server
        .client_first(MECHANISM, &client.client_first())
        .unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    let server_final = {
        let mut probe = ScramServer::with_nonce(&verifier, "servernonce").unwrap();
        probe
            .client_first(MECHANISM, &client.client_first())
            .unwrap();
        probe.client_final(&client_final).unwrap()
    };
    (server, client_final, server_final, client)
}

proptest! {
    #[test]
    fn arbitrary_client_first_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut server = ScramServer::new(&cheap_verifier("pencil"));
        if let Ok(answer) = server.client_first(MECHANISM, &data) {
            // Only a well-formed message gets an answer, and the answer is well-formed.
            let text = String::from_utf8(answer).unwrap();
            prop_assert!(parse_server_first(&text).is_ok());
        }
    }

    #[test]
    fn arbitrary_text_client_first_never_panics(data in "[nyp=,a-z0-9!-~]{0,80}") {
        let mut server = ScramServer::new(&cheap_verifier("pencil"));
        let _ = server.client_first(MECHANISM, data.as_bytes());
    }

    #[test]
    fn arbitrary_client_final_never_authenticates(
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut server = ScramServer::with_nonce(&cheap_verifier("pencil"), "servernonce").unwrap();
        server.client_first(MECHANISM, b"n,,n=,r=clientnonce").unwrap();
        prop_assert!(server.client_final(&data).is_err());
    }

    #[test]
    fn plausible_client_final_never_authenticates(
        binding in "[a-zA-Z0-9+/=]{0,8}",
        nonce in "[!-+\\--~]{0,40}",
        proof in "[a-zA-Z0-9+/=]{0,48}",
    ) {
        let mut server = ScramServer::with_nonce(&cheap_verifier("pencil"), "servernonce").unwrap();
        server.client_first(MECHANISM, b"n,,n=,r=clientnonce").unwrap();
        let message = format!("c={binding},r={nonce},p={proof}");
        prop_assert!(server.client_final(message.as_bytes()).is_err());
    }

    #[test]
    fn any_single_byte_change_to_client_final_is_refused(index in any::<prop::sample::Index>(), flip in 1u8..) {
        let (mut server, mut client_final, _, _) = cheap_exchange();
        let i = index.index(client_final.len());
        client_final[i] ^= flip;
        prop_assert!(server.client_final(&client_final).is_err());
    }

    #[test]
    fn any_single_byte_change_to_server_final_is_refused(index in any::<prop::sample::Index>(), flip in 1u8..) {
        let (_, _, mut server_final, client) = cheap_exchange();
        let i = index.index(server_final.len());
        server_final[i] ^= flip;
        prop_assert!(client.server_final(&server_final).is_err());
    }

    #[test]
    fn arbitrary_server_first_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut client = ScramClient::with_nonce("pencil", "clientnonce").unwrap();
        let _ = client.server_first(&data);
    }

    #[test]
    fn plausible_server_first_never_panics(
        nonce in "clientnonce[!-+\\--~]{0,10}",
        salt in "[a-zA-Z0-9+/=]{0,24}",
        iterations in "[0-9]{0,3}",
    ) {
        let mut client = ScramClient::with_nonce("pencil", "clientnonce").unwrap();
        let message = format!("r={nonce},s={salt},i={iterations}");
        if let Ok(answer) = client.server_first(message.as_bytes()) {
            let text = String::from_utf8(answer).unwrap();
            prop_assert!(parse_client_final(&text).is_ok());
        }
    }

    #[test]
    fn arbitrary_server_final_never_verifies(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        let (_, _, _, client) = cheap_exchange();
        prop_assert!(client.server_final(&data).is_err());
    }

    #[test]
    fn round_trip_any_ascii_password(password in "[ -~]{0,40}", other in "[ -~]{0,40}") {
        let verifier = ScramVerifier::from_password(&password, b"saltsalt", 2).unwrap();
        prop_assert!(exchange(&password, &verifier).is_ok());
        if other != password {
            prop_assert_eq!(exchange(&other, &verifier), Err(ScramError::AuthenticationFailed));
        }
    }

    #[test]
    fn arbitrary_verifier_text_never_panics(text in "SCRAM-SHA-256\\$[0-9a-zA-Z+/=:$]{0,120}") {
        if let Ok(v) = text.parse::<ScramVerifier>() {
            prop_assert_eq!(v.to_string().parse::<ScramVerifier>().unwrap(), v);
        }
    }

    #[test]
    fn choose_mechanism_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = choose_mechanism(&data);
    }
}
