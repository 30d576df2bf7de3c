//! Wiring the reviewer channels of `countersign-notify` to the engine: their state goes
//! through the engine's writer, and they hear of every committed step of every request.

use countersign_core::{ChannelMessage, ConfiguredPrincipal, DeliveryAttempt};
use countersign_engine::Engine;
use countersign_notify::slack::Slack;
use countersign_notify::webhook::Webhook;
use countersign_notify::{Backoff, ChannelState, Directory, Dispatcher};
use std::sync::Arc;

/// [`ChannelState`] on the engine: message references and delivery attempts are written by
/// its single writer, review links are its own.
#[derive(Clone, Debug)]
pub struct EngineChannels(pub Engine);

impl ChannelState for EngineChannels {
    async fn record_message(&self, message: ChannelMessage) -> Result<(), String> {
        self.0
            .record_channel_message(message)
            .await
            .map_err(|e| e.to_string())
    }

    async fn messages(&self, request_id: &str) -> Result<Vec<ChannelMessage>, String> {
        self.0
            .channel_messages(request_id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn record_delivery(&self, attempt: DeliveryAttempt) -> Result<(), String> {
        self.0
            .record_delivery_attempt(attempt)
            .await
            .map_err(|e| e.to_string())
    }

    fn review_url(&self, request_id: &str) -> String {
        self.0.review_url(request_id)
    }
}

/// Starts delivering the engine's notices to `slack` and `webhooks`. Nothing is started when
/// there is no channel.
pub fn start(
    engine: &Engine,
    principals: &[ConfiguredPrincipal],
    slack: &[Arc<Slack>],
    webhooks: Vec<Webhook>,
    webhook_backoff: Backoff,
) -> Result<(), reqwest::Error> {
    if slack.is_empty() && webhooks.is_empty() {
        return Ok(());
    }
    let directory = Directory::new(principals.iter().map(|c| c.principal.clone()));
    let mut dispatcher = Dispatcher::new(EngineChannels(engine.clone()), directory);
    for s in slack {
        dispatcher = dispatcher.with_slack(s.clone());
    }
    for hook in webhooks {
        dispatcher = dispatcher.with_webhook(hook, webhook_backoff);
    }
    dispatcher.spawn(engine.subscribe()).map(drop)
}
