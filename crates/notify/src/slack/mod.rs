//! The Slack channel: one workspace (`[[channels.slack]]`), its Web API, its signed
//! interaction callbacks and who its users are.
//!
//! Identity: a Slack user becomes a countersign principal only through the explicit mapping in
//! the configuration or the e-mail address Slack itself reports for them (`users.info`,
//! `profile.email`), never through a name the user can set; and only when the click comes from
//! the configured workspace.

pub mod api;
pub mod blocks;
pub mod interaction;
pub mod signature;

use crate::lock;
use crate::retry::Backoff;
use crate::secret::Secret;
use api::{SlackApi, SlackError};
use interaction::Interaction;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One `[[channels.slack]]`, resolved (secrets read from their env vars or files).
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// `https://slack.com/api`; tests point it at a local fake.
    pub api_url: String,
    pub bot_token: Secret,
    pub signing_secret: Secret,
    /// Clicks from any other workspace are refused.
    pub team_id: String,
    /// The default review channel.
    pub channel: String,
    /// Review channels per reviewer group.
    pub group_channels: BTreeMap<String, String>,
    /// Explicit Slack user id → principal id mapping, consulted before `users.info`.
    pub users: BTreeMap<String, String>,
    /// Also send each eligible reviewer the review message as a direct message.
    pub dm_reviewers: bool,
}

/// Why an interaction is refused before anything is done with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not signed by Slack: {0}")]
    Signature(#[from] signature::SignatureError),
    #[error("bad interaction payload: {0}")]
    Payload(#[from] interaction::PayloadError),
    #[error("the interaction comes from workspace `{got}`, not the configured one")]
    WrongWorkspace { got: String },
}

/// Why a Slack user could not be mapped to a principal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "Slack reports no e-mail address for you (the app needs users:read.email), and no mapping names you"
    )]
    NoEmail,
    #[error("your Slack account is deactivated or a bot")]
    NotAPerson,
    #[error("your Slack account belongs to another workspace")]
    OtherWorkspace,
    #[error("Slack could not tell who you are: {0}")]
    Slack(#[from] SlackError),
}

/// How long what Slack said about a user is trusted before asking again.
const IDENTITY_TTL: Duration = Duration::from_secs(60);
/// How long a delivered interaction is remembered: longer than the signature window, so any
/// replay that still verifies is recognised.
const SEEN_TTL: Duration = Duration::from_secs(2 * signature::MAX_SKEW_SECONDS as u64);

/// One Slack workspace the gateway talks to.
#[derive(Debug)]
pub struct Slack {
    config: SlackConfig,
    api: SlackApi,
    backoff: Backoff,
    /// Slack user id → (e-mail Slack reported, when).
    emails: Mutex<HashMap<String, (String, Instant)>>,
    /// Principal id (lower case) → Slack user id, or `None` when Slack has nobody.
    user_ids: Mutex<HashMap<String, (Option<String>, Instant)>>,
    /// Interactions already accepted, by [`Interaction::delivery_key`].
    seen: Mutex<HashMap<String, Instant>>,
}

impl Slack {
    pub fn new(config: SlackConfig, backoff: Backoff) -> Result<Slack, SlackError> {
        let api = SlackApi::new(&config.api_url, config.bot_token.clone())?;
        Ok(Slack {
            config,
            api,
            backoff,
            emails: Mutex::default(),
            user_ids: Mutex::default(),
            seen: Mutex::default(),
        })
    }

    pub fn config(&self) -> &SlackConfig {
        &self.config
    }

