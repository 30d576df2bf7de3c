//! Records that nobody waits for a commit of, gathered for the writer's next batch.
//!
//! Callers append here instead of sending the writer a job, so a busy gate costs the writer one
//! wake-up per batch instead of one per record: the writer takes what is here once the oldest
//! record has waited the commit interval (`[audit] journal_commit_every`, 200 ms by default), or
//! sooner with the next job a caller does wait for. With an audit journal (see `journal.rs`)
//! every record is journaled in append order. A decision's line is written before it is
//! acted on ([`Backlog::push_decision`]); the line of an after-the-fact record (what became of
//! an action) waits in memory and goes out with the next decision's, in the same `write`, or
//! with the next sync, so a busy session costs one `write` per statement. A thread of its own
//! ([`Backlog::keep_synced`]) syncs the journal to disk every sync interval.
//!
//! Decisions are taken here only while the writer and the journal keep up: not once a batch
//! has failed to commit (until one commits again), not while the writer is [`STALL`] late
//! taking what is here (a commit that hangs), not past [`CAPACITY`] records, not once a sync
//! failed (until the store has every record journaled before it; the segment takes no more
//! lines) and not while the syncs are [`STALL`] late. A decision that is not taken
//! waits for its commit like every other, and is denied if that fails. A failed batch hands
//! its records back ([`Backlog::restore`]), in front of newer ones.

use crate::journal::{Journal, Journaled};
use crate::lock;
use countersign_audit::AuditEvent;
use countersign_store::JournalMark;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How late past a batch's due time the writer may be before decisions stop being taken here.
const STALL: Duration = Duration::from_millis(50);

/// After a failed commit, how long before the records are tried again (unless a job comes).
const RETRY: Duration = Duration::from_secs(1);

/// Most records held for the writer while decisions are still taken here.
const CAPACITY: usize = 100_000;

/// Most records one batch takes, so that a long backlog (one a restart recovered) commits in
/// transactions of bounded size.
const BATCH: usize = 20_000;

#[derive(Debug)]
pub(crate) struct Backlog {
    state: Mutex<State>,
    arrived: Notify,
    /// Decisions are taken only with a journal: without one they must wait for their commit.
    /// (Whether `state` holds a journal, which never changes, read without the lock.)
    journaled: bool,
    /// The last batch failed to commit.
    failing: AtomicBool,
    /// The gateway is stopping: an outcome's line is written at once, since no later write
    /// or sync may come to take it.
    closing: AtomicBool,
    /// Longest a record waits for its batch.
    delay: Duration,
    /// How often the journal is synced, once [`Backlog::keep_synced`] started the syncs.
    sync_every: OnceLock<Duration>,
    /// When the last round of the sync thread ended, in milliseconds since `epoch`.
    synced_at: AtomicU64,
    epoch: Instant,
}

#[derive(Debug)]
struct State {
    records: VecDeque<(AuditEvent, Place)>,
    /// When the writer should take what is here.
    due: Option<Instant>,
    journal: Option<Journal>,
    /// The journal lines of the records whose place is [`Place::Waiting`], in their order.
    unwritten: Vec<u8>,
    unwritten_records: usize,
    /// How far the store has taken the journal.
    committed: Option<JournalMark>,
    /// Where the journal stood when a sync failed: until the store has taken that far, records
    /// may exist only in pages the kernel dropped.
    sync_failed_at: Option<JournalMark>,
}

/// Where a record stands in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not in the journal (there is none, or its line could not be written).
    Unjournaled,
    /// Its line waits in [`State::unwritten`].
    Waiting,
    /// Written; the position just after its line.
    At(JournalMark),
}

impl Place {
    fn mark(self) -> Option<JournalMark> {
        match self {
            Place::At(mark) => Some(mark),
            Place::Unjournaled | Place::Waiting => None,
        }
    }
}

/// What the writer took for one batch.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    pub events: Vec<AuditEvent>,
    /// The journal position of each event, to hand them back unchanged.
    places: Vec<Option<JournalMark>>,
}

