//! `countersign audit report`: a period's privileged activity, for access reviews (SOC 2 CC6.1
//! to CC6.3: who could do what and who approved it; CC8.1: changes went through review).
//!
//! ```text
//! countersign audit report --from 2026-11-01 --to 2026-12-01 --out nov.html [--config FILE]
//! countersign audit report --from 2026-11-01 --to 2026-12-01 --out nov.csv --format csv
//! ```
//!
//! Everything comes from the signed audit log in the gateway's store (read directly, like
//! `audit export`); nothing from the mutable request tables. The period is the records from the
//! first one stamped at or after `--from` up to (not including) the first one stamped at or
//! after `--to`: the same bounds `audit export --from DATE --to DATE` takes, so the report's
//! integrity section can name the exact records an auditor re-verifies.
//!
//! A request created in the period is followed past `--to` (by its request id) until it settled
//! and its grant ended; what happened after the period end is marked as such. Requests still
//! open when the report was generated are shown as `pending`.
//!
//! # HTML (default)
//!
//! One self-contained file (inline CSS and SVG, no script, no external asset), escaped
//! throughout: payloads and reasons are attacker-controlled text. Sections: summary counts;
//! charts (decisions per day stacked by verdict, time-to-approve distribution); every approval
//! request created in the period with its reviews, decision, grant and uses; denied attempts;
//! expiries and cancellations; refused votes (self-approval attempts flagged); grant events;
//! executions; activity on requests opened earlier; policy loads and rejections; key
//! rotations; integrity (the covering checkpoint and the commands to verify the period offline).
//!
//! # CSV (`--format csv`)
//!
//! RFC 4180 (CRLF line ends, fields quoted when they hold `,` `"` CR or LF, quotes doubled), one
//! header row, then one row per approval request created in the period, in creation order:
//!
//! | column | content |
//! |---|---|
//! | `request_id` | the request |
//! | `created_at` | RFC 3339 UTC, milliseconds |
//! | `requester_kind`, `requester` | the principal that attempted the action (`agent` / `user`, id) |
//! | `on_behalf_of` | the user an agent acted for, if any |
//! | `action` | e.g. `db.export` |
//! | `resources` | `Type::"id"` with ` in Parent::"id"`, ` [classification]`, ` {tag,…}`; `; `-separated |
//! | `payload_digest` | hex digest of action, resources and payload |
//! | `payload` | the payload: a JSON string as its text, anything else as compact JSON |
//! | `justification` | the requester's reason |
//! | `attempts` | attempts in the period held by this request (repeats join a pending request) |
//! | `approvers` | accepted votes: `voter decision at TIME via CHANNEL: reason`, `; `-separated |
//! | `refused_votes` | refused votes: `voter decision at TIME via CHANNEL: refusal`, `; `-separated |
//! | `self_approval_attempts` | how many refused votes were by the requester or the user it acted for |
//! | `outcome` | `approved`, `denied`, `expired`, `cancelled` or `pending` |
//! | `decided_at` | when it settled (empty while pending) |
//! | `decided_by` | the last voter, or the canceller (empty for expiry) |
//! | `time_to_decision_s` | seconds from creation to settlement, 3 decimals |
//! | `settled_after_period` | `true` when it settled after `--to` |
//! | `grant_id`, `grant` | the grant issued on approval; `once` or the window, and its end |
//! | `grant_uses` | how many times the grant let an attempt through |
//! | `grant_use_times` | when, `; `-separated |
//! | `grant_end` | `used`, `expired`, `revoked by X: reason`, or `active` |
//! | `executions` | execution events reported for the request: `TIME outcome` |
//! | `policy_ids` | the policies that required approval, space-separated |
//! | `policy_version` | the policy set in force |
//! | `seq` | the audit record of `request.created` |
//!
//! Free-text cells (payload, justification, reasons) that begin with `=`, `+`, `-`, `@`, TAB or
//! CR get a leading `'`, so a spreadsheet does not evaluate them as formulas; the audit export
//! holds every byte as logged.

mod csv;
mod html;
mod integrity;
mod period;
mod svg;
mod text;

use crate::audit::parse_date;
use crate::config::StateLocation;
use anyhow::{Context, Result, bail};
use html::Report;
use integrity::integrity;
use period::Period;
use std::path::PathBuf;

/// How the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Csv,
}

/// What `countersign audit report` was asked for.
#[derive(Debug)]
pub struct ReportArgs {
    pub from: String,
    pub to: String,
    pub out: PathBuf,
    pub format: Format,
    /// The `--config` given, repeated in the printed verification commands.
    pub config: Option<PathBuf>,
}

/// Records read per query.
const PAGE: u32 = 1000;

/// `countersign audit report`.
pub async fn run(state: &StateLocation, args: &ReportArgs) -> Result<()> {
    let from = parse_date(&args.from).context("--from")?;
    let to = parse_date(&args.to).context("--to")?;
    if from >= to {
        bail!(
            "--from ({}) must be before --to ({}); --to is exclusive",
            args.from,
            args.to
        );
    }
    let store = state.open_store().await?;
    let from_seq = store.audit_seq_at(from).await?;
    let to_seq = store.audit_seq_at(to).await?.max(from_seq);
    let mut period = Period::default();
    let mut next = from_seq;
    while next < to_seq {
        let page = store.audit_records(next, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for record in page {
            if record.seq >= to_seq {
                next = to_seq;
                break;
            }
            next = record.seq + 1;
            period.ingest(record.seq, &record.event_json, false);
        }
    }
    // Requests of the period that were still open at its end: follow them to their end.
    for id in period.unresolved() {
        for record in store.audit_records_for_request(&id).await? {
            if record.seq >= to_seq {
                period.ingest(record.seq, &record.event_json, true);
            }
        }
    }
    let integrity = integrity(&store, state, from_seq, to_seq, &period).await?;
    let report = Report {
        from,
        to,
        from_text: args.from.clone(),
        to_text: args.to.clone(),
        origin: state.origin.clone(),
        generated_at: countersign_engine::now(),
        from_seq,
        to_seq,
        period,
        integrity,
        config: args.config.clone(),
    };
    let text = match args.format {
        Format::Html => report.html(),
        Format::Csv => report.csv(),
    };
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote the report of {} records ({} approval requests) to {}",
        to_seq - from_seq,
        report.period.requests.len(),
        args.out.display()
    );
    Ok(())
}
