//! The OpenAPI 3.1 description of the API, served at `/v1/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "409": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"}
    })
}

fn ok(schema: &str, description: &str) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    });
    responses
}

fn limit_param(max: u32) -> Value {
    json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": max}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The document: the core API, plus the MCP tool routes (added apart, as one `json!` of
/// everything would exceed the macro's recursion limit).
pub fn spec() -> Value {
    let mut doc = base_spec();
    let mcp_paths = json!({
            "/v1/mcp/tools": {"get": {
                "summary": "MCP tool definitions the gates pinned, with changed ones awaiting acceptance (administrators, auditors)",
                "parameters": [{"name": "gate", "in": "query", "required": false, "schema": {"type": "string"}}],
                "responses": ok("McpToolList", "Pinned tools")
            }},
            "/v1/mcp/tools/accept": {"post": {
                "summary": "Accept a changed MCP tool definition (administrators): it becomes the pinned one and its calls are no longer refused; bound to the changed definition reviewed, named by its fingerprint (`changed_fingerprint` of the list); 404 for an unknown tool, 409 `tool_unchanged` when there is no change to accept, 409 `tool_changed_again` when the changed definition is no longer the one named",
                "requestBody": body("McpToolAccept"),
                "responses": ok("McpTool", "The tool as now pinned")
            }}
    });
    let mcp_schemas = json!({
                "McpToolAccept": {"type": "object", "required": ["gate", "tool", "fingerprint"], "additionalProperties": false, "properties": {
                    "gate": {"type": "string", "description": "The MCP gate's name"},
                    "tool": {"type": "string", "description": "The tool's name"},
                    "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The changed definition's fingerprint, as reviewed (`changed_fingerprint` in the list)"}
                }},
                "McpTool": {"type": "object", "properties": {
                    "gate": {"type": "string"}, "tool": {"type": "string"},
                    "status": {"type": "string", "enum": ["pinned", "changed"]},
                    "fingerprint": {"type": "string", "description": "SHA-256 of the pinned definition's canonical JSON"},
                    "definition": {"type": "object"},
                    "changed_fingerprint": {"type": ["string", "null"]},
                    "changed_definition": {"type": ["object", "null"]},
                    "first_seen": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"}
                }},
                "McpToolList": {"type": "object", "properties": {"tools": {"type": "array", "items": {"$ref": "#/components/schemas/McpTool"}}}}
    });
    for (section, extra) in [("/paths", mcp_paths), ("/components/schemas", mcp_schemas)] {
        if let (Some(target), Value::Object(extra)) = (
            doc.pointer_mut(section).and_then(Value::as_object_mut),
            extra,
        ) {
            target.extend(extra);
        }
    }
    doc
}

