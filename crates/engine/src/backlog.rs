//! Records that nobody waits for a commit of, gathered for the writer's next batch.
//!
//! Callers append here instead of sending the writer a job, so a busy gate costs the writer one
//! wake-up per batch instead of one per record: the writer takes the lot once the oldest has
//! waited [`DELAY`], or sooner with the next job a caller does wait for. With an audit journal
//! (see `journal.rs`) each record is journaled as it is appended, in append order, which is what
//! lets a decision be answered before its commit ([`Backlog::push_decision`]).
//!
//! A batch that fails to commit hands its records back ([`Backlog::restore`]), in front of newer
//! ones; until a batch commits again, decisions are no longer taken here, so they wait for the
//! store like every other and are denied while it fails.

use crate::journal::Journal;
use crate::{EngineError, lock};
use countersign_audit::AuditEvent;
use countersign_store::JournalMark;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest a record waits for its batch.
pub(crate) const DELAY: Duration = Duration::from_millis(10);

/// After a failed commit, how long before the records are tried again (unless a job comes).
const RETRY: Duration = Duration::from_secs(1);

/// Most records held for the writer before decisions stop being answered ahead of their commit
/// (they then wait for it, which paces the callers to what the store takes).
const CAPACITY: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Backlog {
    state: Mutex<State>,
    arrived: Notify,
    /// Decisions are taken only with a journal: without one they must wait for their commit.
    journaled: bool,
    /// The last batch failed to commit.
    failing: AtomicBool,
}

#[derive(Debug)]
struct State {
    events: Vec<AuditEvent>,
    /// When the writer should take what is here.
    due: Option<Instant>,
    journal: Option<Journal>,
    /// The journal position the store holds, as of the last commit that moved it.
    stored: Option<JournalMark>,
}

/// What the writer took for one batch.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    pub events: Vec<AuditEvent>,
    /// The journal position the batch accounts up to, to store with it.
    pub mark: Option<JournalMark>,
}

/// Whether a decision was taken.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Journaled: the caller may act on it now.
    Recorded,
    /// Not taken (no journal, the store failing, the backlog full): the caller must have it
    /// committed.
    Declined,
    /// The journal could not be written: the decision is not recorded.
    Failed(EngineError),
}

impl Backlog {
    /// A backlog over `journal`, starting with the records `recovered` from it, which the
    /// writer commits at once.
    pub fn new(journal: Option<Journal>, recovered: Vec<AuditEvent>) -> Backlog {
        let due = (!recovered.is_empty()).then(Instant::now);
        Backlog {
            journaled: journal.is_some(),
            state: Mutex::new(State {
                events: recovered,
                due,
                journal,
                stored: None,
            }),
            arrived: Notify::new(),
            failing: AtomicBool::new(false),
        }
    }

    /// Takes the record of a decision that is answered before its commit.
    pub fn push_decision(&self, event: AuditEvent) -> Admission {
        if !self.journaled || self.failing.load(Ordering::Relaxed) {
            return Admission::Declined;
        }
        let line = match journal_line(&event) {
            Ok(line) => line,
            Err(e) => return Admission::Failed(e),
        };
        let mut state = lock(&self.state);
        if state.events.len() >= CAPACITY {
            return Admission::Declined;
        }
        if let Some(journal) = &mut state.journal
            && let Err(e) = journal.append(&line)
        {
            tracing::error!(error = %e, "cannot write the audit journal");
            return Admission::Failed(EngineError::NotRecorded(format!(
                "cannot write the audit journal: {e}"
            )));
        }
        self.queue(&mut state, event);
        Admission::Recorded
    }

    /// Takes an after-the-fact record (what became of an action). It is kept for the writer
    /// even if the journal cannot be written; the error says it is then held in memory only.
    pub fn push_record(&self, event: AuditEvent) -> Result<(), EngineError> {
        let line = self.journaled.then(|| journal_line(&event)).transpose()?;
        let mut state = lock(&self.state);
        let written = match (&mut state.journal, line) {
            (Some(journal), Some(line)) => journal.append(&line),
            _ => Ok(()),
        };
        self.queue(&mut state, event);
        written.map_err(|e| {
            EngineError::NotRecorded(format!(
                "cannot write the audit journal ({e}); the record is held in memory until the next commit"
            ))
        })
    }

    fn queue(&self, state: &mut State, event: AuditEvent) {
        state.events.push(event);
        if state.due.is_none() {
            state.due = Some(Instant::now() + DELAY);
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

    /// Everything here, for one batch, with the journal position it accounts up to if that
    /// moved.
    pub fn drain(&self) -> Drained {
        let mut state = lock(&self.state);
        state.due = None;
        let position = state.journal.as_mut().map(|j| {
            j.roll_if_large();
            j.position()
        });
        let mark = position.filter(|&p| Some(p) != state.stored);
        Drained {
            events: std::mem::take(&mut state.events),
            mark,
        }
    }

    /// Puts back what a failed batch took, before anything that came since, and stops taking
    /// decisions until a batch commits.
    pub fn restore(&self, drained: Drained) {
        self.failing.store(true, Ordering::Relaxed);
        if drained.events.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        let newer = std::mem::replace(&mut state.events, drained.events);
        state.events.extend(newer);
        state.due = Some(Instant::now() + RETRY);
    }

    /// After a batch that took `drained` committed: journal segments it covered go, and
    /// decisions are taken again.
    pub fn committed(&self, mark: Option<JournalMark>) {
        self.failing.store(false, Ordering::Relaxed);
        let Some(mark) = mark else { return };
        let mut state = lock(&self.state);
        state.stored = Some(mark);
        if let Some(journal) = &mut state.journal {
            journal.release(mark);
        }
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.state).events.is_empty()
    }
}

fn journal_line(event: &AuditEvent) -> Result<Vec<u8>, EngineError> {
    let mut line = serde_json::to_vec(event)
        .map_err(|e| EngineError::NotRecorded(format!("cannot encode an audit record: {e}")))?;
    line.push(b'\n');
    Ok(line)
}
