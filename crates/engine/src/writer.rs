//! The single writer: every change to the store, and every audit event, goes through one task
//! that commits them in batches (group commit).
//!
//! Callers send a [`Job`] and wait for its reply. The writer takes whatever jobs are queued
//! (up to [`MAX_BATCH`]) and whatever records the backlog holds (see `backlog.rs`), runs them in
//! one transaction, commits once (one fsync for the lot), and only then replies: a caller never
//! acts on a decision whose audit event is not durable (or, for a decision the backlog took,
//! journaled). Because there is one writer, the audit tree has one right edge and
//! read-check-write steps (a vote, the use of a single-use grant) cannot interleave.
//!
//! A job that changes state runs under a savepoint, so a refused or failed job is undone alone
//! (its audit events with it, see [`crate::tree`]). Audit rows are inserted once per batch; if
//! that fails the whole batch is rolled back and every caller in it is answered with the error,
//! which the decision path turns into a deny. Checkpoints are signed inside the batch that
//! makes them due, or by a batch of their own when the time limit passes with no traffic.

use crate::EngineError;
use crate::audit::{attempt_event, grant_event, request_event};
use crate::backlog::{Backlog, Drained};
use crate::tree::Tree;
use countersign_audit::note::SigningKey;
use countersign_audit::{AuditEvent, EventKind};
use countersign_core::{
    ApprovalRequest, Attempt, ChannelMessage, DeliveryAttempt, Grant, GrantShape, GrantStatus,
    KnownTool, NoticeKind, PayloadDigest, PinnedDefinition, Principal, PrincipalRef, RequestNotice,
    RequestStatus, Timestamp, ToolFingerprint, ToolStanding, Verdict, Vote, VoteError, VoteOutcome,
};
use countersign_store::{Store, StoreTx};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// Longest a batch may take from `BEGIN` to `COMMIT`. A database that stops answering
/// mid-transaction would otherwise hold every decision; past this the batch is abandoned (and
/// rolled back) and its callers denied.
const BATCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// The attempt half of a decision job.
#[derive(Debug)]
pub(crate) struct DecisionJob {
    pub attempt: Attempt,
    pub digest: PayloadDigest,
    pub verdict: Verdict,
    pub policy_version: String,
    pub channel: String,
    /// Whether the payload text goes into the audit event (policy may withhold it; the digest
    /// is always recorded).
    pub record_payload: bool,
    /// The grant the verdict rests on, with whether it must be spent.
    pub grant: Option<(String, bool)>,
    /// For an approval verdict: the id a new request gets and when it expires.
    pub new_request: Option<(String, Timestamp)>,
}

/// What a decision job wrote.
#[derive(Debug)]
pub(crate) enum Decided {
    Logged,
    /// The approval request that holds the attempt (new, or the one already pending for it).
    Held(Box<ApprovalRequest>),
}

#[derive(Debug)]
pub(crate) enum Job {
    Decision(Box<DecisionJob>, Reply<Decided>),
    Vote {
        voter: Principal,
        request_id: String,
        vote: Vote,
        grant_id: String,
        reply: Reply<ApprovalRequest>,
    },
    Cancel {
        by: PrincipalRef,
        by_admin: bool,
        request_id: String,
        reply: Reply<ApprovalRequest>,
    },
    Revoke {
        by: PrincipalRef,
        by_admin: bool,
        grant_id: String,
        reason: Option<String>,
        reply: Reply<Grant>,
    },
    ExpireDue {
        reply: Reply<()>,
    },
    Event {
        event: Box<AuditEvent>,
        policy_version: Option<(String, Vec<String>, usize)>,
        reply: Reply<()>,
    },
    /// Logs the new key's announcement, has the old key sign a checkpoint covering it, then
    /// signs with the new key.
    RotateKey {
        event: Box<AuditEvent>,
        key: Box<SigningKey>,
        reply: Reply<()>,
    },
    /// Signs a checkpoint of everything logged so far (at shutdown).
    Checkpoint {
        reply: Reply<()>,
    },
    /// Pins the definitions an MCP gate saw: new tools are recorded, changed ones noted.
    ObserveTools {
        gate: String,
        tools: Vec<(String, PinnedDefinition)>,
        reply: Reply<Vec<ToolStanding>>,
    },
    /// Makes the changed definition of a tool the pinned one.
    AcceptTool {
        by: PrincipalRef,
        gate: String,
        tool: String,
        reviewed: ToolFingerprint,
        reply: Reply<KnownTool>,
    },
    /// Nothing: a batch with it proves the store takes commits (readiness).
    Ping {
        reply: Reply<()>,
    },
    /// State a reviewer channel keeps: a message it posted, a webhook delivery attempt.
    Channel {
        write: ChannelWrite,
        reply: Reply<()>,
    },
}

