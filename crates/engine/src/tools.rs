//! MCP tool pinning: the writer's side (first-seen, changed and accepted definitions, each with
//! its audit event) and the in-memory index that per-call checks read.
//!
//! The index mirrors the `mcp_tools` table: loaded at start, updated only by effects of
//! committed batches, so a call is never judged against a definition the store does not hold.

use crate::EngineError;
use crate::writer::{Effect, Writer};
use countersign_audit::{AuditEvent, EventKind};
use countersign_core::{
    KnownTool, PinnedDefinition, PrincipalRef, Resource, ResourceRef, Timestamp, ToolFingerprint,
    ToolStanding,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// The pinned tools of every gate, by `(gate, tool)`.
#[derive(Debug, Default)]
pub(crate) struct ToolIndex(Mutex<HashMap<(String, String), KnownTool>>);

impl ToolIndex {
    pub(crate) fn load(tools: Vec<KnownTool>) -> ToolIndex {
        ToolIndex(Mutex::new(
            tools
                .into_iter()
                .map(|t| ((t.gate.clone(), t.tool.clone()), t))
                .collect(),
        ))
    }

    pub(crate) fn insert(&self, tool: KnownTool) {
        crate::lock(&self.0).insert((tool.gate.clone(), tool.tool.clone()), tool);
    }

    /// How tool `tool` of `gate` stands with definition `seen`; `None` if never pinned, or if
    /// `seen` is a changed definition not yet recorded (the writer must note it first).
    pub(crate) fn standing(
        &self,
        gate: &str,
        tool: &str,
        seen: ToolFingerprint,
    ) -> Option<ToolStanding> {
        let index = crate::lock(&self.0);
        let known = index.get(&(gate.to_owned(), tool.to_owned()))?;
        let recorded = known.accepted.fingerprint == seen
            || known
                .changed
                .as_ref()
                .is_some_and(|c| c.fingerprint == seen);
        recorded.then(|| known.standing(seen))
    }

    pub(crate) fn get(&self, gate: &str, tool: &str) -> Option<KnownTool> {
        crate::lock(&self.0)
            .get(&(gate.to_owned(), tool.to_owned()))
            .cloned()
    }

    pub(crate) fn all(&self, gate: Option<&str>) -> Vec<KnownTool> {
        let mut tools: Vec<KnownTool> = crate::lock(&self.0)
            .values()
            .filter(|t| gate.is_none_or(|g| t.gate == g))
            .cloned()
            .collect();
        tools.sort_by(|a, b| (&a.gate, &a.tool).cmp(&(&b.gate, &b.tool)));
        tools
    }
}

/// The resource a tool is, as policies and audit events name it.
pub fn tool_resource(gate: &str, tool: &str) -> Resource {
    let mut resource = Resource::new("Tool", format!("{gate}/{tool}"));
    resource.parent = Some(ResourceRef {
        kind: "McpServer".into(),
        id: gate.to_owned(),
    });
    resource
}

fn tool_event(
    kind: EventKind,
    gate: &str,
    tool: &str,
    pinned: &PinnedDefinition,
    now: Timestamp,
) -> AuditEvent {
    let mut event = AuditEvent::new(kind, now);
    event.resources = vec![tool_resource(gate, tool)];
    event.payload_digest = Some(pinned.fingerprint.to_hex());
    event.payload = Some(pinned.definition.clone());
    event.channel = Some(gate.to_owned());
    event
}

/// Records what gate `gate` saw: pins new tools, notes changed definitions (once per distinct
/// definition), and answers how each stands, in order.
pub(crate) async fn observe(
    w: &mut Writer<'_>,
    gate: &str,
    tools: Vec<(String, PinnedDefinition)>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<Vec<ToolStanding>, EngineError> {
    let mut standings = Vec::with_capacity(tools.len());
    for (name, seen) in tools {
        let Some(mut known) = w.tx.mcp_tool(gate, &name).await? else {
            let known = KnownTool {
                gate: gate.to_owned(),
                tool: name.clone(),
                accepted: seen.clone(),
                changed: None,
                first_seen: now,
                updated_at: now,
            };
            w.tx.put_mcp_tool(&known).await?;
            let mut event = tool_event(EventKind::McpToolFirstSeen, gate, &name, &seen, now);
            event.outcome = Some("pinned".into());
            w.append(&event)?;
            fx.push(Effect::ToolPinned(known));
            standings.push(ToolStanding::Trusted);
            continue;
        };
        let standing = known.standing(seen.fingerprint);
        let already_noted = known
            .changed
            .as_ref()
            .is_some_and(|c| c.fingerprint == seen.fingerprint);
        if standing != ToolStanding::Trusted && !already_noted {
            let mut event = tool_event(EventKind::McpToolChanged, gate, &name, &seen, now);
            event.reason = Some(format!(
                "definition differs from the pinned one ({}); calls are refused until an administrator accepts it",
                known.accepted.fingerprint
            ));
            event.outcome = Some("blocked".into());
            known.changed = Some(seen);
            known.updated_at = now;
            w.tx.put_mcp_tool(&known).await?;
            w.append(&event)?;
            fx.push(Effect::ToolPinned(known));
        }
        standings.push(standing);
    }
    Ok(standings)
}

/// Makes the changed definition of `tool` the pinned one, if it is still the `reviewed` one.
pub(crate) async fn accept(
    w: &mut Writer<'_>,
    by: &PrincipalRef,
    gate: &str,
    tool: &str,
    reviewed: ToolFingerprint,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<KnownTool, EngineError> {
    let mut known =
        w.tx.mcp_tool(gate, tool)
            .await?
            .ok_or_else(|| EngineError::ToolNotFound {
                gate: gate.to_owned(),
                tool: tool.to_owned(),
            })?;
    let changed = known
        .changed
        .take()
        .ok_or_else(|| EngineError::ToolUnchanged {
            gate: gate.to_owned(),
            tool: tool.to_owned(),
        })?;
    if changed.fingerprint != reviewed {
        return Err(EngineError::ToolChangedAgain {
            gate: gate.to_owned(),
            tool: tool.to_owned(),
            expected: reviewed.to_hex(),
            current: changed.fingerprint.to_hex(),
        });
    }
    let mut event = tool_event(EventKind::McpToolAccepted, gate, tool, &changed, now);
    event.actor = Some(by.clone());
    event.reason = Some(format!(
        "replaces the pinned definition {}",
        known.accepted.fingerprint
    ));
    event.outcome = Some("pinned".into());
    known.accepted = changed;
    known.updated_at = now;
    w.tx.put_mcp_tool(&known).await?;
    w.append(&event)?;
    fx.push(Effect::ToolPinned(known.clone()));
    Ok(known)
}
