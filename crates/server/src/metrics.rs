//! Prometheus metrics: decisions by outcome and their latency, votes by result.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// A handle to the process-wide recorder (installed once, however many routers are built).
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

impl Metrics {
    pub fn install() -> Metrics {
        let handle = HANDLE
            .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            })
            .clone();
        Metrics { handle }
    }

    pub fn render(&self) -> String {
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }
}

pub fn decision(outcome: &'static str, seconds: f64) {
    metrics::counter!("countersign_decisions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("countersign_decision_seconds").record(seconds);
}

pub fn vote(result: &'static str) {
    metrics::counter!("countersign_votes_total", "result" => result).increment(1);
}

/// Slack callbacks by what became of them: `accepted`, `repeated`, or the refusal's code.
pub fn slack_interaction(result: &'static str) {
    metrics::counter!("countersign_slack_interactions_total", "result" => result).increment(1);
}
