//! The audit journal: an append-only file of the records nobody waits for a commit of (the
//! decisions of reads a gate answers ahead, what became of forwarded actions), written the
//! moment each record is made, so that a gateway that dies before the writer's next commit
//! loses none of them.
//!
//! One record is one JSON line, handed to the kernel by a `write` on a file opened for
//! appending: once `append` returns, the record survives a crash of the process. A decision's
//! line is written before the decision is acted on; the line of what became of an action may
//! wait in memory for the next decision's `write` or the next sync, whichever comes first.
//! A thread syncs the journal to disk every `journal_sync_every` (10 ms by default; see
//! `backlog.rs`), so what a crash of the whole machine (power, kernel) can lose is what was
//! journaled in the last sync interval, or at most 50 ms more while syncs lag, since decisions
//! stop being acted on ahead of their commit then; after a failed sync, what it left unsynced
//! until the store has it (decisions wait for their commit meanwhile).
//!
//! The writer commits journaled records to the store in batches, every `journal_commit_every`
//! (200 ms by default: a commit costs per page, so fewer, fuller commits cost less per record),
//! and moves the store's [`JournalMark`] in the same transaction; at start-up every record past
//! the mark is read back and committed first, so each reaches the store exactly once.
//!
//! Segments (`00000000000000000001.jsonl`, …) roll over past [`SEGMENT_BYTES`] and are deleted
//! once the mark has passed them. A `LOCK` file held with an exclusive lock keeps a second
//! gateway out of the same journal.

use countersign_audit::AuditEvent;
use countersign_store::JournalMark;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long [`Journal::lock`] waits for another holder to let go.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// A segment past this size is closed at the next write and a new one started.
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
        "the store has taken audit journal segment {segment} up to line {line}, and {dir} holds no such segment: this is not the journal the store was run with, or it was moved; point [audit] journal at that directory. If it is lost, the records it held past the store are lost with it: to start anyway, create an empty file {file} in {dir}"
    )]
    NotThisStores {
        dir: PathBuf,
        segment: u64,
        line: u64,
        file: String,
    },
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

/// A journal directory this process holds, not yet read back.
#[derive(Debug)]
pub(crate) struct Locked {
    dir: PathBuf,
    lock: File,
}

impl Locked {
    /// Reads back every record past `mark` in order, each with the position just after it,
    /// and starts a new segment after every existing one.
    pub fn recover(self, mark: JournalMark) -> Result<(Journal, Vec<Journaled>), JournalError> {
        let Locked { dir, lock } = self;
        let segments = segments(&dir)?;
        // The mark's own segment is never deleted (only those wholly before it are): without
        // it, the records past the mark are somewhere else.
        if mark != JournalMark::default() && !segments.contains(&mark.segment) {
            return Err(JournalError::NotThisStores {
                file: segment_name(mark.segment),
                dir,
                segment: mark.segment,
                line: mark.line,
            });
        }
        let mut records = Vec::new();
        for &n in segments.iter().filter(|&&n| n >= mark.segment) {
            let skip = if n == mark.segment { mark.line } else { 0 };
            read_segment(&segment_path(&dir, n), n, skip, &mut records)?;
        }
        // Strictly after the mark's segment: a new segment under the mark's number would have
        // its first lines taken for ones already committed.
        let segment = segments
            .last()
            .map_or(0, |&last| last + 1)
            .max(mark.segment + 1);
        let file = create_segment(&dir, segment)?;
        let journal = Journal {
            oldest: segments.first().copied().unwrap_or(segment),
            dir,
            _lock: lock,
            file: Arc::new(file),
            dirty: false,
            retired: Vec::new(),
            segment,
            lines: 0,
            bytes: 0,
            broken: false,
        };
        Ok((journal, records))
    }
}

/// A record read back from the journal, and the position just after it.
pub(crate) type Journaled = (AuditEvent, JournalMark);

