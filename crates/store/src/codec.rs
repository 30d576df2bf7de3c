//! Conversions between rows and domain types.

use crate::{PolicyVersionRecord, Result, StoreError};
use countersign_audit::AuditRecord;
use countersign_audit::merkle::NodeId;
use countersign_core::{
    ApprovalRequest, ChannelMessage, DeliveryAttempt, Grant, GrantStatus, KnownTool, PayloadDigest,
    PrincipalRef, RequestStatus, Timestamp, Vote,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

pub(crate) const GRANT_SELECT: &str = "SELECT id, status, ended_at, body FROM grants";
pub(crate) const GRANT_SELECT_BY_ID: &str =
    "SELECT id, status, ended_at, body FROM grants WHERE id = $1";

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(crate) async fn load_request(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ApprovalRequest>> {
    let Some(row) =
        sqlx::query("SELECT status, settled_at, cancelled_by, escalations_fired, body FROM requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let mut request: ApprovalRequest = from_json("request", &row.try_get::<String, _>("body")?)?;
    let status: String = row.try_get("status")?;
    request.status =
        RequestStatus::parse(&status).ok_or_else(|| corrupt("request status", &status))?;
    request.settled_at = row.try_get::<Option<i64>, _>("settled_at")?.map(Timestamp);
    request.cancelled_by = match row.try_get::<Option<String>, _>("cancelled_by")? {
        Some(text) => Some(from_json::<PrincipalRef>("request canceller", &text)?),
        None => None,
    };
    let fired: i64 = row.try_get("escalations_fired")?;
    request.escalations_fired =
        u32::try_from(fired).map_err(|_| corrupt("request escalation count", fired))?;
    let votes = sqlx::query("SELECT body FROM votes WHERE request_id = $1 ORDER BY cast_at, id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    request.votes = votes
        .iter()
        .map(|r| from_json::<Vote>("vote", &r.try_get::<String, _>("body")?))
        .collect::<Result<_>>()?;
    Ok(Some(request))
}

/// The id of the newest pending request of `principal` for exactly this payload that has not
/// passed its deadline (one past it is only waiting for the expiry sweep).
pub(crate) async fn pending_request_id(
    conn: &mut AnyConnection,
    principal: &PrincipalRef,
    on_behalf_of: Option<&str>,
    digest: &PayloadDigest,
    now: Timestamp,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT id FROM requests WHERE principal_kind = $1 AND principal_id = $2 \
         AND digest = $3 AND status = 'pending' AND COALESCE(on_behalf_of, '') = $4 \
         AND expires_at > $5 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(principal.kind.as_str())
    .bind(&principal.id)
    .bind(digest.to_hex())
    .bind(on_behalf_of.unwrap_or(""))
    .bind(now.millis())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("id")?),
        None => None,
    })
}

pub(crate) fn known_tool_from_row(row: &AnyRow) -> Result<KnownTool> {
    let body: String = row.try_get("body")?;
    from_json("MCP tool", &body)
}

pub(crate) fn grant_from_row(row: &AnyRow) -> Result<Grant> {
    let mut grant: Grant = from_json("grant", &row.try_get::<String, _>("body")?)?;
    let status: String = row.try_get("status")?;
    grant.status = GrantStatus::parse(&status).ok_or_else(|| corrupt("grant status", &status))?;
    grant.ended_at = row.try_get::<Option<i64>, _>("ended_at")?.map(Timestamp);
    Ok(grant)
}

pub(crate) fn audit_from_row(row: &AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: seq_from_db(row.try_get("seq")?)?,
        event_json: row.try_get("event")?,
        leaf_hash: hash_from_hex(&row.try_get::<String, _>("leaf_hash")?)?,
    })
}

/// Bits of a node key that hold the index; the level sits above them.
const NODE_INDEX_BITS: u32 = 48;

/// One integer per stored Merkle node, `level << 48 | index`, so a proof's nodes are fetched
/// with a single `IN (…)` on the primary key.
pub(crate) fn node_key(id: NodeId) -> Result<i64> {
    if id.level > 63 || id.index >= 1 << NODE_INDEX_BITS {
        return Err(corrupt("Merkle node id", format!("{id:?}")));
    }
    Ok((i64::from(id.level) << NODE_INDEX_BITS) | i64::try_from(id.index).unwrap_or(0))
}

pub(crate) fn node_from_key(key: i64) -> Result<NodeId> {
    let key = u64::try_from(key).map_err(|_| corrupt("Merkle node key", key))?;
    Ok(NodeId {
        level: u32::try_from(key >> NODE_INDEX_BITS).unwrap_or(u32::MAX),
        index: key & ((1 << NODE_INDEX_BITS) - 1),
    })
}

pub(crate) fn policy_version_from_row(row: &AnyRow) -> Result<PolicyVersionRecord> {
    Ok(PolicyVersionRecord {
        version: row.try_get("version")?,
        loaded_at: Timestamp(row.try_get("loaded_at")?),
        files: from_json("policy file list", &row.try_get::<String, _>("files")?)?,
        policy_count: row.try_get("policy_count")?,
    })
}

pub(crate) fn seq_from_db(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| corrupt("audit sequence number", seq))
}

pub(crate) fn seq_to_db(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| corrupt("audit sequence number", seq))
}

pub(crate) fn hash_from_hex(text: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| corrupt("audit hash", e))?;
    Ok(out)
}

pub(crate) fn channel_message_from_row(row: &AnyRow) -> Result<ChannelMessage> {
    Ok(ChannelMessage {
        request_id: row.try_get("request_id")?,
        channel: row.try_get("channel")?,
        conversation: row.try_get("conversation")?,
        message_ts: row.try_get("message_ts")?,
        purpose: row.try_get("purpose")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(crate) fn delivery_from_row(row: &AnyRow) -> Result<DeliveryAttempt> {
    let attempt: i64 = row.try_get("attempt")?;
    let status: Option<i64> = row.try_get("status_code")?;
    Ok(DeliveryAttempt {
        message_id: row.try_get("message_id")?,
        url: row.try_get("url")?,
        event_kind: row.try_get("event_kind")?,
        request_id: row.try_get("request_id")?,
        attempt: u32::try_from(attempt).map_err(|_| corrupt("delivery attempt", attempt))?,
        attempted_at: Timestamp(row.try_get("attempted_at")?),
        status_code: status
            .map(|s| u16::try_from(s).map_err(|_| corrupt("delivery status", s)))
            .transpose()?,
        error: row.try_get("error")?,
        outcome: row.try_get("outcome")?,
    })
}
