//! The integrity section's facts: the checkpoint covering the period, the key that signed it,
//! and the result of verifying the period's export while generating the report.

use super::period::Period;
use crate::config::StateLocation;
use anyhow::Result;
use countersign_audit::export::ExportVerifier;
use countersign_audit::note::{Checkpoint, VerifierKey};
use countersign_engine::{audit_io, keyfile};
use countersign_store::Store;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) enum Integrity {
    /// No records in the period.
    Empty,
    /// No checkpoint covers the period's last record yet.
    NotCovered {
        latest: Option<u64>,
    },
    Covered(Box<Covered>),
}

#[derive(Debug)]
pub(super) struct Covered {
    pub(super) size: u64,
    pub(super) note: String,
    /// The key that verifies the first checkpoint of the export, and where it came from.
    pub(super) key: Option<(VerifierKey, &'static str)>,
    /// When no key was found: the name and key id on the note's signature lines.
    pub(super) signers: Vec<String>,
    /// The outcome of verifying the export while generating the report.
    pub(super) check: Result<String, String>,
}

pub(super) async fn integrity(
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
