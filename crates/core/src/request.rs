//! Approval requests and their state machine:
//! `pending → approved | denied | expired | cancelled`, nothing leaves a settled state.
//!
//! The rules, all enforced here and nowhere else:
//! - only people (users) from an eligible group may vote, once each;
//! - the requester and the user an agent acts for never vote on their own request (they may
//!   cancel it);
//! - one deny settles the request as denied;
//! - every rule's quorum counts distinct people from that rule's groups, so a person in two
//!   eligible groups counts once;
//! - nothing is accepted after settlement or after the deadline;
//! - a deny carries a reason where policy demands one (`@require_reason("deny")`);
//! - break-glass, the one exception to self-approval: where every matching rule allows it
//!   (`@break_glass("true")`), the user who made the request may approve it alone, with a
//!   written reason of at least [`BREAK_GLASS_MIN_REASON`] characters. The vote is flagged, so
//!   the request can be reviewed after the fact. The user an agent says it acts for may not:
//!   the agent chose that name;
//! - escalation: once an `@escalate` deadline passes on a pending request, its groups may vote
//!   too, and count towards the quorum of the policy that escalated.

use crate::attempt::{Attempt, person_key, same_person};
use crate::decision::{Escalation, Requirements};
use crate::digest::PayloadDigest;
use crate::principal::{Principal, PrincipalKind, PrincipalRef};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RequestStatus> {
        match text {
            "pending" => Some(RequestStatus::Pending),
            "approved" => Some(RequestStatus::Approved),
            "denied" => Some(RequestStatus::Denied),
            "expired" => Some(RequestStatus::Expired),
            "cancelled" => Some(RequestStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_settled(self) -> bool {
        self != RequestStatus::Pending
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reviewer's choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// One reviewer's vote, with the groups they held when they cast it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub id: String,
    pub voter: PrincipalRef,
    pub voter_groups: BTreeSet<String>,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the vote came from: `api`, `cli`, `slack`, `console`, …
    pub channel: String,
    pub cast_at: Timestamp,
    /// The requester approving their own request under a break-glass policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Shortest reason, in characters (surrounding space aside), that a break-glass approval needs.
pub const BREAK_GLASS_MIN_REASON: usize = 20;

/// Why a vote was refused. Each way a vote can be wrong has its own variant, so every channel
/// can tell the reviewer exactly what happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("request is already {0}")]
    AlreadySettled(RequestStatus),
    #[error("request expired before the vote")]
    Expired,
    #[error(
        "a requester cannot vote on their own request (the acting principal and the user it acts for may cancel it instead)"
    )]
    SelfApproval,
    #[error("{0}")]
    NotEligible(String),
    #[error("{0} has already voted on this request")]
    DuplicateVote(String),
    #[error("the policy requires a reason for a deny")]
    ReasonRequired,
    #[error("break-glass refused: {0}")]
    BreakGlass(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("request is already {0}")]
    AlreadySettled(RequestStatus),
    #[error("only the requester, or the user the agent acts for, may cancel a request")]
    NotRequester,
}

/// What a successful vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded; the request stays pending.
    Recorded,
    /// Recorded and the request is now settled with this status.
    Settled(RequestStatus),
}

/// A held attempt waiting for reviewers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: String,
    pub attempt: Attempt,
    pub digest: PayloadDigest,
    pub requirements: Requirements,
    pub policy_version: String,
    pub policy_ids: Vec<String>,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Timestamp>,
    /// Who cancelled the request, when it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<PrincipalRef>,
    pub votes: Vec<Vote>,
    /// How many of `requirements.escalations` (earliest first) have fallen due.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalations_fired: u32,
    /// A policy behind the request keeps the payload out of the audit log
    /// (`@audit_payload("withhold")`); reviewer channels then show only its digest and the
    /// review link, so the text does not spread to places with looser access.
    #[serde(default, skip_serializing_if = "is_false")]
    pub payload_withheld: bool,
}

impl ApprovalRequest {
    /// The escalations that have fallen due.
    pub fn fired_escalations(&self) -> &[Escalation] {
        let n = (self.escalations_fired as usize).min(self.requirements.escalations.len());
        &self.requirements.escalations[..n]
    }

