//! From the engine's committed notices to deliveries: one queue per Slack workspace, worked in
//! order (a message is posted before it is updated), and one per webhook receiver, whose
//! deliveries run side by side with retries.
//!
//! What a channel keeps goes through [`ChannelState`] (the engine's writer, in the gateway):
//! the messages posted, so they can be updated after a restart, and every delivery attempt.

use crate::directory::Directory;
use crate::render;
use crate::retry::Backoff;
use crate::slack::Slack;
use crate::slack::api::{self, SlackError};
use crate::slack::blocks;
use crate::webhook::{self, Webhook};
use countersign_core::{
    ApprovalRequest, ChannelMessage, DeliveryAttempt, NoticeKind, RequestNotice, RequestStatus,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, broadcast, mpsc};

/// Where channels keep their state, and what they link to.
pub trait ChannelState: Send + Sync + 'static {
    fn record_message(
        &self,
        message: ChannelMessage,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn messages(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Vec<ChannelMessage>, String>> + Send;
    fn record_delivery(
        &self,
        attempt: DeliveryAttempt,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// The link where a reviewer sees request `request_id` in full.
    fn review_url(&self, request_id: &str) -> String;
}

/// Notices a channel may be behind by before new ones are dropped (and logged).
const QUEUE: usize = 10_000;
/// Deliveries to one webhook receiver in flight at once.
const WEBHOOK_CONCURRENCY: usize = 16;
/// `purpose` of messages that carry the review buttons, and of outcome notices.
const REVIEW: &str = "review";
const NOTICE: &str = "notice";

/// The channels of a gateway.
#[derive(Debug)]
pub struct Dispatcher<S> {
    state: Arc<S>,
    directory: Arc<Directory>,
    slack: Vec<Arc<Slack>>,
    webhooks: Vec<(Webhook, Backoff)>,
}

impl<S: ChannelState> Dispatcher<S> {
    pub fn new(state: S, directory: Directory) -> Dispatcher<S> {
        Dispatcher {
            state: Arc::new(state),
            directory: Arc::new(directory),
            slack: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    pub fn with_slack(mut self, slack: Arc<Slack>) -> Self {
        self.slack.push(slack);
        self
    }

    pub fn with_webhook(mut self, hook: Webhook, backoff: Backoff) -> Self {
        self.webhooks.push((hook, backoff));
        self
    }

    /// Works `notices` until the engine stops publishing them.
    pub fn spawn(
        self,
        mut notices: broadcast::Receiver<Arc<RequestNotice>>,
    ) -> Result<tokio::task::JoinHandle<()>, reqwest::Error> {
        let mut queues = Vec::new();
        for slack in self.slack {
            let (tx, rx) = mpsc::channel(QUEUE);
            let worker = SlackWorker {
                slack,
                state: self.state.clone(),
                directory: self.directory.clone(),
            };
            tokio::spawn(worker.run(rx));
            queues.push(("slack", tx));
        }
        let client = crate::http_client(std::time::Duration::from_secs(10))?;
        for (hook, backoff) in self.webhooks {
            let (tx, rx) = mpsc::channel(QUEUE);
            let worker = WebhookWorker {
                hook: Arc::new(hook),
                backoff,
                client: client.clone(),
                state: self.state.clone(),
            };
            tokio::spawn(worker.run(rx));
            queues.push(("webhook", tx));
        }
        Ok(tokio::spawn(async move {
            loop {
                let notice = match notices.recv().await {
                    Ok(n) => n,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::error!(
                            missed,
                            "channels fell behind; some notices were not delivered"
                        );
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                for (kind, queue) in &queues {
                    if queue.try_send(notice.clone()).is_err() {
                        tracing::error!(channel = kind, request = %notice.request.id, "channel queue full; notice dropped");
                    }
                }
            }
        }))
    }
}

struct SlackWorker<S> {
    slack: Arc<Slack>,
    state: Arc<S>,
    directory: Arc<Directory>,
}

impl<S: ChannelState> SlackWorker<S> {
    async fn run(self, mut rx: mpsc::Receiver<Arc<RequestNotice>>) {
        while let Some(notice) = rx.recv().await {
            self.handle(&notice).await;
        }
    }

    async fn handle(&self, n: &RequestNotice) {
        let r = &n.request;
        let url = self.state.review_url(&r.id);
        match n.kind {
            NoticeKind::Created => {
                let message = blocks::review_message(r, &url, n.at, None);
                self.ask(
                    r,
                    &r.eligible_groups(),
                    &message,
                    self.slack.config().dm_reviewers,
                )
                .await;
            }
            NoticeKind::Escalated => {
                let groups: Vec<&str> = n.groups.iter().map(String::as_str).collect();
                let heading = format!("Escalated to {}: approval needed", groups.join(", "));
                let message = blocks::review_message(r, &url, n.at, Some(&heading));
                self.ask(r, &n.groups, &message, self.slack.config().dm_reviewers)
                    .await;
            }
            NoticeKind::Voted => {
                let message = blocks::review_message(r, &url, n.at, None);
                self.update_reviews(r, &message).await;
            }
            NoticeKind::Settled => {
                let message = blocks::outcome_message(r, &url);
                self.update_reviews(r, &message).await;
                if r.broke_glass() {
                    // Every eligible reviewer hears of it at once, wherever they are.
                    self.ask(r, &r.eligible_groups(), &message, true).await;
                }
                // A requester who withdrew the request needs no news of it.
                let withdrawn = r.status == RequestStatus::Cancelled
                    && n.actor.as_ref().is_some_and(|a| r.attempt.is_requester(a));
                if !withdrawn {
                    self.tell_requesters(r, &url).await;
                }
            }
            NoticeKind::Reminder => {
                let text = format!(
                    ":hourglass: Reminder: this request expires in {} without a decision.",
                    render::time_left(r.expires_at, n.at)
                );
                self.reply_in_threads(r, &text).await;
            }
            NoticeKind::GrantRevoked => {
                let by = n
                    .actor
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |a| a.id.clone());
                self.reply_in_threads(
                    r,
                    &format!("The grant of this request was revoked by {by}."),
                )
                .await;
            }
            NoticeKind::GrantIssued | NoticeKind::GrantExpired => {}
        }
    }

    /// Posts `message` with its buttons to the review channels of `groups` and, when `dm`, to
    /// every member of them who is not a requester.
    async fn ask(
        &self,
        r: &ApprovalRequest,
        groups: &BTreeSet<String>,
        message: &serde_json::Value,
        dm: bool,
    ) {
        let config = self.slack.config();
        let mut conversations = BTreeSet::new();
        for g in groups {
            conversations.insert(
                config
                    .group_channels
                    .get(g)
                    .unwrap_or(&config.channel)
                    .clone(),
            );
        }
        for conversation in conversations {
            self.post(r, &conversation, message, REVIEW).await;
        }
        if dm {
            let requesters = render::requesting_people(r);
            for person in self.directory.members_of(groups, &requesters) {
                self.post_to_person(r, &person.id, message, REVIEW).await;
            }
        }
    }

    async fn tell_requesters(&self, r: &ApprovalRequest, url: &str) {
        let message = blocks::requester_notice(r, url);
        for person in render::requesting_people(r) {
            self.post_to_person(r, &person, &message, NOTICE).await;
        }
    }

    async fn post_to_person(
        &self,
        r: &ApprovalRequest,
        person: &str,
        message: &serde_json::Value,
        purpose: &str,
    ) {
        match self.slack.user_id_of(person).await {
            Ok(Some(user)) => self.post(r, &user, message, purpose).await,
            Ok(None) => tracing::debug!(person, "no Slack account for this person; not messaged"),
            Err(e) => {
                tracing::warn!(person, error = %e, "cannot find the Slack account of a person")
            }
        }
    }

    async fn post(
        &self,
        r: &ApprovalRequest,
        conversation: &str,
        message: &serde_json::Value,
        purpose: &str,
    ) {
        let api = self.slack.api();
        let posted = api::retrying(self.slack.backoff(), "chat.postMessage", || {
            api.post_message(conversation, message)
        })
        .await;
        match posted {
            Ok(p) => {
                let reference = ChannelMessage {
                    request_id: r.id.clone(),
                    channel: self.slack.name(),
                    conversation: p.channel,
                    message_ts: p.ts,
                    purpose: purpose.to_owned(),
                    created_at: crate::now(),
                };
                if let Err(e) = self.state.record_message(reference).await {
                    tracing::error!(request = %r.id, error = %e, "a posted Slack message could not be recorded; it will not be updated");
                }
            }
            Err(e) => log_failure(&r.id, conversation, &e),
        }
    }

    async fn reviews(&self, r: &ApprovalRequest) -> Vec<ChannelMessage> {
        match self.state.messages(&r.id).await {
            Ok(all) => all
                .into_iter()
                .filter(|m| m.channel == self.slack.name() && m.purpose == REVIEW)
                .collect(),
            Err(e) => {
                tracing::error!(request = %r.id, error = %e, "cannot read the Slack messages of a request");
                Vec::new()
            }
        }
    }

    async fn update_reviews(&self, r: &ApprovalRequest, message: &serde_json::Value) {
        let api = self.slack.api();
        for m in self.reviews(r).await {
            let updated = api::retrying(self.slack.backoff(), "chat.update", || {
                api.update_message(&m.conversation, &m.message_ts, message)
            })
            .await;
            if let Err(e) = updated {
                log_failure(&r.id, &m.conversation, &e);
            }
        }
    }

    async fn reply_in_threads(&self, r: &ApprovalRequest, text: &str) {
        let api = self.slack.api();
        for m in self.reviews(r).await {
            let reply = blocks::thread_reply(&m.message_ts, &m.conversation, text);
            let posted = api::retrying(self.slack.backoff(), "chat.postMessage", || {
                api.post_message(&m.conversation, &reply)
            })
            .await;
            if let Err(e) = posted {
                log_failure(&r.id, &m.conversation, &e);
            }
        }
    }
}

fn log_failure(request: &str, conversation: &str, e: &SlackError) {
    tracing::error!(request, conversation, error = %e, "Slack delivery failed");
}

struct WebhookWorker<S> {
    hook: Arc<Webhook>,
    backoff: Backoff,
    client: reqwest::Client,
    state: Arc<S>,
}

impl<S: ChannelState> WebhookWorker<S> {
    async fn run(self, mut rx: mpsc::Receiver<Arc<RequestNotice>>) {
        let slots = Arc::new(Semaphore::new(WEBHOOK_CONCURRENCY));
        while let Some(notice) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let body = webhook::event_body(&notice, &self.state.review_url(&notice.request.id))
                .to_string();
            let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            let (hook, backoff, client, state) = (
                self.hook.clone(),
                self.backoff,
                self.client.clone(),
                self.state.clone(),
            );
            tokio::spawn(async move {
                let record = |attempt: DeliveryAttempt| {
                    let state = state.clone();
                    async move {
                        if let Err(e) = state.record_delivery(attempt).await {
                            tracing::error!(error = %e, "a webhook delivery attempt could not be recorded");
                        }
                    }
                };
                let message = webhook::Message {
                    id: &message_id,
                    event_kind: notice.kind.as_str(),
                    request_id: Some(&notice.request.id),
                    body: body.as_bytes(),
                };
                webhook::deliver(&client, &hook, message, &backoff, record).await;
                drop(permit);
            });
        }
    }
}
