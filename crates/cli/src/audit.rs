//! `countersign audit …`: the operator and auditor side of the audit log.
//!
//! `public-key`, `export`, `verify --store` and `prove` read the gateway's state directly
//! (`--config`, or the development default); `verify FILE` and `verify-proof FILE` need nothing
//! but the file and the public key, so an auditor can run them anywhere; `rotate-key` asks the
//! running gateway.

use crate::client::Client;
use crate::config::StateLocation;
use anyhow::{Context, Result, bail};
use countersign_audit::export::{VerifyError, VerifySummary, verify_reader};
use countersign_audit::merkle;
use countersign_audit::note::{Checkpoint, VerifierKey};
use countersign_engine::{audit_io, keyfile};
use countersign_store::Store;
use serde_json::{Value, json};
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

/// A verifier key given on the command line: the key text itself, or `@FILE` / a path to a
/// file holding it.
pub fn read_key(arg: &str) -> Result<VerifierKey> {
    let text =
        match arg.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read key file {path}"))?,
            None if Path::new(arg).is_file() => std::fs::read_to_string(arg)
                .with_context(|| format!("cannot read key file {arg}"))?,
            None => arg.to_owned(),
        };
    VerifierKey::parse(text.trim())
        .with_context(|| format!("`{}` is not a verifier key", text.trim()))
}

/// `countersign audit public-key`: the verifier key of the gateway's signing key.
pub fn public_key(state: &StateLocation) -> Result<()> {
    let key = keyfile::load(&state.key_file)?;
    println!("{}", key.verifier());
    Ok(())
}

fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A record number, or a date (`2026-11-01`, or RFC 3339) meaning the first record at or after
/// it.
async fn record_bound(store: &Store, text: &str) -> Result<u64> {
    if let Ok(seq) = text.parse::<u64>() {
        return Ok(seq);
    }
    let time = parse_date(text)?;
    Ok(store.audit_seq_at(time).await?)
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub fn parse_date(text: &str) -> Result<countersign_core::Timestamp> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let time = humantime::parse_rfc3339_weak(&full).with_context(|| {
        format!("`{text}` is neither a record number nor a date like 2026-11-01")
    })?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .context("dates before 1970 are not in any log")?
        .as_millis();
    Ok(countersign_core::Timestamp(
        i64::try_from(ms).unwrap_or(i64::MAX),
    ))
}

/// `countersign audit export`.
pub async fn export(
    state: &StateLocation,
    out: &Path,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<()> {
    let store = state.open_store().await?;
    let from = match from {
        Some(text) => Some(record_bound(&store, text).await?),
        None => None,
    };
    let to = match to {
        Some(text) => Some(record_bound(&store, text).await?),
        None => None,
    };
    // Written beside the target and renamed when complete: a failed export leaves no file
    // that looks like one.
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let from = from.unwrap_or(0);
    let bar = progress_bar(
        to.unwrap_or(store.audit_size().await?).saturating_sub(from),
        "exporting",
    );
    let written = audit_io::write_export(&store, &state.origin, from, to, &mut writer, |n| {
        bar.set_position(n)
    })
    .await;
    bar.finish_and_clear();
    drop(writer);
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move the export to {}", out.display()))?;
    eprintln!(
        "exported records {}..{} with {} checkpoints to {}",
        summary.from,
        summary.to,
        summary.checkpoints,
        out.display()
    );
    Ok(())
}

fn report(summary: &VerifySummary) {
    let last = summary
        .last_checkpoint
        .as_ref()
        .map_or("none".to_owned(), |c| format!("size {}", c.size));
    println!(
        "ok: {} records ({}..{}) of {} verified against {} checkpoints (last: {last})",
        summary.events,
        summary.first_seq.map_or("-".into(), |s| s.to_string()),
        summary.last_seq.map_or("-".into(), |s| s.to_string()),
        summary.origin,
        summary.checkpoints,
    );
}

/// `countersign audit verify FILE --key KEY`: offline, from an export. Returns the exit code.
pub fn verify_file(path: &Path, keys: Vec<VerifierKey>) -> Result<i32> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(total, "verifying");
    let reader = std::io::BufReader::with_capacity(1 << 20, bar.wrap_read(file));
    let outcome = verify_reader(keys, reader);
    bar.finish_and_clear();
    Ok(conclude(outcome).map_or(1, |_| 0))
}

/// Prints the outcome of a verification: the summary, or the first problem found.
fn conclude(outcome: Result<VerifySummary, VerifyError>) -> Option<VerifySummary> {
    match outcome {
        Ok(summary) => {
            report(&summary);
            Some(summary)
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            None
        }
    }
}