    /// Every group whose members may vote now: the rules' groups and those escalated to.
    pub fn eligible_groups(&self) -> BTreeSet<String> {
        let mut groups = self.requirements.eligible_groups();
        for e in self.fired_escalations() {
            groups.extend(e.groups.iter().cloned());
        }
        groups
    }

    /// The groups whose approvals count for `rule`: its own, plus those its policy escalated to.
    pub fn rule_groups(&self, rule: &crate::decision::ApprovalRule) -> BTreeSet<String> {
        let mut groups = rule.groups.clone();
        for e in self.fired_escalations() {
            if e.policy_id == rule.policy_id {
                groups.extend(e.groups.iter().cloned());
            }
        }
        groups
    }

    /// When the next escalation falls due, while the request is pending.
    pub fn next_escalation_at(&self) -> Option<Timestamp> {
        if self.status.is_settled() {
            return None;
        }
        self.requirements
            .escalations
            .get(self.escalations_fired as usize)
            .map(|e| self.created_at.plus_ms(e.after_ms))
            .filter(|t| *t < self.expires_at)
    }

    /// Fires every escalation due at `now` on a pending request; returns those it fired.
    pub fn escalate_if_due(&mut self, now: Timestamp) -> Vec<Escalation> {
        let mut fired = Vec::new();
        while let Some(at) = self.next_escalation_at() {
            if at > now {
                break;
            }
            fired.push(self.requirements.escalations[self.escalations_fired as usize].clone());
            self.escalations_fired += 1;
        }
        fired
    }

    /// When reviewers are reminded, if the policy asks for it and there is time for it.
    pub fn reminder_at(&self) -> Option<Timestamp> {
        let before = self.requirements.remind_before_ms?;
        let at = self
            .expires_at
            .millis()
            .checked_sub(i64::try_from(before).ok()?)?;
        (at > self.created_at.millis()).then_some(Timestamp(at))
    }

    /// Whether a break-glass approval settled this request.
    pub fn broke_glass(&self) -> bool {
        self.votes.iter().any(|v| v.break_glass)
    }