/// What a reviewer channel records through the writer.
#[derive(Debug)]
pub(crate) enum ChannelWrite {
    Message(ChannelMessage),
    Delivery(DeliveryAttempt),
}

/// What the engine must do in memory once a batch is committed.
#[derive(Debug)]
pub(crate) enum Effect {
    GrantIssued(Grant),
    GrantEnded(PrincipalRef, String),
    Settled(String, RequestStatus),
    DeadlineAdded,
    /// Told to reviewer channels once the batch is committed.
    Notice(Box<RequestNotice>),
    ToolPinned(KnownTool),
}

/// Queues a notice about `request` for after the commit; `fill` adds the step's details.
fn notice(
    kind: NoticeKind,
    request: &ApprovalRequest,
    now: Timestamp,
    fx: &mut Vec<Effect>,
    fill: impl FnOnce(&mut RequestNotice),
) {
    let mut n = RequestNotice::new(kind, now, request.clone());
    fill(&mut n);
    fx.push(Effect::Notice(Box::new(n)));
}

/// Receives in-memory effects of committed batches.
pub(crate) trait Effects: Send + Sync + 'static {
    fn apply(&self, effects: Vec<Effect>);
}

pub(crate) fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

pub(crate) async fn run(
    store: Store,
    mut tree: Tree,
    mut jobs: mpsc::Receiver<Job>,
    backlog: Arc<Backlog>,
    effects: impl Effects,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        // With events waiting for a signature, wake when their checkpoint falls due even if no
        // job arrives; an empty batch then signs it.
        let deadline = tree.deadline();
        tokio::select! {
            n = jobs.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            () = backlog.due() => {}
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
        commit(&store, &mut tree, &backlog, &mut batch, &effects).await;
    }
    // The last handle is gone: what the backlog holds is committed while commits succeed.
    while backlog.len() > 0 && commit(&store, &mut tree, &backlog, &mut batch, &effects).await {}
    let left = backlog.len();
    if left > 0 {
        tracing::error!(
            records = left,
            "the writer stopped with audit records not stored; the next start commits those the journal holds"
        );
    }
}

/// Runs `batch` and what the backlog holds as one transaction, then answers every caller:
/// after the commit, or with the failure that kept it from committing. Returns whether it
/// committed.
async fn commit(
    store: &Store,
    tree: &mut Tree,
    backlog: &Backlog,
    batch: &mut Vec<Job>,
    effects: &impl Effects,
) -> bool {
    let drained = backlog.drain();
    let mut done = Vec::with_capacity(batch.len());
    let mut fx = Vec::new();
    let mark = tree.mark();
    let ran = tokio::time::timeout(
        BATCH_DEADLINE,
        run_batch(store, tree, &drained, batch, &mut done, &mut fx),
    )
    .await
    .unwrap_or_else(|_| {
        Err(EngineError::NotRecorded(format!(
            "the store did not commit within {}s",
            BATCH_DEADLINE.as_secs()
        )))
    });
    match ran {
        Ok(()) => {
            backlog.committed(drained.mark());
            effects.apply(fx);
            for reply in done {
                reply.send();
            }
            true
        }
        Err(e) => {
            let jobs = done.len() + batch.len();
            let held = drained.events.len();
            tracing::error!(error = %e, jobs, held, "audit write failed; batch rolled back");
            tree.abandon(mark);
            backlog.restore(drained);
            let reason = e.to_string();
            for reply in done {
                reply.fail(EngineError::NotRecorded(reason.clone()));
            }
            for job in batch.drain(..) {
                job.fail(EngineError::NotRecorded(reason.clone()));
            }
            false
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// A job's reply, held until the batch commits: sent as is, or replaced by the failure that
/// kept the batch from committing.
pub(crate) struct Done(Box<dyn FnOnce(Option<EngineError>) + Send>);

impl Done {
    fn new<T: Send + 'static>(reply: Reply<T>, result: Result<T, EngineError>) -> Done {
        Done(Box::new(move |failure| {
            let result = match failure {
                Some(e) => Err(e),
                None => result,
            };
            // A caller that stopped waiting (a client that went away) is not an error.
            let _ = reply.send(result);
        }))
    }

    fn send(self) {
        (self.0)(None)
    }

    fn fail(self, e: EngineError) {
        (self.0)(Some(e))
    }
}

impl Job {
    fn fail(self, e: EngineError) {
        match self {
            Job::Decision(_, tx) => Done::new(tx, Err(e)),
            Job::Vote { reply, .. } | Job::Cancel { reply, .. } => Done::new(reply, Err(e)),
            Job::Revoke { reply, .. } => Done::new(reply, Err(e)),
            Job::ObserveTools { reply, .. } => Done::new(reply, Err(e)),
            Job::AcceptTool { reply, .. } => Done::new(reply, Err(e)),
            Job::ExpireDue { reply }
            | Job::Event { reply, .. }
            | Job::RotateKey { reply, .. }
            | Job::Checkpoint { reply }
            | Job::Ping { reply }
            | Job::Channel { reply, .. } => Done::new(reply, Err(e)),
        }
        .send();
    }
}

/// The open transaction plus the audit tree: what a job writes to.
pub(crate) struct Writer<'a> {
    pub tx: &'a mut StoreTx,
    pub tree: &'a mut Tree,
}

impl Writer<'_> {
    /// Logs `event`; it commits with the job's other writes or not at all.
    pub fn append(&mut self, event: &AuditEvent) -> Result<(), EngineError> {
        self.tree.append(event)
    }
}

