//! The approval engine: the one place where attempts become decisions.
//!
//! [`Engine::check`] applies the decision order (see `countersign_core::decision`) to an attempt:
//! policy first, then a live grant, then approval, permit or default deny, and writes the verdict
//! to the audit log before answering. [`Engine::wait`] wakes the moment a request settles,
//! [`Engine::vote`], [`Engine::cancel`] and [`Engine::revoke`] change requests and grants, and a
//! background task expires requests and grants when their deadline comes.
//!
//! Gates, channels and the HTTP API all go through this type; none of them talks to the store or
//! formats audit events itself. Every failure on the decision path is a deny.

mod audit;
pub mod audit_io;
mod backlog;
mod error;
mod grants;
mod journal;
pub mod keyfile;
mod tools;
mod tree;
mod writer;

pub use audit_io::InclusionProof;
pub use countersign_store::RequestFilter;
pub use error::EngineError;
pub use journal::JournalError;
pub use tools::tool_resource;
pub use tree::AuditSigning;

use audit::attempt_event;
use backlog::Admission;
use countersign_audit::note::VerifierKey;
use countersign_audit::{AuditEvent, AuditRecord, EventKind};
use countersign_core::{
    ApprovalRequest, Attempt, ChannelMessage, Decision, DeliveryAttempt, Grant, GrantScope,
    KnownTool, PayloadDigest, PinnedDefinition, PolicyOutcome, Principal, PrincipalRef,
    RequestNotice, RequestStatus, Timestamp, ToolFingerprint, ToolStanding, Verdict, Vote, decide,
};
use countersign_policy::{LoadedPolicies, PolicyLoadError};
use countersign_store::Store;
use grants::GrantIndex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use writer::{ChannelWrite, Decided, DecisionJob, Effect, Effects, Job};

/// How the engine presents itself to the outside, and signs its audit log.
#[derive(Debug)]
pub struct EngineConfig {
    /// Base of the review links handed to requesters, e.g. `http://127.0.0.1:8480`.
    pub public_url: String,
    pub audit: AuditSigning,
    /// The audit journal. With one, the decisions [`Engine::check_ahead`] answers ahead are
    /// journaled and acted on at once, reaching the store within its `commit_every`; without
    /// one they wait for their commit.
    pub journal: Option<JournalConfig>,
}

/// Where the audit journal lives, how often it is synced to disk, and how long journaled
/// records wait for their commit to the store.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: std::path::PathBuf,
    /// How often the journal is synced to disk: what a crash of the whole machine can lose at
    /// most, against a sync's cost.
    pub sync_every: Duration,
    /// Longest a journaled record waits before the writer commits it to the store: how far the
    /// store (and what the API shows of the log) lags, against a commit's cost per record.
    pub commit_every: Duration,
}

impl JournalConfig {
    /// The journal is synced this often by default.
    pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_millis(10);
    /// Records commit within this by default.
    pub const DEFAULT_COMMIT_EVERY: Duration = Duration::from_millis(200);
    /// The longest `sync_every` and `commit_every` allowed.
    pub const MAX_EVERY: Duration = Duration::from_secs(1);

    pub fn new(dir: impl Into<std::path::PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            sync_every: JournalConfig::DEFAULT_SYNC_EVERY,
            commit_every: JournalConfig::DEFAULT_COMMIT_EVERY,
        }
    }

    /// Refuses intervals outside `(0, MAX_EVERY]`: a zero sync interval would keep the sync
    /// thread spinning on the backlog's lock.
    fn check(&self) -> Result<(), EngineError> {
        for (name, every) in [
            ("sync_every", self.sync_every),
            ("commit_every", self.commit_every),
        ] {
            if every.is_zero() || every > JournalConfig::MAX_EVERY {
                return Err(EngineError::NotRecorded(format!(
                    "the audit journal's {name} must be more than 0 and at most {}ms, not {}ms",
                    JournalConfig::MAX_EVERY.as_millis(),
                    every.as_millis()
                )));
            }
        }
        Ok(())
    }
}

/// Without a journal, how long after-the-fact records (outcomes) wait for their commit:
/// nothing else keeps them, so not long.
const NO_JOURNAL_COMMIT_EVERY: Duration = Duration::from_millis(10);

/// The answer to an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckOutcome {
    Allow {
        reason: String,
        policy_ids: Vec<String>,
        grant_id: Option<String>,
        /// The digest of the allowed attempt, for the outcome a gate logs after it runs.
        digest: PayloadDigest,
    },
    Deny {
        reason: String,
        policy_ids: Vec<String>,
    },
    Pending {
        request: Box<ApprovalRequest>,
        review_url: String,
        reason: String,
    },
}

impl CheckOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            CheckOutcome::Allow { .. } => "allow",
            CheckOutcome::Deny { .. } => "deny",
            CheckOutcome::Pending { .. } => "pending",
        }
    }
}

