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

use crate::audit::parse_date;
use crate::config::StateLocation;
use anyhow::{Context, Result, bail};
use countersign_audit::export::ExportVerifier;
use countersign_audit::note::{Checkpoint, VerifierKey};
use countersign_audit::{AuditEvent, EventKind};
use countersign_core::{PrincipalRef, Resource, Timestamp};
use countersign_engine::{audit_io, keyfile};
use countersign_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
/// Most rows an event table of the HTML report lists; the counts and the CSV are complete.
const MAX_ROWS: usize = 5000;
/// Characters of a payload shown inline before it is folded.
const PREVIEW_CHARS: usize = 120;
/// Characters of a payload the HTML report holds at all.
const MAX_PAYLOAD_CHARS: usize = 65_536;
const DAY_MS: i64 = 86_400_000;

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
    let store = open_existing_store(state).await?;
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

/// Opens the gateway's store, refusing to create an empty SQLite file where none is.
async fn open_existing_store(state: &StateLocation) -> Result<Store> {
    let url = &state.store_url;
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or(rest);
        if !path.is_empty() && !path.contains(":memory:") && !Path::new(path).exists() {
            bail!(
                "there is no store at {path}: the gateway has not run with this configuration \
                 (check --config and [store] url)"
            );
        }
    }
    Store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {url}"))
}

// ---------------------------------------------------------------------------------------------
// Collecting the period
// ---------------------------------------------------------------------------------------------

/// One event with its record number; `after` when it lies past the period end.
#[derive(Clone, Debug)]
struct Ev {
    seq: u64,
    after: bool,
    e: AuditEvent,
}

/// An approval request created in the period, with everything that happened to it.
#[derive(Debug)]
struct Req {
    created: Ev,
    payload: Option<serde_json::Value>,
    attempts: u32,
    votes: Vec<Ev>,
    refused: Vec<Ev>,
    settled: Option<Ev>,
    grant_issued: Option<Ev>,
    grant_uses: Vec<Ev>,
    grant_end: Option<Ev>,
    executions: Vec<Ev>,
}

impl Req {
    fn id(&self) -> &str {
        self.created.e.request_id.as_deref().unwrap_or("")
    }

    fn outcome(&self) -> &str {
        self.settled
            .as_ref()
            .and_then(|s| s.e.outcome.as_deref())
            .unwrap_or("pending")
    }