    pub fn api(&self) -> &SlackApi {
        &self.api
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The name message references are kept under: `slack:<team id>`.
    pub fn name(&self) -> String {
        format!("slack:{}", self.config.team_id)
    }

    /// Verifies a callback's signature (constant-time, timestamp within five minutes of
    /// `now`), parses it, and checks its workspace.
    pub fn accept(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Interaction, Refusal> {
        signature::verify(
            self.config.signing_secret.expose(),
            timestamp,
            signature,
            body,
            now,
        )?;
        let interaction = interaction::parse(body)?;
        let team = &interaction.by().team_id;
        if team != &self.config.team_id {
            return Err(Refusal::WrongWorkspace { got: team.clone() });
        }
        Ok(interaction)
    }

    /// Whether this is the first delivery of `interaction`; Slack retries a callback it did
    /// not see answered, and a replayed body is the same delivery again.
    pub fn first_delivery(&self, interaction: &Interaction) -> bool {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        seen.retain(|_, at| now.duration_since(*at) < SEEN_TTL);
        seen.insert(interaction.delivery_key(), now).is_none()
    }

    /// The principal id of the Slack user `user_id`: the configured mapping, else the e-mail
    /// address Slack reports for them.
    pub async fn identify(&self, user_id: &str) -> Result<String, IdentityError> {
        if let Some(id) = self.config.users.get(user_id) {
            return Ok(id.clone());
        }
        if let Some((email, at)) = lock(&self.emails).get(user_id)
            && at.elapsed() < IDENTITY_TTL
        {
            return Ok(email.clone());
        }
        let user = self.api.user_info(user_id).await?;
        if user.deleted || user.is_bot {
            return Err(IdentityError::NotAPerson);
        }
        if user
            .team_id
            .as_deref()
            .is_some_and(|t| t != self.config.team_id)
        {
            return Err(IdentityError::OtherWorkspace);
        }
        let email = user
            .email
            .filter(|e| !e.trim().is_empty())
            .ok_or(IdentityError::NoEmail)?;
        lock(&self.emails).insert(user_id.to_owned(), (email.clone(), Instant::now()));
        Ok(email)
    }

    /// The Slack user id of principal `principal_id`, for direct messages: the configured
    /// mapping, else `users.lookupByEmail` when the id is an address. `None` when Slack has
    /// nobody for it.
    pub async fn user_id_of(&self, principal_id: &str) -> Result<Option<String>, SlackError> {
        if let Some((slack_id, _)) = self
            .config
            .users
            .iter()
            .find(|(_, p)| countersign_core::same_person(p, principal_id))
        {
            return Ok(Some(slack_id.clone()));
        }
        if !principal_id.contains('@') {
            return Ok(None);
        }
        let key = countersign_core::person_key(principal_id);
        if let Some((found, at)) = lock(&self.user_ids).get(&key)
            && at.elapsed() < IDENTITY_TTL * 10
        {
            return Ok(found.clone());
        }
        let found = self.api.lookup_by_email(principal_id.trim()).await?;
        lock(&self.user_ids).insert(key, (found.clone(), Instant::now()));
        Ok(found)
    }

    /// Whether `url` is an interaction's `response_url` Slack could have given: on
    /// `hooks.slack.com` over HTTPS, or on the configured API's own origin (a local fake).
    fn is_slack_response_url(&self, url: &str) -> bool {
        let origin = |u: &str| {
            reqwest::Url::parse(u).ok().map(|u| {
                (
                    u.scheme().to_owned(),
                    u.host_str().map(str::to_owned),
                    u.port_or_known_default(),
                )
            })
        };
        let Some(given) = origin(url) else {
            return false;
        };
        given == ("https".into(), Some("hooks.slack.com".into()), Some(443))
            || origin(self.api.base()).is_some_and(|api| api == given)
    }

    /// Tells the clicking user, and only them, why nothing happened.
    pub async fn explain(&self, response_url: &str, text: &str) -> Result<(), SlackError> {
        if !self.is_slack_response_url(response_url) {
            return Err(SlackError::ForeignResponseUrl(response_url.to_owned()));
        }
        let message = blocks::ephemeral(text);
        let fast = Backoff {
            attempts: 3,
            ..self.backoff
        };
        api::retrying(&fast, "response_url", || {
            self.api.respond(response_url, &message)
        })
        .await
    }

    /// Opens the modal that asks for a reason to deny `request_id`.
    pub async fn ask_reason(
        &self,
        trigger_id: &str,
        request_id: &str,
        response_url: &str,
    ) -> Result<(), SlackError> {
        // A trigger lives three seconds: one try, no backoff.
        self.api
            .open_view(
                trigger_id,
                &blocks::reason_modal(request_id, Some(response_url)),
            )
            .await
    }
}