    /// Whether `who` may vote on this request at all (ignoring its state): a person, not a
    /// requester, in some eligible group.
    pub fn eligibility(&self, who: &Principal) -> Result<(), VoteError> {
        if self.attempt.is_requester(&who.reference()) {
            return Err(VoteError::SelfApproval);
        }
        if who.kind != PrincipalKind::User {
            return Err(VoteError::NotEligible(format!(
                "{} is an agent; only people review requests",
                who.reference()
            )));
        }
        let groups = self.eligible_groups();
        if !who.in_any(&groups) {
            return Err(VoteError::NotEligible(format!(
                "{} is not in a reviewer group of this request ({})",
                who.reference(),
                groups.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Applies `vote` by `voter` at `now`. On error the request is left untouched.
    ///
    /// A vote flagged `break_glass` follows [`ApprovalRequest::break_glass`]'s rules instead.
    pub fn cast_vote(
        &mut self,
        voter: &Principal,
        vote: Vote,
        now: Timestamp,
    ) -> Result<VoteOutcome, VoteError> {
        if vote.break_glass {
            return self.break_glass(voter, vote, now);
        }
        // Who may vote is checked before the request's state, so someone who may not vote
        // learns nothing about where the request stands.
        self.eligibility(voter)?;
        self.check_open(now)?;
        if vote.decision == Decision::Deny
            && self.requirements.deny_reason_required
            && vote.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(VoteError::ReasonRequired);
        }
        if self
            .votes
            .iter()
            .any(|v| same_person(&v.voter.id, &vote.voter.id))
        {
            return Err(VoteError::DuplicateVote(vote.voter.to_string()));
        }
        let decision = vote.decision;
        self.votes.push(vote);
        let settled = match decision {
            Decision::Deny => Some(RequestStatus::Denied),
            Decision::Approve if self.quorum_met() => Some(RequestStatus::Approved),
            Decision::Approve => None,
        };
        Ok(match settled {
            Some(status) => {
                self.status = status;
                self.settled_at = Some(now);
                VoteOutcome::Settled(status)
            }
            None => VoteOutcome::Recorded,
        })
    }

    /// Whether `who` could vote on this request at `now`: eligible, and the request still open.
    /// Channels ask this before collecting a reason, so nobody is asked for one in vain.
    pub fn may_vote(&self, who: &Principal, now: Timestamp) -> Result<(), VoteError> {
        self.eligibility(who)?;
        self.check_open(now)
    }

    fn check_open(&self, now: Timestamp) -> Result<(), VoteError> {
        if self.status.is_settled() {
            return Err(VoteError::AlreadySettled(self.status));
        }
        if now >= self.expires_at {
            return Err(VoteError::Expired);
        }
        Ok(())
    }

    /// The requester's own approval under break-glass: only the user who made the request
    /// (never an agent, nor the user an agent names as `on_behalf_of`: the agent made that
    /// claim, so honouring it would let an agent pick who approves alone), only an approve,
    /// only where every rule allows it, and only with a reason of at least
    /// [`BREAK_GLASS_MIN_REASON`] characters. It settles the request as approved at once.
    fn break_glass(
        &mut self,
        voter: &Principal,
        vote: Vote,
        now: Timestamp,
    ) -> Result<VoteOutcome, VoteError> {
        let refuse = |why: &str| Err(VoteError::BreakGlass(why.to_owned()));
        if !self.attempt.is_requester(&voter.reference()) {
            // Whoever else may see the request is refused as for any vote they may not cast.
            self.eligibility(voter)?;
            return refuse("only the requester may break glass; reviewers vote as usual");
        }
        if voter.kind != PrincipalKind::User {
            return refuse("only a person may break glass, never an agent");
        }
        let principal = &self.attempt.principal;
        if principal.kind != PrincipalKind::User || !same_person(&voter.id, &principal.id) {
            return refuse(
                "only the user who made the request may break glass, not the user an agent acts for",
            );
        }
        if vote.decision != Decision::Approve {
            return refuse("break-glass approves; to withdraw a request, cancel it");
        }
        self.check_open(now)?;
        self.requirements
            .break_glass_allowed()
            .map_err(VoteError::BreakGlass)?;
        let written = vote
            .reason
            .as_deref()
            .map_or(0, |r| r.trim().chars().count());
        if written < BREAK_GLASS_MIN_REASON {
            return Err(VoteError::BreakGlass(format!(
                "a reason of at least {BREAK_GLASS_MIN_REASON} characters is required ({written} given)"
            )));
        }
        self.votes.push(vote);
        self.status = RequestStatus::Approved;
        self.settled_at = Some(now);
        Ok(VoteOutcome::Settled(RequestStatus::Approved))
    }

    /// Whether every rule has its quorum of distinct approving people from its groups (and
    /// the groups its policy escalated to).
    pub fn quorum_met(&self) -> bool {
        self.requirements
            .rules
            .iter()
            .all(|rule| self.approvals_for(&self.rule_groups(rule)) >= rule.quorum as usize)
    }

    /// Distinct people who approved and belonged to one of `groups` when they voted.
    pub fn approvals_for(&self, groups: &BTreeSet<String>) -> usize {
        self.votes
            .iter()
            .filter(|v| v.decision == Decision::Approve)
            .filter(|v| v.voter_groups.iter().any(|g| groups.contains(g)))
            .map(|v| person_key(&v.voter.id))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Cancels the request on behalf of `by`. Requesters may always cancel their own pending
    /// request; `by_admin` lets an administrator cancel anyone's.
    pub fn cancel(
        &mut self,
        by: &PrincipalRef,
        by_admin: bool,
        now: Timestamp,
    ) -> Result<(), CancelError> {
        if self.status.is_settled() {
            return Err(CancelError::AlreadySettled(self.status));
        }
        if !by_admin && !self.attempt.is_requester(by) {
            return Err(CancelError::NotRequester);
        }
        self.status = RequestStatus::Cancelled;
        self.settled_at = Some(now);
        self.cancelled_by = Some(by.clone());
        Ok(())
    }

    /// Expires the request if it is pending and its deadline has passed. Returns whether it did.
    pub fn expire_if_due(&mut self, now: Timestamp) -> bool {
        if self.status == RequestStatus::Pending && now >= self.expires_at {
            self.status = RequestStatus::Expired;
            self.settled_at = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::{Action, Resource};
    use crate::decision::ApprovalRule;
    use crate::grant::GrantShape;
    use std::collections::BTreeMap;

    fn rule(groups: &[&str], quorum: u32) -> ApprovalRule {
        ApprovalRule {
            policy_id: "p".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            quorum,
            break_glass: false,
        }
    }

    fn request(rules: Vec<ApprovalRule>) -> ApprovalRequest {
        let action = Action::parse("db.export").unwrap();
        let resources = vec![Resource::new("Database", "prod")];
        let payload = serde_json::json!("COPY t TO STDOUT");
        ApprovalRequest {
            id: "r1".into(),
            digest: PayloadDigest::compute(&action, &resources, &payload),
            attempt: Attempt {
                principal: PrincipalRef::agent("etl"),
                on_behalf_of: Some("alice".into()),
                action,
                resources,
                payload,
                justification: Some("monthly report".into()),
                context: BTreeMap::new(),
            },
            requirements: Requirements::new(rules, GrantShape::Once, 1_000),
            policy_version: "v".into(),
            policy_ids: vec!["p".into()],
            status: RequestStatus::Pending,
            created_at: Timestamp(0),
            expires_at: Timestamp(1_000),
            settled_at: None,
            cancelled_by: None,
            votes: Vec::new(),
            escalations_fired: 0,
            payload_withheld: false,
        }
    }

    /// A request the user alice made herself, not through an agent.
    fn alices_own(rules: Vec<ApprovalRule>) -> ApprovalRequest {
        let mut r = request(rules);
        r.attempt.principal = PrincipalRef::user("alice");
        r.attempt.on_behalf_of = None;
        r
    }

    fn user(id: &str, groups: &[&str]) -> Principal {
        Principal::new(PrincipalKind::User, id, groups.iter().copied())
    }

    fn vote_with(
        r: &mut ApprovalRequest,
        who: &Principal,
        decision: Decision,
        reason: Option<&str>,
        break_glass: bool,
        now: i64,
    ) -> Result<VoteOutcome, VoteError> {
        let vote = Vote {
            id: format!("v-{}-{now}", who.id),
            voter: who.reference(),
            voter_groups: who.groups.clone(),
            decision,
            reason: reason.map(str::to_owned),
            channel: "api".into(),
            cast_at: Timestamp(now),
            break_glass,
        };
        r.cast_vote(who, vote, Timestamp(now))
    }

    fn vote_as(
        r: &mut ApprovalRequest,
        who: &Principal,
        decision: Decision,
        now: i64,
    ) -> Result<VoteOutcome, VoteError> {
        vote_with(r, who, decision, Some("looked at it"), false, now)
    }

    fn break_glass_as(
        r: &mut ApprovalRequest,
        who: &Principal,
        reason: &str,
    ) -> Result<VoteOutcome, VoteError> {
        vote_with(r, who, Decision::Approve, Some(reason), true, 5)
    }

    const GOOD_REASON: &str = "prod is down, paging did not reach anyone";

    fn glass_rule(groups: &[&str], quorum: u32) -> ApprovalRule {
        ApprovalRule {
            break_glass: true,
            ..rule(groups, quorum)
        }
    }

    #[test]
    fn break_glass_lets_the_requesting_person_approve_alone() {
        let mut r = alices_own(vec![glass_rule(&["owners"], 2)]);
        // Ids compare without case or surrounding space, as for self-approval.
        let alice = user(" Alice", &[]);
        assert_eq!(
            break_glass_as(&mut r, &alice, GOOD_REASON),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
        assert!(r.broke_glass());
        assert_eq!(r.votes.len(), 1);
    }

    #[test]
    fn the_user_an_agent_names_cannot_break_glass_nor_approve() {
        // The agent `etl` says it acts for alice: alice may neither break glass on it nor
        // approve it as a reviewer, even in an eligible group.
        let mut r = request(vec![glass_rule(&["owners"], 1)]);
        let alice = user("alice", &["owners"]);
        assert!(matches!(
            break_glass_as(&mut r, &alice, GOOD_REASON),
            Err(VoteError::BreakGlass(ref m)) if m.contains("agent acts for")
        ));
        assert_eq!(
            vote_as(&mut r, &alice, Decision::Approve, 5),
            Err(VoteError::SelfApproval)
        );
        // Nor when a user asked on someone else's behalf.
        let mut r = alices_own(vec![glass_rule(&["owners"], 1)]);
        r.attempt.on_behalf_of = Some("bob".into());
        let bob = user("BOB", &["owners"]);
        assert!(matches!(
            break_glass_as(&mut r, &bob, GOOD_REASON),
            Err(VoteError::BreakGlass(_))
        ));
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 5),
            Err(VoteError::SelfApproval)
        );
        assert_eq!(r.status, RequestStatus::Pending);
        assert!(r.votes.is_empty());
    }

    #[test]
    fn break_glass_abuses_are_refused_and_change_nothing() {
        let alice = user("alice", &["owners"]);
        let refused = |r: &ApprovalRequest| {
            assert_eq!(r.status, RequestStatus::Pending);
            assert!(r.votes.is_empty());
        };
        // A short reason, counted in characters without the surrounding space.
        let mut r = alices_own(vec![glass_rule(&["owners"], 1)]);
        for short in [
            "",
            "because",
            "   nineteen chars ok   ",
            "ééééééééééééééééééé",
        ] {
            let e = break_glass_as(&mut r, &alice, short).unwrap_err();
            assert!(
                matches!(e, VoteError::BreakGlass(ref m) if m.contains("20")),
                "{e}"
            );
        }
        refused(&r);
        // A policy without the annotation.
        let mut r = alices_own(vec![rule(&["owners"], 1)]);
        assert!(matches!(
            break_glass_as(&mut r, &alice, GOOD_REASON),
            Err(VoteError::BreakGlass(_))
        ));
        refused(&r);
        // An agent approving for itself.
        let mut r = request(vec![glass_rule(&["owners"], 1)]);
        let agent = Principal::new(PrincipalKind::Agent, "etl", ["owners"]);
        assert!(matches!(
            break_glass_as(&mut r, &agent, GOOD_REASON),
            Err(VoteError::BreakGlass(ref m)) if m.contains("agent")
        ));
        refused(&r);
        // Another rule's quorum still stands.
        let mut r = alices_own(vec![glass_rule(&["owners"], 1), rule(&["security"], 1)]);
        assert!(matches!(
            break_glass_as(&mut r, &alice, GOOD_REASON),
            Err(VoteError::BreakGlass(_))
        ));
        refused(&r);
        // A reviewer who is not the requester cannot use it to skip the quorum.
        let mut r = alices_own(vec![glass_rule(&["owners"], 2)]);
        let bob = user("bob", &["owners"]);
        assert!(matches!(
            break_glass_as(&mut r, &bob, GOOD_REASON),
            Err(VoteError::BreakGlass(_))
        ));
        // An outsider learns nothing.
        assert!(matches!(
            break_glass_as(&mut r, &user("eve", &[]), GOOD_REASON),
            Err(VoteError::NotEligible(_))
        ));
        refused(&r);
        // Only an approve, only while pending, and a plain self-vote stays refused.
        let mut r = alices_own(vec![glass_rule(&["owners"], 1)]);
        assert!(matches!(
            vote_with(&mut r, &alice, Decision::Deny, Some(GOOD_REASON), true, 5),
            Err(VoteError::BreakGlass(_))
        ));
        assert_eq!(
            vote_as(&mut r, &alice, Decision::Approve, 5),
            Err(VoteError::SelfApproval)
        );
        refused(&r);
        assert_eq!(
            vote_with(
                &mut r,
                &alice,
                Decision::Approve,
                Some(GOOD_REASON),
                true,
                1_000
            ),
            Err(VoteError::Expired)
        );
        vote_as(&mut r, &user("bob", &["owners"]), Decision::Approve, 6).unwrap();
        assert_eq!(
            break_glass_as(&mut r, &alice, GOOD_REASON),
            Err(VoteError::AlreadySettled(RequestStatus::Approved))
        );
    }

    #[test]
    fn a_deny_says_why_where_policy_demands_it() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        r.requirements.deny_reason_required = true;
        let bob = user("bob", &["owners"]);
        for blank in [None, Some(""), Some("   ")] {
            assert_eq!(
                vote_with(&mut r, &bob, Decision::Deny, blank, false, 1),
                Err(VoteError::ReasonRequired)
            );
        }
        assert_eq!(
            vote_with(&mut r, &bob, Decision::Approve, None, false, 1),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
    }

    #[test]
    fn escalation_widens_the_escalating_rule_once_due() {
        let mut r = request(vec![rule(&["owners"], 2)]);
        r.requirements.escalations = vec![Escalation {
            policy_id: "p".into(),
            after_ms: 300,
            groups: ["oncall".to_string()].into(),
        }];
        let sam = user("sam", &["oncall"]);
        assert!(matches!(
            vote_as(&mut r, &sam, Decision::Approve, 100),
            Err(VoteError::NotEligible(_))
        ));
        assert_eq!(r.next_escalation_at(), Some(Timestamp(300)));
        assert!(r.escalate_if_due(Timestamp(299)).is_empty());
        assert_eq!(r.escalate_if_due(Timestamp(300)).len(), 1);
        assert_eq!(r.next_escalation_at(), None);
        assert!(r.escalate_if_due(Timestamp(900)).is_empty());
        assert!(r.eligible_groups().contains("oncall"));
        vote_as(&mut r, &user("bob", &["owners"]), Decision::Approve, 301).unwrap();
        assert_eq!(
            vote_as(&mut r, &sam, Decision::Approve, 302),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
    }

    #[test]
    fn escalation_past_expiry_never_fires_and_reminders_fit_the_window() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        r.requirements.escalations = vec![Escalation {
            policy_id: "p".into(),
            after_ms: 1_000,
            groups: ["oncall".to_string()].into(),
        }];
        assert_eq!(r.next_escalation_at(), None);
        assert_eq!(r.reminder_at(), None);
        r.requirements.remind_before_ms = Some(200);
        assert_eq!(r.reminder_at(), Some(Timestamp(800)));
        r.requirements.remind_before_ms = Some(1_000);
        assert_eq!(r.reminder_at(), None);
    }

    #[test]
    fn single_approval_settles_quorum_one() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        let bob = user("bob", &["owners"]);
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 10),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
        assert_eq!(r.settled_at, Some(Timestamp(10)));
    }

    #[test]
    fn quorum_two_counts_a_person_in_two_groups_once() {
        let mut r = request(vec![rule(&["owners", "security"], 2)]);
        let both = user("bob", &["owners", "security"]);
        let carol = user("carol", &["security"]);
        assert_eq!(
            vote_as(&mut r, &both, Decision::Approve, 1),
            Ok(VoteOutcome::Recorded)
        );
        assert!(!r.quorum_met());
        assert_eq!(r.status, RequestStatus::Pending);
        assert_eq!(
            vote_as(&mut r, &carol, Decision::Approve, 2),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
    }

    #[test]
    fn every_rule_must_hold() {
        let mut r = request(vec![rule(&["owners"], 1), rule(&["security"], 1)]);
        let bob = user("bob", &["owners"]);
        let sam = user("sam", &["security"]);
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 1),
            Ok(VoteOutcome::Recorded)
        );
        assert_eq!(
            vote_as(&mut r, &sam, Decision::Approve, 2),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
    }

    #[test]
    fn one_deny_settles() {
        let mut r = request(vec![rule(&["owners"], 2)]);
        let bob = user("bob", &["owners"]);
        let dan = user("dan", &["owners"]);
        vote_as(&mut r, &bob, Decision::Approve, 1).unwrap();
        assert_eq!(
            vote_as(&mut r, &dan, Decision::Deny, 2),
            Ok(VoteOutcome::Settled(RequestStatus::Denied))
        );
    }

    #[test]
    fn requester_and_on_behalf_of_user_cannot_vote() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        let alice = user("alice", &["owners"]);
        for d in [Decision::Approve, Decision::Deny] {
            assert_eq!(vote_as(&mut r, &alice, d, 1), Err(VoteError::SelfApproval));
        }
        let agent = Principal::new(PrincipalKind::Agent, "etl", ["owners"]);
        assert_eq!(
            vote_as(&mut r, &agent, Decision::Approve, 1),
            Err(VoteError::SelfApproval)
        );
        assert!(r.votes.is_empty());
        assert_eq!(r.status, RequestStatus::Pending);
    }

    #[test]
    fn agents_and_outsiders_are_not_eligible() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        let other_agent = Principal::new(PrincipalKind::Agent, "deployer", ["owners"]);
        assert!(matches!(
            vote_as(&mut r, &other_agent, Decision::Approve, 1),
            Err(VoteError::NotEligible(_))
        ));
        let eve = user("eve", &["interns"]);
        assert!(matches!(
            vote_as(&mut r, &eve, Decision::Approve, 1),
            Err(VoteError::NotEligible(_))
        ));
        assert!(r.votes.is_empty());
    }

    #[test]
    fn duplicate_vote_is_refused() {
        let mut r = request(vec![rule(&["owners"], 2)]);
        let bob = user("bob", &["owners"]);
        vote_as(&mut r, &bob, Decision::Approve, 1).unwrap();
        assert!(matches!(
            vote_as(&mut r, &bob, Decision::Approve, 2),
            Err(VoteError::DuplicateVote(_))
        ));
        assert!(matches!(
            vote_as(&mut r, &bob, Decision::Deny, 2),
            Err(VoteError::DuplicateVote(_))
        ));
        assert_eq!(r.votes.len(), 1);
    }

    #[test]
    fn outsiders_learn_nothing_about_a_settled_request() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        vote_as(&mut r, &user("bob", &["owners"]), Decision::Approve, 1).unwrap();
        assert!(matches!(
            vote_as(&mut r, &user("eve", &["interns"]), Decision::Approve, 2),
            Err(VoteError::NotEligible(_))
        ));
        assert_eq!(
            vote_as(&mut r, &user("alice", &["owners"]), Decision::Approve, 2),
            Err(VoteError::SelfApproval)
        );
    }

    #[test]
    fn one_person_under_two_spellings_counts_once() {
        let mut r = request(vec![rule(&["owners"], 2)]);
        vote_as(
            &mut r,
            &user("bob@x.com", &["owners"]),
            Decision::Approve,
            1,
        )
        .unwrap();
        assert!(matches!(
            vote_as(
                &mut r,
                &user("Bob@X.com ", &["owners"]),
                Decision::Approve,
                2
            ),
            Err(VoteError::DuplicateVote(_))
        ));
        assert_eq!(r.approvals_for(&["owners".to_string()].into()), 1);
    }

    #[test]
    fn votes_after_settlement_are_refused() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        let bob = user("bob", &["owners"]);
        let dan = user("dan", &["owners"]);
        vote_as(&mut r, &bob, Decision::Approve, 1).unwrap();
        assert_eq!(
            vote_as(&mut r, &dan, Decision::Deny, 2),
            Err(VoteError::AlreadySettled(RequestStatus::Approved))
        );
    }

