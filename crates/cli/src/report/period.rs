//! Reading the period's audit records into a model of what happened: the approval requests
//! created in it with everything that followed, the other events by kind, and the counts.

use countersign_audit::{AuditEvent, EventKind};
use std::collections::{BTreeMap, HashMap};

pub(super) const DAY_MS: i64 = 86_400_000;

/// One event with its record number; `after` when it lies past the period end.
#[derive(Clone, Debug)]
pub(super) struct Ev {
    pub(super) seq: u64,
    pub(super) after: bool,
    pub(super) e: AuditEvent,
}

/// An approval request created in the period, with everything that happened to it.
#[derive(Debug)]
pub(super) struct Req {
    pub(super) created: Ev,
    pub(super) payload: Option<serde_json::Value>,
    pub(super) attempts: u32,
    pub(super) votes: Vec<Ev>,
    pub(super) refused: Vec<Ev>,
    pub(super) settled: Option<Ev>,
    pub(super) grant_issued: Option<Ev>,
    pub(super) grant_uses: Vec<Ev>,
    pub(super) grant_end: Option<Ev>,
    pub(super) executions: Vec<Ev>,
}

impl Req {
    pub(super) fn id(&self) -> &str {
        self.created.e.request_id.as_deref().unwrap_or("")
    }

    pub(super) fn outcome(&self) -> &str {
        self.settled
            .as_ref()
            .and_then(|s| s.e.outcome.as_deref())
            .unwrap_or("pending")
    }

    pub(super) fn decision_ms(&self) -> Option<i64> {
        self.settled
            .as_ref()
            .map(|s| s.e.time.millis() - self.created.e.time.millis())
    }

    fn grant_is_once(&self) -> bool {
        self.grant_issued
            .as_ref()
            .and_then(|g| g.e.outcome.as_deref())
            .is_some_and(|o| o.starts_with("once"))
    }

    /// Whether its story is complete: settled, and its grant (if any) ended.
    fn resolved(&self) -> bool {
        self.settled.is_some()
            && (self.grant_issued.is_none()
                || self.grant_end.is_some()
                || (self.grant_is_once() && !self.grant_uses.is_empty()))
    }

    pub(super) fn grant_end_text(&self) -> String {
        match &self.grant_end {
            Some(end) => match end.e.kind {
                EventKind::GrantRevoked => {
                    let mut text = "revoked".to_owned();
                    if let Some(a) = &end.e.actor {
                        text.push_str(&format!(" by {}", a.id));
                    }
                    if let Some(r) = &end.e.reason {
                        text.push_str(&format!(": {r}"));
                    }
                    text
                }
                _ => "expired".to_owned(),
            },
            None if self.grant_issued.is_none() => String::new(),
            None if self.grant_is_once() && !self.grant_uses.is_empty() => "used".to_owned(),
            None => "active".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) allow: u64,
    pub(super) deny: u64,
    pub(super) approval: u64,
    pub(super) allow_via_grant: u64,
    pub(super) grants_issued: u64,
    pub(super) grants_used: u64,
    pub(super) grants_expired: u64,
    pub(super) grants_revoked: u64,
    pub(super) refused_votes: u64,
    pub(super) self_approvals: u64,
    pub(super) policy_loads: u64,
    pub(super) policy_rejections: u64,
    pub(super) key_rotations: u64,
}

#[derive(Debug, Default)]
pub(super) struct Period {
    pub(super) events: u64,
    pub(super) counts: Counts,
    /// Attempts per UTC day (days since the epoch): allow, deny, approval.
    pub(super) per_day: BTreeMap<i64, [u64; 3]>,
    pub(super) requests: Vec<Req>,
    index: HashMap<String, usize>,
    /// The payload of an approval attempt, until its `request.created` follows.
    held_payload: HashMap<String, serde_json::Value>,
    grant_request: HashMap<String, String>,
    pub(super) denials: Vec<Ev>,
    pub(super) closures: Vec<Ev>,
    pub(super) refused: Vec<Ev>,
    pub(super) grants: Vec<Ev>,
    pub(super) executions: Vec<Ev>,
    pub(super) earlier: Vec<Ev>,
    pub(super) policy: Vec<Ev>,
    pub(super) rotations: Vec<Ev>,
    pub(super) unreadable: Vec<(u64, String)>,
}

pub(super) fn is_self_approval(e: &AuditEvent) -> bool {
    if e.outcome
        .as_deref()
        .is_some_and(|o| o.contains("cannot vote on their own request"))
    {
        return true;
    }
    let Some(actor) = &e.actor else { return false };
    e.principal
        .as_ref()
        .is_some_and(|p| p.id.eq_ignore_ascii_case(&actor.id))
        || e.on_behalf_of
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(&actor.id))
}

