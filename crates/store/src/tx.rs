//! Write transactions: every change to the store happens inside one, with its audit records.

use crate::codec::{self, to_json};
use crate::{Backend, Result, now_millis};
use countersign_audit::AuditRecord;
use countersign_audit::merkle::{Hash, NodeId};
use countersign_core::{
    ApprovalRequest, ChannelMessage, DeliveryAttempt, Grant, GrantStatus, KnownTool, PayloadDigest,
    PrincipalRef, RequestStatus, Timestamp, Vote,
};
use sqlx::{Any, Transaction};
use std::collections::BTreeSet;

/// One audit row for [`StoreTx::append_audits`]: `(record, kind, time, request_id, grant_id)`.
pub type AuditRow<'a> = (
    &'a AuditRecord,
    &'a str,
    Timestamp,
    Option<&'a str>,
    Option<&'a str>,
);

/// Up to this many rows go in one `INSERT` of exactly that many rows; larger sets are cut into
/// chunks of `SMALL_INSERT_ROWS << k` rows first. So a typical batch costs one statement, any
/// batch a handful, and each table has at most 67 distinct statements (prepared once each).
const SMALL_INSERT_ROWS: usize = 64;

/// Most rows in one `INSERT`: at 7 bound parameters a row, far below SQLite's limit of 32766
/// and PostgreSQL's of 65535 parameters per statement.
const MAX_INSERT_ROWS: usize = 512;

/// How many of `remaining` rows the next `INSERT` takes.
fn insert_chunk(remaining: usize) -> usize {
    if remaining <= SMALL_INSERT_ROWS {
        remaining
    } else {
        // The largest `SMALL_INSERT_ROWS << k` not above `remaining`, capped.
        let top = 1usize << (usize::BITS - 1 - remaining.leading_zeros());
        top.clamp(SMALL_INSERT_ROWS, MAX_INSERT_ROWS)
    }
}

const LARGE_SIZES: usize = (MAX_INSERT_ROWS / SMALL_INSERT_ROWS).trailing_zeros() as usize;

/// A multi-row `INSERT` into one table, its SQL built once per row count and backend.
///
/// PostgreSQL numbers its parameters (`$1`); SQLite gets anonymous ones (`?`), which bind by
/// position: with numbered ones, binding looks each name up in a list, which costs a multi-row
/// insert time quadratic in its parameters.
struct MultiInsert {
    /// `INSERT INTO table (col, …) VALUES `
    head: &'static str,
    columns: usize,
    small: [[std::sync::OnceLock<String>; SMALL_INSERT_ROWS]; 2],
    large: [[std::sync::OnceLock<String>; LARGE_SIZES]; 2],
}

impl MultiInsert {
    const fn new(head: &'static str, columns: usize) -> MultiInsert {
        MultiInsert {
            head,
            columns,
            small: [const { [const { std::sync::OnceLock::new() }; SMALL_INSERT_ROWS] }; 2],
            large: [const { [const { std::sync::OnceLock::new() }; LARGE_SIZES] }; 2],
        }
    }

    /// The statement for `rows` rows, `rows` a size [`insert_chunk`] returns.
    fn sql(&'static self, backend: Backend, rows: usize) -> &'static str {
        let b = match backend {
            Backend::Sqlite => 0,
            Backend::Postgres => 1,
        };
        let slot = if rows <= SMALL_INSERT_ROWS {
            &self.small[b][rows - 1]
        } else {
            debug_assert!(rows.is_power_of_two() && rows <= MAX_INSERT_ROWS);
            &self.large[b][(rows / SMALL_INSERT_ROWS).trailing_zeros() as usize - 1]
        };
        slot.get_or_init(|| {
            use std::fmt::Write;
            let mut sql = String::with_capacity(self.head.len() + rows * self.columns * 6);
            sql.push_str(self.head);
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for col in 1..=self.columns {
                    if col > 1 {
                        sql.push_str(", ");
                    }
                    match backend {
                        Backend::Sqlite => sql.push('?'),
                        Backend::Postgres => {
                            let _ = write!(sql, "${}", row * self.columns + col);
                        }
                    }
                }
                sql.push(')');
            }
            sql
        })
    }
}

static AUDIT_INSERT: MultiInsert = MultiInsert::new(
    "INSERT INTO audit_events (seq, time, kind, request_id, grant_id, event, leaf_hash) VALUES ",
    7,
);

static NODE_INSERT: MultiInsert =
    MultiInsert::new("INSERT INTO audit_nodes (node_key, hash) VALUES ", 2);