    #[test]
    fn votes_after_expiry_are_refused_even_before_the_sweep() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        let bob = user("bob", &["owners"]);
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 1_000),
            Err(VoteError::Expired)
        );
        assert!(r.expire_if_due(Timestamp(1_000)));
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 1_001),
            Err(VoteError::AlreadySettled(RequestStatus::Expired))
        );
    }

    #[test]
    fn expiry_only_when_due_and_pending() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        assert!(!r.expire_if_due(Timestamp(999)));
        assert!(r.expire_if_due(Timestamp(1_000)));
        assert!(!r.expire_if_due(Timestamp(2_000)));
        assert_eq!(r.status, RequestStatus::Expired);
    }

    #[test]
    fn requesters_may_cancel_others_may_not() {
        let mut r = request(vec![rule(&["owners"], 1)]);
        assert_eq!(
            r.cancel(&PrincipalRef::user("bob"), false, Timestamp(1)),
            Err(CancelError::NotRequester)
        );
        assert_eq!(
            r.cancel(&PrincipalRef::user("alice"), false, Timestamp(1)),
            Ok(())
        );
        assert_eq!(r.status, RequestStatus::Cancelled);
        assert_eq!(
            r.cancel(&PrincipalRef::agent("etl"), false, Timestamp(2)),
            Err(CancelError::AlreadySettled(RequestStatus::Cancelled))
        );
        let mut r = request(vec![rule(&["owners"], 1)]);
        assert_eq!(
            r.cancel(&PrincipalRef::agent("etl"), false, Timestamp(1)),
            Ok(())
        );
        let mut r = request(vec![rule(&["owners"], 1)]);
        assert_eq!(
            r.cancel(&PrincipalRef::user("root"), true, Timestamp(1)),
            Ok(())
        );
    }

    #[test]
    fn groups_at_vote_time_decide_what_a_vote_counts_for() {
        let mut r = request(vec![rule(&["owners"], 1), rule(&["security"], 1)]);
        let bob = user("bob", &["owners", "security"]);
        // One person in both groups satisfies both rules: each rule counts distinct people.
        assert_eq!(
            vote_as(&mut r, &bob, Decision::Approve, 1),
            Ok(VoteOutcome::Settled(RequestStatus::Approved))
        );
    }
}