#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    /// Held (locked) for as long as the journal is open.
    _lock: File,
    /// The segment being written; shared with the thread that syncs it (see `backlog.rs`).
    file: Arc<File>,
    /// Lines were written since the last [`Journal::unsynced`].
    dirty: bool,
    /// Earlier segments written to since the last [`Journal::unsynced`].
    retired: Vec<Arc<File>>,
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
    /// Takes the journal in `dir` (created, mode 0700, if missing) for this process. Before
    /// the store's mark is read: a gateway still shutting down may move the mark until it lets
    /// go of the journal.
    pub fn lock(dir: &Path) -> Result<Locked, JournalError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = private(OpenOptions::new().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // A gateway that is shutting down, or an engine of this process being dropped (its
        // journal sync thread may hold it a moment longer), lets go shortly: wait that long.
        let patience = std::time::Instant::now() + LOCK_PATIENCE;
        loop {
            match lock.try_lock() {
                Ok(()) => {
                    return Ok(Locked {
                        dir: dir.to_owned(),
                        lock,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(JournalError::InUse(dir.to_owned()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
            }
        }
    }

    /// Appends whole records, one JSON line each, in one `write`, and returns the position just
    /// after the last. A failed append leaves nothing in the file, unless cutting it back off
    /// fails too: then the whole lines it wrote stay, [`Journal::position`] counts them, and
    /// the segment takes no more.
    pub fn append(&mut self, lines: &[u8]) -> io::Result<JournalMark> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write failed and could not be undone",
            ));
        }
        debug_assert!(lines.ends_with(b"\n"));
        self.dirty = true;
        let mut written = 0;
        let failure = loop {
            if written == lines.len() {
                break None;
            }
            match (&*self.file).write(&lines[written..]) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        let stayed = match &failure {
            None => lines.len(),
            // A short write would leave part of a line for the next record to follow.
            Some(_) if self.file.set_len(self.bytes).is_ok() => 0,
            Some(_) => {
                self.broken = true;
                written
            }
        };
        self.lines += lines[..stayed].iter().filter(|&&b| b == b'\n').count() as u64;
        self.bytes += stayed as u64;
        match failure {
            None => Ok(self.position()),
            Some(e) => Err(e),
        }
    }

    /// The position just after the last whole line written.
    pub fn position(&self) -> JournalMark {
        JournalMark {
            segment: self.segment,
            line: self.lines,
        }
    }

    /// Takes no more lines into the current segment: the next write starts a new one. For a
    /// segment whose sync failed, whose unsynced pages the kernel may have dropped.
    pub fn give_up_segment(&mut self) {
        self.broken = true;
    }

    /// Starts a new segment if the current one is large, or if it takes no more lines; the
    /// records in it stay where they are, and the sync thread syncs what it still holds.
    pub fn roll_if_due(&mut self) {
        if self.bytes < SEGMENT_BYTES && !self.broken {
            return;
        }
        match create_segment(&self.dir, self.segment + 1) {
            Ok(file) => {
                let old = std::mem::replace(&mut self.file, Arc::new(file));
                if std::mem::take(&mut self.dirty) {
                    self.retired.push(old);
                }
                self.segment += 1;
                self.lines = 0;
                self.bytes = 0;
                self.broken = false;
            }
            // Writing on into the large segment is harmless; the next write tries again.
            Err(e) => tracing::warn!(error = %e, "cannot start a new audit journal segment"),
        }
    }

    /// The segment files written to since the last call: what to sync.
    pub fn unsynced(&mut self) -> Vec<Arc<File>> {
        let mut files = std::mem::take(&mut self.retired);
        if std::mem::take(&mut self.dirty) {
            files.push(self.file.clone());
        }
        files
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

fn segment_name(n: u64) -> String {
    format!("{n:020}.jsonl")
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_name(n))
}

/// Creates segment `n`, its directory entry on disk before any record goes into it.
fn create_segment(dir: &Path, n: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, n);
    let file = private(OpenOptions::new().append(true).create_new(true))
        .open(&path)
        .map_err(io_error(&path))?;
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        // Not left behind: the next try creates the same segment, which must not exist yet.
        let _ = std::fs::remove_file(&path);
        return Err(io_error(dir)(e));
    }
    Ok(file)
}

/// Files the journal creates are readable by the gateway alone: records carry SQL text and
/// tool arguments.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
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

