//! Canonical JSON: one byte string per JSON value, so that hashes of equal values are equal.
//!
//! The form follows RFC 8785 (JCS) for everything countersign produces: no insignificant
//! whitespace; object members sorted by the UTF-16 code units of their names; strings escaped
//! minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`
//! in lowercase hex, everything else as literal UTF-8); integers in plain decimal. Non-integer
//! numbers are written in their shortest round-trip form, which matches JCS for the values found
//! in payloads (JCS's exponent thresholds differ only beyond 1e21 and below 1e-6).

use serde_json::Value;

/// Appends the canonical encoding of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            use std::io::Write;
            // Writing to a vector cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

/// The canonical encoding of `value` as a new byte vector.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

/// The canonical encoding of `value` as a string.
pub fn to_canonical_string(value: &Value) -> String {
    let bytes = to_canonical_vec(value);
    // Every byte written is either ASCII or copied from a valid `str`.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Member names in the order of their UTF-16 code units. For ASCII names (nearly all) that
/// is byte order, compared without decoding.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Runs of bytes that need no escape are copied whole; the bytes of a multi-byte character
    // are all 0x80 or above, so only ASCII is ever escaped.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_members_and_drops_whitespace() {
        let v = json!({"b": [1, 2, {"z": null, "a": true}], "a": "x"});
        assert_eq!(
            to_canonical_string(&v),
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn escapes_minimally() {
        let v = json!("q\"b\\\n\u{1}é€😀");
        assert_eq!(to_canonical_string(&v), "\"q\\\"b\\\\\\n\\u0001é€😀\"");
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // U+FF61 sorts after U+1F600 in UTF-8 byte order but before it in UTF-16 order.
        let v = json!({"\u{1F600}": 1, "\u{FF61}": 2});
        assert_eq!(to_canonical_string(&v), "{\"😀\":1,\"｡\":2}");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The escaping rules spelled out character by character: what `write_string` must equal.
    fn escaped_char_by_char(s: &str) -> String {
        let mut out = String::from("\"");
        for ch in s.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn strings_escape_as_the_rules_say(s in "(\\PC|[\u{0}-\u{1f}\"\\\\])*") {
            let mut out = Vec::new();
            write_string(&s, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), escaped_char_by_char(&s));
        }

        #[test]
        fn names_sort_by_utf16_code_units(a in "\\PC{0,4}", b in "\\PC{0,4}") {
            prop_assert_eq!(utf16_order(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }

        #[test]
        fn canonical_form_round_trips_and_is_stable(v in arb_json()) {
            let text = to_canonical_string(&v);
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&parsed, &v);
            prop_assert_eq!(to_canonical_string(&parsed), text);
        }
    }
}
