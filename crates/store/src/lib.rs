//! Persistence for countersign: approval requests, votes, grants, audit events and policy
//! versions, on SQLite (the embedded default, in WAL mode) or PostgreSQL, from the same code and
//! the same migrations.
//!
//! Reads go through [`Store`]; every write goes through a [`StoreTx`], so a step and its audit
//! events commit together or not at all. Mutable state (a request's status, a grant's status)
//! lives in plain columns; everything else is kept as the JSON of the domain type it came from.

mod codec;
mod schema;
mod tx;

pub use tx::StoreTx;

use countersign_audit::AuditRecord;
use countersign_audit::merkle::{self, Frontier, Hash, NodeId};
use countersign_core::{
    ApprovalRequest, ChannelMessage, DeliveryAttempt, Grant, KnownTool, PrincipalRef,
    RequestStatus, Timestamp,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A place in the audit journal: segment number and lines into it. Everything before it is in
/// the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalMark {
    pub segment: u64,
    pub line: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database schema is at version {found}, newer than this build understands ({known}); upgrade countersign"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "the database was not created by this version of countersign: {detail}; keep it aside and start with an empty database"
    )]
    UnknownSchema { detail: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            other => StoreError::Database(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which requests to list.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    /// Only requests made by this principal (or on behalf of this user).
    pub requester: Option<PrincipalRef>,
    /// Only requests that one of these groups may review. `None` means no restriction.
    pub reviewable_by: Option<Vec<String>>,
    /// Only requests a break-glass approval settled (`true`), or only the others (`false`).
    pub break_glass: Option<bool>,
    pub limit: u32,
}

/// A policy set that was loaded, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersionRecord {
    pub version: String,
    pub loaded_at: Timestamp,
    pub files: Vec<String>,
    pub policy_count: i64,
}

/// A connection pool to the store's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The one connection writes go through (see [`Store::begin`]).
    writes: AnyPool,
    backend: Backend,
}

/// Pool settings for `backend`: timeouts, and the session settings every connection gets.
fn pool_options(backend: Backend, max_connections: u32, opts: &StoreOptions) -> AnyPoolOptions {
    let lock_ms = u64::try_from(opts.lock_timeout.as_millis()).unwrap_or(u64::MAX);
    let pool_options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(opts.acquire_timeout);
    // A decision must never wait forever on a lock another process holds: past the
    // timeout the write fails, and the engine denies.
    match backend {
        // An embedded database has no connection that could go stale; checking one before
        // each use would cost every batch of the writer a round trip to its thread.
        Backend::Sqlite => {
            pool_options
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers proceed while the writer commits; FULL sync makes a
                        // commit durable before it returns, which the audit guarantee needs.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        let sql = format!("PRAGMA busy_timeout = {lock_ms}");
                        conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                        Ok(())
                    })
                })
        }
        Backend::Postgres => pool_options.after_connect(move |conn, _meta| {
            Box::pin(async move {
                let sql = format!("SET lock_timeout = {lock_ms}");
                conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                // A statement or an open transaction that hangs (a stuck server, a lost
                // network) fails instead of holding the writer.
                conn.execute("SET statement_timeout = 30000").await?;
                conn.execute("SET idle_in_transaction_session_timeout = 60000")
                    .await?;
                Ok(())
            })
        }),
    }
}

static DRIVERS: Once = Once::new();

