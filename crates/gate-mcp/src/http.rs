//! The downstream Streamable HTTP endpoint: `POST`, `GET` and `DELETE /mcp`, bearer-token
//! authentication with the protected-resource metadata of the MCP authorization specification,
//! and the checks a message passes before it is handled (size, JSON-RPC shape, session,
//! 2026-07-28 envelope and headers). Answers are one JSON body, or an SSE stream when progress
//! or server messages come before the response.

use crate::session::{self, Incoming, OpenError, Session};
use crate::{Gate, jsonrpc, protocol};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use countersign_core::{Principal, authenticate};
use jsonrpc::{Message, Refusal};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

pub(crate) fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/mcp", get(get_mcp).post(post_mcp).delete(delete_mcp))
        .route(METADATA_PATH, get(metadata))
        .route(&format!("{METADATA_PATH}/mcp"), get(metadata))
        .with_state(gate)
}

/// RFC 9728 protected-resource metadata for `/mcp`.
async fn metadata(State(gate): State<Arc<Gate>>) -> Response {
    let config = &gate.config;
    let mut doc = json!({
        "resource": format!("{}/mcp", config.public_url),
        "bearer_methods_supported": ["header"],
        "resource_name": format!("countersign MCP gate {}", config.name),
    });
    if !config.authorization_servers.is_empty() {
        doc["authorization_servers"] = json!(config.authorization_servers);
    }
    axum::Json(doc).into_response()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn refusal(status: StatusCode, r: &Refusal) -> Response {
    json_response(status, &r.to_message())
}

fn boxed_refusal(status: StatusCode, r: &Refusal) -> Box<Response> {
    Box::new(refusal(status, r))
}

/// The principal behind the request's bearer token, or the 401 that tells the client where
/// the metadata is.
fn authenticated(gate: &Gate, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| {
            t.strip_prefix("Bearer ")
                .or_else(|| t.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let found = token.and_then(|t| authenticate(&gate.principals, t));
    match found {
        Some(p) => Ok(p.principal.clone()),
        None => {
            let challenge = format!(
                "Bearer resource_metadata=\"{}{METADATA_PATH}\"{}",
                gate.config.public_url,
                if token.is_some() {
                    ", error=\"invalid_token\""
                } else {
                    ""
                }
            );
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": {"code": "unauthenticated", "message": "a valid countersign bearer token is required"}}),
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            Err(Box::new(resp))
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn session_of(
    gate: &Gate,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<Option<Arc<Session>>, Box<Response>> {
    let Some(id) = header_str(headers, protocol::HEADER_SESSION_ID) else {
        return Ok(None);
    };
    let not_found = || {
        boxed_refusal(
            StatusCode::NOT_FOUND,
            &Refusal::new(
                jsonrpc::INVALID_REQUEST,
                "session not found: initialize again",
                Value::Null,
            ),
        )
    };
    let session = gate.sessions.get(id).ok_or_else(not_found)?;
    // Another principal's session id is as good as none.
    if session.principal.reference() != principal.reference() {
        return Err(not_found());
    }
    if let Some(why) = session.upstream.closed_reason() {
        gate.sessions.remove(id, &why);
        return Err(boxed_refusal(
            StatusCode::NOT_FOUND,
            &Refusal::new(
                jsonrpc::INVALID_REQUEST,
                format!("session ended ({why}): initialize again"),
                Value::Null,
            ),
        ));
    }
    if let Some(v) = header_str(headers, protocol::HEADER_PROTOCOL_VERSION)
        && v != session.version
    {
        return Err(boxed_refusal(
            StatusCode::BAD_REQUEST,
            &Refusal::new(
                jsonrpc::INVALID_REQUEST,
                format!(
                    "MCP-Protocol-Version `{v}` is not the session's `{}`",
                    session.version
                ),
                Value::Null,
            ),
        ));
    }
    Ok(Some(session))
}

/// The 2026-07-28 checks of a request without a session: the envelope, headers that match the
/// body, and a version the gate speaks.
fn check_modern(
    headers: &HeaderMap,
    id: &Value,
    method: &str,
    params: Option<&Value>,
) -> Result<(), Refusal> {
    let meta = protocol::meta(params).ok_or_else(|| {
        Refusal::new(
            jsonrpc::INVALID_PARAMS,
            format!(
                "params._meta must carry `{}` and `{}` (or initialize a session first)",
                protocol::META_PROTOCOL_VERSION,
                protocol::META_CLIENT_CAPABILITIES
            ),
            id.clone(),
        )
    })?;
    for key in [
        protocol::META_PROTOCOL_VERSION,
        protocol::META_CLIENT_CAPABILITIES,
    ] {
        if !meta.contains_key(key) {
            return Err(Refusal::new(
                jsonrpc::INVALID_PARAMS,
                format!("params._meta is missing `{key}`"),
                id.clone(),
            ));
        }
    }
    let version = &meta[protocol::META_PROTOCOL_VERSION];
    let mismatch = |what: &str| Refusal::new(jsonrpc::HEADER_MISMATCH, what.to_owned(), id.clone());
    if header_str(headers, protocol::HEADER_PROTOCOL_VERSION) != version.as_str() {
        return Err(mismatch(
            "the MCP-Protocol-Version header does not match the request's protocol version",
        ));
    }
    if header_str(headers, protocol::HEADER_METHOD) != Some(method) {
        return Err(mismatch(
            "the Mcp-Method header does not match the request's method",
        ));
    }
    if let Some(key) = protocol::name_param(method)
        && let Some(body_name) = params.and_then(|p| p.get(key))
    {
        let header_name =
            header_str(headers, protocol::HEADER_NAME).and_then(protocol::decode_header_value);
        if header_name.as_deref() != body_name.as_str() {
            return Err(mismatch(&format!(
                "the Mcp-Name header does not match the request's `{key}`"
            )));
        }
    }
    let Some(version) = version.as_str() else {
        return Err(Refusal::new(
            jsonrpc::INVALID_PARAMS,
            "the protocol version must be a string",
            id.clone(),
        ));
    };
    if version != protocol::V2026_07_28 {
        return Err(Refusal {
            code: jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            message: format!("protocol version `{version}` is not supported without initialize"),
            id: id.clone(),
        });
    }
    Ok(())
}

/// The HTTP status for an error answer of the 2026-07-28 revision.
fn modern_status(answer: &Value) -> StatusCode {
    match jsonrpc::error_code(answer) {
        Some(jsonrpc::PARSE_ERROR | jsonrpc::INVALID_REQUEST | jsonrpc::INVALID_PARAMS)
        | Some(jsonrpc::HEADER_MISMATCH | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION) => {
            StatusCode::BAD_REQUEST
        }
        Some(jsonrpc::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

async fn read_body(gate: &Gate, request: Request) -> Result<Bytes, Box<Response>> {
    let limit = gate.config.max_message_bytes;
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            boxed_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Refusal::new(
                    jsonrpc::INVALID_REQUEST,
                    format!("the message exceeds {limit} bytes"),
                    Value::Null,
                ),
            )
        })
}

async fn post_mcp(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let principal = match authenticated(&gate, &headers) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let body = match read_body(&gate, request).await {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let message = match jsonrpc::parse(&body) {
        Ok(m) => m,
        Err(r) => return refusal(StatusCode::BAD_REQUEST, &r),
    };
    if let Message::Notification { method, .. } = &message
        && !protocol::is_notification_method(method)
    {
        tracing::warn!(gate = %gate.config.name, principal = %principal.reference(), %method, "refused a request sent as a notification");
        return refusal(
            StatusCode::BAD_REQUEST,
            &Refusal::new(
                jsonrpc::INVALID_REQUEST,
                format!("`{method}` is not a notification: send it with an id"),
                Value::Null,
            ),
        );
    }
    let session = match session_of(&gate, &headers, &principal) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let peer = peer.to_string();
    match (session, message) {
        (Some(session), Message::Request { id, method, params }) => {
            let Some(cancel) = session.begin(id.to_string()) else {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &Refusal::new(
                        jsonrpc::INVALID_REQUEST,
                        format!("request id {id} is already in use in this session"),
                        id,
                    ),
                );
            };
            let request = Incoming {
                key: id.to_string(),
                id,
                method,
                params,
                cancel,
            };
            respond(gate, session, peer, request).await
        }
        (Some(session), Message::Notification { method, params }) => {
            match method.as_str() {
                "notifications/initialized" => {}
                "notifications/cancelled" => {
                    if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                        session.cancel(id);
                    }
                }
                _ => {
                    let _ = session
                        .upstream
                        .notify(&method, params.unwrap_or(Value::Null))
                        .await;
                }
            }
            StatusCode::ACCEPTED.into_response()
        }
        (Some(session), Message::Response { message, .. }) => {
            // The client's answer to a request of the server.
            let _ = session.upstream.send_raw(message).await;
            StatusCode::ACCEPTED.into_response()
        }
        (None, Message::Request { id, method, params }) if method == "initialize" => {
            let principal_name = principal.reference().to_string();
            match session::initialize(&gate, principal, params.as_ref()).await {
                Ok((session, result)) => {
                    let mut resp = json_response(StatusCode::OK, &jsonrpc::result(&id, result));
                    if let Ok(v) = HeaderValue::from_str(&session.id) {
                        resp.headers_mut().insert(protocol::HEADER_SESSION_ID, v);
                    }
                    resp
                }
                Err(e) => open_refused(&gate, &principal_name, &id, &e),
            }
        }
        (None, Message::Request { id, method, params })
            if protocol::request_version(params.as_ref()).is_some()
                || header_str(&headers, protocol::HEADER_PROTOCOL_VERSION)
                    == Some(protocol::V2026_07_28) =>
        {
            if let Err(r) = check_modern(&headers, &id, &method, params.as_ref()) {
                if r.code == jsonrpc::UNSUPPORTED_PROTOCOL_VERSION {
                    // -32022 names what the gate speaks without a session, so the client can
                    // pick (or initialize instead).
                    let requested = protocol::request_version(params.as_ref()).cloned();
                    let body = jsonrpc::error_with_data(
                        &r.id,
                        r.code,
                        &r.message,
                        json!({"supported": [protocol::V2026_07_28], "requested": requested}),
                    );
                    return json_response(StatusCode::BAD_REQUEST, &body);
                }
                return refusal(StatusCode::BAD_REQUEST, &r);
            }
            let session = match session::for_principal(&gate, &principal).await {
                Ok(s) => s,
                Err(e) => return open_refused(&gate, &principal.reference().to_string(), &id, &e),
            };
            let key = hex::encode(rand::random::<[u8; 12]>());
            let Some(cancel) = session.begin(key.clone()) else {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &jsonrpc::error(&id, jsonrpc::INTERNAL_ERROR, "request key collision"),
                );
            };
            let request = Incoming {
                key,
                id,
                method,
                params,
                cancel,
            };
            respond(gate, session, peer, request).await
        }
        (None, Message::Notification { .. })
            if header_str(&headers, protocol::HEADER_PROTOCOL_VERSION)
                == Some(protocol::V2026_07_28) =>
        {
            // 2026-07-28 defines no client notifications over HTTP; closing a stream cancels.
            StatusCode::ACCEPTED.into_response()
        }
        (None, m) => {
            let id = match m {
                Message::Request { id, .. } => id,
                _ => Value::Null,
            };
            refusal(
                StatusCode::BAD_REQUEST,
                &Refusal::new(
                    jsonrpc::INVALID_REQUEST,
                    "no session: send initialize first (2025-06-18, 2025-11-25), or the 2026-07-28 `_meta` envelope with its headers",
                    id,
                ),
            )
        }
    }
}

/// The answer when no session could be opened: a full gate is 503, a principal at its own
/// cap 429 (both logged, a loop of `initialize` shows in the log); an unreachable upstream is
/// a JSON-RPC error in a 200 as before.
fn open_refused(gate: &Gate, principal: &str, id: &Value, e: &OpenError) -> Response {
    let status = match e {
        OpenError::GateFull(_) => StatusCode::SERVICE_UNAVAILABLE,
        OpenError::PrincipalFull(_) => StatusCode::TOO_MANY_REQUESTS,
        OpenError::Upstream(_) => StatusCode::OK,
    };
    if status != StatusCode::OK {
        tracing::warn!(gate = %gate.config.name, %principal, "refused a new MCP session: {}", e.message());
    }
    json_response(status, &jsonrpc::error(id, e.code(), &e.message()))
}

/// Runs the request and answers: one JSON body when the response comes first, else an SSE
/// stream of everything up to the response. Dropping the answer (the client went away) closes
/// the request's channel, which withdraws it.
async fn respond(
    gate: Arc<Gate>,
    session: Arc<Session>,
    peer: String,
    request: Incoming,
) -> Response {
    let modern = session.modern();
    let (tx, mut rx) = mpsc::channel::<Value>(64);
    if !modern {
        session.add_post_stream(&tx);
    }
    // The handler holds the only strong sender: the stream ends when the request does.
    tokio::spawn(session::handle(gate, session, peer, request, tx));
    let Some(first) = rx.recv().await else {
        return StatusCode::ACCEPTED.into_response();
    };
    if first.get("method").is_none() {
        let status = if modern {
            modern_status(&first)
        } else {
            StatusCode::OK
        };
        return json_response(status, &first);
    }
    sse(first, rx)
}

fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// An SSE stream of `first` and what follows on `rx`, ending after the response.
fn sse(first: Value, rx: mpsc::Receiver<Value>) -> Response {
    let stream = futures_util::stream::unfold(
        (Some(first), rx, false),
        |(pending, mut rx, done)| async move {
            if done {
                return None;
            }
            let message = match pending {
                Some(m) => m,
                None => rx.recv().await?,
            };
            let last = message.get("method").is_none() && message.get("id").is_some();
            Some((
                Ok::<Bytes, std::convert::Infallible>(sse_event(&message)),
                (None, rx, last),
            ))
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The GET stream of a session of the 2025 revisions: what the server sends on its own.
async fn get_mcp(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    let principal = match authenticated(&gate, &headers) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let session = match session_of(&gate, &headers, &principal) {
        Ok(Some(s)) => s,
        Ok(None) => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Err(resp) => return *resp,
    };
    let Some(rx) = session.open_get_stream() else {
        return refusal(
            StatusCode::CONFLICT,
            &Refusal::new(
                jsonrpc::INVALID_REQUEST,
                "this session already has a GET stream",
                Value::Null,
            ),
        );
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        Some((
            Ok::<Bytes, std::convert::Infallible>(sse_event(&message)),
            rx,
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// Ends a session of the 2025 revisions, and its upstream connection.
async fn delete_mcp(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    let principal = match authenticated(&gate, &headers) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    match session_of(&gate, &headers, &principal) {
        Ok(Some(s)) => {
            gate.sessions.remove(&s.id, "the client ended the session");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Err(resp) => *resp,
    }
}