/// `countersign audit verify --store`: the live database, checked like an export.
pub async fn verify_store(state: &StateLocation, keys: Vec<VerifierKey>) -> Result<i32> {
    let store = state.open_store().await?;
    let bar = progress_bar(store.audit_size().await?, "verifying");
    let outcome =
        audit_io::verify_store(&store, &state.origin, keys, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let Some(summary) = conclude(outcome) else {
        return Ok(1);
    };
    // A running gateway has usually logged records its next checkpoint will sign; they were
    // left out. A stopped one signs everything at shutdown.
    let signed = summary.last_checkpoint.as_ref().map_or(0, |c| c.size);
    let size = store.audit_size().await?;
    if size > signed {
        println!(
            "note: records {signed}..{} are newer than the last checkpoint and were not \
             verified: a running gateway signs them within its checkpoint interval; if it is \
             stopped, it did not shut down cleanly or a checkpoint is missing",
            size - 1
        );
    }
    Ok(0)
}

/// The self-contained inclusion proof format of `audit prove` / `audit verify-proof`.
const PROOF_FORMAT: &str = "countersign_inclusion_proof";

/// `countersign audit prove SEQ`.
pub async fn prove(state: &StateLocation, seq: u64, out: Option<&PathBuf>) -> Result<()> {
    use base64::Engine as _;
    let b64 = |h: &merkle::Hash| base64::engine::general_purpose::STANDARD.encode(h);
    let store = state.open_store().await?;
    let proof = audit_io::inclusion_proof(&store, seq).await?;
    let doc = json!({
        PROOF_FORMAT: 1,
        "seq": proof.seq,
        "tree_size": proof.tree_size,
        "leaf_hash": b64(&proof.leaf_hash),
        "path": proof.path.iter().map(b64).collect::<Vec<_>>(),
        "event": proof.event_json,
        "checkpoint": proof.checkpoint,
    });
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// `countersign audit verify-proof FILE --key KEY`. Returns the exit code.
pub fn verify_proof(path: &Path, key: &VerifierKey) -> Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match check_proof(&text, key) {
        Ok(message) => {
            println!("ok: {message}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            Ok(1)
        }
    }
}

fn check_proof(text: &str, key: &VerifierKey) -> Result<String> {
    use base64::Engine as _;
    let doc: Value = serde_json::from_str(text).context("the proof is not JSON")?;
    if doc[PROOF_FORMAT] != 1 {
        bail!("not a countersign inclusion proof (missing `{PROOF_FORMAT}: 1`)");
    }
    let field = |name: &str| {
        doc.get(name)
            .with_context(|| format!("the proof lacks `{name}`"))
    };
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .with_context(|| format!("`{name}` is not a number"))
    };
    let hash = |v: &Value, what: &str| -> Result<merkle::Hash> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                v.as_str()
                    .with_context(|| format!("{what} is not a string"))?,
            )
            .with_context(|| format!("{what} is not base64"))?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{what} is not 32 bytes"))
    };
    let seq = number("seq")?;
    let size = number("tree_size")?;
    let event = field("event")?
        .as_str()
        .context("`event` is not a string")?;
    let note = field("checkpoint")?
        .as_str()
        .context("`checkpoint` is not a string")?;
    let path = field("path")?
        .as_array()
        .context("`path` is not a list")?
        .iter()
        .enumerate()
        .map(|(i, v)| hash(v, &format!("path[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let leaf = merkle::leaf_hash(event.as_bytes());
    if leaf != hash(field("leaf_hash")?, "leaf_hash")? {
        bail!("the event does not hash to the proof's leaf hash (altered event)");
    }
    let parsed: Value = serde_json::from_str(event).context("the event is not JSON")?;
    if parsed["seq"].as_u64() != Some(seq) {
        bail!("the event's own sequence number is not {seq}");
    }
    let checkpoint = Checkpoint::open(note, key, None).context("the checkpoint")?;
    if checkpoint.size != size {
        bail!(
            "the checkpoint is for {} records, the proof for {size}",
            checkpoint.size
        );
    }
    merkle::verify_inclusion(seq, size, &leaf, &path, &checkpoint.root)
        .context("the inclusion path does not lead to the signed root")?;
    Ok(format!(
        "record {seq} ({}) is in the log {} of {size} records, signed by {}",
        parsed["kind"].as_str().unwrap_or("?"),
        checkpoint.origin,
        key.name()
    ))
}

/// `countersign audit rotate-key`: through the running gateway (administrators).
pub async fn rotate_key(client: &Client) -> Result<()> {
    let body = client.post("/v1/audit/rotate-key", &json!({})).await?;
    println!(
        "rotated; new verifier key: {}",
        body["verifier_key"].as_str().unwrap_or("?")
    );
    Ok(())
}
