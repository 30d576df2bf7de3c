//! Time from the deciding click's HTTP request to the waiting agent proceeding, for a Slack
//! click and, as the baseline in the same run, for an API vote.
//!
//! Run: `cargo bench -p countersign-server --bench slack_click`
//! Knobs: `BENCH_ROUNDS` measured rounds per channel (default `300`), `BENCH_WARMUP` (`20`).
//!
//! Each round: the agent sends an attempt that needs two approvals (`POST /v1/attempts`), a
//! first reviewer approves through the engine, the agent long-polls
//! `GET /v1/requests/{id}?wait=30` as `countersign exec` does, and the clock starts just before
//! the deciding vote is sent: a signed `block_actions` body to
//! `POST /v1/channels/slack/interactions`, or `POST /v1/requests/{id}/votes`. It stops when the
//! long-poll's answer arrives. Rounds alternate between the two channels. Everything is on one
//! node: SQLite (WAL, `synchronous = FULL`) in a temporary directory, the gateway on loopback,
//! the Slack Web API a local fake (so `users.info` costs a loopback round trip; identities are
//! then cached for a minute, as in production), the channels' dispatcher running and updating
//! the Slack messages as it would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_core::{Principal, PrincipalKind};
use countersign_engine::{Engine, EngineConfig};
use countersign_notify::Backoff;
use countersign_notify::slack::Slack;
use countersign_notify::slack::interaction::APPROVE_ACTION;
use countersign_notify::testing::FakeSlack;
use countersign_policy::LoadedPolicies;
use countersign_server::{ConfiguredPrincipal, ServerConfig};
use countersign_store::testing::TestDb;
use countersign_store::{Backend, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
@id("exec-needs-two")
@approval("reviewers")
@quorum("2")
@remind("off")
permit (principal in Group::"agents", action == Action::"exec", resource);
"#;
const AGENT: &str = "bench-agent-token";
const CAROL: &str = "bench-carol-token";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn principal(kind: PrincipalKind, id: &str, groups: &[&str], token: &str) -> ConfiguredPrincipal {
    ConfiguredPrincipal {
        principal: Principal::new(kind, id, groups.iter().copied()),
        token_sha256: Sha256::digest(token.as_bytes()).into(),
    }
}

struct Rig {
    url: String,
    engine: Engine,
    fake: FakeSlack,
    http: reqwest::Client,
    bob: Principal,
    round: std::sync::atomic::AtomicUsize,
    _db: TestDb,
}

#[derive(Clone, Copy, PartialEq)]
enum Channel {
    Slack,
    Api,
}

impl Rig {
    async fn start() -> Rig {
        let db = TestDb::new(Backend::Sqlite).await;
        let policies = || LoadedPolicies::from_sources(&[("bench.cedar", POLICY)]);
        let engine = Engine::start(
            Store::open(&db.url).await.unwrap(),
            policies().unwrap(),
            EngineConfig {
                public_url: "http://gateway.bench".into(),
                audit: countersign_engine::AuditSigning::ephemeral("bench.example/countersign")
                    .unwrap(),
                journal: None,
            },
        )
        .await
        .unwrap();
        let fake = FakeSlack::start("T0BENCH").await;
        fake.add_user("U0CAROL", Some("carol@example.com"));
        let slack = Arc::new(Slack::new(fake.config("C0REVIEWS"), Backoff::default()).unwrap());
        use PrincipalKind::{Agent, User};
        let principals = vec![
            principal(Agent, "ci", &["agents"], AGENT),
            principal(User, "bob@example.com", &["reviewers"], "bench-bob-token"),
            principal(User, "carol@example.com", &["reviewers"], CAROL),
        ];
        countersign_server::channels::start(
            &engine,
            &principals,
            std::slice::from_ref(&slack),
            Vec::new(),
            Backoff::default(),
        )
        .unwrap();
        let bob = principals[1].principal.clone();
        let config = ServerConfig {
            principals,
            auditor_groups: Default::default(),
            admin_groups: Default::default(),
            max_body_bytes: 64 * 1024,
            policy_source: Arc::new(policies),
            slack: vec![slack],
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(countersign_server::serve(
            listener,
            countersign_server::router(engine.clone(), config),
            std::future::pending(),
        ));
        countersign_notify::install_crypto_provider();
        Rig {
            url,
            engine,
            fake,
            http: reqwest::Client::new(),
            bob,
            round: Default::default(),
            _db: db,
        }
    }

    /// One round; the time from sending the deciding vote to the long-poll's answer.
    async fn round(&self, channel: Channel) -> Duration {
        let n = self
            .round
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let attempt: Value = self
            .http
            .post(format!("{}/v1/attempts", self.url))
            .bearer_auth(AGENT)
            .json(
                &json!({"action": "exec", "resource": {"type": "Host", "id": "build-1"},
                          "payload": ["deploy.sh", format!("--build={n}")]}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(attempt["outcome"], "pending", "{attempt}");
        let id = attempt["request_id"].as_str().unwrap().to_owned();
        self.engine
            .vote(
                &self.bob,
                &id,
                countersign_core::Decision::Approve,
                None,
                "api",
            )
            .await
            .unwrap();
        let waiter = {
            let (http, url, id) = (self.http.clone(), self.url.clone(), id.clone());
            tokio::spawn(async move {
                let answer: Value = http
                    .get(format!("{url}/v1/requests/{id}?wait=30"))
                    .bearer_auth(AGENT)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (Instant::now(), answer)
            })
        };
        // Let the long-poll reach the server and subscribe before the vote is sent.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        match channel {
            Channel::Slack => {
                let click = self
                    .fake
                    .click("U0CAROL", APPROVE_ACTION, &id, "C0REVIEWS", "1.0");
                let (status, _) = self.fake.deliver(&self.http, &self.url, &click).await;
                assert_eq!(status, 200);
            }
            Channel::Api => {
                let r = self
                    .http
                    .post(format!("{}/v1/requests/{id}/votes", self.url))
                    .bearer_auth(CAROL)
                    .json(&json!({"decision": "approve", "reason": "ok"}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }
        let (done, answer) = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the agent proceeds")
            .unwrap();
        assert_eq!(answer["status"], "approved", "{answer}");
        done.duration_since(started)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rounds = env_num("BENCH_ROUNDS", 300);
    let warmup = env_num("BENCH_WARMUP", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rig = Rig::start().await;
        for i in 0..warmup {
            rig.round(if i % 2 == 0 { Channel::Slack } else { Channel::Api }).await;
        }
        let (mut slack, mut api) = (Vec::new(), Vec::new());
        for i in 0..rounds * 2 {
            let channel = if i % 2 == 0 { Channel::Slack } else { Channel::Api };
            let took = rig.round(channel).await;
            match channel {
                Channel::Slack => slack.push(took),
                Channel::Api => api.push(took),
            }
        }
        println!(
            "deciding vote → waiting agent proceeds ({rounds} rounds each, SQLite, loopback, {} CPUs)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!("{:<28} {:>9} {:>9} {:>9} {:>9}", "channel", "p50 ms", "p90 ms", "p99 ms", "max ms");
        let mut p99s = Vec::new();
        for (name, samples) in [("Slack click (signed POST)", &mut slack), ("API vote (baseline)", &mut api)] {
            samples.sort();
            let p99 = percentile(samples, 99.0);
            p99s.push(p99);
            println!(
                "{name:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                ms(percentile(samples, 50.0)),
                ms(percentile(samples, 90.0)),
                ms(p99),
                ms(*samples.last().unwrap())
            );
        }
        println!(
            "Slack p99 − API p99 = {:+.2} ms; goal: Slack p99 under 20 ms → {}",
            ms(p99s[0]) - ms(p99s[1]),
            if p99s[0] < Duration::from_millis(20) { "met" } else { "NOT met" }
        );
    });
}
