//! The HTML report: one self-contained, escaped page with the summary, charts, event tables
//! and the integrity section.

use super::integrity::{Covered, Integrity};
use super::period::{DAY_MS, Ev, Period, Req, is_self_approval};
use super::svg::{BarChart, bar_chart};
use super::text::{duration, grant_terms, payload_text, when, who};
use countersign_audit::{AuditEvent, EventKind};
use countersign_core::{Resource, Timestamp};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Most rows an event table of the HTML report lists; the counts and the CSV are complete.
const MAX_ROWS: usize = 5000;
/// Characters of a payload shown inline before it is folded.
const PREVIEW_CHARS: usize = 120;
/// Characters of a payload the HTML report holds at all.
const MAX_PAYLOAD_CHARS: usize = 65_536;

#[derive(Debug)]
pub(super) struct Report {
    pub(super) from: Timestamp,
    pub(super) to: Timestamp,
    pub(super) from_text: String,
    pub(super) to_text: String,
    pub(super) origin: String,
    pub(super) generated_at: Timestamp,
    pub(super) from_seq: u64,
    pub(super) to_seq: u64,
    pub(super) period: Period,
    pub(super) integrity: Integrity,
    pub(super) config: Option<PathBuf>,
}

impl Report {
    pub(super) fn html(&self) -> String {
        let p = &self.period;
        let c = &p.counts;
        let mut h = String::with_capacity(64 * 1024);
        let title = format!(
            "Privileged access report {} to {}",
            day_or_time(self.from),
            day_or_time(self.to)
        );
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"generator\" content=\"countersign {}\">\
             <title>{}</title><style>{}</style></head><body>\n",
            env!("CARGO_PKG_VERSION"),
            esc(&title),
            include_str!("report.css")
        );
        // Header.
        let _ = write!(
            h,
            "<header><h1>{}</h1><p class=\"sub\">Human approval of privileged actions, from the \
             signed countersign audit log. Evidence for SOC 2 CC6.1–CC6.3 (logical access, \
             authorisation, least privilege) and CC8.1 (changes reviewed before they run).</p>\
             <dl class=\"meta\">\
             <dt>Period</dt><dd>{} up to {} (UTC; the end is exclusive) <span class=\"small\">asked as \
             <code>--from {} --to {}</code></span></dd>\
             <dt>Log origin</dt><dd><code>{}</code></dd>\
             <dt>Audit records</dt><dd>{}</dd>\
             <dt>Generated</dt><dd>{} UTC by countersign {}</dd>\
             </dl>",
            esc(&title),
            esc(&when(self.from)),
            esc(&when(self.to)),
            esc(&self.from_text),
            esc(&self.to_text),
            esc(&self.origin),
            if self.to_seq > self.from_seq {
                format!(
                    "{} events, sequence numbers {} to {}",
                    self.to_seq - self.from_seq,
                    self.from_seq,
                    self.to_seq - 1
                )
            } else {
                "none".to_owned()
            },
            esc(&when(self.generated_at)),
            env!("CARGO_PKG_VERSION"),
        );
        if self.to_seq == self.from_seq {
            h.push_str(
                "<p class=\"note\"><strong>Nothing happened in this period:</strong> the audit \
                 log has no events between these dates. There were no attempts, approval \
                 requests, votes, grants, policy changes or key rotations to review.</p>",
            );
        }
        let outcomes = p.outcome_counts();
        let card = |title: &str, rows: &[(&str, u64)]| {
            let mut s = format!("<div class=\"card\"><h3>{}</h3><table>", esc(title));
            for (label, n) in rows {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"num\">{n}</td></tr>",
                    esc(label)
                );
            }
            s.push_str("</table></div>");
            s
        };
        h.push_str("<section class=\"cards\" aria-label=\"Summary counts\">");
        h.push_str(&card(
            "Attempts by verdict",
            &[
                ("allow", c.allow),
                ("allowed on a grant", c.allow_via_grant),
                ("deny", c.deny),
                ("held for approval", c.approval),
                ("total", c.allow + c.deny + c.approval),
            ],
        ));
        let after = p
            .requests
            .iter()
            .filter(|r| r.settled.as_ref().is_some_and(|s| s.after))
            .count() as u64;
        let mut request_rows: Vec<(&str, u64)> = outcomes.to_vec();
        request_rows.push(("created in the period", p.requests.len() as u64));
        if after > 0 {
            request_rows.push(("settled after the period", after));
        }
        h.push_str(&card("Approval requests by outcome", &request_rows));
        h.push_str(&card(
            "Grants",
            &[
                ("issued", c.grants_issued),
                ("used", c.grants_used),
                ("expired", c.grants_expired),
                ("revoked", c.grants_revoked),
            ],
        ));
        h.push_str(&card(
            "Refused votes",
            &[
                ("self-approval attempts", c.self_approvals),
                ("other refusals", c.refused_votes - c.self_approvals),
                ("total", c.refused_votes),
            ],
        ));
        h.push_str(&card(
            "Policy and keys",
            &[
                ("policy sets loaded", c.policy_loads),
                ("policy reloads rejected", c.policy_rejections),
                ("audit key rotations", c.key_rotations),
            ],
        ));
        h.push_str("</section>");
        h.push_str(
            "<nav class=\"toc\">Sections: <a href=\"#charts\">Charts</a><a href=\"#requests\">Privileged actions</a>\
             <a href=\"#denials\">Denials</a><a href=\"#closures\">Expiries</a><a href=\"#refused\">Refused votes</a>\
             <a href=\"#grants\">Grants</a><a href=\"#executions\">Executions</a><a href=\"#earlier\">Earlier requests</a>\
             <a href=\"#policy\">Policy</a><a href=\"#keys\">Keys</a><a href=\"#integrity\">Integrity</a></nav></header>\n",
        );
        // Charts.
        h.push_str("<section id=\"charts\"><h2>Charts</h2><div class=\"charts\">");
        h.push_str(&self.decisions_chart());
        h.push_str(&self.approval_time_chart());
        h.push_str("</div></section>\n");
        h.push_str(&self.requests_section());
        h.push_str(&self.event_sections());
        h.push_str(&self.integrity_section());
        h.push_str(
            "<footer>Generated by <code>countersign audit report</code>. All times are UTC. \
             Every fact above is read from the audit log; the integrity section shows how to \
             check that those records are the ones the gateway signed.</footer></body></html>\n",
        );
        h
    }

    fn decisions_chart(&self) -> String {
        let p = &self.period;
        let first = self.from.millis().div_euclid(DAY_MS);
        let last = (self.to.millis() - 1).div_euclid(DAY_MS);
        let days = (last - first + 1).max(1);
        // Wide periods are drawn in buckets of several days.
        let width_days = (days + 365) / 366;
        let buckets = usize::try_from((days + width_days - 1) / width_days).unwrap_or(1);
        let mut data = vec![vec![0u64; 3]; buckets];
        for (day, v) in &p.per_day {
            let i = usize::try_from((day - first).clamp(0, days - 1) / width_days).unwrap_or(0);
            if let Some(slot) = data.get_mut(i) {
                for k in 0..3 {
                    slot[k] += v[k];
                }
            }
        }
        let unit = if width_days == 1 {
            "day".to_owned()
        } else {
            format!("{width_days} days")
        };
        let totals = [p.counts.allow, p.counts.deny, p.counts.approval];
        let desc = format!(
            "Attempts per {unit} from {} to {}, stacked by verdict. Totals: {} allowed, {} denied, {} held for approval.",
            day_label(first),
            day_label(last),
            totals[0],
            totals[1],
            totals[2]
        );
        let labels: Vec<String> = (0..buckets)
            .map(|i| day_label(first + i as i64 * width_days))
            .collect();
        let series = [
            ("allow", "#2da44e"),
            ("deny", "#cf222e"),
            ("approval", "#d4a72c"),
        ];
        bar_chart(&BarChart {
            id: "chart-decisions",
            caption: &format!("Decisions per {unit}"),
            desc: &desc,
            labels: &labels,
            short_labels: true,
            series: &series,
            values: &data,
            x_title: &format!("{} (UTC)", capitalise(&unit)),
            y_title: "Attempts",
            value_labels: false,
        })
    }

    fn approval_time_chart(&self) -> String {
        const BUCKETS: [(&str, i64); 6] = [
            ("< 1m", 60_000),
            ("1–5m", 300_000),
            ("5–15m", 900_000),
            ("15–60m", 3_600_000),
            ("1–4h", 14_400_000),
            ("> 4h", i64::MAX),
        ];
        let mut data = vec![vec![0u64; 1]; BUCKETS.len()];
        let mut n = 0;
        let mut times = Vec::new();
        for r in &self.period.requests {
            if r.outcome() != "approved" {
                continue;
            }
            let Some(ms) = r.decision_ms() else { continue };
            n += 1;
            times.push(ms);
            let i = BUCKETS.iter().position(|(_, lim)| ms < *lim).unwrap_or(5);
            data[i][0] += 1;
        }
        times.sort_unstable();
        let median = times
            .get(times.len() / 2)
            .map_or("none".to_owned(), |m| duration(*m));
        let desc = format!(
            "Time from request to approval for the {n} approved requests created in the period; median {median}."
        );
        let labels: Vec<String> = BUCKETS.iter().map(|(l, _)| (*l).to_owned()).collect();
        bar_chart(&BarChart {
            id: "chart-approval-time",
            caption: "Time to approve",
            desc: &desc,
            labels: &labels,
            short_labels: false,
            series: &[("approved requests", "#2da44e")],
            values: &data,
            x_title: "Time from request to approval",
            y_title: "Requests",
            value_labels: true,
        })
    }

    fn requests_section(&self) -> String {
        let p = &self.period;
        let mut h = String::from(
            "<section id=\"requests\"><h2>Privileged actions: approval requests created in the period</h2>\
             <p>Every attempt that policy held for human approval, with who asked, what exactly, \
             who reviewed it, how it ended and what the approval was used for. Reviews, \
             settlements and grant uses after the period end are included and marked.</p>",
        );
        let rows: Vec<String> = p.requests.iter().take(MAX_ROWS).map(request_row).collect();
        h.push_str(&table(
            "requests",
            &[
                "Requested",
                "Requester",
                "Action and resources",
                "Payload and justification",
                "Reviews",
                "Decision",
                "Grant and uses",
                "Policy",
            ],
            &rows,
            p.requests.len(),
            "No approval requests were created in this period.",
        ));
        h.push_str("</section>\n");
        h
    }

    fn event_sections(&self) -> String {
        let p = &self.period;
        let mut h = String::new();
        let rows = |events: &[Ev], f: &dyn Fn(&Ev) -> String| -> Vec<String> {
            events.iter().take(MAX_ROWS).map(f).collect()
        };
        let requester = |e: &AuditEvent| {
            let mut s = e
                .principal
                .as_ref()
                .map(|p| esc(&who(p)))
                .unwrap_or_default();
            if let Some(u) = &e.on_behalf_of {
                let _ = write!(s, "<div class=\"small\">for {}</div>", esc(u));
            }
            s
        };
        let request_ref = |e: &AuditEvent| {
            e.request_id
                .as_deref()
                .map(|id| format!("<span class=\"id\">{}</span>", esc(id)))
                .unwrap_or_default()
        };

        h.push_str(
            "<section id=\"denials\"><h2>Denied attempts</h2>\
             <p>Attempts refused outright: by a forbid, for lack of a permitting policy, or \
             because a step on the decision path failed (which always denies).</p>",
        );
        h.push_str(&table(
            "",
            &[
                "Time",
                "Principal",
                "Action and resources",
                "Payload",
                "Reason",
                "Policy",
                "Channel",
            ],
            &rows(&p.denials, &|v| {
                let e = &v.e;
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    requester(e),
                    opt(e.action.as_deref()),
                    resources_html(&e.resources),
                    payload_html(e.payload.as_ref()),
                    opt(e.reason.as_deref()),
                    policy_html(&e.policy_ids, e.policy_version.as_deref()),
                    opt(e.channel.as_deref()),
                )
            }),
            p.denials.len(),
            "No attempts were denied in this period.",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"closures\"><h2>Expiries and cancellations</h2>\
             <p>Requests that ran out of time without a decision, or that their requester or an \
             administrator withdrew. (Expired grants are listed under grants.)</p>",
        );
        h.push_str(&table(
            "",
            &["Time", "Request", "Requester", "Action and resources", "Outcome", "By", "Reason"],
            &rows(&p.closures, &|v| {
                let e = &v.e;
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    request_ref(e),
                    requester(e),
                    opt(e.action.as_deref()),
                    resources_html(&e.resources),
                    badge(e.outcome.as_deref().unwrap_or("?")),
                    e.actor.as_ref().map(|a| esc(&who(a))).unwrap_or_else(|| "system".into()),
                    opt(e.reason.as_deref()),
                )
            }),
            p.closures.len(),
            "No request expired or was cancelled in this period.",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"refused\"><h2>Refused votes, including self-approval attempts</h2>\
             <p>Votes the rules did not count: by the requester or the user an agent acted for \
             (self-approval), by someone not in an eligible group, a second vote by the same \
             person, or a vote after the request had settled or expired.</p>",
        );
        h.push_str(&table(
            "",
            &["Time", "Voter", "Vote", "Request", "Requester", "Action", "Refusal", "Channel"],
            &rows(&p.refused, &|v| {
                let e = &v.e;
                let flag = if is_self_approval(e) {
                    "<div><span class=\"badge deny\">self-approval</span></div>"
                } else {
                    ""
                };
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{flag}<span class=\"refused\">{}</span></td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    e.actor.as_ref().map(|a| esc(&who(a))).unwrap_or_default(),
                    opt(e.verdict.as_deref()),
                    request_ref(e),
                    requester(e),
                    opt(e.action.as_deref()),
                    opt(e.outcome.as_deref()),
                    opt(e.channel.as_deref()),
                )
            }),
            p.refused.len(),
            "No vote was refused in this period.",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"grants\"><h2>Grants and their uses</h2>\
             <p>A grant is what an approval lets through: <code>once</code> covers one execution \
             of the reviewed payload; a window covers the same principal, action and resources \
             until it ends. Each use is an attempt allowed on the grant.</p>",
        );
        h.push_str(&table(
            "",
            &["Time", "Event", "Grant", "Request", "Principal", "Action and resources", "Detail"],
            &rows(&p.grants, &|v| {
                let e = &v.e;
                let (label, detail) = match e.kind {
                    EventKind::GrantIssued => ("issued", esc(&grant_terms(e.outcome.as_deref()))),
                    EventKind::GrantUsed => (
                        "used",
                        format!(
                            "{}{}",
                            payload_html(e.payload.as_ref()),
                            e.channel
                                .as_deref()
                                .map(|c| format!("<div class=\"small\">via {}</div>", esc(c)))
                                .unwrap_or_default()
                        ),
                    ),
                    EventKind::GrantExpired => ("expired", String::new()),
                    _ => (
                        "revoked",
                        format!(
                            "{}{}",
                            e.actor
                                .as_ref()
                                .map(|a| format!("by {}", esc(&who(a))))
                                .unwrap_or_default(),
                            e.reason
                                .as_deref()
                                .map(|r| format!(": {}", esc(r)))
                                .unwrap_or_default()
                        ),
                    ),
                };
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td><span class=\"id\">{}</span></td><td>{}</td><td>{}</td><td><code>{}</code>{}</td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    badge(label),
                    opt(e.grant_id.as_deref()),
                    request_ref(e),
                    requester(e),
                    opt(e.action.as_deref()),
                    resources_html(&e.resources),
                    detail,
                )
            }),
            p.grants.len(),
            "No grant was issued, used, expired or revoked in this period.",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"executions\"><h2>Executions</h2>\
             <p>What happened when an allowed action ran, as reported by the gate or client.</p>",
        );
        h.push_str(&table(
            "",
            &["Time", "Principal", "Action and resources", "Request / grant", "Outcome", "Channel"],
            &rows(&p.executions, &|v| {
                let e = &v.e;
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td><code>{}</code>{}</td><td>{}<div class=\"id\">{}</div></td><td>{}</td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    requester(e),
                    opt(e.action.as_deref()),
                    resources_html(&e.resources),
                    request_ref(e),
                    opt(e.grant_id.as_deref()),
                    opt(e.outcome.as_deref()),
                    opt(e.channel.as_deref()),
                )
            }),
            p.executions.len(),
            "No execution results were reported in this period (grant uses above are the \
             executions the gateway allowed).",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"earlier\"><h2>Activity on requests opened before the period</h2>",
        );
        h.push_str(&table(
            "",
            &["Time", "Event", "Request", "Requester", "Action", "By", "Detail"],
            &rows(&p.earlier, &|v| {
                let e = &v.e;
                let detail = match e.kind {
                    EventKind::VoteCast => format!(
                        "{}{}",
                        opt(e.verdict.as_deref()),
                        e.reason
                            .as_deref()
                            .map(|r| format!(": {}", esc(r)))
                            .unwrap_or_default()
                    ),
                    _ => badge(e.outcome.as_deref().unwrap_or("?")),
                };
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(&when(e.time)),
                    esc(e.kind.as_str()),
                    request_ref(e),
                    requester(e),
                    opt(e.action.as_deref()),
                    e.actor.as_ref().map(|a| esc(&who(a))).unwrap_or_else(|| "system".into()),
                    detail,
                )
            }),
            p.earlier.len(),
            "None.",
        ));
        h.push_str("</section>\n");

        h.push_str("<section id=\"policy\"><h2>Policy loads and rejections</h2>");
        h.push_str(&table(
            "",
            &["Time", "Event", "Policy version", "#Policies", "Detail"],
            &rows(&p.policy, &|v| {
                let e = &v.e;
                let (label, detail) = if e.kind == EventKind::PolicyLoaded {
                    ("loaded", opt(e.outcome.as_deref()))
                } else {
                    (
                        "rejected",
                        format!(
                            "<span class=\"refused\">{}</span><div class=\"small\">the version shown stayed in force</div>",
                            opt(e.reason.as_deref())
                        ),
                    )
                };
                let ids = if e.policy_ids.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<details><summary>policy ids</summary>{}</details>",
                        e.policy_ids
                            .iter()
                            .map(|i| format!("<code>{}</code>", esc(i)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{detail}{ids}</td></tr>",
                    esc(&when(e.time)),
                    badge(label),
                    opt(e.policy_version.as_deref()),
                    if e.kind == EventKind::PolicyLoaded {
                        e.policy_ids.len().to_string()
                    } else {
                        String::new()
                    },
                )
            }),
            p.policy.len(),
            "No policy set was loaded or rejected in this period.",
        ));
        h.push_str("</section>\n");

        h.push_str(
            "<section id=\"keys\"><h2>Audit key rotations</h2>\
             <p>From a rotation on, checkpoints are signed by the announced key; a verifier \
             starting from the old key follows the announcement.</p>",
        );
        h.push_str(&table(
            "",
            &["Time", "By", "New verifier key", "Record"],
            &rows(&p.rotations, &|v| {
                let e = &v.e;
                format!(
                    "<tr><td class=\"nowrap\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                    esc(&when(e.time)),
                    e.actor.as_ref().map(|a| esc(&who(a))).unwrap_or_else(|| "system".into()),
                    esc(e
                        .outcome
                        .as_deref()
                        .map(|o| o.trim_start_matches(countersign_audit::KEY_ROTATION_PREFIX))
                        .unwrap_or("")),
                    v.seq,
                )
            }),
            p.rotations.len(),
            "The audit signing key was not rotated in this period.",
        ));
        h.push_str("</section>\n");

        if !p.unreadable.is_empty() {
            h.push_str(
                "<section id=\"unreadable\"><h2>Records this version cannot read</h2>\
                 <p class=\"warn\">These records are in the log (and covered by its signatures) \
                 but their content is not understood by this version of countersign; inspect \
                 them in the export.</p>",
            );
            let rows: Vec<String> = p
                .unreadable
                .iter()
                .take(MAX_ROWS)
                .map(|(seq, err)| {
                    format!("<tr><td class=\"num\">{seq}</td><td>{}</td></tr>", esc(err))
                })
                .collect();
            h.push_str(&table(
                "",
                &["#Record", "Problem"],
                &rows,
                p.unreadable.len(),
                "",
            ));
            h.push_str("</section>\n");
        }
        h
    }

    fn commands(&self, covered: &Covered) -> (String, String) {
        let config = self
            .config
            .as_ref()
            .map(|c| format!(" --config {}", shell_quote(&c.display().to_string())))
            .unwrap_or_default();
        let export = format!(
            "countersign audit export{config} --from {} --to {} --out period.jsonl",
            self.from_seq, covered.size
        );
        let key = match &covered.key {
            Some((k, _)) => k.to_string(),
            None => format!(
                "<verifier key of {}>",
                if covered.signers.is_empty() {
                    "the checkpoint's signer".to_owned()
                } else {
                    covered.signers.join(" or ")
                }
            ),
        };
        let verify = format!("countersign audit verify period.jsonl --key '{key}'");
        (export, verify)
    }

    fn integrity_section(&self) -> String {
        let mut h = String::from(
            "<section id=\"integrity\"><h2>Integrity</h2>\
             <p>The audit log is a Merkle tree whose head the gateway signs periodically (a \
             C2SP checkpoint). A checkpoint that covers the period's last record commits to \
             every record of the period: an altered, removed, reordered or inserted record no \
             longer matches it.</p>",
        );
        match &self.integrity {
            Integrity::Empty => h.push_str(
                "<p class=\"note\">The period holds no records, so there is nothing to verify.</p>",
            ),
            Integrity::NotCovered { latest } => {
                let _ = write!(
                    h,
                    "<p class=\"warn\"><strong>No signed checkpoint covers this period yet.</strong> \
                     The period's records end at sequence number {}, and the newest checkpoint \
                     {}. The gateway signs a checkpoint shortly after new events (see \
                     <code>[audit] checkpoint_every</code>); generate the report again once it \
                     has, to get the verification commands.</p>",
                    self.to_seq - 1,
                    match latest {
                        Some(s) => format!("covers the first {s} records"),
                        None => "does not exist".to_owned(),
                    }
                );
            }
            Integrity::Covered(covered) => {
                let past = covered.size - self.to_seq;
                let _ = write!(
                    h,
                    "<h3>Covering checkpoint</h3><p>The first checkpoint whose size is at least \
                     {} (the sequence number after the period's last record): size {}{}.</p>\
                     <pre class=\"note-text\">{}</pre>",
                    self.to_seq,
                    covered.size,
                    if past > 0 {
                        format!(
                            ", so an export up to it also holds the {past} records logged after the period"
                        )
                    } else {
                        String::new()
                    },
                    esc(&covered.note)
                );
                let (export, verify) = self.commands(covered);
                let _ = write!(
                    h,
                    "<h3>Verify it yourself</h3><p>Export the period's records with the \
                     checkpoints that cover them, then verify the export offline with the \
                     verifier key:</p><pre class=\"cmd\" id=\"verify-commands\">{}\n{}</pre>",
                    esc(&export),
                    esc(&verify)
                );
                match &covered.key {
                    Some((k, source)) => {
                        let _ = write!(
                            h,
                            "<p>The key that signed the export's first checkpoint is {}: \
                             <code>{}</code>. Keys announced by rotations inside the export are \
                             followed from there. Compare it with the key published for this log \
                             before trusting the result.</p>",
                            esc(source),
                            esc(&k.to_string())
                        );
                    }
                    None => {
                        let _ = write!(
                            h,
                            "<p class=\"warn\">None of the keys available to this report (the \
                             key file, retired keys beside it, keys announced in the period) \
                             verifies the export's first checkpoint. It is signed by {}; use the \
                             verifier key published under that name.</p>",
                            esc(&covered.signers.join(", "))
                        );
                    }
                }
                match &covered.check {
                    Ok(summary) => {
                        let _ = write!(
                            h,
                            "<p class=\"ok\">Checked while generating this report: {}.</p>",
                            esc(summary)
                        );
                    }
                    Err(e) => {
                        let _ = write!(
                            h,
                            "<p class=\"warn\"><strong>Verification failed while generating this \
                             report:</strong> {}</p>",
                            esc(e)
                        );
                    }
                }
            }
        }
        h.push_str("</section>\n");
        h
    }
}