/// What became of an attempt a gate acted on, for [`Engine::record_outcome`].
#[derive(Debug)]
pub struct ActionOutcome<'a> {
    pub attempt: &'a Attempt,
    /// The digest `check` returned with its allow.
    pub digest: &'a PayloadDigest,
    pub grant_id: Option<&'a str>,
    pub succeeded: bool,
    /// A command tag, an error, a tool result summary.
    pub detail: String,
}

/// A handle to the running engine; cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    public_url: String,
    origin: String,
    key_file: Option<std::path::PathBuf>,
    /// The key that verifies the newest checkpoints.
    verifier: RwLock<VerifierKey>,
    /// Rotations run one at a time.
    rotation: tokio::sync::Mutex<()>,
    /// Policy reloads run one at a time.
    reloading: tokio::sync::Mutex<()>,
    policies: RwLock<Arc<LoadedPolicies>>,
    jobs: mpsc::Sender<Job>,
    /// Records that need no answer from the writer, for its next batch.
    backlog: Arc<backlog::Backlog>,
    shared: Arc<Shared>,
}

/// How many notices a slow channel may fall behind before it misses some.
const NOTICE_BACKLOG: usize = 4096;

/// State the writer updates after each commit and the decision path reads.
#[derive(Debug)]
struct Shared {
    grants: GrantIndex,
    tools: tools::ToolIndex,
    watchers: Mutex<HashMap<String, watch::Sender<RequestStatus>>>,
    deadline_changed: Notify,
    /// Committed request steps, for reviewer channels.
    notices: broadcast::Sender<Arc<RequestNotice>>,
}