fn base_spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "countersign",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Human approval in front of the privileged actions of agents and pipelines. \
                Every route under /v1 takes `Authorization: Bearer <token>`. Errors are \
                `{\"error\": {\"code\", \"message\"}}`."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/attempts": {"post": {
                "summary": "Ask whether an action may run",
                "description": "Any authenticated principal. Once a request is approved, sending the same attempt again (same payload digest) gets `allow`, consuming a single-use grant.",
                "requestBody": body("AttemptRequest"),
                "responses": ok("AttemptResponse", "The verdict")
            }},
            "/v1/executions": {"post": {
                "summary": "Report how an action allowed by a grant went (the grant's principal only)",
                "requestBody": body("ExecutionRequest"),
                "responses": ok("Recorded", "Logged")
            }},
            "/v1/audit/proof/{seq}": {"get": {
                "summary": "Inclusion proof of record `seq` against the newest signed checkpoint (auditors)",
                "parameters": [{"name": "seq", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}],
                "responses": ok("InclusionProof", "Proof")
            }},
            "/v1/audit/consistency": {"get": {
                "summary": "Consistency proof between two tree sizes (auditors); `to` defaults to the newest checkpoint",
                "parameters": [
                    {"name": "from", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}},
                    {"name": "to", "in": "query", "schema": {"type": "integer", "minimum": 1}}
                ],
                "responses": ok("ConsistencyProof", "Proof")
            }},
            "/v1/audit/public-key": {"get": {
                "summary": "The verifier key of the newest checkpoints",
                "responses": ok("PublicKey", "Key")
            }},
            "/v1/audit/rotate-key": {"post": {
                "summary": "Rotate the audit signing key (administrators); the old key signs the announcement",
                "responses": ok("PublicKey", "The new key")
            }},
            "/v1/requests": {"get": {
                "summary": "List approval requests the caller may see",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "approved", "denied", "expired", "cancelled", "all"]}},
                    {"name": "break_glass", "in": "query", "description": "`true`: only requests the requester approved under break-glass, for review after the fact; `false`: only the others", "schema": {"type": "boolean"}},
                    limit_param(1000)
                ],
                "responses": ok("RequestList", "Requests, newest first")
            }},
            "/v1/requests/{id}": {"get": {
                "summary": "Read a request; with `wait`, answer the moment it settles",
                "parameters": [id_param(), {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 120}}],
                "responses": ok("Request", "The request")
            }},
            "/v1/requests/{id}/votes": {"post": {
                "summary": "Approve or deny a request (eligible reviewers; never the requester, except a person's break-glass approval where every matching policy allows it)",
                "parameters": [id_param()],
                "requestBody": body("VoteRequest"),
                "responses": ok("Request", "The request after the vote")
            }},
            "/v1/channels/slack/interactions": {"post": {
                "summary": "Slack's interaction callback (Request URL): Approve / Deny clicks and the deny-reason modal",
                "description": "Authenticated by Slack's signature (`X-Slack-Signature`, `X-Slack-Request-Timestamp` within 5 minutes), not a bearer token. Answers at once; the vote is cast afterwards through the same rules as the API, and a refused click is explained to the clicking user only.",
                "security": [],
                "parameters": [
                    {"name": "X-Slack-Request-Timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-Slack-Signature", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^v0=[0-9a-f]{64}$"}}
                ],
                "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["payload"],
                    "properties": {"payload": {"type": "string", "description": "JSON of a `block_actions` or `view_submission` interaction"}}
                }}}},
                "responses": {
                    "200": {"description": "Accepted (or a repeated delivery of an accepted interaction); empty body"},
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                    "403": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"}
                }
            }},
            "/v1/requests/{id}/cancel": {"post": {
                "summary": "Cancel a pending request (its requester, or an administrator)",
                "parameters": [id_param()],
                "responses": ok("Request", "The cancelled request")
            }},
            "/v1/grants": {"get": {
                "summary": "List grants (administrators and auditors: all; others: their own)",
                "parameters": [
                    {"name": "active", "in": "query", "schema": {"type": "boolean"}},
                    limit_param(1000)
                ],
                "responses": ok("GrantList", "Grants, newest first")
            }},
            "/v1/grants/{id}/revoke": {"post": {
                "summary": "Revoke a grant (administrators, or the grant's own principal)",
                "parameters": [id_param()],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": false}}}},
                "responses": ok("Grant", "The revoked grant")
            }},
            "/v1/audit": {"get": {
                "summary": "Read the audit log (auditors)",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    limit_param(10000)
                ],
                "responses": ok("AuditPage", "Records in sequence order")
            }},
            "/v1/audit/checkpoint": {"get": {
                "summary": "The newest signed checkpoint (C2SP signed note) and its verifier key (auditors)",
                "responses": ok("Checkpoint", "Checkpoint")
            }},
            "/v1/policies": {"get": {
                "summary": "The policy set in force",
                "responses": ok("PolicySet", "Version, files and policy ids")
            }},
            "/v1/policies/reload": {"post": {
                "summary": "Reload policies (administrators); a broken set is refused with 422 and the old one stays",
                "responses": ok("PolicySet", "The new policy set")
            }},
            "/v1/whoami": {"get": {"summary": "The authenticated principal", "responses": ok("Whoami", "Caller")}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"summary": "Readiness (store reachable)", "security": [], "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "An error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "examples": ["unauthenticated", "forbidden", "not_found", "invalid_request", "malformed_json", "payload_too_large", "unsupported_media_type", "invalid_action", "unknown_action", "unknown_resource_type", "self_approval", "not_eligible", "already_settled", "duplicate_vote", "expired", "not_requester", "grant_not_active", "invalid_policy", "tool_unchanged", "unavailable", "reason_required", "break_glass_refused", "bad_signature", "invalid_payload", "wrong_workspace"]},
                        "message": {"type": "string"}
                    }
                }}},
                "ResourceRef": {"type": "object", "required": ["type", "id"], "properties": {"type": {"type": "string"}, "id": {"type": "string"}}},
                "Resource": {"type": "object", "required": ["type", "id"], "properties": {
                    "type": {"type": "string", "examples": ["Database", "Table", "Host", "Service"]},
                    "id": {"type": "string"},
                    "parent": {"$ref": "#/components/schemas/ResourceRef"},
                    "classification": {"type": "string", "enum": ["public", "internal", "confidential", "restricted"]},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }},
                "AttemptRequest": {"type": "object", "required": ["action", "payload"], "additionalProperties": false, "properties": {
                    "action": {"type": "string", "examples": ["db.export", "exec", "deploy"]},
                    "resource": {"$ref": "#/components/schemas/Resource"},
                    "resources": {"type": "array", "items": {"$ref": "#/components/schemas/Resource"}, "maxItems": 64},
                    "payload": {"description": "The exact payload: SQL text, tool and arguments, a command line; any JSON"},
                    "justification": {"type": "string", "maxLength": 4096},
                    "on_behalf_of": {"type": "string", "description": "The user an agent acts for; that user cannot approve"},
                    "context": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "AttemptResponse": {"type": "object", "required": ["outcome", "reason"], "properties": {
                    "outcome": {"type": "string", "enum": ["allow", "deny", "pending"]},
                    "reason": {"type": "string"},
                    "policy_ids": {"type": "array", "items": {"type": "string"}},
                    "request_id": {"type": "string"},
                    "grant_id": {"type": ["string", "null"]},
                    "review_url": {"type": "string"},
                    "expires_at": {"type": "string", "format": "date-time"}
                }},
                "Vote": {"type": "object", "properties": {
                    "id": {"type": "string"}, "voter": {"type": "object"},
                    "decision": {"type": "string", "enum": ["approve", "deny"]},
                    "reason": {"type": ["string", "null"]}, "channel": {"type": "string"},
                    "cast_at": {"type": "string", "format": "date-time"},
                    "break_glass": {"type": "boolean"}
                }},
                "Request": {"type": "object", "required": ["id", "status"], "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "approved", "denied", "expired", "cancelled"]},
                    "principal": {"type": "object", "properties": {"kind": {"type": "string", "enum": ["agent", "user"]}, "id": {"type": "string"}}},
                    "on_behalf_of": {"type": ["string", "null"]},
                    "action": {"type": "string"},
                    "resources": {"type": "array", "items": {"$ref": "#/components/schemas/Resource"}},
                    "payload": {},
                    "payload_digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "justification": {"type": ["string", "null"]},
                    "requirements": {"type": "object"},
                    "policy_version": {"type": "string"},
                    "policy_ids": {"type": "array", "items": {"type": "string"}},
                    "votes": {"type": "array", "items": {"$ref": "#/components/schemas/Vote"}},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "settled_at": {"type": ["string", "null"], "format": "date-time"},
                    "grant_id": {"type": ["string", "null"]},
                    "review_url": {"type": "string"},
                    "break_glass": {"type": "boolean", "description": "settled by the requester's break-glass approval"}
                }},
                "RequestList": {"type": "object", "properties": {"requests": {"type": "array", "items": {"$ref": "#/components/schemas/Request"}}}},
                "VoteRequest": {"type": "object", "required": ["decision"], "additionalProperties": false, "properties": {
                    "decision": {"type": "string", "enum": ["approve", "deny"]},
                    "reason": {"type": "string", "maxLength": 4096},
                    "break_glass": {"type": "boolean", "default": false, "description": "The requester approves their own request under a policy with `@break_glass(\"true\")`: only a person, only `approve`, only with a reason of at least 20 characters, only when every matching policy allows it. Flagged in the audit log and told to every eligible reviewer."}
                }},
                "Grant": {"type": "object", "properties": {
                    "id": {"type": "string"}, "request_id": {"type": "string"},
                    "principal": {"type": "object"}, "action": {"type": "string"},
                    "resources": {"type": "array", "items": {"$ref": "#/components/schemas/ResourceRef"}},
                    "payload_digest": {"type": "string"},
                    "shape": {"type": "string", "description": "`once`, or a window such as `900s`"},
                    "status": {"type": "string", "enum": ["active", "used", "expired", "revoked"]},
                    "issued_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"}
                }},
                "GrantList": {"type": "object", "properties": {"grants": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}}}},
                "AuditPage": {"type": "object", "properties": {
                    "events": {"type": "array", "items": {"type": "object", "properties": {
                        "seq": {"type": "integer"}, "event": {"type": "object"},
                        "leaf_hash": {"type": "string"}
                    }}},
                    "next": {"type": ["integer", "null"]}
                }},
                "Checkpoint": {"type": "object", "properties": {
                    "origin": {"type": "string"}, "size": {"type": "integer"},
                    "note": {"type": "string", "description": "origin, size and base64 root, a blank line, then signature lines"},
                    "verifier_key": {"type": "string"}
                }},
                "InclusionProof": {"type": "object", "properties": {
                    "seq": {"type": "integer"}, "tree_size": {"type": "integer"},
                    "leaf_hash": {"type": "string", "description": "base64"},
                    "path": {"type": "array", "items": {"type": "string"}},
                    "event": {"type": "string", "description": "the canonical event, the leaf's exact bytes"},
                    "checkpoint": {"type": "string"}
                }},
                "ConsistencyProof": {"type": "object", "properties": {
                    "from": {"type": "integer"}, "to": {"type": "integer"},
                    "proof": {"type": "array", "items": {"type": "string"}}
                }},
                "PublicKey": {"type": "object", "properties": {"origin": {"type": "string"}, "verifier_key": {"type": "string"}}},
                "ExecutionRequest": {"type": "object", "required": ["grant_id", "outcome"], "additionalProperties": false, "properties": {
                    "grant_id": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["succeeded", "failed"]},
                    "detail": {"type": "string", "maxLength": 4096}
                }},
                "Recorded": {"type": "object", "properties": {"recorded": {"type": "boolean"}}},
                "PolicySet": {"type": "object", "properties": {
                    "version": {"type": "string"}, "files": {"type": "array", "items": {"type": "string"}},
                    "policy_count": {"type": "integer"}, "policy_ids": {"type": "array", "items": {"type": "string"}},
                    "actions": {"type": "array", "items": {"type": "string"}},
                    "resource_types": {"type": "array", "items": {"type": "string"}}
                }},
                "Whoami": {"type": "object", "properties": {
                    "kind": {"type": "string"}, "id": {"type": "string"},
                    "groups": {"type": "array", "items": {"type": "string"}},
                    "admin": {"type": "boolean"}, "auditor": {"type": "boolean"}
                }}
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
