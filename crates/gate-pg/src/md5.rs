//! PostgreSQL's md5 password authentication, from the client's side: what the gate answers when
//! the upstream server sends AuthenticationMD5Password.
//!
//! The server stores `"md5" + hex(md5(password ‖ user))` and sends a 4-byte salt; the client
//! answers `"md5" + hex(md5(hex(md5(password ‖ user)) ‖ salt))` in a PasswordMessage (the framing
//! adds the terminating NUL). The user is the role name of the startup message. md5 is weak and
//! PostgreSQL deprecates it; the gate speaks it only because an upstream may still ask for it.

use ::md5::{Digest, Md5};

/// The response to AuthenticationMD5Password: `"md5"` followed by 32 lowercase hex digits.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let outer = Md5::new()
        .chain_update(stored_digest(user, password))
        .chain_update(salt)
        .finalize();
    format!("md5{}", hex::encode(outer))
}

/// `hex(md5(password ‖ user))`: the stored form, without its `md5` prefix.
fn stored_digest(user: &str, password: &str) -> String {
    let digest = Md5::new()
        .chain_update(password)
        .chain_update(user)
        .finalize();
    hex::encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The stored form, from PostgreSQL 15: SELECT 'md5' || md5('pencil' || 'alice');
    #[test]
    fn stored_form_matches_postgresql() {
        assert_eq!(
            format!("md5{}", stored_digest("alice", "pencil")),
            "md5ee69efad287c7423caf0b3229d71f567"
        );
    }

    // The salted responses, from PostgreSQL 15:
    //   SELECT 'md5' || md5(convert_to(md5('pencil' || 'alice'), 'UTF8') || '\x01020304'::bytea);
    // and the same with '\x93ff0a5c' (bytes above 0x7f, to catch a salt taken as text), both
    // checked by hand with Python's hashlib:
    //   inner = hashlib.md5(b'pencilalice').hexdigest()
    //   'md5' + hashlib.md5(inner.encode() + bytes([1, 2, 3, 4])).hexdigest()
    #[test]
    fn salted_response_matches_postgresql() {
        assert_eq!(
            md5_password("alice", "pencil", [0x01, 0x02, 0x03, 0x04]),
            "md537cba386e8b90f1e3941a0e792722253"
        );
        assert_eq!(
            md5_password("alice", "pencil", [0x93, 0xff, 0x0a, 0x5c]),
            "md51ad84c9308943990758d7347d339980f"
        );
    }

    #[test]
    fn user_and_password_are_not_interchangeable() {
        let salt = [1, 2, 3, 4];
        assert_ne!(
            md5_password("alice", "pencil", salt),
            md5_password("pencil", "alice", salt)
        );
        assert_ne!(
            md5_password("alice", "pencil", salt),
            md5_password("alice", "pencil", [1, 2, 3, 5])
        );
    }
}