/// `rows` cut into the chunk sizes of [`insert_chunk`].
fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(insert_chunk(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// An open write transaction. Dropping it without [`StoreTx::commit`] rolls everything back.
#[derive(Debug)]
pub struct StoreTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl StoreTx {
    pub(crate) fn new(tx: Transaction<'static, Any>, backend: Backend) -> StoreTx {
        StoreTx { tx, backend }
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Marks a point that [`StoreTx::rollback_to_savepoint`] returns to, so one step of a
    /// batch can fail without undoing the others.
    pub async fn savepoint(&mut self) -> Result<()> {
        sqlx::raw_sql("SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn release_savepoint(&mut self) -> Result<()> {
        sqlx::raw_sql("RELEASE SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn rollback_to_savepoint(&mut self) -> Result<()> {
        sqlx::raw_sql("ROLLBACK TO SAVEPOINT step; RELEASE SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// What is pinned for tool `tool` of MCP gate `gate`.
    pub async fn mcp_tool(&mut self, gate: &str, tool: &str) -> Result<Option<KnownTool>> {
        let row = sqlx::query("SELECT body FROM mcp_tools WHERE gate = $1 AND tool = $2")
            .bind(gate)
            .bind(tool)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(codec::known_tool_from_row).transpose()
    }

    /// Stores `tool`, new or replacing what was pinned for its gate and name.
    pub async fn put_mcp_tool(&mut self, tool: &KnownTool) -> Result<()> {
        let body = to_json("MCP tool", tool)?;
        let changed = tool.changed.as_ref().map(|c| c.fingerprint.to_hex());
        sqlx::query(
            "INSERT INTO mcp_tools (gate, tool, fingerprint, changed_fingerprint, updated_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (gate, tool) DO UPDATE SET fingerprint = excluded.fingerprint, \
             changed_fingerprint = excluded.changed_fingerprint, \
             updated_at = excluded.updated_at, body = excluded.body",
        )
        .bind(&tool.gate)
        .bind(&tool.tool)
        .bind(tool.accepted.fingerprint.to_hex())
        .bind(changed)
        .bind(tool.updated_at.millis())
        .bind(body)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Reads a request (with its votes) inside this transaction.
    pub async fn request(&mut self, id: &str) -> Result<Option<ApprovalRequest>> {
        codec::load_request(&mut self.tx, id).await
    }

    /// The pending request of `principal` for exactly this payload, seeing this transaction's
    /// own uncommitted writes.
    pub async fn pending_request_for(
        &mut self,
        principal: &PrincipalRef,
        on_behalf_of: Option<&str>,
        digest: &PayloadDigest,
        now: Timestamp,
    ) -> Result<Option<ApprovalRequest>> {
        match codec::pending_request_id(&mut self.tx, principal, on_behalf_of, digest, now).await? {
            Some(id) => codec::load_request(&mut self.tx, &id).await,
            None => Ok(None),
        }
    }

    pub async fn grant(&mut self, id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(codec::GRANT_SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(codec::grant_from_row).transpose()
    }

    /// Stores a new request (its votes, if any, go through [`StoreTx::insert_vote`]).
    pub async fn insert_request(&mut self, request: &ApprovalRequest) -> Result<()> {
        let mut body = request.clone();
        body.votes.clear();
        sqlx::query(
            "INSERT INTO requests (id, principal_kind, principal_id, on_behalf_of, action, digest, \
             status, created_at, expires_at, settled_at, cancelled_by, body, escalate_at, remind_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11, $12)",
        )
        .bind(&request.id)
        .bind(request.attempt.principal.kind.as_str())
        .bind(&request.attempt.principal.id)
        .bind(request.attempt.on_behalf_of.as_deref())
        .bind(request.attempt.action.as_str())
        .bind(request.digest.to_hex())
        .bind(request.status.as_str())
        .bind(request.created_at.millis())
        .bind(request.expires_at.millis())
        .bind(to_json("request", &body)?)
        .bind(request.next_escalation_at().map(Timestamp::millis))
        .bind(request.reminder_at().map(Timestamp::millis))
        .execute(&mut *self.tx)
        .await?;
        self.add_request_groups(&request.id, &request.eligible_groups())
            .await
    }

    /// Lets `groups` list the request as one they review (idempotent).
    async fn add_request_groups(&mut self, id: &str, groups: &BTreeSet<String>) -> Result<()> {
        for group in groups {
            sqlx::query(
                "INSERT INTO request_groups (request_id, group_name) VALUES ($1, $2) \
                 ON CONFLICT (request_id, group_name) DO NOTHING",
            )
            .bind(id)
            .bind(group)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Records that `request`'s escalations up to `escalations_fired` fell due: the groups
    /// asked may now list it, and the next escalation deadline (if any) is set.
    pub async fn record_escalation(&mut self, request: &ApprovalRequest) -> Result<()> {
        sqlx::query("UPDATE requests SET escalations_fired = $1, escalate_at = $2 WHERE id = $3")
            .bind(i64::from(request.escalations_fired))
            .bind(request.next_escalation_at().map(Timestamp::millis))
            .bind(&request.id)
            .execute(&mut *self.tx)
            .await?;
        self.add_request_groups(&request.id, &request.eligible_groups())
            .await
    }

    /// Records that the reminder of request `id` went out.
    pub async fn clear_reminder(&mut self, id: &str) -> Result<()> {
        sqlx::query("UPDATE requests SET remind_at = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Ids of pending requests whose next escalation is due at `now`.
    pub async fn due_escalations(&mut self, now: Timestamp) -> Result<Vec<String>> {
        self.ids(
            "SELECT id FROM requests WHERE status = 'pending' AND escalate_at <= $1 ORDER BY escalate_at, id",
            now,
        )
        .await
    }

    /// Ids of pending requests whose reminder is due at `now`.
    pub async fn due_reminders(&mut self, now: Timestamp) -> Result<Vec<String>> {
        self.ids(
            "SELECT id FROM requests WHERE status = 'pending' AND remind_at <= $1 ORDER BY remind_at, id",
            now,
        )
        .await
    }

    /// Keeps a reference to a message a channel posted about a request (idempotent).
    pub async fn insert_channel_message(&mut self, m: &ChannelMessage) -> Result<()> {
        sqlx::query(
            "INSERT INTO channel_messages (request_id, channel, conversation, message_ts, purpose, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (request_id, channel, conversation, message_ts) DO NOTHING",
        )
        .bind(&m.request_id)
        .bind(&m.channel)
        .bind(&m.conversation)
        .bind(&m.message_ts)
        .bind(&m.purpose)
        .bind(m.created_at.millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records one webhook delivery attempt.
    pub async fn insert_delivery_attempt(&mut self, id: &str, d: &DeliveryAttempt) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, message_id, url, event_kind, request_id, attempt, \
             attempted_at, status_code, error, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(&d.message_id)
        .bind(&d.url)
        .bind(&d.event_kind)
        .bind(d.request_id.as_deref())
        .bind(i64::from(d.attempt))
        .bind(d.attempted_at.millis())
        .bind(d.status_code.map(i64::from))
        .bind(d.error.as_deref())
        .bind(&d.outcome)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn insert_vote(&mut self, request_id: &str, vote: &Vote) -> Result<()> {
        sqlx::query(
            "INSERT INTO votes (id, request_id, voter_kind, voter_id, decision, cast_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&vote.id)
        .bind(request_id)
        .bind(vote.voter.kind.as_str())
        .bind(&vote.voter.id)
        .bind(vote.decision.as_str())
        .bind(vote.cast_at.millis())
        .bind(to_json("vote", vote)?)
        .execute(&mut *self.tx)
        .await?;
        if vote.break_glass {
            sqlx::query("UPDATE requests SET break_glass = 1 WHERE id = $1")
                .bind(request_id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Moves a pending request to `status`. Returns false, changing nothing, if it was no
    /// longer pending.
    pub async fn settle_request(
        &mut self,
        id: &str,
        status: RequestStatus,
        at: Timestamp,
        cancelled_by: Option<&PrincipalRef>,
    ) -> Result<bool> {
        let cancelled_by = cancelled_by
            .map(|p| to_json("request canceller", p))
            .transpose()?;
        let done = sqlx::query(
            "UPDATE requests SET status = $1, settled_at = $2, cancelled_by = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(at.millis())
        .bind(cancelled_by)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_grant(&mut self, grant: &Grant) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (id, request_id, principal_kind, principal_id, status, issued_at, \
             expires_at, ended_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
        )
        .bind(&grant.id)
        .bind(&grant.request_id)
        .bind(grant.principal.kind.as_str())
        .bind(&grant.principal.id)
        .bind(grant.status.as_str())
        .bind(grant.issued_at.millis())
        .bind(grant.expires_at.millis())
        .bind(to_json("grant", grant)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Ends an active grant (used, expired or revoked). Returns false, changing nothing, if it
    /// was no longer active: this conditional update is what makes a single-use grant serve
    /// exactly one execution.
    pub async fn end_grant(
        &mut self,
        id: &str,
        status: GrantStatus,
        at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE grants SET status = $1, ended_at = $2 WHERE id = $3 AND status = 'active'",
        )
        .bind(status.as_str())
        .bind(at.millis())
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ids of pending requests whose deadline is at or before `now`.
    pub async fn due_requests(&mut self, now: Timestamp) -> Result<Vec<String>> {
        self.ids(
            "SELECT id FROM requests WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at, id",
            now,
        )
        .await
    }

    /// Ids of active grants whose expiry is at or before `now`.
    pub async fn due_grants(&mut self, now: Timestamp) -> Result<Vec<String>> {
        self.ids(
            "SELECT id FROM grants WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at, id",
            now,
        )
        .await
    }

    async fn ids(&mut self, sql: &'static str, now: Timestamp) -> Result<Vec<String>> {
        use sqlx::Row;
        let rows = sqlx::query(sql)
            .bind(now.millis())
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?)
    }

    pub async fn append_audit(
        &mut self,
        record: &AuditRecord,
        kind: &str,
        time: Timestamp,
        request_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<()> {
        self.append_audits(&[(record, kind, time, request_id, grant_id)])
            .await
    }

    /// Appends several audit records, in the order given, each row being
    /// `(record, kind, time, request_id, grant_id)` as for [`StoreTx::append_audit`].
    ///
    /// A batch of rows costs one statement up to 64 rows and a few beyond (see
    /// [`insert_chunk`]), rather than one round trip to the database per event.
    pub async fn append_audits(&mut self, rows: &[AuditRow<'_>]) -> Result<()> {
        for chunk in chunks(rows) {
            let mut query = sqlx::query(AUDIT_INSERT.sql(self.backend, chunk.len()));
            for &(record, kind, time, request_id, grant_id) in chunk {
                query = query
                    .bind(codec::seq_to_db(record.seq)?)
                    .bind(time.millis())
                    .bind(kind)
                    .bind(request_id)
                    .bind(grant_id)
                    .bind(record.event_json.as_str())
                    .bind(hex::encode(record.leaf_hash));
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Stores complete Merkle subtree hashes above the leaves (level ≥ 1), so that proofs are
    /// read, not recomputed. Leaf hashes live with their events.
    pub async fn insert_nodes(&mut self, nodes: &[(NodeId, Hash)]) -> Result<()> {
        for chunk in chunks(nodes) {
            let mut query = sqlx::query(NODE_INSERT.sql(self.backend, chunk.len()));
            for (id, hash) in chunk {
                query = query.bind(codec::node_key(*id)?).bind(hex::encode(hash));
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Stores a signed checkpoint of the tree at `size`.
    pub async fn insert_checkpoint(
        &mut self,
        size: u64,
        created_at: Timestamp,
        note: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO audit_checkpoints (size, created_at, note) VALUES ($1, $2, $3)")
            .bind(codec::seq_to_db(size)?)
            .bind(created_at.millis())
            .bind(note)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves the journal mark: the events committed with it are those of the journal up to
    /// `mark`.
    pub async fn set_journal_mark(&mut self, mark: crate::JournalMark) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_journal (id, segment, line) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, line = excluded.line",
        )
        .bind(codec::seq_to_db(mark.segment)?)
        .bind(codec::seq_to_db(mark.line)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a loaded policy set; loading the same version again keeps the first record.
    pub async fn record_policy_version(
        &mut self,
        version: &str,
        files: &[String],
        policy_count: usize,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO policy_versions (version, loaded_at, files, policy_count) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(now_millis())
        .bind(to_json("policy file list", &files)?)
        .bind(i64::try_from(policy_count).unwrap_or(i64::MAX))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_cover_every_row_with_few_statements() {
        for n in 1..=3000 {
            let rows: Vec<usize> = (0..n).collect();
            let mut covered = Vec::new();
            let mut statements = 0;
            for chunk in chunks(&rows) {
                let take = chunk.len();
                assert!((1..=MAX_INSERT_ROWS).contains(&take), "{n}");
                let sql = AUDIT_INSERT.sql(Backend::Postgres, take);
                assert_eq!(sql.matches('(').count(), take + 1, "{n}");
                assert!(sql.contains(&format!("${})", take * 7)), "{n}");
                assert!(!sql.contains(&format!("${}", take * 7 + 1)), "{n}");
                let sql = AUDIT_INSERT.sql(Backend::Sqlite, take);
                assert_eq!(sql.matches('?').count(), take * 7, "{n}");
                covered.extend_from_slice(chunk);
                statements += 1;
            }
            assert_eq!(covered, rows, "{n}");
            if n <= SMALL_INSERT_ROWS {
                assert_eq!(statements, 1, "{n}");
            }
            assert!(statements <= n / MAX_INSERT_ROWS + 4, "{n}: {statements}");
        }
        assert!(NODE_INSERT.sql(Backend::Postgres, 3).ends_with("($5, $6)"));
        assert!(NODE_INSERT.sql(Backend::Sqlite, 3).ends_with("(?, ?)"));
    }
}
