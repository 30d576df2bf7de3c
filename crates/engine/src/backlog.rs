//! Records that nobody waits for a commit of, gathered for the writer's next batch.
//!
//! Callers append here instead of sending the writer a job, so a busy gate costs the writer one
//! wake-up per batch instead of one per record: the writer takes what is here once the oldest
//! record has waited the commit interval (`[audit] journal_commit_every`, 10 ms by default), or sooner with the next job a caller does wait for. With an
//! audit journal (see `journal.rs`) each record is journaled as it is appended, in append
//! order, which is what lets a decision be acted on before its commit
//! ([`Backlog::push_decision`]).
//!
//! Decisions are taken here only while the writer keeps up: not once a batch has failed to
//! commit (until one commits again), not while the writer is [`STALL`] late taking what is
//! here (a commit that hangs), and not past [`CAPACITY`] records. A decision that is not taken
//! waits for its commit like every other, and is denied if that fails. A failed batch hands
//! its records back ([`Backlog::restore`]), in front of newer ones.

use crate::journal::{Journal, Journaled};
use crate::{EngineError, lock};
use countersign_audit::AuditEvent;
use countersign_store::JournalMark;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Longest a record waits for its batch.
    delay: Duration,
}

#[derive(Debug)]
struct State {
    /// Each record with its place in the journal (the position just after it), if journaled.
    records: VecDeque<(AuditEvent, Option<JournalMark>)>,
    /// When the writer should take what is here.
    due: Option<Instant>,
    journal: Option<Journal>,
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
#[derive(Debug)]
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
                    .map(|(event, at)| (event, Some(at)))
                    .collect(),
                due,
                journal,
            }),
            arrived: Notify::new(),
            failing: AtomicBool::new(false),
            delay,
        }
    }

    /// Takes the record of a decision that is acted on before its commit, if it can be
    /// journaled now.
    pub fn push_decision(&self, event: AuditEvent) -> Admission {
        if !self.journaled || self.failing.load(Ordering::Relaxed) {
            return Admission::Declined;
        }
        let Ok(line) = journal_line(&event) else {
            return Admission::Declined;
        };
        let mut state = lock(&self.state);
        let stalled = state.due.is_some_and(|due| due.elapsed() > STALL);
        if stalled || state.records.len() >= CAPACITY {
            return Admission::Declined;
        }
        let Some(journal) = &mut state.journal else {
            return Admission::Declined;
        };
        match journal.append(&line) {
            Ok(at) => {
                self.queue(&mut state, event, Some(at));
                Admission::Recorded
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the audit journal; decisions wait for the store");
                Admission::Declined
            }
        }
    }

    /// Takes an after-the-fact record (what became of an action). It is kept for the writer
    /// even if the journal cannot be written; the error says so.
    pub fn push_record(&self, event: AuditEvent) -> Result<(), EngineError> {
        let line = self.journaled.then(|| journal_line(&event));
        let mut state = lock(&self.state);
        let (at, result) = match (&mut state.journal, line) {
            (Some(journal), Some(Ok(line))) => match journal.append(&line) {
                Ok(at) => (Some(at), Ok(())),
                Err(e) => (None, Err(e.to_string())),
            },
            (Some(_), Some(Err(e))) => (None, Err(e.to_string())),
            _ => (None, Ok(())),
        };
        self.queue(&mut state, event, at);
        result.map_err(EngineError::NotJournaled)
    }

    fn queue(&self, state: &mut State, event: AuditEvent, at: Option<JournalMark>) {
        state.records.push_back((event, at));
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
        if let Some(journal) = &mut state.journal {
            journal.roll_if_due();
        }
        let take = state.records.len().min(BATCH);
        let mut drained = Drained::default();
        for (event, at) in state.records.drain(..take) {
            drained.events.push(event);
            drained.places.push(at);
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
        for record in drained.events.into_iter().zip(drained.places).rev() {
            state.records.push_front(record);
        }
        state.due = Some(Instant::now() + RETRY);
    }

    /// After the batch that took up to `mark` committed: journal segments before it go, and
    /// decisions are taken again.
    pub fn committed(&self, mark: Option<JournalMark>) {
        self.failing.store(false, Ordering::Relaxed);
        if let (Some(mark), Some(journal)) = (mark, &mut lock(&self.state).journal) {
            journal.release(mark);
        }
    }

    /// How many records are here.
    pub fn len(&self) -> usize {
        lock(&self.state).records.len()
    }
}

fn journal_line(event: &AuditEvent) -> Result<Vec<u8>, EngineError> {
    let mut line = serde_json::to_vec(event)
        .map_err(|e| EngineError::NotRecorded(format!("cannot encode an audit record: {e}")))?;
    line.push(b'\n');
    Ok(line)
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
            assert!(matches!(
                backlog.push_decision(event(n)),
                Admission::Recorded
            ));
        }
        let first = backlog.drain();
        assert_eq!(times(&first), [1, 2, 3]);
        let mark = first.mark().unwrap();
        assert_eq!(mark.line, 3);
        backlog.restore(first);
        backlog.push_record(event(4)).unwrap();
        let again = backlog.drain();
        assert_eq!(times(&again), [1, 2, 3, 4]);
        assert_eq!(again.mark().unwrap().line, 4);
        assert_eq!(backlog.len(), 0);
    }

    #[test]
    fn decisions_wait_for_their_commit_while_the_writer_fails_or_lags() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = journaled(dir.path());
        backlog.restore(Drained::default());
        assert!(matches!(
            backlog.push_decision(event(1)),
            Admission::Declined
        ));
        backlog.committed(None);
        assert!(matches!(
            backlog.push_decision(event(2)),
            Admission::Recorded
        ));
        // Nobody took it: once the writer is that late, decisions wait.
        std::thread::sleep(DELAY + STALL + Duration::from_millis(20));
        assert!(matches!(
            backlog.push_decision(event(3)),
            Admission::Declined
        ));
        assert_eq!(times(&backlog.drain()), [2]);
        assert!(matches!(
            backlog.push_decision(event(4)),
            Admission::Recorded
        ));

        // Without a journal, nothing is acted on ahead.
        let plain = Backlog::new(None, Vec::new(), DELAY);
        assert!(matches!(plain.push_decision(event(5)), Admission::Declined));
    }

    #[test]
    fn a_long_backlog_commits_in_bounded_batches() {
        let backlog = Backlog::new(None, Vec::new(), DELAY);
        for n in 0..(BATCH as i64 + 5) {
            backlog.push_record(event(n)).unwrap();
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