/// Runs `batch` in one transaction, moving each job's reply into `done` and the in-memory
/// consequences into `effects`. On error, whatever is left in `batch` and everything in `done`
/// must be answered with the failure: nothing of the batch was committed.
async fn run_batch(
    store: &Store,
    tree: &mut Tree,
    drained: &Drained,
    batch: &mut Vec<Job>,
    done: &mut Vec<Done>,
    effects: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    let mut tx = store.begin().await?;
    // The backlog's records came first: they were made before the jobs were taken.
    for event in &drained.events {
        tree.append(event)?;
    }
    if let Some(mark) = drained.mark() {
        tx.set_journal_mark(mark).await?;
    }
    // Oldest job last, so popping keeps arrival order and leaves the rest in `batch`.
    batch.reverse();
    while let Some(job) = batch.pop() {
        let now = now();
        let job = match job {
            // Plain decisions change nothing but the log: no savepoint needed.
            Job::Decision(d, reply) if d.grant.is_none() && d.new_request.is_none() => {
                if let Err(e) = tree.append(&attempt_event(&d, now)) {
                    batch.push(Job::Decision(d, reply));
                    return Err(e);
                }
                done.push(Done::new(reply, Ok(Decided::Logged)));
                continue;
            }
            job => job,
        };
        if let Err(e) = tx.savepoint().await {
            // Keep the job, so its caller hears why, like every other job of the batch.
            batch.push(job);
            return Err(e.into());
        }
        let mark = tree.mark();
        let mut fx = Vec::new();
        let mut w = Writer {
            tx: &mut tx,
            tree: &mut *tree,
        };
        let (reply, failed) = execute(&mut w, job, now, &mut fx).await;
        // The reply joins the others first: if the batch fails from here, it is answered
        // with the failure like them.
        done.push(reply);
        if failed {
            tx.rollback_to_savepoint().await?;
            tree.rollback(mark);
        } else {
            tx.release_savepoint().await?;
            effects.extend(fx);
        }
    }
    let signed = tree.flush(&mut tx, now()).await?;
    tx.commit().await?;
    tree.committed(signed);
    Ok(())
}

