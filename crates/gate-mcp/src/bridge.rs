//! `countersign mcp-stdio`: an agent that launches its MCP servers as processes talks to the
//! gate through this bridge. It reads newline-delimited JSON-RPC on stdin, posts each message
//! to the gate's `/mcp` with the agent's token, and writes what comes back to stdout. It
//! decides nothing and keeps no state beyond the transport's (the session id and revision of
//! the 2025 revisions, kept by [`HttpLink`]).

use crate::link::{HttpLink, LineError, read_line_bounded};
use crate::{jsonrpc, protocol};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Setup(String),
    #[error("writing to stdout failed: {0}")]
    Output(#[source] std::io::Error),
}

/// Relays between `input`/`output` (the agent) and the gate at `url` until the input ends.
pub async fn run<R, W>(
    url: &str,
    token: String,
    max_bytes: usize,
    input: R,
    mut output: W,
) -> Result<(), BridgeError>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let link = Arc::new(HttpLink::new(url, Some(token), max_bytes).map_err(BridgeError::Setup)?);
    let (tx, mut rx) = mpsc::channel::<Result<Value, String>>(256);
    let reader = tokio::spawn(read_input(link.clone(), input, max_bytes, tx));
    while let Some(item) = rx.recv().await {
        let message = match item {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!("{why}");
                continue;
            }
        };
        let mut line =
            serde_json::to_vec(&message).map_err(|e| BridgeError::Setup(e.to_string()))?;
        line.push(b'\n');
        output.write_all(&line).await.map_err(BridgeError::Output)?;
        output.flush().await.map_err(BridgeError::Output)?;
    }
    let _ = reader.await;
    link.close().await;
    Ok(())
}

async fn read_input<R: AsyncBufRead + Unpin>(
    link: Arc<HttpLink>,
    mut input: R,
    max_bytes: usize,
    tx: mpsc::Sender<Result<Value, String>>,
) {
    let mut buf = Vec::new();
    let mut posts = tokio::task::JoinSet::new();
    loop {
        match read_line_bounded(&mut input, max_bytes, &mut buf).await {
            Ok(true) if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(true) => {}
            Ok(false) | Err(LineError::Io(_)) => break,
            Err(LineError::TooLong) => {
                let refusal = jsonrpc::error(
                    &Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    &format!("the message exceeds {max_bytes} bytes"),
                );
                let _ = tx.send(Ok(refusal)).await;
                // Skip the rest of the oversized line.
                skip_line(&mut input).await;
                continue;
            }
        }
        let message = match jsonrpc::parse(&buf) {
            Ok(_) => match serde_json::from_slice::<Value>(&buf) {
                Ok(v) => v,
                Err(_) => continue,
            },
            Err(r) => {
                let _ = tx.send(Ok(r.to_message())).await;
                continue;
            }
        };
        let method = message.get("method").and_then(Value::as_str);
        if let Some(method) = method
            && message.get("id").is_none()
            && !protocol::is_notification_method(method)
        {
            // It cannot be answered, and the gate refuses it anyway.
            tracing::warn!(%method, "dropped a request sent as a notification (no id)");
            continue;
        }
        let is_initialize = method == Some("initialize");
        let is_initialized =
            message.get("method").and_then(Value::as_str) == Some("notifications/initialized");
        let (link, tx) = (link.clone(), tx.clone());
        let post = async move {
            // Answers of `initialize` fix the revision the next requests name.
            let (answers, mut seen) = mpsc::channel::<Result<Value, String>>(64);
            let sent = {
                let relay = async {
                    while let Some(item) = seen.recv().await {
                        if let Ok(v) = &item
                            && is_initialize
                            && let Some(version) =
                                v.pointer("/result/protocolVersion").and_then(Value::as_str)
                        {
                            link.set_version(version);
                        }
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                };
                let post = async {
                    let r = link.post(&message, &answers).await;
                    drop(answers);
                    r
                };
                let (r, ()) = tokio::join!(post, relay);
                r
            };
            if let Err(e) = sent
                && let Some(id) = message
                    .get("id")
                    .filter(|_| message.get("method").is_some())
            {
                let _ = tx
                    .send(Ok(jsonrpc::error(id, jsonrpc::UPSTREAM_UNAVAILABLE, &e)))
                    .await;
            }
            if is_initialized {
                let _ = link.listen(&tx).await;
            }
        };
        if is_initialize {
            // Everything after initialize needs its session id: wait for it.
            post.await;
        } else {
            posts.spawn(post);
        }
    }
    // Input ended: requests still in flight are abandoned with it.
    posts.abort_all();
}

async fn skip_line<R: AsyncBufRead + Unpin>(input: &mut R) {
    use tokio::io::AsyncBufReadExt;
    loop {
        let Ok(available) = input.fill_buf().await else {
            return;
        };
        if available.is_empty() {
            return;
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return;
            }
            None => {
                let n = available.len();
                input.consume(n);
            }
        }
    }
}