impl Drained {
    /// How far into the journal the batch accounts for, to store with it: the place of its
    /// last journaled record (positions rise along the backlog).
    pub fn mark(&self) -> Option<JournalMark> {
        self.places.iter().rev().find_map(|at| *at)
    }
}

/// Whether a decision was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Journaled: the caller may act on it now.
    Recorded,
    /// Not taken: the caller must have it committed.
    Declined,
}

impl Backlog {
    /// A backlog over `journal`, starting with the records `recovered` from it, which the
    /// writer commits at once.
    pub fn new(journal: Option<Journal>, recovered: Vec<Journaled>, delay: Duration) -> Backlog {
        let due = (!recovered.is_empty()).then(Instant::now);
        Backlog {
            journaled: journal.is_some(),
            state: Mutex::new(State {
                records: recovered
                    .into_iter()
                    .map(|(event, at)| (event, Place::At(at)))
                    .collect(),
                due,
                journal,
                unwritten: Vec::new(),
                unwritten_records: 0,
                committed: None,
                sync_failed_at: None,
            }),
            arrived: Notify::new(),
            failing: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            delay,
            sync_every: OnceLock::new(),
            synced_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Starts the thread that syncs the journal to disk every `every` (writing the lines that
    /// wait first), for as long as the backlog lives. Without a journal, nothing to do.
    pub fn keep_synced(self: &Arc<Self>, every: Duration) -> std::io::Result<()> {
        if !self.journaled || self.sync_every.set(every).is_err() {
            return Ok(());
        }
        self.synced_at.store(self.since_epoch(), Ordering::Relaxed);
        let backlog = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("audit-journal-sync".into())
            .spawn(move || sync_journal(&backlog, every))
            .map(drop)
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether records journaled now reach the disk in time: no failed sync puts records at
    /// risk, and the sync thread is not [`STALL`] late (a sync that hangs).
    fn syncs_keep_up(&self, state: &State) -> bool {
        if state.sync_failed_at.is_some() {
            return false;
        }
        let Some(every) = self.sync_every.get() else {
            return true;
        };
        let late = self
            .since_epoch()
            .saturating_sub(self.synced_at.load(Ordering::Relaxed));
        Duration::from_millis(late) <= *every + STALL
    }

    /// Takes the record of a decision that is acted on before its commit, if it can be
    /// journaled now (with the lines still waiting to be written, in one `write`).
    pub fn push_decision(&self, event: AuditEvent) -> Admission {
        if !self.journaled || self.failing.load(Ordering::Relaxed) {
            return Admission::Declined;
        }
        let Ok(line) = journal_line(&event) else {
            return Admission::Declined;
        };
        let mut state = lock(&self.state);
        let stalled = state.due.is_some_and(|due| due.elapsed() > STALL);
        if stalled || state.records.len() >= CAPACITY || !self.syncs_keep_up(&state) {
            return Admission::Declined;
        }
        match write_waiting(&mut state, Some(&line)) {
            (Some(at), _) => {
                self.queue(&mut state, event, Place::At(at));
                Admission::Recorded
            }
            (None, e) => {
                let e = e.map_or_else(|| "no line written".to_owned(), |e| e.to_string());
                tracing::error!(error = %e, "cannot write the audit journal; decisions wait for the store");
                Admission::Declined
            }
        }
    }

    /// Takes an after-the-fact record (what became of an action). Its journal line is written
    /// with the next decision's, the next sync, or when the writer takes the backlog,
    /// whichever comes first.
    pub fn push_record(&self, event: AuditEvent) {
        let line = self.journaled.then(|| journal_line(&event));
        let mut state = lock(&self.state);
        let place = match line {
            Some(Ok(line)) => {
                state.unwritten.extend_from_slice(&line);
                state.unwritten_records += 1;
                Place::Waiting
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "an audit record cannot be journaled; it waits for the store");
                Place::Unjournaled
            }
            None => Place::Unjournaled,
        };
        self.queue(&mut state, event, place);
        if self.closing.load(Ordering::Relaxed) {
            write_pending(&mut state);
        }
    }

    /// For a gateway that is stopping: writes the lines that wait, and every later one at
    /// once, so that the journal holds every record the store may not get (the next start
    /// commits them).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        write_pending(&mut lock(&self.state));
    }

    fn queue(&self, state: &mut State, event: AuditEvent, place: Place) {
        state.records.push_back((event, place));
        if state.due.is_none() {
            state.due = Some(Instant::now() + self.delay);
            self.arrived.notify_one();
        }
    }

    /// Resolves when the writer should take what is here.
    pub async fn due(&self) {
        loop {
            let due = lock(&self.state).due;
            match due {
                Some(at) => {
                    tokio::time::sleep_until(at.into()).await;
                    return;
                }
                None => self.arrived.notified().await,
            }
        }
    }

    /// The oldest records here (at most [`BATCH`]), for one batch.
    pub fn drain(&self) -> Drained {
        let mut state = lock(&self.state);
        write_pending(&mut state);
        // Lines that could not be written: the records still go to the store; only the
        // journal's copy is given up.
        if state.unwritten_records > 0 {
            for (_, place) in &mut state.records {
                if *place == Place::Waiting {
                    *place = Place::Unjournaled;
                }
            }
            state.unwritten.clear();
            state.unwritten_records = 0;
        }
        let take = state.records.len().min(BATCH);
        let mut drained = Drained::default();
        for (event, place) in state.records.drain(..take) {
            drained.events.push(event);
            drained.places.push(place.mark());
        }
        // What is left goes with the next batch, at once.
        state.due = (!state.records.is_empty()).then(Instant::now);
        drained
    }

    /// Puts back what a failed batch took, before anything that came since, and stops taking
    /// decisions until a batch commits.
    pub fn restore(&self, drained: Drained) {
        self.failing.store(true, Ordering::Relaxed);
        if drained.events.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        for (event, at) in drained.events.into_iter().zip(drained.places).rev() {
            state
                .records
                .push_front((event, at.map_or(Place::Unjournaled, Place::At)));
        }
        state.due = Some(Instant::now() + RETRY);
    }

    /// After the batch that took up to `mark` committed: journal segments before it go, and
    /// decisions are taken again (once the store has what a failed sync put at risk).
    pub fn committed(&self, mark: Option<JournalMark>) {
        self.failing.store(false, Ordering::Relaxed);
        let Some(mark) = mark else { return };
        let mut state = lock(&self.state);
        state.committed = Some(mark);
        if state.sync_failed_at.is_some_and(|at| mark >= at) {
            state.sync_failed_at = None;
        }
        if let Some(journal) = &mut state.journal {
            journal.release(mark);
        }
    }

    /// A sync failed: the kernel may have dropped what was written since the last one. The
    /// segment takes no more lines, and decisions wait for their commit until the store has
    /// every record journaled so far.
    fn sync_failed(&self, state: &mut State) {
        let Some(journal) = &mut state.journal else {
            return;
        };
        journal.give_up_segment();
        let at = journal.position();
        if state.committed.is_some_and(|done| done >= at) {
            return;
        }
        state.sync_failed_at = Some(state.sync_failed_at.map_or(at, |earlier| earlier.max(at)));
    }

    /// How many records are here.
    pub fn len(&self) -> usize {
        lock(&self.state).records.len()
    }
}

fn journal_line(event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    // Room for a typical record at once, instead of growing through every power of two.
    let mut line = Vec::with_capacity(1024);
    serde_json::to_writer(&mut line, event)?;
    line.push(b'\n');
    Ok(line)
}

/// The sync thread: every `every`, writes the lines that wait and syncs what was written.
/// The backlog is held only while its lock is: a sync that hangs does not keep it alive, and
/// the thread ends with it.
fn sync_journal(backlog: &Weak<Backlog>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let files = {
            let Some(backlog) = backlog.upgrade() else {
                return;
            };
            let mut state = lock(&backlog.state);
            write_pending(&mut state);
            state
                .journal
                .as_mut()
                .map(Journal::unsynced)
                .unwrap_or_default()
        };
        let synced = files.iter().try_for_each(|file| file.sync_data());
        let Some(backlog) = backlog.upgrade() else {
            return;
        };
        if let Err(e) = &synced {
            tracing::error!(error = %e, "cannot sync the audit journal; decisions wait for the store");
            backlog.sync_failed(&mut lock(&backlog.state));
        }
        backlog
            .synced_at
            .store(backlog.since_epoch(), Ordering::Relaxed);
    }
}

/// Writes the waiting lines, and `decision`'s after them, in one `write`, and gives every
/// record whose whole line is now in the journal its place. Returns the decision's place if
/// its line is in, and the write's error if it failed (after which, unless the journal could
/// not cut the failed write back off, no line is in and every record still waits).
fn write_waiting(
    state: &mut State,
    decision: Option<&[u8]>,
) -> (Option<JournalMark>, Option<std::io::Error>) {
    let State {
        records,
        journal,
        unwritten,
        unwritten_records,
        ..
    } = state;
    let Some(journal) = journal else {
        return (None, Some(std::io::Error::other("no audit journal")));
    };
    // A new segment first, if one is due: lines go there rather than nowhere.
    journal.roll_if_due();
    let waiting_bytes = unwritten.len();
    if let Some(line) = decision {
        unwritten.extend_from_slice(line);
    }
    let before = journal.position();
    let error = journal.append(unwritten).err();
    unwritten.truncate(waiting_bytes);
    // Lines go in whole and in order, within one segment: the first `kept` of the waiting
    // records', then the decision's.
    let kept = usize::try_from(journal.position().line - before.line).unwrap_or(usize::MAX);
    let kept_waiting = kept.min(*unwritten_records);
    let mut waiting: Vec<&mut Place> = records
        .iter_mut()
        .rev()
        .map(|(_, place)| place)
        .filter(|place| **place == Place::Waiting)
        .take(*unwritten_records)
        .collect();
    waiting.reverse();
    for (i, place) in waiting.into_iter().take(kept_waiting).enumerate() {
        *place = Place::At(JournalMark {
            segment: before.segment,
            line: before.line + 1 + i as u64,
        });
    }
    let kept_bytes = match kept_waiting.checked_sub(1) {
        None => 0,
        Some(last) => unwritten
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(last)
            .map_or(unwritten.len(), |(at, _)| at + 1),
    };
    unwritten.drain(..kept_bytes);
    *unwritten_records -= kept_waiting;
    let decision_at = (decision.is_some() && kept > kept_waiting).then(|| JournalMark {
        segment: before.segment,
        line: before.line + kept as u64,
    });
    (decision_at, error)
}

/// Writes the lines that wait, if any. A failure is logged: those records still reach the
/// store, only not ahead of it.
fn write_pending(state: &mut State) {
    if state.unwritten_records > 0
        && let (_, Some(e)) = write_waiting(state, None)
    {
        tracing::error!(error = %e, "cannot write the audit journal; records wait for the store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_audit::EventKind;
    use countersign_core::Timestamp;

    const DELAY: Duration = Duration::from_millis(10);

    fn event(n: i64) -> AuditEvent {
        AuditEvent::new(EventKind::Execution, Timestamp(n))
    }

    fn journaled(dir: &std::path::Path) -> Backlog {
        let (journal, recovered) = Journal::lock(dir)
            .unwrap()
            .recover(JournalMark::default())
            .unwrap();
        Backlog::new(Some(journal), recovered, DELAY)
    }

    fn times(d: &Drained) -> Vec<i64> {
        d.events.iter().map(|e| e.time.0).collect()
    }

    #[test]
    fn a_failed_batch_gives_its_records_back_in_front_and_the_mark_follows_what_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        for n in 1..=3 {
            assert_eq!(backlog.push_decision(event(n)), Admission::Recorded);
        }
        let first = backlog.drain();
        assert_eq!(times(&first), [1, 2, 3]);
        let mark = first.mark().unwrap();
        assert_eq!(mark.line, 3);
        backlog.restore(first);
        backlog.push_record(event(4));
        let again = backlog.drain();
        assert_eq!(times(&again), [1, 2, 3, 4]);
        assert_eq!(again.mark().unwrap().line, 4);
        assert_eq!(backlog.len(), 0);
    }

    /// The lines the journal's segments in `dir` hold.
    fn lines_in(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .map(|p| {
                std::fs::read(p)
                    .unwrap()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            })
            .sum()
    }

    #[test]
    fn once_closing_outcome_lines_are_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        backlog.push_record(event(1));
        assert_eq!(lines_in(dir.path()), 0, "outcome lines wait");
        backlog.close();
        assert_eq!(lines_in(dir.path()), 1, "closing writes the waiting line");
        backlog.push_record(event(2));
        assert_eq!(lines_in(dir.path()), 2, "and every later one at once");
        let places: Vec<Option<u64>> = lock(&backlog.state)
            .records
            .iter()
            .map(|(_, place)| place.mark().map(|m| m.line))
            .collect();
        assert_eq!(places, [Some(1), Some(2)]);
    }

    #[test]
    fn outcome_lines_go_out_with_the_next_decision_or_the_next_drain() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        let written = || lines_in(dir.path());
        backlog.push_record(event(1));
        backlog.push_record(event(2));
        assert_eq!(written(), 0, "outcome lines wait");
        assert_eq!(backlog.push_decision(event(3)), Admission::Recorded);
        assert_eq!(written(), 3, "they went with the decision's");
        backlog.push_record(event(4));
        let drained = backlog.drain();
        assert_eq!(written(), 4, "the drain wrote the last one");
        assert_eq!(times(&drained), [1, 2, 3, 4]);
        let lines: Vec<u64> = drained.places.iter().map(|at| at.unwrap().line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        drop(backlog);

        // A restart reads back exactly these records, at exactly these places.
        let (_, recovered) = Journal::lock(dir.path())
            .unwrap()
            .recover(JournalMark::default())
            .unwrap();
        let read: Vec<(i64, Option<JournalMark>)> = recovered
            .iter()
            .map(|(e, at)| (e.time.0, Some(*at)))
            .collect();
        let taken: Vec<(i64, Option<JournalMark>)> = drained
            .events
            .iter()
            .map(|e| e.time.0)
            .zip(drained.places)
            .collect();
        assert_eq!(read, taken);
    }

    #[test]
    fn the_sync_thread_writes_waiting_lines_and_lets_go_with_the_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = Arc::new(journaled(dir.path()));
        backlog.keep_synced(Duration::from_millis(5)).unwrap();
        backlog.push_record(event(1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&backlog.state).unwritten_records > 0 {
            assert!(
                Instant::now() < deadline,
                "the waiting line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            matches!(lock(&backlog.state).records[0].1, Place::At(_)),
            "it has its place"
        );
        assert!(backlog.syncs_keep_up(&lock(&backlog.state)));
        drop(backlog);
        // The journal is free again at once: a restart need not wait for the thread.
        let (_, recovered) = Journal::lock(dir.path())
            .unwrap()
            .recover(JournalMark::default())
            .unwrap();
        assert_eq!(recovered.len(), 1);
    }

    #[test]
    fn places_go_to_the_records_whose_lines_were_written_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        backlog.push_record(event(1));
        // A record the journal does not hold (its line could not be made) between two that wait.
        lock(&backlog.state)
            .records
            .push_back((event(2), Place::Unjournaled));
        backlog.push_record(event(3));
        assert_eq!(backlog.push_decision(event(4)), Admission::Recorded);
        let places: Vec<Option<u64>> = lock(&backlog.state)
            .records
            .iter()
            .map(|(_, place)| place.mark().map(|m| m.line))
            .collect();
        assert_eq!(places, [Some(1), None, Some(2), Some(3)]);
    }

    #[test]
    fn after_a_failed_sync_decisions_wait_until_the_store_has_what_it_put_at_risk() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        for n in 1..=2 {
            assert_eq!(backlog.push_decision(event(n)), Admission::Recorded);
        }
        let first = backlog.drain();
        let segment = lock(&backlog.state)
            .journal
            .as_ref()
            .unwrap()
            .position()
            .segment;
        backlog.sync_failed(&mut lock(&backlog.state));
        assert_eq!(backlog.push_decision(event(3)), Admission::Declined);
        // A commit short of where the journal stood does not end it, however many come.
        backlog.committed(Some(JournalMark { segment, line: 1 }));
        assert_eq!(backlog.push_decision(event(4)), Admission::Declined);
        backlog.committed(first.mark());
        assert_eq!(backlog.push_decision(event(5)), Admission::Recorded);
        let placed = lock(&backlog.state).records[0].1.mark().unwrap();
        assert!(
            placed.segment > segment,
            "the failed segment took no more lines"
        );

        // Nothing at risk (all committed already): a failed sync stops nothing.
        let second = backlog.drain();
        backlog.committed(second.mark());
        backlog.sync_failed(&mut lock(&backlog.state));
        assert_eq!(backlog.push_decision(event(6)), Admission::Recorded);
    }

