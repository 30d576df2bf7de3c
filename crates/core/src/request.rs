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
//! - nothing is accepted after settlement or after the deadline.

use crate::attempt::{Attempt, person_key, same_person};
use crate::decision::Requirements;
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
}

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
}

impl ApprovalRequest {
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
        let groups = self.requirements.eligible_groups();
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
    pub fn cast_vote(
        &mut self,
        voter: &Principal,
        vote: Vote,
        now: Timestamp,
    ) -> Result<VoteOutcome, VoteError> {
        // Who may vote is checked before the request's state, so someone who may not vote
        // learns nothing about where the request stands.
        self.eligibility(voter)?;
        if self.status.is_settled() {
            return Err(VoteError::AlreadySettled(self.status));
        }
        if now >= self.expires_at {
            return Err(VoteError::Expired);
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

    /// Whether every rule has its quorum of distinct approving people from its groups.
    pub fn quorum_met(&self) -> bool {
        self.requirements
            .rules
            .iter()
            .all(|rule| self.approvals_for(&rule.groups) >= rule.quorum as usize)
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
            requirements: Requirements {
                rules,
                grant: GrantShape::Once,
                timeout_ms: 1_000,
            },
            policy_version: "v".into(),
            policy_ids: vec!["p".into()],
            status: RequestStatus::Pending,
            created_at: Timestamp(0),
            expires_at: Timestamp(1_000),
            settled_at: None,
            cancelled_by: None,
            votes: Vec::new(),
        }
    }

    fn user(id: &str, groups: &[&str]) -> Principal {
        Principal::new(PrincipalKind::User, id, groups.iter().copied())
    }

    fn vote_as(
        r: &mut ApprovalRequest,
        who: &Principal,
        decision: Decision,
        now: i64,
    ) -> Result<VoteOutcome, VoteError> {
        let vote = Vote {
            id: format!("v-{}-{now}", who.id),
            voter: who.reference(),
            voter_groups: who.groups.clone(),
            decision,
            reason: Some("looked at it".into()),
            channel: "api".into(),
            cast_at: Timestamp(now),
        };
        r.cast_vote(who, vote, Timestamp(now))
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
