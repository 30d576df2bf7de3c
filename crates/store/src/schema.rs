//! The database schema, as an ordered list of migrations shared by SQLite and PostgreSQL.
//!
//! Only portable SQL is used (TEXT, BIGINT, plain indexes); the few statements that cannot be
//! portable (append-only triggers) come in one variant per backend. Each migration runs in its
//! own transaction together with the row that records it, so a failed migration leaves nothing.

use crate::Backend;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub common: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    /// SHA-256 of everything the migration runs, so a database migrated by another build of the
    /// same version is recognised instead of silently misread.
    pub fn checksum(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [self.common, self.sqlite, self.postgres] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    pub fn backend_sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

pub(crate) const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

pub(crate) const MIGRATIONS: &[Migration] = &[SPINE, CHANNELS, MCP_TOOLS, AUDIT_JOURNAL];

const SPINE: Migration = Migration {
    version: 1,
    name: "spine",
    common: "
CREATE TABLE policy_versions (
    version TEXT PRIMARY KEY,
    loaded_at BIGINT NOT NULL,
    files TEXT NOT NULL,
    policy_count BIGINT NOT NULL
);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    on_behalf_of TEXT,
    action TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    settled_at BIGINT,
    cancelled_by TEXT,
    body TEXT NOT NULL
);
CREATE INDEX requests_by_status ON requests (status, expires_at);
CREATE INDEX requests_by_principal ON requests (principal_kind, principal_id, digest, status);
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_by_on_behalf_of ON requests (on_behalf_of);
CREATE TABLE request_groups (
    request_id TEXT NOT NULL REFERENCES requests (id),
    group_name TEXT NOT NULL,
    PRIMARY KEY (request_id, group_name)
);
CREATE INDEX request_groups_by_group ON request_groups (group_name);
CREATE TABLE votes (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests (id),
    voter_kind TEXT NOT NULL,
    voter_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    cast_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (request_id, voter_kind, voter_id)
);
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests (id),
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    status TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX grants_by_status ON grants (status, expires_at);
CREATE INDEX grants_by_request ON grants (request_id);
CREATE INDEX grants_by_principal ON grants (principal_kind, principal_id, issued_at);
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    grant_id TEXT,
    event TEXT NOT NULL,
    leaf_hash TEXT NOT NULL
);
CREATE INDEX audit_events_by_request ON audit_events (request_id);
CREATE INDEX audit_events_by_time ON audit_events (time);
CREATE TABLE audit_nodes (
    node_key BIGINT PRIMARY KEY,
    hash TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    note TEXT NOT NULL
);
",
    sqlite: "
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
",
    postgres: "
CREATE FUNCTION countersign_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit events are append-only'; END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION countersign_audit_append_only();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION countersign_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION countersign_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION countersign_audit_append_only();
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
FOR EACH STATEMENT EXECUTE FUNCTION countersign_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION countersign_audit_append_only();
",
};

/// Reviewer channels: escalation and reminder deadlines, break-glass requests, the messages
/// channels posted (to update them after a restart) and every webhook delivery attempt.
const CHANNELS: Migration = Migration {
    version: 2,
    name: "channels",
    common: "
ALTER TABLE requests ADD COLUMN break_glass BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN escalations_fired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN escalate_at BIGINT;
ALTER TABLE requests ADD COLUMN remind_at BIGINT;
CREATE INDEX requests_by_escalation ON requests (status, escalate_at);
CREATE INDEX requests_by_reminder ON requests (status, remind_at);
CREATE INDEX requests_by_break_glass ON requests (break_glass, created_at);
CREATE TABLE channel_messages (
    request_id TEXT NOT NULL REFERENCES requests (id),
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, channel, conversation, message_ts)
);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event_kind TEXT NOT NULL,
    request_id TEXT,
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_id, attempt);
CREATE INDEX webhook_deliveries_by_request ON webhook_deliveries (request_id);
",
    sqlite: "",
    postgres: "",
};

/// MCP tool pinning: the fingerprint of each tool definition a gate has seen, and a changed
/// one waiting to be accepted.
const MCP_TOOLS: Migration = Migration {
    version: 3,
    name: "mcp_tools",
    common: "
CREATE TABLE mcp_tools (
    gate TEXT NOT NULL,
    tool TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    changed_fingerprint TEXT,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (gate, tool)
);
",
    sqlite: "",
    postgres: "",
};

/// How far the store has taken the audit journal: everything in segments before `segment`
/// and the first `line` lines of `segment` are committed events. One row, moved in the same
/// transaction as the events it accounts for.
const AUDIT_JOURNAL: Migration = Migration {
    version: 4,
    name: "audit_journal",
    common: "
CREATE TABLE audit_journal (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    segment BIGINT NOT NULL,
    line BIGINT NOT NULL
);
",
    sqlite: "",
    postgres: "",
};