/// Runs one state-changing job. Returns its reply and whether its writes must be undone.
async fn execute(
    w: &mut Writer<'_>,
    job: Job,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> (Done, bool) {
    match job {
        Job::Decision(d, reply) => {
            let r = decision(w, *d, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::Vote {
            voter,
            request_id,
            vote,
            grant_id,
            reply,
        } => match cast_vote(w, &voter, &request_id, vote, grant_id, now, fx).await {
            // A refused vote keeps its `vote.refused` event: the refusal is committed.
            Ok(Err(refusal)) => (Done::new(reply, Err(EngineError::Vote(refusal))), false),
            Ok(Ok(request)) => (Done::new(reply, Ok(request)), false),
            Err(e) => (Done::new(reply, Err(e)), true),
        },
        Job::Cancel {
            by,
            by_admin,
            request_id,
            reply,
        } => {
            let r = cancel(w, &by, by_admin, &request_id, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::Revoke {
            by,
            by_admin,
            grant_id,
            reason,
            reply,
        } => {
            let r = revoke(w, &by, by_admin, &grant_id, reason, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::ExpireDue { reply } => {
            let r = expire_due(w, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::Event {
            event,
            policy_version,
            reply,
        } => {
            let r = match &policy_version {
                Some((version, files, count)) => {
                    w.tx.record_policy_version(version, files, *count)
                        .await
                        .map_err(EngineError::from)
                }
                None => Ok(()),
            }
            .and_then(|()| w.append(&event));
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::Checkpoint { reply } => {
            w.tree.request_checkpoint();
            (Done::new(reply, Ok(())), false)
        }
        Job::Ping { reply } => (Done::new(reply, Ok(())), false),
        Job::Channel { write, reply } => {
            let r = match &write {
                ChannelWrite::Message(m) => w.tx.insert_channel_message(m).await,
                ChannelWrite::Delivery(d) => {
                    let id = uuid::Uuid::now_v7().to_string();
                    w.tx.insert_delivery_attempt(&id, d).await
                }
            };
            let failed = r.is_err();
            (Done::new(reply, r.map_err(EngineError::from)), failed)
        }
        Job::ObserveTools { gate, tools, reply } => {
            let r = crate::tools::observe(w, &gate, tools, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::AcceptTool {
            by,
            gate,
            tool,
            reviewed,
            reply,
        } => {
            let r = crate::tools::accept(w, &by, &gate, &tool, reviewed, now, fx).await;
            let failed = r.is_err();
            (Done::new(reply, r), failed)
        }
        Job::RotateKey { event, key, reply } => {
            let r = w.append(&event);
            let failed = r.is_err();
            if !failed {
                w.tree.rotate_key(*key);
            }
            (Done::new(reply, r), failed)
        }
    }
}

async fn decision(
    w: &mut Writer<'_>,
    d: DecisionJob,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<Decided, EngineError> {
    if let Some((grant_id, single_use)) = &d.grant {
        let grant =
            w.tx.grant(grant_id)
                .await?
                .ok_or_else(|| EngineError::GrantLost(grant_id.clone()))?;
        if !grant.is_live(now) {
            return Err(EngineError::GrantLost(grant_id.clone()));
        }
        if *single_use {
            if !w.tx.end_grant(grant_id, GrantStatus::Used, now).await? {
                return Err(EngineError::GrantLost(grant_id.clone()));
            }
            fx.push(Effect::GrantEnded(
                grant.principal.clone(),
                grant_id.clone(),
            ));
        }
        w.append(&attempt_event(&d, now))?;
        let mut used = attempt_event(&d, now);
        used.kind = EventKind::GrantUsed;
        used.request_id = Some(grant.request_id.clone());
        w.append(&used)?;
        return Ok(Decided::Logged);
    }
    let Some((request_id, expires_at)) = d.new_request.clone() else {
        w.append(&attempt_event(&d, now))?;
        return Ok(Decided::Logged);
    };
    let Verdict::Approval {
        requirements,
        policy_ids,
        ..
    } = &d.verdict
    else {
        w.append(&attempt_event(&d, now))?;
        return Ok(Decided::Logged);
    };
    let existing =
        w.tx.pending_request_for(
            &d.attempt.principal,
            d.attempt.on_behalf_of.as_deref(),
            &d.digest,
            now,
        )
        .await?;
    let (request, created) = match existing {
        Some(r) => (r, false),
        None => {
            let request = ApprovalRequest {
                id: request_id,
                attempt: d.attempt.clone(),
                digest: d.digest,
                requirements: requirements.clone(),
                policy_version: d.policy_version.clone(),
                policy_ids: policy_ids.clone(),
                status: RequestStatus::Pending,
                created_at: now,
                expires_at,
                settled_at: None,
                cancelled_by: None,
                votes: Vec::new(),
                escalations_fired: 0,
                payload_withheld: !d.record_payload,
            };
            w.tx.insert_request(&request).await?;
            fx.push(Effect::DeadlineAdded);
            (request, true)
        }
    };
    let mut event = attempt_event(&d, now);
    event.request_id = Some(request.id.clone());
    w.append(&event)?;
    if created {
        let mut created = request_event(EventKind::RequestCreated, &request, now);
        created.reason = Some(d.verdict.reason().to_owned());
        created.outcome = Some(format!(
            "expires at {}; grant {}",
            request.expires_at, request.requirements.grant
        ));
        w.append(&created)?;
        notice(NoticeKind::Created, &request, now, fx, |_| {});
    }
    Ok(Decided::Held(Box::new(request)))
}

async fn load_request(w: &mut Writer<'_>, id: &str) -> Result<ApprovalRequest, EngineError> {
    w.tx.request(id)
        .await?
        .ok_or_else(|| EngineError::RequestNotFound(id.to_owned()))
}

/// Applies a vote. The outer error undoes the job; the inner one is a refusal by the rules,
/// which is logged as `vote.refused` and committed.
async fn cast_vote(
    w: &mut Writer<'_>,
    voter: &Principal,
    request_id: &str,
    vote: Vote,
    grant_id: String,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<Result<ApprovalRequest, VoteError>, EngineError> {
    let mut request = load_request(w, request_id).await?;
    let mut event = request_event(EventKind::VoteCast, &request, now);
    event.actor = Some(voter.reference());
    event.verdict = Some(vote.decision.as_str().to_owned());
    event.reason = vote.reason.clone();
    event.vote_id = Some(vote.id.clone());
    event.channel = Some(vote.channel.clone());
    event.break_glass = vote.break_glass;
    match request.cast_vote(voter, vote.clone(), now) {
        Err(refusal) => {
            event.kind = EventKind::VoteRefused;
            event.outcome = Some(refusal.to_string());
            w.append(&event)?;
            Ok(Err(refusal))
        }
        Ok(outcome) => {
            w.tx.insert_vote(request_id, &vote).await?;
            w.append(&event)?;
            match outcome {
                VoteOutcome::Settled(status) => {
                    settle(w, &request, status, Some(voter.reference()), now, fx).await?;
                    if status == RequestStatus::Approved {
                        issue_grant(w, &request, grant_id, now, fx).await?;
                    }
                }
                VoteOutcome::Recorded => {
                    notice(NoticeKind::Voted, &request, now, fx, |n| {
                        n.actor = Some(voter.reference());
                    });
                }
            }
            Ok(Ok(request))
        }
    }
}

/// Writes a settled status and its event; the caller has already moved `request` there.
async fn settle(
    w: &mut Writer<'_>,
    request: &ApprovalRequest,
    status: RequestStatus,
    actor: Option<PrincipalRef>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    let cancelled_by = request.cancelled_by.as_ref();
    if !w
        .tx
        .settle_request(&request.id, status, now, cancelled_by)
        .await?
    {
        // Only the writer settles requests, so this means the store changed underneath it.
        return Err(EngineError::NotRecorded(format!(
            "request {} was settled by someone else",
            request.id
        )));
    }
    let mut event = request_event(EventKind::RequestSettled, request, now);
    event.actor = actor.clone();
    event.outcome = Some(status.as_str().to_owned());
    event.break_glass = request.broke_glass();
    event.verdict = Some(
        match status {
            RequestStatus::Approved => "approve",
            _ => "deny",
        }
        .to_owned(),
    );
    w.append(&event)?;
    fx.push(Effect::Settled(request.id.clone(), status));
    notice(NoticeKind::Settled, request, now, fx, |n| n.actor = actor);
    Ok(())
}

async fn issue_grant(
    w: &mut Writer<'_>,
    request: &ApprovalRequest,
    grant_id: String,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    // A single-use grant lives as long as the request could have waited; a window as long as
    // the policy says. Both clocks start at approval.
    let lifetime = match request.requirements.grant {
        GrantShape::Once => request.requirements.timeout_ms,
        GrantShape::Window { ms } => ms,
    };
    let grant = Grant {
        id: grant_id,
        request_id: request.id.clone(),
        principal: request.attempt.principal.clone(),
        on_behalf_of: request.attempt.on_behalf_of.clone(),
        action: request.attempt.action.clone(),
        resources: request.attempt.resources.clone(),
        digest: request.digest,
        shape: request.requirements.grant,
        issued_at: now,
        expires_at: now.plus_ms(lifetime),
        status: GrantStatus::Active,
        ended_at: None,
    };
    w.tx.insert_grant(&grant).await?;
    let mut event = request_event(EventKind::GrantIssued, request, now);
    event.grant_id = Some(grant.id.clone());
    event.outcome = Some(format!("{} grant until {}", grant.shape, grant.expires_at));
    w.append(&event)?;
    notice(NoticeKind::GrantIssued, request, now, fx, |n| {
        n.grant = Some(grant.clone());
    });
    fx.push(Effect::GrantIssued(grant));
    fx.push(Effect::DeadlineAdded);
    Ok(())
}

async fn cancel(
    w: &mut Writer<'_>,
    by: &PrincipalRef,
    by_admin: bool,
    request_id: &str,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<ApprovalRequest, EngineError> {
    let mut request = load_request(w, request_id).await?;
    request.cancel(by, by_admin, now)?;
    settle(
        w,
        &request,
        RequestStatus::Cancelled,
        Some(by.clone()),
        now,
        fx,
    )
    .await?;
    Ok(request)
}

/// Revokes a grant: an administrator any, a principal its own.
async fn revoke(
    w: &mut Writer<'_>,
    by: &PrincipalRef,
    by_admin: bool,
    grant_id: &str,
    reason: Option<String>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<Grant, EngineError> {
    let mut grant =
        w.tx.grant(grant_id)
            .await?
            .ok_or_else(|| EngineError::GrantNotFound(grant_id.to_owned()))?;
    if !by_admin && grant.principal != *by {
        return Err(EngineError::NotYourGrant(grant_id.to_owned()));
    }
    if !w.tx.end_grant(grant_id, GrantStatus::Revoked, now).await? {
        return Err(EngineError::GrantNotActive(grant.status));
    }
    grant.status = GrantStatus::Revoked;
    grant.ended_at = Some(now);
    let mut event = grant_event(EventKind::GrantRevoked, &grant, now);
    event.actor = Some(by.clone());
    event.reason = reason;
    w.append(&event)?;
    grant_notice(
        w,
        NoticeKind::GrantRevoked,
        &grant,
        Some(by.clone()),
        now,
        fx,
    )
    .await?;
    fx.push(Effect::GrantEnded(
        grant.principal.clone(),
        grant.id.clone(),
    ));
    Ok(grant)
}

/// Tells channels about a grant that ended, with the request it came from.
async fn grant_notice(
    w: &mut Writer<'_>,
    kind: NoticeKind,
    grant: &Grant,
    actor: Option<PrincipalRef>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    if let Some(request) = w.tx.request(&grant.request_id).await? {
        notice(kind, &request, now, fx, |n| {
            n.actor = actor;
            n.grant = Some(grant.clone());
        });
    }
    Ok(())
}

/// Asks the groups of every escalation that fell due, and sends the reminders that did.
async fn escalate_and_remind(
    w: &mut Writer<'_>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    for id in w.tx.due_escalations(now).await? {
        let Some(mut request) = w.tx.request(&id).await? else {
            continue;
        };
        let fired = request.escalate_if_due(now);
        w.tx.record_escalation(&request).await?;
        let groups: std::collections::BTreeSet<String> = fired
            .iter()
            .flat_map(|e| e.groups.iter().cloned())
            .collect();
        if groups.is_empty() {
            continue;
        }
        let mut event = request_event(EventKind::RequestEscalated, &request, now);
        event.policy_ids = fired.iter().map(|e| e.policy_id.clone()).collect();
        event.reason = Some(format!(
            "no decision in time; now also asked: {}",
            groups.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        w.append(&event)?;
        notice(NoticeKind::Escalated, &request, now, fx, |n| {
            n.groups = groups
        });
    }
    for id in w.tx.due_reminders(now).await? {
        w.tx.clear_reminder(&id).await?;
        let Some(request) = w.tx.request(&id).await? else {
            continue;
        };
        let mut event = request_event(EventKind::RequestReminded, &request, now);
        event.outcome = Some(format!("expires at {}", request.expires_at));
        w.append(&event)?;
        notice(NoticeKind::Reminder, &request, now, fx, |_| {});
    }
    Ok(())
}

async fn expire_due(
    w: &mut Writer<'_>,
    now: Timestamp,
    fx: &mut Vec<Effect>,
) -> Result<(), EngineError> {
    escalate_and_remind(w, now, fx).await?;
    for id in w.tx.due_requests(now).await? {
        match w.tx.request(&id).await {
            Ok(Some(mut request)) => {
                if request.expire_if_due(now) {
                    settle(w, &request, RequestStatus::Expired, None, now, fx).await?;
                }
            }
            Ok(None) => {}
            // A row that cannot be read still expires on time: by id, with what is known.
            Err(countersign_store::StoreError::Corrupt { what, detail }) => {
                tracing::error!(request = %id, what, detail, "expiring an unreadable request by id");
                if w.tx
                    .settle_request(&id, RequestStatus::Expired, now, None)
                    .await?
                {
                    let mut event = AuditEvent::new(EventKind::RequestSettled, now);
                    event.request_id = Some(id.clone());
                    event.outcome = Some(RequestStatus::Expired.as_str().to_owned());
                    event.reason = Some(format!("stored {what} is unreadable: {detail}"));
                    w.append(&event)?;
                    fx.push(Effect::Settled(id, RequestStatus::Expired));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    for id in w.tx.due_grants(now).await? {
        let Some(mut grant) = w.tx.grant(&id).await? else {
            continue;
        };
        if w.tx.end_grant(&id, GrantStatus::Expired, now).await? {
            grant.status = GrantStatus::Expired;
            grant.ended_at = Some(now);
            w.append(&grant_event(EventKind::GrantExpired, &grant, now))?;
            grant_notice(w, NoticeKind::GrantExpired, &grant, None, now, fx).await?;
            fx.push(Effect::GrantEnded(grant.principal.clone(), id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{CheckOutcome, Engine, EngineConfig};
    use countersign_core::{Action, Attempt, Principal, PrincipalKind, Resource};
    use countersign_policy::LoadedPolicies;
    use countersign_store::testing::TestDb;
    use countersign_store::{Backend, Store};

    /// Plain decisions (whose events are inserted together) interleaved with held ones (which
    /// run under savepoints) in the same batches: every event lands, in one verifiable tree.
    async fn mixed_batches_keep_one_chain(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = Store::open(&db.url).await.expect("store");
        let engine = Engine::start(
            store,
            LoadedPolicies::examples().expect("policies"),
            EngineConfig {
                public_url: "http://x".into(),
                audit: crate::AuditSigning::ephemeral("test.example/countersign").unwrap(),
                journal: None,
            },
        )
        .await
        .expect("engine");
        let agent = Principal::new(PrincipalKind::Agent, "etl", ["agents"]);
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let (engine, agent) = (engine.clone(), agent.clone());
                tokio::spawn(async move {
                    let (action, payload) = if i % 7 == 0 {
                        ("db.export", format!("COPY t{i} TO STDOUT"))
                    } else {
                        ("db.read", format!("SELECT {i}"))
                    };
                    let attempt = Attempt {
                        principal: agent.reference(),
                        on_behalf_of: None,
                        action: Action::parse(action).expect("action"),
                        resources: vec![Resource::new("Database", "prod")],
                        payload: serde_json::json!(payload),
                        justification: None,
                        context: Default::default(),
                    };
                    engine.check(&agent, attempt, "api").await
                })
            })
            .collect();
        let (mut allowed, mut held) = (0, 0);
        for t in tasks {
            match t.await.expect("task") {
                CheckOutcome::Allow { .. } => allowed += 1,
                CheckOutcome::Pending { .. } => held += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((allowed, held), (257, 43));
        let records = engine.audit_records(0, 10_000).await.expect("records");
        engine.checkpoint().await.expect("checkpoint");
        let summary = engine
            .verify_log(vec![engine.verifier_key()])
            .await
            .expect("store readable")
            .expect("one verifiable log");
        assert_eq!(summary.events, records.len() as u64);
        let count = |kind: &str| {
            let needle = format!("\"kind\":\"{kind}\"");
            records
                .iter()
                .filter(|r| r.event_json.contains(&needle))
                .count()
        };
        assert_eq!(count("attempt"), 300);
        assert_eq!(count("request.created"), 43);
        assert_eq!(records.len(), 1 + 300 + 43);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mixed_batches_keep_one_chain_sqlite() {
        mixed_batches_keep_one_chain(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mixed_batches_keep_one_chain_postgres() {
        mixed_batches_keep_one_chain(Backend::Postgres).await;
    }
}