    fn decision_ms(&self) -> Option<i64> {
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

    fn grant_end_text(&self) -> String {
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
struct Counts {
    allow: u64,
    deny: u64,
    approval: u64,
    allow_via_grant: u64,
    grants_issued: u64,
    grants_used: u64,
    grants_expired: u64,
    grants_revoked: u64,
    refused_votes: u64,
    self_approvals: u64,
    policy_loads: u64,
    policy_rejections: u64,
    key_rotations: u64,
}

#[derive(Debug, Default)]
struct Period {
    events: u64,
    counts: Counts,
    /// Attempts per UTC day (days since the epoch): allow, deny, approval.
    per_day: BTreeMap<i64, [u64; 3]>,
    requests: Vec<Req>,
    index: HashMap<String, usize>,
    /// The payload of an approval attempt, until its `request.created` follows.
    held_payload: HashMap<String, serde_json::Value>,
    grant_request: HashMap<String, String>,
    denials: Vec<Ev>,
    closures: Vec<Ev>,
    refused: Vec<Ev>,
    grants: Vec<Ev>,
    executions: Vec<Ev>,
    earlier: Vec<Ev>,
    policy: Vec<Ev>,
    rotations: Vec<Ev>,
    unreadable: Vec<(u64, String)>,
}

fn is_self_approval(e: &AuditEvent) -> bool {
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
    fn ingest(&mut self, seq: u64, json: &str, after: bool) {
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
        }
    }

    /// Requests created in the period whose story did not end within it.
    fn unresolved(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| !r.resolved())
            .map(|r| r.id().to_owned())
            .collect()
    }

    fn outcome_counts(&self) -> [(&'static str, u64); 5] {
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

// ---------------------------------------------------------------------------------------------
// Integrity
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Integrity {
    /// No records in the period.
    Empty,
    /// No checkpoint covers the period's last record yet.
    NotCovered {
        latest: Option<u64>,
    },
    Covered(Box<Covered>),
}

#[derive(Debug)]
struct Covered {
    size: u64,
    note: String,
    /// The key that verifies the first checkpoint of the export, and where it came from.
    key: Option<(VerifierKey, &'static str)>,
    /// When no key was found: the name and key id on the note's signature lines.
    signers: Vec<String>,
    /// The outcome of verifying the export while generating the report.
    check: Result<String, String>,
}

async fn integrity(
    store: &Store,
    state: &StateLocation,
    from_seq: u64,
    to_seq: u64,
    period: &Period,
) -> Result<Integrity> {
    if to_seq == from_seq {
        return Ok(Integrity::Empty);
    }
    let Some((size, note)) = store
        .checkpoints(to_seq, u64::MAX >> 1)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(Integrity::NotCovered {
            latest: store.latest_checkpoint().await?.map(|(s, _)| s),
        });
    };
    // The verifier starts from one key: the one that signed the export's first checkpoint.
    let first_note = store
        .checkpoints(from_seq + 1, size)
        .await?
        .into_iter()
        .next()
        .map_or_else(|| note.clone(), |(_, n)| n);
    let key = candidate_keys(state, period)
        .into_iter()
        .find(|(k, _)| Checkpoint::open(&first_note, k, Some(&state.origin)).is_ok());
    let signers = signers_of(&first_note);
    let check = match &key {
        Some((k, _)) => verify_export(store, &state.origin, from_seq, size, k).await?,
        None => Err("no key available to this report verifies the checkpoint".to_owned()),
    };
    Ok(Integrity::Covered(Box::new(Covered {
        size,
        note,
        key,
        signers,
        check,
    })))
}

/// Keys the checkpoints may be signed with: the gateway's current key, keys retired beside it
/// by rotations, and keys announced in the period.
fn candidate_keys(state: &StateLocation, period: &Period) -> Vec<(VerifierKey, &'static str)> {
    let mut keys = Vec::new();
    if let Ok(k) = keyfile::load(&state.key_file) {
        keys.push((
            k.verifier(),
            "the gateway's current key (`countersign audit public-key`)",
        ));
    }
    if let (Some(dir), Some(name)) = (state.key_file.parent(), state.key_file.file_name()) {
        let prefix = format!("{}.retired-", name.to_string_lossy());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut retired: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    })
                    .collect()
            })
            .unwrap_or_default();
        retired.sort();
        for path in retired {
            if let Ok(k) = keyfile::load(&path) {
                keys.push((
                    k.verifier(),
                    "a key retired by a rotation (kept beside the key file)",
                ));
            }
        }
    }
    for ev in &period.rotations {
        if let Some(k) =
            ev.e.outcome
                .as_deref()
                .and_then(|o| countersign_audit::parse_key_rotation(o).ok())
        {
            keys.push((k, "the key announced by a rotation in the period"));
        }
    }
    keys
}

/// `name (key id XXXXXXXX)` for each signature line of a note.
fn signers_of(note: &str) -> Vec<String> {
    use base64::Engine as _;
    note.lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| {
            let (name, sig) = l.split_once(' ')?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(sig).ok()?;
            let id = bytes.get(..4)?;
            Some(format!("{name} (key id {})", hex::encode(id)))
        })
        .collect()
}

/// Feeds an export, as it is written, line by line to the verifier.
struct VerifyingWriter {
    verifier: ExportVerifier,
    line: Vec<u8>,
    line_no: u64,
}

