//! The audit journal: an append-only file of the records nobody waits for a commit of (the
//! decisions of reads a gate answers ahead, what became of forwarded actions), written the
//! moment each record is made, so that a gateway that dies before the writer's next commit
//! loses none of them.
//!
//! One record is one JSON line, handed to the kernel by a single `write` on a file opened for
//! appending: once `append` returns, the record survives a crash of the process. The writer
//! commits journaled records to the store in batches and moves the store's [`JournalMark`] in
//! the same transaction; at start-up every record past the mark is read back and committed
//! first, so each reaches the store exactly once. What a crash of the whole machine can lose is
//! what the kernel had not yet written out when the last commit's fsync ran: at most the
//! backlog's delay worth of records (see `backlog.rs`).
//!
//! Segments (`00000000000000000001.jsonl`, …) roll over past [`SEGMENT_BYTES`] and are deleted
//! once the mark has passed them. A `LOCK` file held with an exclusive lock keeps a second
//! gateway out of the same journal.

use countersign_audit::AuditEvent;
use countersign_store::JournalMark;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A segment past this size is closed at the next drain and a new one started.
const SEGMENT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("audit journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the audit journal {0} is in use by another countersign process")]
    InUse(PathBuf),
    #[error(
        "audit journal {path}, line {line}: {detail}; the gateway will not start without this record: keep the file for inspection, and move it aside only to give the record up"
    )]
    Damaged {
        path: PathBuf,
        line: u64,
        detail: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    /// Held (locked) for as long as the journal is open.
    _lock: File,
    file: File,
    segment: u64,
    lines: u64,
    bytes: u64,
    /// The oldest segment that may still be on disk.
    oldest: u64,
    /// Set when a failed write could not be cut back off the file: appending more would put
    /// records after a partial line.
    broken: bool,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing), reads back every record past `mark`
    /// in order, and starts a new segment after every existing one.
    pub fn open(dir: &Path, mark: JournalMark) -> Result<(Journal, Vec<AuditEvent>), JournalError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::InUse(dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let segments = segments(dir)?;
        let mut events = Vec::new();
        for &n in segments.iter().filter(|&&n| n >= mark.segment) {
            let skip = if n == mark.segment { mark.line } else { 0 };
            read_segment(&segment_path(dir, n), skip, &mut events)?;
        }
        // Strictly after the mark's segment: a new segment under the mark's number would have
        // its first lines taken for ones already committed.
        let segment = segments
            .last()
            .map_or(0, |&last| last + 1)
            .max(mark.segment + 1);
        let file = create_segment(dir, segment)?;
        let journal = Journal {
            dir: dir.to_owned(),
            _lock: lock,
            file,
            segment,
            lines: 0,
            bytes: 0,
            oldest: segments.first().copied().unwrap_or(segment),
            broken: false,
        };
        Ok((journal, events))
    }

    /// Appends one record, a JSON line. Nothing of a failed append stays in the file.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write failed and could not be undone",
            ));
        }
        debug_assert!(line.ends_with(b"\n"));
        if let Err(e) = self.file.write_all(line) {
            // A short write would leave part of a line for the next record to follow.
            if self.file.set_len(self.bytes).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.lines += 1;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Where the next record goes; everything before it has been appended.
    pub fn position(&self) -> JournalMark {
        JournalMark {
            segment: self.segment,
            line: self.lines,
        }
    }

    /// Starts a new segment if the current one is large; the records in it stay where they are.
    pub fn roll_if_large(&mut self) {
        if self.bytes < SEGMENT_BYTES {
            return;
        }
        match create_segment(&self.dir, self.segment + 1) {
            Ok(file) => {
                self.file = file;
                self.segment += 1;
                self.lines = 0;
                self.bytes = 0;
                self.broken = false;
            }
            // Writing on into the large segment is harmless; the next drain tries again.
            Err(e) => tracing::warn!(error = %e, "cannot start a new audit journal segment"),
        }
    }

    /// Deletes the segments that lie wholly before `mark`: their records are in the store.
    pub fn release(&mut self, mark: JournalMark) {
        while self.oldest < mark.segment.min(self.segment) {
            let path = segment_path(&self.dir, self.oldest);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "cannot delete a committed audit journal segment");
                    return;
                }
            }
            self.oldest += 1;
        }
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.jsonl"))
}