/// HTML-escapes text for element content and quoted attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn day_label(day: i64) -> String {
    when(Timestamp(day.saturating_mul(DAY_MS)))
        .chars()
        .take(10)
        .collect()
}

fn day_or_time(t: Timestamp) -> String {
    let text = when(t);
    match text.strip_suffix(" 00:00:00") {
        Some(day) => day.to_owned(),
        None => text,
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An escaped principal id that may break before its `@`.
fn esc_id(id: &str) -> String {
    esc(id).replace('@', "<wbr>@")
}

fn resource_html(r: &Resource) -> String {
    let mut html = format!("<code>{}</code>", esc(&format!("{}::{:?}", r.kind, r.id)));
    if let Some(parent) = &r.parent {
        html.push_str(&format!(
            " <span class=\"small\">in {}</span>",
            esc(&parent.to_string())
        ));
    }
    if let Some(c) = r.classification {
        html.push_str(&format!(
            " <span class=\"cls cls-{0}\">{0}</span>",
            c.as_str()
        ));
    }
    for t in &r.tags {
        html.push_str(&format!(" <span class=\"cls\">{}</span>", esc(t)));
    }
    html
}

fn resources_html(rs: &[Resource]) -> String {
    rs.iter()
        .map(|r| format!("<div>{}</div>", resource_html(r)))
        .collect()
}

/// A payload: short ones inline, long ones as a preview with the full text folded beneath.
fn payload_html(v: Option<&serde_json::Value>) -> String {
    let Some(v) = v else {
        return "<span class=\"small\">not recorded</span>".to_owned();
    };
    let text = payload_text(v);
    let chars = text.chars().count();
    if chars <= PREVIEW_CHARS {
        return format!("<code class=\"payload\">{}</code>", esc(&text));
    }
    let preview: String = text.chars().take(PREVIEW_CHARS).collect();
    let (full, cut) = if chars > MAX_PAYLOAD_CHARS {
        (
            text.chars().take(MAX_PAYLOAD_CHARS).collect::<String>(),
            format!(
                "<div class=\"small\">first {MAX_PAYLOAD_CHARS} of {chars} characters; the audit export holds all</div>"
            ),
        )
    } else {
        (text, String::new())
    };
    format!(
        "<code class=\"payload\">{}…</code><details><summary>full payload ({chars} characters)</summary><pre>{}</pre>{cut}</details>",
        esc(&preview),
        esc(&full)
    )
}

fn badge(text: &str) -> String {
    let class: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_default()
}

fn policy_html(ids: &[String], version: Option<&str>) -> String {
    let mut html: String = ids
        .iter()
        .map(|id| format!("<div><code>{}</code></div>", esc(id)))
        .collect();
    if let Some(v) = version {
        let short: String = v.chars().take(12).collect();
        html.push_str(&format!(
            "<div class=\"small\" title=\"{}\">version {}</div>",
            esc(v),
            esc(&short)
        ));
    }
    html
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// An HTML table, or a line saying there was nothing.
fn table(class: &str, headers: &[&str], rows: &[String], total: usize, nothing: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(nothing));
    }
    let mut html = format!("<table class=\"{class}\">");
    if class == "requests" {
        html.push_str(
            "<colgroup><col class=\"c-when\"><col class=\"c-who\"><col class=\"c-what\">\
             <col class=\"c-payload\"><col class=\"c-reviews\"><col class=\"c-decision\">\
             <col class=\"c-grant\"><col class=\"c-policy\"></colgroup>",
        );
    }
    html.push_str("<thead><tr>");
    for h in headers {
        let class = if h.starts_with('#') {
            " class=\"num\""
        } else {
            ""
        };
        html.push_str(&format!(
            "<th{class}>{}</th>",
            esc(h.trim_start_matches('#'))
        ));
    }
    html.push_str("</tr></thead><tbody>");
    for r in rows {
        html.push_str(r);
    }
    html.push_str("</tbody></table>");
    if total > rows.len() {
        html.push_str(&format!(
            "<p class=\"note\">The first {} of {total} are listed; the audit export holds all.</p>",
            rows.len()
        ));
    }
    html
}

fn request_row(r: &Req) -> String {
    let e = &r.created.e;
    let mut h = String::from("<tr>");
    // Requested.
    let _ = write!(
        h,
        "<td><div class=\"nowrap\">{}</div><div class=\"id\" title=\"request id\">{}</div>{}</td>",
        esc(&when(e.time)),
        esc(r.id()),
        if r.attempts > 1 {
            format!("<div class=\"small\">{} attempts joined</div>", r.attempts)
        } else {
            String::new()
        }
    );
    // Requester.
    let _ = write!(
        h,
        "<td>{}{}</td>",
        e.principal
            .as_ref()
            .map(|p| format!("<div>{} {}</div>", p.kind.as_str(), esc_id(&p.id)))
            .unwrap_or_default(),
        e.on_behalf_of
            .as_deref()
            .map(|u| format!(
                "<div class=\"small\">on behalf of</div><div>{}</div>",
                esc_id(u)
            ))
            .unwrap_or_default()
    );
    // Action and resources.
    let _ = write!(
        h,
        "<td><div><code>{}</code></div>{}</td>",
        opt(e.action.as_deref()),
        resources_html(&e.resources)
    );
    // Payload and justification.
    let _ = write!(
        h,
        "<td><div>{}</div>{}</td>",
        payload_html(r.payload.as_ref()),
        e.justification
            .as_deref()
            .map(|j| format!(
                "<div><span class=\"small\">Justification:</span> {}</div>",
                esc(j)
            ))
            .unwrap_or_default()
    );
    // Reviews.
    h.push_str("<td>");
    if r.votes.is_empty() && r.refused.is_empty() {
        h.push_str("<span class=\"small\">no votes</span>");
    }
    let mut reviews: Vec<(&Ev, bool)> = r
        .votes
        .iter()
        .map(|v| (v, false))
        .chain(r.refused.iter().map(|v| (v, true)))
        .collect();
    reviews.sort_by_key(|(v, _)| v.seq);
    for (v, refused) in reviews {
        let e = &v.e;
        let voter = e.actor.as_ref().map(|a| a.id.as_str()).unwrap_or("?");
        let verdict = e.verdict.as_deref().unwrap_or("?");
        let _ = write!(
            h,
            "<div{}><strong>{}</strong> {}{}<div class=\"small\">{} via {}{}</div>{}</div>",
            if refused { " class=\"refused\"" } else { "" },
            esc_id(voter),
            if refused {
                format!("tried to {}", esc(verdict))
            } else {
                badge(verdict)
            },
            if refused && is_self_approval(e) {
                " <span class=\"badge deny\">self-approval</span>"
            } else if refused {
                " <span class=\"badge deny\">refused</span>"
            } else {
                ""
            },
            esc(&when(e.time)),
            opt(e.channel.as_deref()),
            if v.after {
                " <span class=\"after\">after the period</span>"
            } else {
                ""
            },
            if refused {
                e.outcome
                    .as_deref()
                    .map(|o| format!("<div class=\"small\">{}</div>", esc(o)))
                    .unwrap_or_default()
            } else {
                e.reason
                    .as_deref()
                    .map(|o| format!("<div>“{}”</div>", esc(o)))
                    .unwrap_or_default()
            }
        );
    }
    h.push_str("</td>");
    // Decision.
    h.push_str("<td>");
    h.push_str(&badge(r.outcome()));
    if let Some(s) = &r.settled {
        let _ = write!(
            h,
            "<div class=\"small\">after {}</div><div class=\"small nowrap\">{}</div>",
            duration(r.decision_ms().unwrap_or(0)),
            esc(&when(s.e.time))
        );
        if let Some(a) = &s.e.actor {
            let _ = write!(h, "<div class=\"small\">by {}</div>", esc_id(&a.id));
        }
        if s.after {
            h.push_str("<div class=\"after\">after the period</div>");
        }
    } else {
        h.push_str("<div class=\"small\">not settled when the report was generated</div>");
    }
    h.push_str("</td>");
    // Grant and uses.
    h.push_str("<td>");
    match &r.grant_issued {
        Some(g) => {
            let _ = write!(
                h,
                "<div class=\"id\">{}</div><div class=\"small\">{}</div>",
                opt(g.e.grant_id.as_deref()),
                esc(&grant_terms(g.e.outcome.as_deref()))
            );
            if r.grant_uses.is_empty() {
                h.push_str("<div class=\"small\">never used</div>");
            }
            for u in &r.grant_uses {
                let _ = write!(
                    h,
                    "<div>used {}{}{}</div>",
                    esc(&when(u.e.time)),
                    u.e.channel
                        .as_deref()
                        .map(|c| format!(" <span class=\"small\">via {}</span>", esc(c)))
                        .unwrap_or_default(),
                    if u.after {
                        " <span class=\"after\">after the period</span>"
                    } else {
                        ""
                    }
                );
            }
            for x in &r.executions {
                let _ = write!(
                    h,
                    "<div>ran {}: {}</div>",
                    esc(&when(x.e.time)),
                    opt(x.e.outcome.as_deref())
                );
            }
            let end = r.grant_end_text();
            if !end.is_empty() && end != "used" {
                let _ = write!(
                    h,
                    "<div>{}{}</div>",
                    badge(end.split([' ', ':']).next().unwrap_or("")),
                    if end.contains(' ') {
                        format!(
                            " <span class=\"small\">{}</span>",
                            esc(end.split_once(' ').map_or("", |(_, rest)| rest))
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
        None => h.push_str("<span class=\"small\">none</span>"),
    }
    h.push_str("</td>");
    let _ = write!(
        h,
        "<td>{}</td></tr>",
        policy_html(&e.policy_ids, e.policy_version.as_deref())
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn day_labels_and_shell_quoting() {
        assert_eq!(shell_quote("/tmp/a b/c.toml"), "'/tmp/a b/c.toml'");
        assert_eq!(shell_quote("/tmp/c.toml"), "/tmp/c.toml");
        assert_eq!(day_label(0), "1970-01-01");
    }
}