impl Period {
    pub(super) fn ingest(&mut self, seq: u64, json: &str, after: bool) {
        let e: AuditEvent = match serde_json::from_str(json) {
            Ok(e) => e,
            Err(err) => {
                if !after {
                    self.events += 1;
                    self.unreadable.push((seq, err.to_string()));
                }
                return;
            }
        };
        if !after {
            self.events += 1;
        }
        let request = e
            .request_id
            .as_deref()
            .or_else(|| {
                e.grant_id
                    .as_deref()
                    .and_then(|g| self.grant_request.get(g))
                    .map(String::as_str)
            })
            .and_then(|id| self.index.get(id).copied());
        let ev = Ev { seq, after, e };
        let c = &mut self.counts;
        match ev.e.kind {
            EventKind::Attempt => {
                if after {
                    return;
                }
                let day = ev.e.time.millis().div_euclid(DAY_MS);
                let slot = self.per_day.entry(day).or_default();
                match ev.e.verdict.as_deref() {
                    Some("allow") => {
                        c.allow += 1;
                        slot[0] += 1;
                        if ev.e.grant_id.is_some() {
                            c.allow_via_grant += 1;
                        }
                    }
                    Some("deny") => {
                        c.deny += 1;
                        slot[1] += 1;
                        self.denials.push(ev);
                    }
                    Some("approval") => {
                        c.approval += 1;
                        slot[2] += 1;
                        match request {
                            Some(i) => self.requests[i].attempts += 1,
                            None => {
                                if let (Some(id), Some(p)) = (&ev.e.request_id, &ev.e.payload) {
                                    self.held_payload.insert(id.clone(), p.clone());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            EventKind::RequestCreated => {
                let Some(id) = ev.e.request_id.clone() else {
                    return;
                };
                if after || self.index.contains_key(&id) {
                    return;
                }
                let payload = self.held_payload.remove(&id);
                let attempts = u32::from(payload.is_some());
                self.index.insert(id, self.requests.len());
                self.requests.push(Req {
                    created: ev,
                    payload,
                    attempts,
                    votes: Vec::new(),
                    refused: Vec::new(),
                    settled: None,
                    grant_issued: None,
                    grant_uses: Vec::new(),
                    grant_end: None,
                    executions: Vec::new(),
                });
            }
            EventKind::VoteCast => match request {
                Some(i) => self.requests[i].votes.push(ev),
                None if !after => self.earlier.push(ev),
                None => {}
            },
            EventKind::VoteRefused => {
                if !after {
                    c.refused_votes += 1;
                    if is_self_approval(&ev.e) {
                        c.self_approvals += 1;
                    }
                    self.refused.push(ev.clone());
                }
                if let Some(i) = request {
                    self.requests[i].refused.push(ev);
                }
            }
            EventKind::RequestSettled => {
                if !after && matches!(ev.e.outcome.as_deref(), Some("expired" | "cancelled")) {
                    self.closures.push(ev.clone());
                }
                match request {
                    Some(i) => self.requests[i].settled = Some(ev),
                    None if !after => self.earlier.push(ev),
                    None => {}
                }
            }
            EventKind::GrantIssued
            | EventKind::GrantUsed
            | EventKind::GrantExpired
            | EventKind::GrantRevoked => {
                if ev.e.kind == EventKind::GrantIssued
                    && let (Some(g), Some(r)) = (&ev.e.grant_id, &ev.e.request_id)
                {
                    self.grant_request.insert(g.clone(), r.clone());
                }
                if !after {
                    match ev.e.kind {
                        EventKind::GrantIssued => c.grants_issued += 1,
                        EventKind::GrantUsed => c.grants_used += 1,
                        EventKind::GrantExpired => c.grants_expired += 1,
                        _ => c.grants_revoked += 1,
                    }
                    self.grants.push(ev.clone());
                }
                if let Some(i) = request {
                    let r = &mut self.requests[i];
                    match ev.e.kind {
                        EventKind::GrantIssued => r.grant_issued = Some(ev),
                        EventKind::GrantUsed => r.grant_uses.push(ev),
                        _ => r.grant_end = Some(ev),
                    }
                }
            }
            EventKind::Execution => {
                if !after {
                    self.executions.push(ev.clone());
                }
                if let Some(i) = request {
                    self.requests[i].executions.push(ev);
                }
            }
            // Counted among the period's events; the report does not list them per request yet.
            EventKind::RequestEscalated | EventKind::RequestReminded => {}
            EventKind::PolicyLoaded | EventKind::PolicyRejected => {
                if !after {
                    if ev.e.kind == EventKind::PolicyLoaded {
                        c.policy_loads += 1;
                    } else {
                        c.policy_rejections += 1;
                    }
                    self.policy.push(ev);
                }
            }
            EventKind::KeyRotated => {
                if !after {
                    c.key_rotations += 1;
                    self.rotations.push(ev);
                }
            }
            // Tool pinning is configuration of a gate, not a privileged action; the report
            // leaves it to the audit log itself.
            EventKind::McpToolFirstSeen
            | EventKind::McpToolChanged
            | EventKind::McpToolAccepted => {}
        }
    }

    /// Requests created in the period whose story did not end within it.
    pub(super) fn unresolved(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| !r.resolved())
            .map(|r| r.id().to_owned())
            .collect()
    }

    pub(super) fn outcome_counts(&self) -> [(&'static str, u64); 5] {
        let mut out = [
            ("approved", 0),
            ("denied", 0),
            ("expired", 0),
            ("cancelled", 0),
            ("pending", 0),
        ];
        for r in &self.requests {
            let o = r.outcome();
            if let Some(slot) = out.iter_mut().find(|(name, _)| *name == o) {
                slot.1 += 1;
            }
        }
        out
    }
}