    #[test]
    fn decisions_wait_for_their_commit_while_syncs_fail_or_lag() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        // The rules without the thread: it would keep `synced_at` fresh.
        backlog.sync_every.set(DELAY).unwrap();
        backlog
            .synced_at
            .store(backlog.since_epoch(), Ordering::Relaxed);
        assert_eq!(backlog.push_decision(event(1)), Admission::Recorded);
        lock(&backlog.state).sync_failed_at = Some(JournalMark::default());
        assert_eq!(backlog.push_decision(event(2)), Admission::Declined);
        lock(&backlog.state).sync_failed_at = None;
        assert_eq!(backlog.push_decision(event(3)), Admission::Recorded);
        backlog.drain();
        // No sync round ended for longer than the interval and the stall allowance: a sync hangs.
        std::thread::sleep(DELAY + STALL + Duration::from_millis(20));
        assert_eq!(backlog.push_decision(event(4)), Admission::Declined);
    }

    #[test]
    fn decisions_wait_for_their_commit_while_the_writer_fails_or_lags() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        backlog.restore(Drained::default());
        assert_eq!(backlog.push_decision(event(1)), Admission::Declined);
        backlog.committed(None);
        assert_eq!(backlog.push_decision(event(2)), Admission::Recorded);
        // Nobody took it: once the writer is that late, decisions wait.
        std::thread::sleep(DELAY + STALL + Duration::from_millis(20));
        assert_eq!(backlog.push_decision(event(3)), Admission::Declined);
        assert_eq!(times(&backlog.drain()), [2]);
        assert_eq!(backlog.push_decision(event(4)), Admission::Recorded);

        // Without a journal, nothing is acted on ahead.
        let plain = Backlog::new(None, Vec::new(), DELAY);
        assert_eq!(plain.push_decision(event(5)), Admission::Declined);
    }

    #[test]
    fn a_long_backlog_commits_in_bounded_batches() {
        let backlog = Backlog::new(None, Vec::new(), DELAY);
        for n in 0..(BATCH as i64 + 5) {
            backlog.push_record(event(n));
        }
        let first = backlog.drain();
        assert_eq!(first.events.len(), BATCH);
        assert!(first.mark().is_none(), "nothing journaled, nothing to mark");
        let due = lock(&backlog.state).due.unwrap();
        assert!(due <= Instant::now(), "the rest is due at once");
        assert_eq!(
            times(&backlog.drain()),
            [
                BATCH as i64,
                BATCH as i64 + 1,
                BATCH as i64 + 2,
                BATCH as i64 + 3,
                BATCH as i64 + 4
            ]
        );
    }
}