/// Reads the records of segment `n` after its first `skip` lines into `out`. A last line
/// without its newline (and zero bytes after the last line) is what a crash leaves of a write
/// that never completed: dropped, with a warning. Any other line that does not parse is damage.
fn read_segment(
    path: &Path,
    n: u64,
    skip: u64,
    out: &mut Vec<Journaled>,
) -> Result<(), JournalError> {
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
        out.push((
            event,
            JournalMark {
                segment: n,
                line: number,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_audit::EventKind;
    use countersign_core::Timestamp;

    fn open(dir: &Path, mark: JournalMark) -> Result<(Journal, Vec<Journaled>), JournalError> {
        Journal::lock(dir)?.recover(mark)
    }

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

    fn times(records: &[Journaled]) -> Vec<i64> {
        records.iter().map(|(e, _)| e.time.0).collect()
    }

    #[test]
    fn records_past_the_mark_come_back_in_order_with_their_positions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, none) = open(dir.path(), JournalMark::default()).unwrap();
        assert!(none.is_empty());
        let at: Vec<JournalMark> = (1..=5)
            .map(|n| j.append(&line(&event(n))).unwrap())
            .collect();
        drop(j);
        let (j, back) = open(dir.path(), at[1]).unwrap();
        assert_eq!(times(&back), [3, 4, 5]);
        let positions: Vec<JournalMark> = back.iter().map(|(_, at)| *at).collect();
        assert_eq!(positions, at[2..]);
        assert!(j.segment > at[4].segment, "a new segment each start");
        drop(j);
        // Everything before a later segment's start is committed.
        let later = JournalMark {
            segment: at[4].segment + 1,
            line: 0,
        };
        let (_, back) = open(dir.path(), later).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn a_journal_without_the_marks_segment_is_refused_until_the_loss_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mark = JournalMark {
            segment: 3,
            line: 9,
        };
        let err = open(dir.path(), mark).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, JournalError::NotThisStores { .. }), "{text}");
        assert!(text.contains("00000000000000000003.jsonl"), "{text}");
        std::fs::write(dir.path().join("00000000000000000003.jsonl"), "").unwrap();
        let (j, back) = open(dir.path(), mark).unwrap();
        assert!(back.is_empty());
        assert_eq!(j.segment, 4);
    }

    #[test]
    fn a_second_gateway_cannot_take_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Journal::lock(dir.path()).unwrap();
        let err = Journal::lock(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::InUse(_)), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn only_the_gateway_can_read_the_journal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut j, _) = open(&journal_dir, JournalMark::default()).unwrap();
        let at = j.append(&line(&event(1))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&journal_dir), 0o700);
        assert_eq!(mode(&segment_path(&journal_dir, at.segment)), 0o600);
    }

    #[test]
    fn an_unfinished_last_write_is_dropped_but_a_damaged_line_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path(), JournalMark::default()).unwrap();
        let at = j.append(&line(&event(1))).unwrap();
        let path = segment_path(dir.path(), at.segment);
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
        let (j, back) = open(dir.path(), JournalMark::default()).unwrap();
        assert_eq!(times(&back), [1]);
        drop(j);

        // A complete line that is not an event is damage, named by file and line.
        std::fs::write(&path, [line(&event(1)), b"{\"time\":\n".to_vec()].concat()).unwrap();
        let err = open(dir.path(), JournalMark::default()).unwrap_err();
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
        let (mut j, _) = open(dir.path(), JournalMark::default()).unwrap();
        let first = j.segment;
        let big = line(&event(1));
        while j.bytes < SEGMENT_BYTES {
            j.append(&big).unwrap();
        }
        j.roll_if_due();
        assert_eq!((j.segment, j.lines), (first + 1, 0));
        let at = j.append(&line(&event(2))).unwrap();
        assert_eq!(at.segment, first + 1);
        j.release(at);
        assert_eq!(segments(dir.path()).unwrap(), [first + 1]);
        drop(j);
        let (j, back) = open(dir.path(), at).unwrap();
        assert!(back.is_empty());
        assert_eq!(j.segment, first + 2);
    }
}
