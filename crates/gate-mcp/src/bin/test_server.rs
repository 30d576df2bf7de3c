//! A small MCP server over stdio for the gate's tests and benchmark. It speaks 2025-06-18,
//! 2025-11-25 (`initialize`) and 2026-07-28 (`server/discover`, the per-request `_meta`
//! envelope), and has tools that misbehave on purpose: one that never answers, one that crashes
//! the process mid-call, one that prints garbage on stdout.
//!
//! Tools `env` and `notified` report the process's environment and the notifications it
//! received, so tests can see what reached the server.
//!
//! Environment: `TEST_MCP_DESCRIPTION_FILE` (the description of `delete_file`, read at start,
//! so a test can change it between sessions), `TEST_MCP_LEGACY_ONLY` (no `server/discover`), `TEST_MCP_DUPLICATE_FILE` (if the file
//! exists, `delete_file` is listed a second time, last, with the file's text as description).

use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

const HANDSHAKE: &[&str] = &["2025-06-18", "2025-11-25"];
const MODERN: &str = "2026-07-28";

fn tools(delete_description: &str) -> Value {
    let read_only = json!({"readOnlyHint": true});
    json!([
        {"name": "echo", "description": "Echoes its message",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
         "annotations": read_only},
        {"name": "delete_file", "description": delete_description,
         "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
         "annotations": {"readOnlyHint": false, "destructiveHint": true}},
        {"name": "format_disk", "description": "Formats a disk",
         "inputSchema": {"type": "object"},
         "annotations": {"destructiveHint": true}},
        {"name": "slow", "description": "Answers after `ms` milliseconds, with progress",
         "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer"}}},
         "annotations": read_only},
        {"name": "hang", "description": "Never answers", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "crash", "description": "Exits mid-call", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "garbage", "description": "Prints garbage", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "whoami", "description": "The server's process id", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "notified", "description": "The methods of the notifications received so far", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "env", "description": "The server's environment, as a JSON object", "inputSchema": {"type": "object"}, "annotations": read_only},
        {"name": "ask", "description": "Asks the user through elicitation", "inputSchema": {"type": "object"}, "annotations": read_only}
    ])
}

type Out = Arc<Mutex<std::io::Stdout>>;

/// The methods of every notification received, for the `notified` tool.
static NOTIFIED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Requests this server sent the client, by id, and where their answers go.
type Asked = Arc<Mutex<std::collections::HashMap<String, std::sync::mpsc::Sender<Value>>>>;

fn send(out: &Out, message: &Value) {
    let mut out = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
}

fn text(t: String) -> Value {
    json!({"content": [{"type": "text", "text": t}], "isError": false})
}

fn call(
    out: &Out,
    asked: &Asked,
    name: &str,
    args: &Value,
    token: Option<Value>,
) -> Result<Option<Value>, (i64, String)> {
    Ok(Some(match name {
        "ask" => {
            // A request of the server to the client, answered through the gate.
            let (tx, rx) = std::sync::mpsc::channel();
            asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert("srv-1".into(), tx);
            send(
                out,
                &json!({"jsonrpc": "2.0", "id": "srv-1", "method": "elicitation/create",
                "params": {"message": "Proceed?", "requestedSchema": {"type": "object",
                "properties": {"answer": {"type": "string"}}}}}),
            );
            let answer = rx.recv().unwrap_or(Value::Null);
            text(format!(
                "answer: {}",
                answer["result"]["content"]["answer"]
                    .as_str()
                    .unwrap_or("none")
            ))
        }
        "echo" => text(
            args.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        "delete_file" => text(format!(
            "deleted {}",
            args.get("path").and_then(Value::as_str).unwrap_or("?")
        )),
        "format_disk" => text("formatted".into()),
        "whoami" => text(std::process::id().to_string()),
        "notified" => text(
            NOTIFIED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .join(" "),
        ),
        "env" => {
            text(Value::from_iter(std::env::vars().map(|(k, v)| (k, Value::from(v)))).to_string())
        }
        "slow" => {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(100);
            if let Some(token) = &token {
                send(
                    out,
                    &json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1, "total": 2, "message": "working"}}),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(ms));
            text(format!("slept {ms}ms"))
        }
        "hang" => return Ok(None),
        "crash" => std::process::exit(3),
        "garbage" => {
            let mut o = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(o, "this is not JSON-RPC");
            let _ = o.flush();
            return Ok(None);
        }
        other => return Err((-32602, format!("unknown tool {other}"))),
    }))
}

