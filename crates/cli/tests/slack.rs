//! Reviewer channels through the real binary: `countersign serve` with `[[channels.slack]]`
//! and `[[channels.webhook]]` against a loopback fake of the Slack Web API and a verifying
//! webhook receiver; an agent's `countersign exec` waits until two reviewers click Approve.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use countersign_notify::slack::interaction::APPROVE_ACTION;
use countersign_notify::testing::{FakeSlack, WebhookReceiver};
use std::path::Path;
use support::{Config, Gateway, Proc, STEP, Tokens, bin, cli, poll, temp_dir};

const TOKENS: Tokens = Tokens {
    agent: "slack-agent-token-0123456789",
    alice: "slack-alice-token-0123456789",
    bob: "slack-bob-token-0123456789",
};
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The channel sections of a config in `dir`, secrets in files beside it.
fn channel_sections(dir: &Path, fake: &FakeSlack, hook: &WebhookReceiver) -> String {
    std::fs::write(dir.join("slack-bot-token"), format!("{}\n", fake.token)).unwrap();
    std::fs::write(dir.join("slack-signing-secret"), &fake.signing_secret).unwrap();
    std::fs::write(dir.join("webhook-secret"), HOOK_SECRET).unwrap();
    format!(
        r#"[[channels.slack]]
api_url = "{api}"
bot_token_file = "slack-bot-token"
signing_secret_file = "slack-signing-secret"
team_id = "{team}"
channel = "C0REVIEWS"
users = {{ U0BOB = "bob@example.com" }}

[[channels.webhook]]
url = "{hook}"
secret_file = "webhook-secret"
"#,
        api = fake.api_url,
        team = fake.team_id,
        hook = hook.url,
    )
}

#[test]
fn two_slack_approvals_let_a_waiting_exec_run() {
    let rt = runtime();
    let fake = rt.block_on(FakeSlack::start("T0E2E"));
    // Alice is known by the address Slack reports; Bob only by the explicit mapping.
    fake.add_user("U0ALICE", Some("alice@example.com"));
    fake.add_user("U0BOB", None);
    let hook = rt.block_on(WebhookReceiver::start(HOOK_SECRET));
    let dir = temp_dir();
    let gateway = Gateway::configured(
        dir.path(),
        &Config {
            tokens: &TOKENS,
            alice_groups: &["reviewers"],
            sections: channel_sections(dir.path(), &fake, &hook),
        },
    );
    let mut exec = bin();
    exec.current_dir(dir.path())
        .env("COUNTERSIGN_TOKEN", TOKENS.agent)
        .args(["exec", "--server", &gateway.url(), "--action", "exec"])
        .args([
            "--resource",
            "Host::\"build-1\"",
            "--reason",
            "nightly rebuild",
        ])
        .args(["--", "echo", "ran-after-slack-approval"]);
    let mut exec = Proc::spawn("countersign exec", &mut exec);

    // The review message arrives in the channel; its Approve button names the request.
    let (ts, request_id) = poll("the review message in Slack", STEP, || {
        fake.messages_in("C0REVIEWS")
            .into_iter()
            .find_map(|(ts, m)| {
                let blocks = m["blocks"].as_array()?.clone();
                let actions = blocks.iter().find(|b| b["type"] == "actions")?;
                Some((ts, actions["elements"][0]["value"].as_str()?.to_owned()))
            })
    });
    let review = fake.message("C0REVIEWS", &ts).unwrap().to_string();
    assert!(review.contains("ran-after-slack-approval"), "{review}");
    assert!(review.contains("nightly rebuild"), "{review}");

    countersign_notify::install_crypto_provider();
    let http = reqwest::Client::new();
    let click = |user: &str| {
        let payload = fake.click(user, APPROVE_ACTION, &request_id, "C0REVIEWS", &ts);
        let (status, body) = rt.block_on(fake.deliver(&http, &gateway.url(), &payload));
        assert_eq!((status, body.as_str()), (200, ""), "{user}");
    };
    click("U0ALICE");
    poll("alice's vote in the message", STEP, || {
        fake.message("C0REVIEWS", &ts)
            .filter(|m| m.to_string().contains("alice@example.com approved"))
    });
    assert!(
        exec.exited().is_none(),
        "one approval of two must not release the command"
    );
    click("U0BOB");
    let out = exec.wait(STEP);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("ran-after-slack-approval"),
        "{}",
        out.describe()
    );

    let settled = poll("the outcome in Slack", STEP, || {
        fake.message("C0REVIEWS", &ts)
            .map(|m| m.to_string())
            .filter(|m| m.contains("Approved by alice@example.com, bob@example.com"))
    });
    assert!(
        !settled.contains(APPROVE_ACTION),
        "the buttons are gone: {settled}"
    );
    poll("the signed webhook of the settlement", STEP, || {
        hook.received()
            .into_iter()
            .find(|r| r.body["type"] == "request.settled" && r.verified.is_ok())
    });
    assert!(hook.received().iter().all(|r| r.verified.is_ok()));
    drop(gateway);
}

#[test]
fn channel_secrets_come_from_the_environment_or_files_only() {
    let rt = runtime();
    let fake = rt.block_on(FakeSlack::start("T0CFG"));
    let hook = rt.block_on(WebhookReceiver::start(HOOK_SECRET));
    let dir = temp_dir();
    let good = channel_sections(dir.path(), &fake, &hook);
    let cases = [
        // A token written into the file itself is refused, not read.
        (
            good.replace(
                "bot_token_file = \"slack-bot-token\"",
                "bot_token = \"xoxb-inline\"",
            ),
            "unknown field `bot_token`",
        ),
        (
            good.replace(
                "bot_token_file = \"slack-bot-token\"",
                "bot_token_env = \"COUNTERSIGN_TEST_UNSET_VAR\"",
            ),
            "COUNTERSIGN_TEST_UNSET_VAR is not set",
        ),
        (
            good.replace("signing_secret_file = \"slack-signing-secret\"\n", ""),
            "signing secret: missing",
        ),
        (
            good.replace(
                "U0BOB = \"bob@example.com\"",
                "U0BOB = \"bobby@example.com\"",
            ),
            "not a configured user",
        ),
        (
            good.replace(
                "secret_file = \"webhook-secret\"",
                "secret_file = \"slack-bot-token\"",
            ),
            "whsec_",
        ),
    ];
    for (sections, expected) in cases {
        let path = support::write_config(
            dir.path(),
            support::free_port(),
            &Config {
                tokens: &TOKENS,
                alice_groups: &["reviewers"],
                sections,
            },
        );
        let out = cli(
            dir.path(),
            None,
            &["serve", "--config", path.to_str().unwrap()],
        );
        assert_ne!(out.code, Some(0));
        assert!(
            out.stderr.contains(expected),
            "expected {expected:?}\n{}",
            out.describe()
        );
    }
}
