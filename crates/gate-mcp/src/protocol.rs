//! MCP protocol revisions and what differs between them: the 2025 revisions negotiate once with
//! `initialize`; 2026-07-28 carries its version and client capabilities in every request's
//! `_meta` and mirrors the method (and the tool, resource or prompt name) in HTTP headers.

use base64::Engine as _;
use serde_json::{Map, Value};

pub const V2025_06_18: &str = "2025-06-18";
pub const V2025_11_25: &str = "2025-11-25";
pub const V2026_07_28: &str = "2026-07-28";

/// Every revision the gate speaks, oldest first.
pub const ALL_REVISIONS: &[&str] = &[V2025_06_18, V2025_11_25, V2026_07_28];
/// The revisions negotiated with `initialize`.
pub const HANDSHAKE_REVISIONS: &[&str] = &[V2025_06_18, V2025_11_25];

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// Prefix of the keys the protocol reserves in `_meta` for the per-request envelope.
const META_RESERVED_PREFIX: &str = "io.modelcontextprotocol/";

pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";

/// The client requests of the revisions the gate speaks that it passes to the server as they
/// are (`tools/*`, `initialize` and `server/discover` it answers itself). Matched exactly:
/// anything else, including case variants such as `Tools/Call` and vendor methods, is answered
/// -32601 at the gate and never reaches the server.
const PASS_THROUGH: &[&str] = &[
    "ping",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    // 2025-11-25 tasks: they only read or cancel what an already decided request started.
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    // 2026-07-28.
    "subscriptions/listen",
];

/// Whether the gate passes client request `method` through to the server.
pub fn is_pass_through(method: &str) -> bool {
    PASS_THROUGH.contains(&method)
}

/// Whether a client may send `method` as a notification. Only `notifications/…` are: anything
/// else sent without an id (a `tools/call`, say) would run without an answer, and a
/// `tools/call` would reach the server undecided.
pub fn is_notification_method(method: &str) -> bool {
    method.starts_with("notifications/")
}

/// The parameter `Mcp-Name` mirrors for `method`, if it bears a name.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The `_meta` object of `params`, if any.
pub fn meta(params: Option<&Value>) -> Option<&Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// The protocol version a 2026-07-28-style request names in its `_meta`, if it names one.
pub fn request_version(params: Option<&Value>) -> Option<&Value> {
    meta(params)?.get(META_PROTOCOL_VERSION)
}

/// Removes the per-request envelope keys from `params._meta` (they describe the hop they came
/// over, not the next one); drops `_meta` when nothing else is left in it.
pub fn strip_envelope(params: &mut Value) {
    let Some(obj) = params.as_object_mut() else {
        return;
    };
    let empty = match obj.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.retain(|k, _| !k.starts_with(META_RESERVED_PREFIX));
            meta.is_empty()
        }
        None => false,
    };
    if empty {
        obj.remove("_meta");
    }
}

/// Adds the 2026-07-28 envelope to `params` (made an object if absent).
pub fn add_envelope(params: &mut Option<Value>, capabilities: &Value, client_info: &Value) {
    let p = params.get_or_insert_with(|| Value::Object(Map::new()));
    let Some(obj) = p.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(META_PROTOCOL_VERSION.into(), Value::from(V2026_07_28));
        meta.insert(META_CLIENT_CAPABILITIES.into(), capabilities.clone());
        meta.insert(META_CLIENT_INFO.into(), client_info.clone());
    }
}

/// Decodes an `Mcp-Name` header value: verbatim, or `=?base64?…?=` for values that are not
/// plain printable ASCII. A malformed encoding decodes to `None`, so it never matches a body.
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    // Only the canonical encoding counts.
    if base64::engine::general_purpose::STANDARD.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Encodes `value` for an `Mcp-Name` header (see [`decode_header_value`]).
pub fn encode_header_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && !value.starts_with("=?");
    if plain {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_specifications_methods_pass_through() {
        for m in ["resources/read", "prompts/get", "tasks/result", "ping"] {
            assert!(is_pass_through(m), "{m}");
        }
        for m in [
            "tools/call",
            "Tools/Call",
            "RESOURCES/READ",
            "vendor/x",
            "",
            "resources/read ",
        ] {
            assert!(!is_pass_through(m), "{m}");
        }
    }

    #[test]
    fn header_values_round_trip_and_bad_encodings_never_match() {
        for v in [
            "search",
            "naïve",
            " spaced ",
            "a\r\nInjected: 1",
            "=?base64?x?=",
        ] {
            assert_eq!(
                decode_header_value(&encode_header_value(v)).as_deref(),
                Some(v)
            );
        }
        assert_eq!(encode_header_value("plain_name"), "plain_name");
        assert_eq!(decode_header_value("=?base64?!!!?="), None);
        // Non-canonical trailing bits.
        assert_eq!(decode_header_value("=?base64?YR==?="), None);
    }

    #[test]
    fn the_envelope_is_swapped_not_merged() {
        let mut p = json!({"name": "t", "_meta": {
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {"elicitation": {}},
            "progressToken": 5
        }});
        strip_envelope(&mut p);
        assert_eq!(p, json!({"name": "t", "_meta": {"progressToken": 5}}));
        let mut only = json!({"_meta": {META_PROTOCOL_VERSION: "x"}});
        strip_envelope(&mut only);
        assert_eq!(only, json!({}));
        let mut params = Some(p);
        add_envelope(&mut params, &json!({}), &json!({"name": "countersign"}));
        assert_eq!(request_version(params.as_ref()), Some(&json!("2026-07-28")));
    }
}