impl Effects for Arc<Shared> {
    fn apply(&self, effects: Vec<Effect>) {
        // Grants first: a waiter woken by its approval must find the grant already indexed.
        let mut wake = Vec::new();
        let mut notices = Vec::new();
        for effect in effects {
            match effect {
                Effect::GrantIssued(g) => self.grants.insert(g),
                Effect::GrantEnded(principal, id) => self.grants.remove(&principal, &id),
                Effect::Settled(id, status) => wake.push((id, status)),
                Effect::DeadlineAdded => self.deadline_changed.notify_one(),
                Effect::Notice(n) => notices.push(n),
                Effect::ToolPinned(tool) => self.tools.insert(tool),
            }
        }
        for (id, status) in wake {
            if let Some(tx) = lock(&self.watchers).remove(&id) {
                tx.send_replace(status);
            }
        }
        // After the waiters: a channel's work never delays the caller a decision releases.
        // Nobody listening (no channel configured) is not an error.
        for n in notices {
            let _ = self.notices.send(Arc::from(n));
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single map operation; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many times a decision is retried when concurrent attempts race for the same grant.
const GRANT_RACE_RETRIES: usize = 8;

/// Longest a decision waits for its audit event to be written before it is a deny.
pub const DECISION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// The audit record of a decision answered ahead of it (see [`Engine::check_ahead`]).
#[derive(Debug)]
#[must_use = "the action's results must not be released before the record is durable"]
pub struct Logging {
    reply: oneshot::Receiver<Result<Decided, EngineError>>,
}

impl Logging {
    /// Resolves once the record is durable; an error (the store failed, or took longer than
    /// [`DECISION_DEADLINE`]) means it never will be.
    pub async fn durable(self) -> Result<(), EngineError> {
        within_deadline(self.reply).await.map(|_| ())
    }
}

/// The writer's answer to a job, or a failure once the decision deadline passes.
async fn within_deadline<T>(
    reply: oneshot::Receiver<Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(DECISION_DEADLINE, reply).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(EngineError::Stopped),
        Err(_) => Err(EngineError::NotRecorded(format!(
            "no answer from the store within {}s",
            DECISION_DEADLINE.as_secs()
        ))),
    }
}

/// The deny for a decision that could not be recorded.
fn not_recorded(e: &EngineError) -> CheckOutcome {
    tracing::error!(error = %e, "decision could not be recorded; denying");
    CheckOutcome::Deny {
        reason: format!("denied: the decision could not be recorded ({e})"),
        policy_ids: Vec::new(),
    }
}

impl Engine {
    /// Starts the engine on `store` with `policies`: records the policy version, expires what
    /// fell due while the gateway was down, and starts the writer and expiry tasks.
    pub async fn start(
        store: Store,
        policies: LoadedPolicies,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        if let Some(journal) = &config.journal {
            journal.check()?;
        }
        // The journal first: what a crash left in it is committed before anything else.
        let backlog = Arc::new(match &config.journal {
            Some(JournalConfig {
                dir, commit_every, ..
            }) => {
                // Locked before the mark is read: a gateway still shutting down may move it.
                // Taking it may wait a moment for such a gateway: off the runtime's workers.
                let owned = dir.clone();
                let locked = tokio::task::spawn_blocking(move || journal::Journal::lock(&owned))
                    .await
                    .map_err(|e| {
                        EngineError::NotRecorded(format!("cannot take the audit journal: {e}"))
                    })??;
                let (journal, recovered) = locked.recover(store.journal_mark().await?)?;
                if !recovered.is_empty() {
                    tracing::warn!(
                        records = recovered.len(),
                        journal = %dir.display(),
                        "committing audit records the last run journaled but did not store"
                    );
                }
                backlog::Backlog::new(Some(journal), recovered, *commit_every)
            }
            None => {
                if store.journal_mark().await? != countersign_store::JournalMark::default() {
                    tracing::warn!(
                        "this store was run with an audit journal and none is configured now: \
                         records the journal still holds are committed only when it is configured again"
                    );
                }
                backlog::Backlog::new(None, Vec::new(), NO_JOURNAL_COMMIT_EVERY)
            }
        });
        if let Some(journal) = &config.journal {
            backlog.keep_synced(journal.sync_every).map_err(|e| {
                EngineError::NotRecorded(format!("cannot start syncing the audit journal: {e}"))
            })?;
        }
        let frontier = store.audit_frontier().await?;
        let signed = store.latest_checkpoint().await?.map_or(0, |(size, _)| size);
        let shared = Arc::new(Shared {
            grants: GrantIndex::load(store.active_grants().await?),
            tools: tools::ToolIndex::load(store.mcp_tools().await?),
            watchers: Mutex::default(),
            deadline_changed: Notify::new(),
            notices: broadcast::channel(NOTICE_BACKLOG).0,
        });
        let EngineConfig {
            public_url, audit, ..
        } = config;
        let origin = audit.origin.clone();
        let key_file = audit.key_file.clone();
        let verifier = RwLock::new(audit.key.verifier());
        let (jobs, rx) = mpsc::channel(writer::MAX_BATCH * 4);
        let tree = tree::Tree::new(frontier, signed, audit);
        tokio::spawn(writer::run(
            store.clone(),
            tree,
            rx,
            backlog.clone(),
            shared.clone(),
        ));
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                public_url,
                origin,
                key_file,
                verifier,
                rotation: tokio::sync::Mutex::new(()),
                reloading: tokio::sync::Mutex::new(()),
                policies: RwLock::new(Arc::new(policies)),
                jobs,
                backlog,
                shared,
            }),
        };
        engine.record_policy_load(&engine.policies()).await?;
        // What fell due while the gateway was down expires now. A failure here denies nothing
        // and the expiry task retries, so it does not keep the gateway from starting.
        if let Err(e) = engine.expire_due().await {
            tracing::error!(error = %e, "expiring overdue requests at start-up failed; will retry");
        }
        tokio::spawn(expiry_loop(
            engine.inner.store.clone(),
            Arc::downgrade(&engine.inner),
        ));
        Ok(engine)
    }

    /// The policy set in force.
    pub fn policies(&self) -> Arc<LoadedPolicies> {
        self.inner
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The origin line of the audit log's checkpoints.
    pub fn audit_origin(&self) -> &str {
        &self.inner.origin
    }

    /// The key that verifies the audit log's newest checkpoints.
    pub fn verifier_key(&self) -> VerifierKey {
        self.inner
            .verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The link where reviewers see a request.
    pub fn review_url(&self, request_id: &str) -> String {
        format!(
            "{}/v1/requests/{request_id}",
            self.inner.public_url.trim_end_matches('/')
        )
    }

    /// Decides `attempt` by `principal`, coming in through `channel` (`api`, a gate name, …).
    /// Never fails: any failure is a deny with the reason. Answers once the decision's audit
    /// record is durable.
    pub async fn check(
        &self,
        principal: &Principal,
        attempt: Attempt,
        channel: &str,
    ) -> CheckOutcome {
        self.check_with(principal, attempt, channel, false).await.0
    }

    /// Like [`Engine::check`], but an allow that changes no state (a plain permit, no grant
    /// spent) is answered before its commit. With an audit journal, the record is journaled
    /// (safe from a crash of the process, synced within [`JournalConfig::sync_every`],
    /// committed within [`JournalConfig::commit_every`]) and the allow comes without a
    /// [`Logging`]: the caller may act on it at once. Without one (or while the store or the
    /// journal's syncs are failing or lagging, or the backlog is full) it comes with the
    /// [`Logging`] of its record. Every other verdict is answered durable, as by `check`,
    /// with no `Logging`.
    ///
    /// For gates whose action has no effect but the data it returns: the gate may start the
    /// action at once, and must release none of its results before [`Logging::durable`]
    /// succeeds (and must end the session if it fails). Commit time then overlaps the action.
    pub async fn check_ahead(
        &self,
        principal: &Principal,
        attempt: Attempt,
        channel: &str,
    ) -> (CheckOutcome, Option<Logging>) {
        self.check_with(principal, attempt, channel, true).await
    }

    async fn check_with(
        &self,
        principal: &Principal,
        mut attempt: Attempt,
        channel: &str,
        ahead: bool,
    ) -> (CheckOutcome, Option<Logging>) {
        // The attempt is always the authenticated principal's, whatever the caller filled in.
        attempt.principal = principal.reference();
        let policies = self.policies();
        let outcome = if attempt.resources.is_empty() {
            PolicyOutcome::Error {
                reason: "the attempt names no resource".into(),
            }
        } else {
            policies.evaluate(principal, &attempt)
        };
        let digest = PayloadDigest::compute(&attempt.action, &attempt.resources, &attempt.payload);
        let mut lost: Vec<String> = Vec::new();
        for _ in 0..GRANT_RACE_RETRIES {
            let now = writer::now();
            let grant = if outcome.grant_may_apply() {
                self.inner.shared.grants.find(
                    &GrantScope {
                        principal: &attempt.principal,
                        on_behalf_of: attempt.on_behalf_of.as_deref(),
                        action: &attempt.action,
                        resources: &attempt.resources,
                        digest: &digest,
                    },
                    now,
                    &lost,
                )
            } else {
                None
            };
            let verdict = decide(&outcome, grant.as_ref().map(|g| g.id.as_str()));
            let new_request = match &verdict {
                Verdict::Approval { requirements, .. } => Some((
                    uuid::Uuid::now_v7().to_string(),
                    now.plus_ms(requirements.timeout_ms),
                )),
                _ => None,
            };
            let job = |attempt: Attempt| DecisionJob {
                attempt,
                digest,
                verdict: verdict.clone(),
                policy_version: policies.version().to_owned(),
                channel: channel.to_owned(),
                record_payload: !policies.withholds_payload(verdict.policy_ids()),
                grant: grant.as_ref().map(|g| (g.id.clone(), g.is_single_use())),
                new_request,
            };
            if let (
                true,
                None,
                Verdict::Allow {
                    reason, policy_ids, ..
                },
            ) = (ahead, &grant, &verdict)
            {
                // This branch always returns: the attempt moves into its job, uncloned.
                let job = job(attempt);
                let allow = CheckOutcome::Allow {
                    reason: reason.clone(),
                    policy_ids: policy_ids.clone(),
                    grant_id: None,
                    digest,
                };
                if let Admission::Recorded =
                    self.inner.backlog.push_decision(attempt_event(&job, now))
                {
                    return (allow, None);
                }
                return match self
                    .enqueue(|reply| Job::Decision(Box::new(job), reply))
                    .await
                {
                    Ok(reply) => (allow, Some(Logging { reply })),
                    Err(e) => (not_recorded(&e), None),
                };
            }
            let job = job(attempt.clone());
            let written = match self
                .enqueue(|reply| Job::Decision(Box::new(job), reply))
                .await
            {
                Ok(reply) => within_deadline(reply).await,
                Err(e) => Err(e),
            };
            let outcome = match (written, verdict) {
                (Err(EngineError::GrantLost(id)), _) => {
                    lost.push(id);
                    continue;
                }
                (Err(e), _) => not_recorded(&e),
                (Ok(Decided::Held(request)), verdict) => CheckOutcome::Pending {
                    review_url: self.review_url(&request.id),
                    reason: verdict.reason().to_owned(),
                    request,
                },
                (
                    Ok(Decided::Logged),
                    Verdict::Allow {
                        reason,
                        policy_ids,
                        grant_id,
                    },
                ) => CheckOutcome::Allow {
                    reason,
                    policy_ids,
                    grant_id,
                    digest,
                },
                (Ok(Decided::Logged), verdict) => CheckOutcome::Deny {
                    reason: verdict.reason().to_owned(),
                    policy_ids: verdict.policy_ids().to_vec(),
                },
            };
            return (outcome, None);
        }
        let outcome = CheckOutcome::Deny {
            reason: "denied: too many concurrent attempts raced for the same grant".into(),
            policy_ids: Vec::new(),
        };
        (outcome, None)
    }

    /// What policy alone says about `attempt` by `principal`, without grants, without a
    /// decision and without an audit record: for a gate that hides what policy forbids
    /// outright (an MCP tool list). Never a substitute for [`Engine::check`].
    pub fn evaluate(&self, principal: &Principal, attempt: &Attempt) -> PolicyOutcome {
        let mut attempt = attempt.clone();
        attempt.principal = principal.reference();
        self.policies().evaluate(principal, &attempt)
    }

    /// Logs `attempt` as denied for `reason` without asking policy: a gate refusing an action
    /// for a reason of its own kind (an MCP tool whose definition changed). Returns the deny.
    pub async fn refuse(
        &self,
        principal: &Principal,
        mut attempt: Attempt,
        channel: &str,
        reason: String,
    ) -> CheckOutcome {
        attempt.principal = principal.reference();
        let digest = PayloadDigest::compute(&attempt.action, &attempt.resources, &attempt.payload);
        let policies = self.policies();
        // The payload is withheld from the log if a policy that would have matched says so.
        let matched = match policies.evaluate(principal, &attempt) {
            PolicyOutcome::Forbid { policy_ids }
            | PolicyOutcome::Approval { policy_ids, .. }
            | PolicyOutcome::Permit { policy_ids } => policy_ids,
            PolicyOutcome::NoMatch | PolicyOutcome::Error { .. } => Vec::new(),
        };
        let verdict = Verdict::Deny {
            policy_ids: Vec::new(),
            reason: reason.clone(),
        };
        let job = DecisionJob {
            record_payload: !policies.withholds_payload(&matched),
            attempt,
            digest,
            verdict,
            policy_version: policies.version().to_owned(),
            channel: channel.to_owned(),
            grant: None,
            new_request: None,
        };
        let written = tokio::time::timeout(
            DECISION_DEADLINE,
            self.submit(|reply| Job::Decision(Box::new(job), reply)),
        )
        .await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::error!(%reason, "a refusal could not be recorded; refusing anyway");
        }
        CheckOutcome::Deny {
            reason,
            policy_ids: Vec::new(),
        }
    }

    /// Pins the tool definitions MCP gate `gate` saw and says how each stands, in order: a
    /// new tool is pinned (and trusted), a changed one is noted once and stands `Changed`
    /// until [`Engine::accept_tool`]. Definitions already recorded cost no write.
    pub async fn observe_tools(
        &self,
        gate: &str,
        tools: Vec<(String, PinnedDefinition)>,
    ) -> Result<Vec<ToolStanding>, EngineError> {
        let index = &self.inner.shared.tools;
        let known: Option<Vec<ToolStanding>> = tools
            .iter()
            .map(|(name, def)| index.standing(gate, name, def.fingerprint))
            .collect();
        if let Some(standings) = known {
            return Ok(standings);
        }
        let gate = gate.to_owned();
        self.submit(|reply| Job::ObserveTools { gate, tools, reply })
            .await
    }

    /// How tool `tool` of `gate` stands with definition `seen`, from memory; `None` when the
    /// definition was never recorded (pass it through [`Engine::observe_tools`] first).
    pub fn tool_standing(
        &self,
        gate: &str,
        tool: &str,
        seen: &PinnedDefinition,
    ) -> Option<ToolStanding> {
        self.inner
            .shared
            .tools
            .standing(gate, tool, seen.fingerprint)
    }

    /// Makes the changed definition of tool `tool` of `gate` the pinned one (administrators),
    /// provided it is still the one reviewed: `reviewed` is its fingerprint.
    pub async fn accept_tool(
        &self,
        by: &Principal,
        gate: &str,
        tool: &str,
        reviewed: ToolFingerprint,
    ) -> Result<KnownTool, EngineError> {
        let by = by.reference();
        let (gate, tool) = (gate.to_owned(), tool.to_owned());
        self.submit(|reply| Job::AcceptTool {
            by,
            gate,
            tool,
            reviewed,
            reply,
        })
        .await
    }

    /// The pinned tools of `gate` (of every gate when `None`).
    pub fn known_tools(&self, gate: Option<&str>) -> Vec<KnownTool> {
        self.inner.shared.tools.all(gate)
    }

    /// The pinned tool `tool` of `gate`.
    pub fn known_tool(&self, gate: &str, tool: &str) -> Option<KnownTool> {
        self.inner.shared.tools.get(gate, tool)
    }

    /// Waits until request `id` settles or `timeout` passes, then returns it as it stands.
    /// Wakes the moment the deciding change commits; never polls.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<ApprovalRequest, EngineError> {
        let mut rx = lock(&self.inner.shared.watchers)
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(RequestStatus::Pending).0)
            .subscribe();
        let request = match self.request(id).await {
            Ok(r) => r,
            Err(e) => {
                drop(rx);
                self.forget_watcher(id);
                return Err(e);
            }
        };
        if request.status.is_settled() || timeout.is_zero() {
            drop(rx);
            self.forget_watcher(id);
            return Ok(request);
        }
        let woke = tokio::time::timeout(timeout, rx.changed()).await;
        drop(rx);
        self.forget_watcher(id);
        match woke {
            Ok(_) => self.request(id).await,
            Err(_) => Ok(request),
        }
    }

    fn forget_watcher(&self, id: &str) {
        let mut watchers = lock(&self.inner.shared.watchers);
        if watchers.get(id).is_some_and(|tx| tx.receiver_count() == 0) {
            watchers.remove(id);
        }
    }

    /// Every committed step of every request from now on (created, voted, settled, escalated,
    /// reminded, grants issued, revoked and expired), for reviewer channels. A notice is sent
    /// only after the step is durable; a receiver that falls more than a few thousand notices
    /// behind is told how many it missed (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestNotice>> {
        self.inner.shared.notices.subscribe()
    }

    /// Records `voter`'s vote on request `id`. Refused votes are logged and returned as
    /// [`EngineError::Vote`] with the precise reason.
    pub async fn vote(
        &self,
        voter: &Principal,
        id: &str,
        decision: Decision,
        reason: Option<String>,
        channel: &str,
    ) -> Result<ApprovalRequest, EngineError> {
        self.submit_vote(voter, id, decision, reason, channel, false)
            .await
    }

    /// The requester approves their own request under a break-glass policy, with `reason`
    /// (see `ApprovalRequest::cast_vote` for every condition). Logged and flagged like a vote;
    /// refusals are [`EngineError::Vote`].
    pub async fn break_glass(
        &self,
        requester: &Principal,
        id: &str,
        reason: String,
        channel: &str,
    ) -> Result<ApprovalRequest, EngineError> {
        self.submit_vote(
            requester,
            id,
            Decision::Approve,
            Some(reason),
            channel,
            true,
        )
        .await
    }

    async fn submit_vote(
        &self,
        voter: &Principal,
        id: &str,
        decision: Decision,
        reason: Option<String>,
        channel: &str,
        break_glass: bool,
    ) -> Result<ApprovalRequest, EngineError> {
        let vote = Vote {
            id: uuid::Uuid::now_v7().to_string(),
            voter: voter.reference(),
            voter_groups: voter.groups.clone(),
            decision,
            reason,
            channel: channel.to_owned(),
            cast_at: writer::now(),
            break_glass,
        };
        let voter = voter.clone();
        let request_id = id.to_owned();
        self.submit(|reply| Job::Vote {
            voter,
            request_id,
            vote,
            grant_id: uuid::Uuid::now_v7().to_string(),
            reply,
        })
        .await
    }

    /// Cancels request `id`: its requester may, and an administrator when `by_admin`.
    pub async fn cancel(
        &self,
        by: &Principal,
        id: &str,
        by_admin: bool,
    ) -> Result<ApprovalRequest, EngineError> {
        let by = by.reference();
        let request_id = id.to_owned();
        self.submit(|reply| Job::Cancel {
            by,
            by_admin,
            request_id,
            reply,
        })
        .await
    }

    /// Revokes an active grant.
    pub async fn revoke(
        &self,
        by: &Principal,
        grant_id: &str,
        by_admin: bool,
        reason: Option<String>,
    ) -> Result<Grant, EngineError> {
        let by = by.reference();
        let grant_id = grant_id.to_owned();
        self.submit(|reply| Job::Revoke {
            by,
            by_admin,
            grant_id,
            reason,
            reply,
        })
        .await
    }

    /// Puts `loaded` in force and logs it, or logs why it was refused and keeps the old set.
    pub async fn reload(
        &self,
        loaded: Result<LoadedPolicies, PolicyLoadError>,
    ) -> Result<Arc<LoadedPolicies>, ReloadError> {
        match loaded {
            Ok(policies) => {
                // One reload at a time, and logged before it takes effect: a set that cannot
                // be recorded is never put in force.
                let _one_at_a_time = self.inner.reloading.lock().await;
                let policies = Arc::new(policies);
                self.record_policy_load(&policies)
                    .await
                    .map_err(ReloadError::Engine)?;
                *self
                    .inner
                    .policies
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = policies.clone();
                Ok(policies)
            }
            Err(e) => {
                let mut event = AuditEvent::new(EventKind::PolicyRejected, writer::now());
                event.policy_version = Some(self.policies().version().to_owned());
                event.reason = Some(e.to_string());
                self.submit(|reply| Job::Event {
                    event: Box::new(event),
                    policy_version: None,
                    reply,
                })
                .await
                .map_err(ReloadError::Engine)?;
                Err(ReloadError::Refused(e))
            }
        }
    }

    async fn record_policy_load(&self, policies: &LoadedPolicies) -> Result<(), EngineError> {
        let mut event = AuditEvent::new(EventKind::PolicyLoaded, writer::now());
        event.policy_version = Some(policies.version().to_owned());
        event.policy_ids = policies.policies().map(|p| p.id.clone()).collect();
        event.outcome = Some(format!(
            "{} policies from {}",
            policies.policy_count(),
            policies.files().join(", ")
        ));
        let record = (
            policies.version().to_owned(),
            policies.files().to_vec(),
            policies.policy_count(),
        );
        self.submit(|reply| Job::Event {
            event: Box::new(event),
            policy_version: Some(record),
            reply,
        })
        .await
    }

    /// Acts on every deadline that has passed: escalations, reminders, expiry of requests and
    /// grants.
    pub async fn expire_due(&self) -> Result<(), EngineError> {
        self.submit(|reply| Job::ExpireDue { reply }).await
    }

    /// Keeps a reference to a message a channel posted about a request, so it can be updated
    /// later, after a restart too.
    pub async fn record_channel_message(&self, message: ChannelMessage) -> Result<(), EngineError> {
        self.submit(|reply| Job::Channel {
            write: ChannelWrite::Message(message),
            reply,
        })
        .await
    }

    /// Records one attempt to deliver a webhook.
    pub async fn record_delivery_attempt(
        &self,
        attempt: DeliveryAttempt,
    ) -> Result<(), EngineError> {
        self.submit(|reply| Job::Channel {
            write: ChannelWrite::Delivery(attempt),
            reply,
        })
        .await
    }

    /// The messages channels posted about request `id`.
    pub async fn channel_messages(
        &self,
        request_id: &str,
    ) -> Result<Vec<ChannelMessage>, EngineError> {
        Ok(self.inner.store.channel_messages(request_id).await?)
    }

    /// Webhook delivery attempts about request `id` (all when `None`), oldest first.
    pub async fn delivery_attempts(
        &self,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, EngineError> {
        Ok(self
            .inner
            .store
            .delivery_attempts(request_id, limit)
            .await?)
    }

    async fn submit<T>(&self, job: impl FnOnce(writer::Reply<T>) -> Job) -> Result<T, EngineError> {
        self.enqueue(job)
            .await?
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    /// Hands a job to the writer; the receiver answers once its batch committed (or failed).
    /// A writer whose queue stays full past the decision deadline counts as failed.
    async fn enqueue<T>(
        &self,
        job: impl FnOnce(writer::Reply<T>) -> Job,
    ) -> Result<oneshot::Receiver<Result<T, EngineError>>, EngineError> {
        let (tx, rx) = oneshot::channel();
        match self
            .inner
            .jobs
            .send_timeout(job(tx), DECISION_DEADLINE)
            .await
        {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(EngineError::Stopped),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                Err(EngineError::NotRecorded(format!(
                    "the writer took no job within {}s",
                    DECISION_DEADLINE.as_secs()
                )))
            }
        }
    }

    pub async fn request(&self, id: &str) -> Result<ApprovalRequest, EngineError> {
        self.inner
            .store
            .request(id)
            .await?
            .ok_or_else(|| EngineError::RequestNotFound(id.to_owned()))
    }

    pub async fn requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<ApprovalRequest>, EngineError> {
        Ok(self.inner.store.requests(filter).await?)
    }

    pub async fn grant(&self, id: &str) -> Result<Grant, EngineError> {
        self.inner
            .store
            .grant(id)
            .await?
            .ok_or_else(|| EngineError::GrantNotFound(id.to_owned()))
    }

    /// The grant an approved request produced, if any.
    pub async fn grant_for_request(&self, request_id: &str) -> Result<Option<Grant>, EngineError> {
        Ok(self.inner.store.grant_for_request(request_id).await?)
    }

    pub async fn grants(
        &self,
        principal: Option<&PrincipalRef>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Grant>, EngineError> {
        Ok(self
            .inner
            .store
            .grants(principal, active_only, limit)
            .await?)
    }

    /// How many audit records are committed.
    pub async fn audit_size(&self) -> Result<u64, EngineError> {
        Ok(self.inner.store.audit_size().await?)
    }

    /// The newest signed checkpoint: tree size and note.
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, EngineError> {
        Ok(self.inner.store.latest_checkpoint().await?)
    }

    /// Proves record `seq` against the latest signed checkpoint.
    pub async fn inclusion_proof(
        &self,
        seq: u64,
    ) -> Result<InclusionProof, audit_io::AuditIoError> {
        audit_io::inclusion_proof(&self.inner.store, seq).await
    }

    /// Proves that the log of `to` records extends the log of `from` records.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<countersign_audit::merkle::Hash>, audit_io::AuditIoError> {
        audit_io::consistency_proof(&self.inner.store, from, to).await
    }

    /// Logs how an action allowed by grant `grant_id` went when it ran: `succeeded` or
    /// `failed`, with an optional detail (exit status, command tag, error). Only the principal
    /// the grant belongs to may report on it.
    pub async fn record_execution(
        &self,
        by: &Principal,
        grant_id: &str,
        succeeded: bool,
        detail: Option<String>,
    ) -> Result<(), EngineError> {
        let grant = self.grant(grant_id).await?;
        if grant.principal != by.reference() {
            return Err(EngineError::NotYourGrant(grant_id.to_owned()));
        }
        let mut event = audit::grant_event(EventKind::Execution, &grant, writer::now());
        event.actor = Some(by.reference());
        event.outcome = Some(if succeeded { "succeeded" } else { "failed" }.to_owned());
        event.reason = detail;
        self.submit(|reply| Job::Event {
            event: Box::new(event),
            policy_version: None,
            reply,
        })
        .await
    }

    /// Logs what became of an attempt a gate acted on (a statement's command tag or error, a
    /// tool call's result). The decision was logged before the action ran; this event follows
    /// it, so the call returns once the event is queued, and it commits with the writer's next
    /// batch (within [`JournalConfig::commit_every`] at the latest, 10 ms without a journal).
    /// With a journal, its line is written with the next decision's or the next sync.
    /// Waiting here would stall the gate's result stream for nothing.
    pub fn record_outcome(&self, principal: &Principal, channel: &str, outcome: ActionOutcome<'_>) {
        let ActionOutcome {
            attempt,
            digest,
            grant_id,
            succeeded,
            detail,
        } = outcome;
        let mut event = AuditEvent::new(EventKind::Execution, writer::now());
        event.actor = Some(principal.reference());
        event.principal = Some(principal.reference());
        event.on_behalf_of = attempt.on_behalf_of.clone();
        event.action = Some(attempt.action.as_str().to_owned());
        event.resources = attempt.resources.clone();
        event.payload_digest = Some(digest.to_hex());
        event.grant_id = grant_id.map(str::to_owned);
        event.channel = Some(channel.to_owned());
        event.outcome = Some(if succeeded { "succeeded" } else { "failed" }.to_owned());
        event.reason = Some(detail);
        self.inner.backlog.push_record(event)
    }

    /// Verifies the whole stored log as an auditor would: every leaf against its event, the
    /// tree, and every checkpoint's origin and signature with `keys` (the first trusted, later
    /// ones only once a covered rotation event announces them).
    pub async fn verify_log(
        &self,
        keys: Vec<VerifierKey>,
    ) -> Result<
        Result<countersign_audit::export::VerifySummary, countersign_audit::export::VerifyError>,
        audit_io::AuditIoError,
    > {
        audit_io::verify_store(&self.inner.store, &self.inner.origin, keys, |_| {}).await
    }

    /// Commits what the backlog holds and signs a checkpoint of everything logged so far; call
    /// before shutting down. From then on, outcome records are journaled as they come.
    pub async fn checkpoint(&self) -> Result<(), EngineError> {
        // Gates still running may add outcome records after the last batch: from here their
        // journal lines are written at once, for the next start to commit.
        self.inner.backlog.close();
        // A batch takes at most 20,000 of the backlog's records: at shutdown, keep going until
        // the checkpoint covers them all (bounded, as gates may still be adding).
        for _ in 0..100 {
            self.submit(|reply| Job::Checkpoint { reply }).await?;
            if self.inner.backlog.len() == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Replaces the audit signing key. The log records the new verifier key in an event that a
    /// checkpoint signed by the old key covers; later checkpoints are signed by the new key. The
    /// key file (when there is one) is replaced, the old key kept beside it.
    pub async fn rotate_audit_key(&self, by: &Principal) -> Result<VerifierKey, EngineError> {
        let _one_at_a_time = self.inner.rotation.lock().await;
        let old = self.verifier_key();
        let key =
            keyfile::generate(old.name()).map_err(|e| EngineError::NotRecorded(e.to_string()))?;
        let verifier = key.verifier();
        let next_path = self.inner.key_file.as_ref().map(|p| {
            let mut next = p.as_os_str().to_owned();
            next.push(".next");
            std::path::PathBuf::from(next)
        });
        if let Some(next) = &next_path {
            // A leftover from a rotation that failed half-way holds a key nothing was signed with.
            let _ = std::fs::remove_file(next);
            keyfile::write_new(next, &key).map_err(|e| EngineError::NotRecorded(e.to_string()))?;
        }
        let mut event = countersign_audit::key_rotation_event(writer::now(), &verifier);
        event.actor = Some(by.reference());
        let submitted = self
            .submit(|reply| Job::RotateKey {
                event: Box::new(event),
                key: Box::new(key),
                reply,
            })
            .await;
        if let Err(e) = submitted {
            if let Some(next) = &next_path {
                let _ = std::fs::remove_file(next);
            }
            return Err(e);
        }
        if let (Some(current), Some(next)) = (&self.inner.key_file, &next_path) {
            keyfile::promote(current, next, writer::now().millis())
                .map_err(|e| EngineError::NotRecorded(e.to_string()))?;
        }
        *self
            .inner
            .verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier.clone();
        Ok(verifier)
    }

    pub async fn audit_records(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, EngineError> {
        Ok(self.inner.store.audit_records(from, limit).await?)
    }

    /// Whether decisions can be recorded right now: a round trip through the writer and a
    /// commit, within the decision deadline. For readiness checks.
    pub async fn ready(&self) -> Result<(), EngineError> {
        tokio::time::timeout(DECISION_DEADLINE, self.submit(|reply| Job::Ping { reply }))
            .await
            .map_err(|_| EngineError::NotRecorded("the writer did not answer in time".into()))?
    }
}

/// Why a policy reload did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("policy set refused; the previous set stays in force: {0}")]
    Refused(#[source] PolicyLoadError),
    #[error(transparent)]
    Engine(EngineError),
}

/// Sleeps until the earliest deadline (expiry, escalation, reminder; or until a new one is
/// added), then acts on what is due. Stops when the engine is dropped.
async fn expiry_loop(store: Store, engine: std::sync::Weak<Inner>) {
    // Re-read the deadline at least this often, so a clock step or a missed wake-up heals.
    const MAX_SLEEP: Duration = Duration::from_secs(30);
    loop {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let notified = inner.shared.clone();
        drop(inner);
        let wait = match store.next_deadline().await {
            Ok(Some(t)) => {
                let ms = t.millis().saturating_sub(writer::now().millis()).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next deadline");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = notified.deadline_changed.notified() => continue,
        }
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine_handle = Engine { inner };
        if let Err(e) = engine_handle.expire_due().await {
            tracing::warn!(error = %e, "expiry sweep failed; will retry");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The current time, as the engine sees it.
pub fn now() -> Timestamp {
    writer::now()
}
