//! The CSV report: RFC 4180, one row per approval request created in the period, free text
//! guarded against spreadsheet formula injection.

use super::html::Report;
use super::integrity::Integrity;
use super::period::{Ev, is_self_approval};
use super::text::{grant_terms, payload_text, resource_text, when_ms};

impl Report {
    pub(super) fn csv(&self) -> String {
        const COLUMNS: [&str; 30] = [
            "request_id",
            "created_at",
            "requester_kind",
            "requester",
            "on_behalf_of",
            "action",
            "resources",
            "payload_digest",
            "payload",
            "justification",
            "attempts",
            "approvers",
            "refused_votes",
            "self_approval_attempts",
            "outcome",
            "decided_at",
            "decided_by",
            "time_to_decision_s",
            "settled_after_period",
            "grant_id",
            "grant",
            "grant_uses",
            "grant_use_times",
            "grant_end",
            "executions",
            "policy_ids",
            "policy_version",
            "seq",
            "checkpoint_size",
            "origin",
        ];
        let mut out = String::new();
        csv_row(&mut out, COLUMNS.iter().map(|c| (*c).to_owned()));
        let checkpoint = match &self.integrity {
            Integrity::Covered(c) => c.size.to_string(),
            _ => String::new(),
        };
        for r in &self.period.requests {
            let e = &r.created.e;
            let join = |evs: &[Ev], refusal: bool| {
                evs.iter()
                    .map(|v| vote_line(v, refusal))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let settled = r.settled.as_ref();
            let row = vec![
                r.id().to_owned(),
                when_ms(e.time),
                e.principal
                    .as_ref()
                    .map(|p| p.kind.as_str().to_owned())
                    .unwrap_or_default(),
                e.principal
                    .as_ref()
                    .map(|p| p.id.clone())
                    .unwrap_or_default(),
                e.on_behalf_of.clone().unwrap_or_default(),
                e.action.clone().unwrap_or_default(),
                e.resources
                    .iter()
                    .map(resource_text)
                    .collect::<Vec<_>>()
                    .join("; "),
                e.payload_digest.clone().unwrap_or_default(),
                defuse(&r.payload.as_ref().map(payload_text).unwrap_or_default()),
                defuse(e.justification.as_deref().unwrap_or("")),
                r.attempts.to_string(),
                defuse(&join(&r.votes, false)),
                defuse(&join(&r.refused, true)),
                r.refused
                    .iter()
                    .filter(|v| is_self_approval(&v.e))
                    .count()
                    .to_string(),
                r.outcome().to_owned(),
                settled.map(|s| when_ms(s.e.time)).unwrap_or_default(),
                settled
                    .and_then(|s| s.e.actor.as_ref())
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
                r.decision_ms()
                    .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
                    .unwrap_or_default(),
                settled.map(|s| s.after.to_string()).unwrap_or_default(),
                r.grant_issued
                    .as_ref()
                    .and_then(|g| g.e.grant_id.clone())
                    .unwrap_or_default(),
                r.grant_issued
                    .as_ref()
                    .map(|g| grant_terms(g.e.outcome.as_deref()))
                    .unwrap_or_default(),
                if r.grant_issued.is_some() {
                    r.grant_uses.len().to_string()
                } else {
                    String::new()
                },
                r.grant_uses
                    .iter()
                    .map(|u| when_ms(u.e.time))
                    .collect::<Vec<_>>()
                    .join("; "),
                defuse(&r.grant_end_text()),
                defuse(
                    &r.executions
                        .iter()
                        .map(|x| {
                            format!(
                                "{} {}",
                                when_ms(x.e.time),
                                x.e.outcome.as_deref().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                e.policy_ids.join(" "),
                e.policy_version.clone().unwrap_or_default(),
                r.created.seq.to_string(),
                checkpoint.clone(),
                self.origin.clone(),
            ];
            csv_row(&mut out, row.into_iter());
        }
        out
    }
}

fn vote_line(v: &Ev, refusal: bool) -> String {
    let e = &v.e;
    let voter = e.actor.as_ref().map(|a| a.id.as_str()).unwrap_or("?");
    let mut text = format!(
        "{voter} {} at {}",
        e.verdict.as_deref().unwrap_or("?"),
        when_ms(e.time)
    );
    if let Some(c) = &e.channel {
        text.push_str(&format!(" via {c}"));
    }
    let why = if refusal {
        e.outcome.as_deref()
    } else {
        e.reason.as_deref()
    };
    if let Some(r) = why {
        text.push_str(&format!(": {r}"));
    }
    text
}

/// The formula-injection guard for spreadsheet cells (see the module documentation).
fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// Appends one RFC 4180 record.
fn csv_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_defusing() {
        let mut out = String::new();
        csv_row(
            &mut out,
            ["a", "b,c", "say \"hi\"", "two\nlines", ""]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
        assert_eq!(defuse("=cmd()"), "'=cmd()");
        assert_eq!(defuse("SELECT 1"), "SELECT 1");
    }
}