/// Connection pool and timeout settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long to wait for a free connection (or to connect at all).
    pub acquire_timeout: Duration,
    /// How long a statement waits for a lock held by someone else before failing.
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file
    /// if needed, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// As [`Store::open`], with explicit pool and timeout settings.
    pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Store> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = normalise_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = pool_options(backend, opts.max_connections, opts)
            .connect_with(options.clone())
            .await?;
        // All writes go through one connection of their own: one writer at a time is all
        // either backend allows (SQLite) or the engine does (one writer task), and a connection
        // that only writes keeps the pages it appends to in its cache.
        let writes = pool_options(backend, 1, opts).connect_lazy_with(options);
        let store = Store {
            pool,
            writes,
            backend,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writes.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(schema::BOOKKEEPING)
            .execute(&self.pool)
            .await?;
        // Every applied migration must be the one this build knows, byte for byte.
        let rows = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(|_| StoreError::UnknownSchema {
                detail: "its migration table has no checksums (a pre-release build made it)".into(),
            })?;
        // Versions, not a high-water mark: a build that adds a migration numbered below one
        // already applied (parallel lines of work merged later) still applies it.
        let mut applied = std::collections::BTreeSet::new();
        for row in &rows {
            let version: i64 = row.try_get("version")?;
            let checksum: String = row.try_get("checksum")?;
            match schema::MIGRATIONS.iter().find(|m| m.version == version) {
                Some(m) if m.checksum() == checksum => {
                    applied.insert(version);
                }
                Some(m) => {
                    return Err(StoreError::UnknownSchema {
                        detail: format!(
                            "migration {version} ({}) was applied by a build with other SQL",
                            m.name
                        ),
                    });
                }
                None => {
                    let known = schema::MIGRATIONS.last().map_or(0, |m| m.version);
                    return Err(StoreError::SchemaTooNew {
                        found: version,
                        known,
                    });
                }
            }
        }
        for m in schema::MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
        {
            let fail = |source| StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            };
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(m.common)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::raw_sql(m.backend_sql(self.backend))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied store migration"
            );
        }
        Ok(())
    }

    /// Every MCP tool definition the gates pinned.
    pub async fn mcp_tools(&self) -> Result<Vec<KnownTool>> {
        let rows = sqlx::query("SELECT body FROM mcp_tools ORDER BY gate, tool")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(codec::known_tool_from_row).collect()
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<StoreTx> {
        Ok(StoreTx::new(self.writes.begin().await?, self.backend))
    }

    pub async fn request(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        let mut conn = self.pool.acquire().await?;
        codec::load_request(&mut conn, id).await
    }

    /// Every active grant, for the engine's in-memory index.
    pub async fn active_grants(&self) -> Result<Vec<Grant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE status = 'active' ORDER BY issued_at, id",
            codec::GRANT_SELECT
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::grant_from_row).collect()
    }

    /// Requests matching `filter`, newest first.
    pub async fn requests(&self, filter: &RequestFilter) -> Result<Vec<ApprovalRequest>> {
        let mut sql = String::from("SELECT r.id FROM requests r WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut next = |sql: &mut String, clause: &str, value: String| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(status) = filter.status {
            next(&mut sql, " AND r.status = ?", status.as_str().to_owned());
        }
        if let Some(flag) = filter.break_glass {
            // A fixed fragment per value: nothing user-supplied reaches the text.
            sql.push_str(if flag {
                " AND r.break_glass = 1"
            } else {
                " AND r.break_glass = 0"
            });
        }
        if let Some(p) = &filter.requester {
            next(
                &mut sql,
                " AND ((r.principal_kind = ?",
                p.kind.as_str().to_owned(),
            );
            next(&mut sql, " AND r.principal_id = ?)", p.id.clone());
            if p.kind == countersign_core::PrincipalKind::User {
                next(&mut sql, " OR r.on_behalf_of = ?", p.id.clone());
            }
            sql.push(')');
        }
        if let Some(groups) = &filter.reviewable_by {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND EXISTS (SELECT 1 FROM request_groups g WHERE g.request_id = r.id AND g.group_name IN (");
            for (i, g) in groups.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                next(&mut sql, "?", g.clone());
            }
            sql.push_str("))");
        }
        sql.push_str(&format!(
            " ORDER BY r.created_at DESC, r.id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        ));
        // Built only from fixed fragments; every value is a bound parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in &args {
            query = query.bind(a.as_str());
        }
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<String> = query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = codec::load_request(&mut conn, &id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub async fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(codec::GRANT_SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(codec::grant_from_row).transpose()
    }

    /// The grant an approved request produced, if any.
    pub async fn grant_for_request(&self, request_id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE request_id = $1 ORDER BY issued_at LIMIT 1",
            codec::GRANT_SELECT
        )))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(codec::grant_from_row).transpose()
    }

    /// Grants, newest first; only those of `principal` when given, only active ones when asked.
    pub async fn grants(
        &self,
        principal: Option<&PrincipalRef>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Grant>> {
        let mut sql = format!("{} WHERE 1 = 1", codec::GRANT_SELECT);
        if active_only {
            sql.push_str(" AND status = 'active'");
        }
        if principal.is_some() {
            sql.push_str(" AND principal_kind = $1 AND principal_id = $2");
        }
        sql.push_str(&format!(
            " ORDER BY issued_at DESC, id DESC LIMIT {}",
            limit.clamp(1, 10_000)
        ));
        // Built only from fixed fragments; every value is a bound parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(p) = principal {
            query = query.bind(p.kind.as_str()).bind(&p.id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(codec::grant_from_row).collect()
    }

    /// The messages channels posted about request `id`, oldest first.
    pub async fn channel_messages(&self, request_id: &str) -> Result<Vec<ChannelMessage>> {
        let rows = sqlx::query(
            "SELECT request_id, channel, conversation, message_ts, purpose, created_at \
             FROM channel_messages WHERE request_id = $1 ORDER BY created_at, message_ts",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::channel_message_from_row).collect()
    }

    /// Webhook delivery attempts about request `id` (every request when `None`), oldest first.
    pub async fn delivery_attempts(
        &self,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>> {
        let mut sql = String::from(
            "SELECT message_id, url, event_kind, request_id, attempt, attempted_at, status_code, \
             error, outcome FROM webhook_deliveries",
        );
        if request_id.is_some() {
            sql.push_str(" WHERE request_id = $1");
        }
        sql.push_str(&format!(
            " ORDER BY attempted_at, message_id, attempt LIMIT {}",
            limit.clamp(1, 10_000)
        ));
        // Built only from fixed fragments; the id is a bound parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(id) = request_id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(codec::delivery_from_row).collect()
    }

    /// The earliest deadline among pending requests (expiry, escalation, reminder) and active
    /// grants.
    pub async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let row = sqlx::query(
            "SELECT MIN(t) AS t FROM (\
               SELECT MIN(expires_at) AS t FROM requests WHERE status = 'pending' \
               UNION ALL SELECT MIN(escalate_at) AS t FROM requests WHERE status = 'pending' \
               UNION ALL SELECT MIN(remind_at) AS t FROM requests WHERE status = 'pending' \
               UNION ALL SELECT MIN(expires_at) AS t FROM grants WHERE status = 'active') d",
        )
        .fetch_one(&self.pool)
        .await?;
        let t: Option<i64> = row.try_get("t")?;
        Ok(t.map(Timestamp))
    }

    /// How many audit records there are (the next record's sequence number).
    pub async fn audit_size(&self) -> Result<u64> {
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        match row.try_get::<Option<i64>, _>("seq")? {
            Some(seq) => Ok(codec::seq_from_db(seq)? + 1),
            None => Ok(0),
        }
    }

    /// The Merkle tree's right edge at its current size, read from the stored nodes.
    pub async fn audit_frontier(&self) -> Result<Frontier> {
        self.audit_frontier_at(self.audit_size().await?).await
    }

    /// The right edge of the tree of the first `size` records, from stored nodes.
    pub async fn audit_frontier_at(&self, size: u64) -> Result<Frontier> {
        let nodes = self.audit_nodes(&merkle::frontier_nodes(size)).await?;
        Frontier::from_nodes(size, &|id| nodes.get(&id).copied()).map_err(|e| StoreError::Corrupt {
            what: "audit tree",
            detail: format!("the tree of {size} records: {e}"),
        })
    }

    /// The stored hashes of the given complete subtrees (leaves included), in one query per
    /// kind. Missing ones are simply absent from the map.
    pub async fn audit_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>> {
        let mut out = HashMap::with_capacity(ids.len());
        let (leaves, inner): (Vec<&NodeId>, Vec<&NodeId>) =
            ids.iter().partition(|id| id.level == 0);
        if !leaves.is_empty() {
            let sql = in_list(
                "SELECT seq AS k, leaf_hash AS h FROM audit_events WHERE seq IN ",
                leaves.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &leaves {
                query = query.bind(codec::seq_to_db(id.index)?);
            }
            for row in query.fetch_all(&self.pool).await? {
                let seq = codec::seq_from_db(row.try_get("k")?)?;
                out.insert(
                    NodeId {
                        level: 0,
                        index: seq,
                    },
                    codec::hash_from_hex(&row.try_get::<String, _>("h")?)?,
                );
            }
        }
        if !inner.is_empty() {
            let sql = in_list(
                "SELECT node_key AS k, hash AS h FROM audit_nodes WHERE node_key IN ",
                inner.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &inner {
                query = query.bind(codec::node_key(**id)?);
            }
            for row in query.fetch_all(&self.pool).await? {
                let id = codec::node_from_key(row.try_get("k")?)?;
                out.insert(id, codec::hash_from_hex(&row.try_get::<String, _>("h")?)?);
            }
        }
        Ok(out)
    }

    /// The newest signed checkpoint: its tree size and note.
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let row =
            sqlx::query("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((codec::seq_from_db(r.try_get("size")?)?, r.try_get("note")?)))
            .transpose()
    }

    /// How far the store has taken the audit journal (the start of segment 0 if never).
    pub async fn journal_mark(&self) -> Result<JournalMark> {
        let row = sqlx::query("SELECT segment, line FROM audit_journal WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(JournalMark::default());
        };
        Ok(JournalMark {
            segment: codec::seq_from_db(row.try_get("segment")?)?,
            line: codec::seq_from_db(row.try_get("line")?)?,
        })
    }

    /// Signed checkpoints with `from <= size <= to`, smallest first.
    pub async fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(
            "SELECT size, note FROM audit_checkpoints WHERE size >= $1 AND size <= $2 ORDER BY size",
        )
        .bind(codec::seq_to_db(from)?)
        .bind(codec::seq_to_db(to)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((codec::seq_from_db(r.try_get("size")?)?, r.try_get("note")?)))
            .collect()
    }

    /// The first audit sequence number at or after `time`, for exports by date.
    pub async fn audit_seq_at(&self, time: Timestamp) -> Result<u64> {
        let row = sqlx::query("SELECT MIN(seq) AS seq FROM audit_events WHERE time >= $1")
            .bind(time.millis())
            .fetch_one(&self.pool)
            .await?;
        match row.try_get::<Option<i64>, _>("seq")? {
            Some(seq) => codec::seq_from_db(seq),
            None => self.audit_size().await,
        }
    }

    /// Audit records with `seq >= from`, in order, at most `limit`.
    pub async fn audit_records(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, event, leaf_hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::audit_from_row).collect()
    }

    /// Audit records that concern one request, in order.
    pub async fn audit_records_for_request(&self, request_id: &str) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, event, leaf_hash FROM audit_events WHERE request_id = $1 ORDER BY seq",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::audit_from_row).collect()
    }

    pub async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionRecord>> {
        let rows = sqlx::query(
            "SELECT version, loaded_at, files, policy_count FROM policy_versions \
             ORDER BY loaded_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::policy_version_from_row).collect()
    }
}

/// `prefix` followed by `($1, $2, …, $n)`.
fn in_list(prefix: &str, n: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + n * 5 + 2);
    sql.push_str(prefix);
    sql.push('(');
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${i}"));
    }
    sql.push(')');
    sql
}

fn normalise_url(url: &str) -> Result<(Backend, String)> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        // Create the file on first use unless the operator chose a mode.
        let url = if rest.contains("mode=") {
            url.to_owned()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_owned()))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(feature = "testing")]
pub mod testing;

impl Store {
    /// Runs one statement outside any transaction. For tests that tamper with the database the
    /// way an operator with direct access could.
    #[cfg(feature = "testing")]
    pub async fn exec_for_tests(&self, sql: &'static str) -> Result<()> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }
}