impl std::io::Write for VerifyingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..at]);
            self.line_no += 1;
            // The verifier keeps its first error and reports it again at `finish`.
            let _ = self.verifier.line(self.line_no, &self.line);
            self.line.clear();
            rest = &rest[at + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Verifies records `from..to` exactly as `audit export` + `audit verify` would.
async fn verify_export(
    store: &Store,
    origin: &str,
    from: u64,
    to: u64,
    key: &VerifierKey,
) -> Result<Result<String, String>> {
    let mut writer = VerifyingWriter {
        verifier: ExportVerifier::new(vec![key.clone()]),
        line: Vec::new(),
        line_no: 0,
    };
    if let Err(e) = audit_io::write_export(store, origin, from, Some(to), &mut writer, |_| {}).await
    {
        return Ok(Err(format!("the export could not be written: {e}")));
    }
    if !writer.line.is_empty() {
        return Ok(Err("the export ends with an incomplete line".to_owned()));
    }
    Ok(match writer.verifier.finish() {
        Ok(s) => Ok(format!(
            "{} records ({}..{}) verified against {} checkpoints",
            s.events,
            s.first_seq.map_or("-".into(), |v| v.to_string()),
            s.last_seq.map_or("-".into(), |v| v.to_string()),
            s.checkpoints
        )),
        Err(e) => Err(e.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------------

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
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

fn system_time(t: Timestamp) -> std::time::SystemTime {
    let ms = u64::try_from(t.millis()).unwrap_or(0);
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// `2026-11-01 12:03:04` (UTC).
fn when(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(system_time(t))
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// RFC 3339 with milliseconds, for machine-readable output.
fn when_ms(t: Timestamp) -> String {
    humantime::format_rfc3339_millis(system_time(t)).to_string()
}

fn day_label(day: i64) -> String {
    when(Timestamp(day.saturating_mul(DAY_MS)))
        .chars()
        .take(10)
        .collect()
}

/// `42s`, `3m 12s`, `2h 05m`, `3d 4h`.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 if ms < 1000 => format!("{}ms", ms.max(0)),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// An escaped principal id that may break before its `@`.
fn esc_id(id: &str) -> String {
    esc(id).replace('@', "<wbr>@")
}

fn who(p: &PrincipalRef) -> String {
    format!("{} {}", p.kind.as_str(), p.id)
}

fn resource_text(r: &Resource) -> String {
    let mut text = format!("{}::{:?}", r.kind, r.id);
    if let Some(parent) = &r.parent {
        text.push_str(&format!(" in {parent}"));
    }
    if let Some(c) = r.classification {
        text.push_str(&format!(" [{}]", c.as_str()));
    }
    if !r.tags.is_empty() {
        let tags: Vec<&str> = r.tags.iter().map(String::as_str).collect();
        text.push_str(&format!(" {{{}}}", tags.join(",")));
    }
    text
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

fn payload_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

/// `shape` and end of a `grant.issued` outcome (`once grant until <millis>`).
fn grant_terms(outcome: Option<&str>) -> String {
    let Some(o) = outcome else {
        return String::new();
    };
    match o.split_once(" grant until ") {
        Some((shape, until)) => match until.trim().parse::<i64>() {
            Ok(ms) => format!("{}, until {}", shape_text(shape), when(Timestamp(ms))),
            Err(_) => o.to_owned(),
        },
        None => o.to_owned(),
    }
}

/// `once`, or a window (`3600s`) as `1h window`.
fn shape_text(shape: &str) -> String {
    let Some(secs) = shape.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) else {
        return shape.to_owned();
    };
    let span = match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{span} window")
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

/// Rounds `max / 4` up to 1, 2 or 5 times a power of ten.
fn tick_step(max: u64) -> u64 {
    let rough = max.div_ceil(4).max(1);
    let mut power = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * power >= rough {
                return m * power;
            }
        }
        power = power.saturating_mul(10);
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

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Report {
    from: Timestamp,
    to: Timestamp,
    from_text: String,
    to_text: String,
    origin: String,
    generated_at: Timestamp,
    from_seq: u64,
    to_seq: u64,
    period: Period,
    integrity: Integrity,
    config: Option<PathBuf>,
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

impl Report {
    fn html(&self) -> String {
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
            include_str!("report/report.css")
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

    fn csv(&self) -> String {
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

// ---------------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------------

struct BarChart<'a> {
    id: &'a str,
    caption: &'a str,
    desc: &'a str,
    labels: &'a [String],
    /// Label as `MM-DD` (dates) and only as many as fit.
    short_labels: bool,
    series: &'a [(&'a str, &'a str)],
    /// One stack of values per label, one value per series.
    values: &'a [Vec<u64>],
    x_title: &'a str,
    y_title: &'a str,
    value_labels: bool,
}

/// A stacked bar chart as inline SVG, with axes, a legend and an accessible title.
fn bar_chart(c: &BarChart<'_>) -> String {
    const W: f64 = 660.0;
    const H: f64 = 280.0;
    const LEFT: f64 = 52.0;
    const RIGHT: f64 = 14.0;
    const TOP: f64 = 34.0;
    const BOTTOM: f64 = 50.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let n = c.labels.len().max(1);
    let totals: Vec<u64> = c.values.iter().map(|v| v.iter().sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let step = tick_step(max);
    let mut top = (max.div_ceil(step).max(1)) * step;
    if c.value_labels && top == max {
        // Room above the tallest bar for its label.
        top += step;
    }
    let y = |v: u64| TOP + plot_h - (v as f64 / top as f64) * plot_h;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.72).clamp(1.0, 56.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><figcaption id=\"{id}-caption\">{cap}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\"><title id=\"{id}-title\">{cap}</title>\
         <desc id=\"{id}-desc\">{desc}</desc>",
        id = c.id,
        cap = esc(c.caption),
        desc = esc(c.desc),
    );
    // Grid and y axis.
    let mut v = 0;
    while v <= top {
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#d8dee4\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#444\">{v}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#444\"/>\
         <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>",
        TOP + plot_h,
        TOP + plot_h,
        W - RIGHT,
        TOP + plot_h
    );
    // Bars.
    for (i, stack) in c.values.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0u64;
        for (k, value) in stack.iter().enumerate() {
            if *value == 0 {
                continue;
            }
            let (name, color) = c.series.get(k).copied().unwrap_or(("", "#888"));
            let y1 = y(base + value);
            let y0 = y(base);
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y1:.2}\" width=\"{bar:.2}\" height=\"{:.2}\" fill=\"{color}\">\
                 <title>{}: {value} {}</title></rect>",
                (y0 - y1).max(0.5),
                esc(c.labels.get(i).map_or("", String::as_str)),
                esc(name)
            );
            base += value;
        }
        if c.value_labels {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#222\">{}</text>",
                x + bar / 2.0,
                y(base) - 4.0,
                totals.get(i).copied().unwrap_or(0)
            );
        }
    }
    // X labels: as many as fit.
    let every = if c.short_labels { n.div_ceil(12) } else { 1 };
    for (i, label) in c.labels.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let text = if c.short_labels {
            label.get(5..).unwrap_or(label)
        } else {
            label
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">{}</text>",
            LEFT + slot * (i as f64 + 0.5),
            TOP + plot_h + 15.0,
            esc(text)
        );
    }
    // Axis titles.
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11.5\" fill=\"#222\">{}</text>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"11.5\" fill=\"#222\">{}</text>",
        LEFT + plot_w / 2.0,
        H - 12.0,
        esc(c.x_title),
        TOP + plot_h / 2.0,
        esc(c.y_title)
    );
    // Legend.
    let mut lx = LEFT;
    for (name, color) in c.series {
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"10\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"20\" font-size=\"11.5\" fill=\"#222\">{}</text>",
            lx + 16.0,
            esc(name)
        );
        lx += 24.0 + 7.0 * name.len() as f64;
    }
    if max == 0 {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#666\">no data in this period</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    s.push_str("</svg></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_csv_quoting() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
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

    #[test]
    fn durations_ticks_and_quoting() {
        assert_eq!(duration(450), "450ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(7_500_000), "2h 05m");
        assert_eq!(duration(100_000_000), "1d 3h");
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(33), 10);
        assert_eq!(tick_step(180), 50);
        assert_eq!(shell_quote("/tmp/a b/c.toml"), "'/tmp/a b/c.toml'");
        assert_eq!(shell_quote("/tmp/c.toml"), "/tmp/c.toml");
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(
            grant_terms(Some("once grant until 86400000")),
            "once, until 1970-01-02 00:00:00"
        );
        assert_eq!(
            grant_terms(Some("900s grant until 0")),
            "15m window, until 1970-01-01 00:00:00"
        );
    }
}