fn main() {
    let description = std::env::var("TEST_MCP_DESCRIPTION_FILE")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map_or_else(|| "Deletes a file".to_owned(), |d| d.trim().to_owned());
    let legacy_only = std::env::var_os("TEST_MCP_LEGACY_ONLY").is_some();
    let mut tools = tools(&description);
    if let Some(second) = std::env::var("TEST_MCP_DUPLICATE_FILE")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        && let Some(list) = tools.as_array_mut()
        && let Some(mut copy) = list.iter().find(|t| t["name"] == "delete_file").cloned()
    {
        copy["description"] = Value::from(second.trim());
        list.push(copy);
    }
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let asked: Asked = Arc::default();
    let capabilities = json!({"tools": {"listChanged": true}, "resources": {}, "prompts": {}});
    let info = json!({"name": "countersign-test-server", "version": "1.0.0"});
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (
            msg.get("id").cloned(),
            msg.get("method").and_then(Value::as_str),
        ) else {
            if let Some(method) = msg.get("method").and_then(Value::as_str) {
                NOTIFIED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(method.to_owned());
                continue;
            }
            // An answer to one of our requests.
            if let Some(id) = msg.get("id").and_then(Value::as_str)
                && let Some(tx) = asked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(id)
            {
                let _ = tx.send(msg.clone());
            }
            continue;
        };
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let meta = params.get("_meta").cloned().unwrap_or(json!({}));
        let modern = meta.get("io.modelcontextprotocol/protocolVersion").cloned();
        if let Some(v) = &modern
            && v != MODERN
        {
            send(
                &out,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32022,
                "message": "unsupported protocol version", "data": {"supported": [MODERN], "requested": v}}}),
            );
            continue;
        }
        let result: Result<Option<Value>, (i64, String)> = match method {
            "initialize" => {
                let asked = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = HANDSHAKE
                    .iter()
                    .find(|v| **v == asked)
                    .copied()
                    .unwrap_or("2025-11-25");
                Ok(Some(
                    json!({"protocolVersion": version, "capabilities": capabilities, "serverInfo": info}),
                ))
            }
            "server/discover" if !legacy_only => Ok(Some(json!({"supportedVersions": [MODERN],
                "capabilities": capabilities, "serverInfo": info, "ttlMs": 0, "cacheScope": "private"}))),
            "ping" => Ok(Some(json!({}))),
            "tools/list" => Ok(Some(json!({"tools": tools}))),
            "resources/list" => Ok(Some(
                json!({"resources": [{"uri": "test://readme", "name": "readme"}]}),
            )),
            "resources/read" => Ok(Some(
                json!({"contents": [{"uri": params.get("uri").cloned().unwrap_or(Value::Null), "text": "read me"}]}),
            )),
            "prompts/list" => Ok(Some(json!({"prompts": [{"name": "greet"}]}))),
            "tools/call" => {
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                let token = meta.get("progressToken").cloned();
                let (out2, asked2, id2, modern2) =
                    (out.clone(), asked.clone(), id.clone(), modern.is_some());
                // Calls run on their own thread, so a slow or hanging one does not stop others.
                std::thread::spawn(move || {
                    let answer = match call(&out2, &asked2, &name, &args, token) {
                        Ok(Some(mut r)) => {
                            if modern2 {
                                r["resultType"] = json!("complete");
                            }
                            json!({"jsonrpc": "2.0", "id": id2, "result": r})
                        }
                        Ok(None) => return,
                        Err((code, m)) => {
                            json!({"jsonrpc": "2.0", "id": id2, "error": {"code": code, "message": m}})
                        }
                    };
                    send(&out2, &answer);
                });
                continue;
            }
            _ => Err((-32601, format!("method not found: {method}"))),
        };
        let answer = match result {
            Ok(Some(mut r)) => {
                if modern.is_some() && r.is_object() {
                    r["resultType"] = json!("complete");
                }
                json!({"jsonrpc": "2.0", "id": id, "result": r})
            }
            Ok(None) => continue,
            Err((code, m)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": m}})
            }
        };
        send(&out, &answer);
    }
}