fn create_segment(dir: &Path, n: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, n);
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error(&path))
}

/// The numbers of the segment files in `dir`, ascending. Other files are left alone.
fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(n) = stem.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads the records of one segment after its first `skip` lines into `out`. A last line
/// without its newline (and zero bytes after the last line) is what a crash leaves of a write
/// that never completed: dropped, with a warning. Any other line that does not parse is damage.
fn read_segment(path: &Path, skip: u64, out: &mut Vec<AuditEvent>) -> Result<(), JournalError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let content = &bytes[..end];
    let complete = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if complete < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            bytes = bytes.len() - complete,
            "dropping the unfinished last write of an audit journal segment"
        );
    }
    if complete == 0 {
        return Ok(());
    }
    for (i, line) in content[..complete - 1].split(|&b| b == b'\n').enumerate() {
        let number = i as u64 + 1;
        if number <= skip {
            continue;
        }
        let event = serde_json::from_slice(line).map_err(|e| JournalError::Damaged {
            path: path.to_owned(),
            line: number,
            detail: format!("not an audit event: {e}"),
        })?;
        out.push(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_audit::EventKind;
    use countersign_core::Timestamp;

    fn event(n: i64) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Execution, Timestamp(n));
        e.reason = Some(format!("record {n}"));
        e
    }

    fn line(e: &AuditEvent) -> Vec<u8> {
        let mut l = serde_json::to_vec(e).unwrap();
        l.push(b'\n');
        l
    }

    fn times(events: &[AuditEvent]) -> Vec<i64> {
        events.iter().map(|e| e.time.0).collect()
    }

    #[test]
    fn records_past_the_mark_come_back_in_order_and_the_rest_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, none) = Journal::open(dir.path(), JournalMark::default()).unwrap();
        assert!(none.is_empty());
        for n in 1..=5 {
            j.append(&line(&event(n))).unwrap();
        }
        let mark = JournalMark {
            segment: j.position().segment,
            line: 2,
        };
        drop(j);
        let (j, back) = Journal::open(dir.path(), mark).unwrap();
        assert_eq!(times(&back), [3, 4, 5]);
        assert!(
            j.position().segment > mark.segment,
            "a new segment each start"
        );
        drop(j);
        // Everything before a later segment's start is committed.
        let (_, back) = Journal::open(
            dir.path(),
            JournalMark {
                segment: mark.segment + 1,
                line: 0,
            },
        )
        .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn a_second_gateway_cannot_open_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Journal::open(dir.path(), JournalMark::default()).unwrap();
        let err = Journal::open(dir.path(), JournalMark::default()).unwrap_err();
        assert!(matches!(err, JournalError::InUse(_)), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn an_unfinished_last_write_is_dropped_but_a_damaged_line_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalMark::default()).unwrap();
        j.append(&line(&event(1))).unwrap();
        let path = segment_path(dir.path(), j.position().segment);
        drop(j);
        // What a crash mid-write leaves: part of a line, or zeroed blocks.
        let mut torn = line(&event(2));
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[torn.as_slice(), &[0; 64]].concat())
            .unwrap();
        let (j, back) = Journal::open(dir.path(), JournalMark::default()).unwrap();
        assert_eq!(times(&back), [1]);
        drop(j);

        // A complete line that is not an event is damage, named by file and line.
        std::fs::write(&path, [line(&event(1)), b"{\"time\":\n".to_vec()].concat()).unwrap();
        let err = Journal::open(dir.path(), JournalMark::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, JournalError::Damaged { line: 2, .. }),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    #[test]
    fn committed_segments_are_deleted_and_rolling_keeps_numbers_rising() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalMark::default()).unwrap();
        let first = j.position().segment;
        let big = line(&event(1));
        while j.bytes < SEGMENT_BYTES {
            j.append(&big).unwrap();
        }
        j.roll_if_large();
        assert_eq!(j.position().segment, first + 1);
        assert_eq!(j.position().line, 0);
        j.append(&line(&event(2))).unwrap();
        j.release(j.position());
        assert_eq!(segments(dir.path()).unwrap(), [first + 1]);
        let mark = j.position();
        drop(j);
        let (j, back) = Journal::open(dir.path(), mark).unwrap();
        assert!(back.is_empty());
        assert_eq!(j.position().segment, first + 2);
    }
}
