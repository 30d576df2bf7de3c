//! JSON-RPC 2.0 at the message level: classifying what arrives (request, notification,
//! response), refusing what is malformed with the code the specification assigns, and building
//! answers.

use serde_json::{Map, Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined: the upstream server is gone (exited, broke the protocol, unreachable).
pub const UPSTREAM_UNAVAILABLE: i64 = -32000;
/// Implementation-defined: the upstream server did not answer in time.
pub const UPSTREAM_TIMEOUT: i64 = -32001;
/// The gate's cap on sessions (in total, or for this principal) is reached.
pub const TOO_MANY_SESSIONS: i64 = -32002;
/// MCP 2026-07-28: HTTP headers disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28: the request's protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A result or an error for `id`; the whole message is kept to pass it on.
    Response { id: Value, message: Value },
}

/// A message refused, with the JSON-RPC error that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    /// The id of the refused request when it could be read, else null.
    pub id: Value,
}

impl Refusal {
    pub fn new(code: i64, message: impl Into<String>, id: Value) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            id,
        }
    }

    pub fn to_message(&self) -> Value {
        error(&self.id, self.code, &self.message)
    }
}

/// Parses and classifies one message from `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Message, Refusal> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Refusal::new(PARSE_ERROR, format!("parse error: {e}"), Value::Null))?;
    classify(value)
}

fn valid_id(id: &Value) -> bool {
    // MCP narrows JSON-RPC ids to strings and integers; null is not an id.
    id.is_string() || id.is_i64() || id.is_u64()
}

/// Classifies a parsed JSON value as a JSON-RPC 2.0 message.
pub fn classify(value: Value) -> Result<Message, Refusal> {
    let Value::Object(mut obj) = value else {
        let what = if value.is_array() {
            "batches are not supported (MCP removed JSON-RPC batching in 2025-06-18)"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Err(Refusal::new(INVALID_REQUEST, what, Value::Null));
    };
    let id = obj.remove("id");
    let readable_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(other) => {
            return Err(Refusal::new(
                INVALID_REQUEST,
                format!("unsupported jsonrpc version {other}: only \"2.0\""),
                readable_id,
            ));
        }
        None => {
            return Err(Refusal::new(
                INVALID_REQUEST,
                "missing \"jsonrpc\": \"2.0\"",
                readable_id,
            ));
        }
    }
    if let Some(id) = &id
        && !valid_id(id)
    {
        return Err(Refusal::new(
            INVALID_REQUEST,
            "id must be a string or an integer",
            Value::Null,
        ));
    }
    let params = obj.remove("params");
    if let Some(p) = &params
        && !(p.is_object() || p.is_array())
    {
        return Err(Refusal::new(
            INVALID_REQUEST,
            "params must be an object or an array",
            readable_id,
        ));
    }
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err(Refusal::new(
            INVALID_REQUEST,
            "method must be a string",
            id.filter(valid_id).unwrap_or(Value::Null),
        )),
        (None, Some(id)) => {
            let has_result = obj.contains_key("result");
            let has_error = obj.get("error").is_some_and(Value::is_object);
            if has_result == has_error {
                return Err(Refusal::new(
                    INVALID_REQUEST,
                    "a response carries exactly one of result or error",
                    id,
                ));
            }
            let mut message = Map::with_capacity(3);
            message.insert("jsonrpc".into(), Value::from("2.0"));
            message.insert("id".into(), id.clone());
            for key in ["result", "error"] {
                if let Some(v) = obj.remove(key) {
                    message.insert(key.into(), v);
                }
            }
            Ok(Message::Response {
                id,
                message: Value::Object(message),
            })
        }
        (None, None) => Err(Refusal::new(
            INVALID_REQUEST,
            "neither a request, a notification nor a response",
            Value::Null,
        )),
    }
}

pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

pub fn error_with_data(id: &Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn request(id: &Value, method: &str, params: Option<Value>) -> Value {
    let mut m = Map::with_capacity(4);
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), id.clone());
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut m = Map::with_capacity(3);
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

/// The error code of a response message, if it is an error.
pub fn error_code(message: &Value) -> Option<i64> {
    message.get("error")?.get("code")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (i64, Value) {
        let r = parse(text.as_bytes()).expect_err(text);
        (r.code, r.id)
    }

    #[test]
    fn malformed_messages_get_their_codes() {
        assert_eq!(code("{not json").0, PARSE_ERROR);
        assert_eq!(code("").0, PARSE_ERROR);
        assert_eq!(
            code(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            (INVALID_REQUEST, Value::Null)
        );
        assert_eq!(code("42").0, INVALID_REQUEST);
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#),
            (INVALID_REQUEST, json!(7))
        );
        assert_eq!(
            code(r#"{"id":7,"method":"ping"}"#),
            (INVALID_REQUEST, json!(7))
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            (INVALID_REQUEST, Value::Null)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#).0,
            INVALID_REQUEST
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":"a","method":3}"#),
            (INVALID_REQUEST, json!("a"))
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":"a","method":"x","params":3}"#).0,
            INVALID_REQUEST
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#).0, INVALID_REQUEST);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#).0,
            INVALID_REQUEST
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0"}"#).0, INVALID_REQUEST);
    }

    #[test]
    fn well_formed_messages_are_classified() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#),
            Ok(Message::Request {
                id: json!("x"),
                method: "tools/list".into(),
                params: None
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification {
                method: "notifications/initialized".into(),
                params: None
            })
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#),
            Ok(Message::Response { id, .. }) if id == json!(3)
        ));
    }
}
