//! The MCP gate: a proxy between AI agents and their MCP tool servers that turns every
//! `tools/call` into an attempt for the engine, and forwards, holds or refuses it.
//!
//! An agent changes only its MCP server URL (Streamable HTTP at `/mcp` on the gate's listener,
//! or `countersign mcp-stdio` for agents that launch their servers over stdio) and presents its
//! countersign token. The gate speaks the 2025-06-18, 2025-11-25 and 2026-07-28 revisions to
//! clients and to the upstream server, each side negotiated on its own, and passes through
//! everything it does not act on. Like every gate, it decides nothing itself: the engine says
//! what happens to a call, and pins tool definitions so that a changed tool is blocked until an
//! administrator accepts it.

pub mod bridge;
mod calls;
pub mod config;
mod http;
pub mod jsonrpc;
mod link;
pub mod protocol;
mod session;
mod upstream;

pub use config::{ConfigError, GateConfig, McpGateSection};
pub use link::HttpLink;

use countersign_core::ConfiguredPrincipal;
use countersign_engine::Engine;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Locks `m`; every critical section in the gate is a few map operations, so a lock poisoned
/// by a panicking holder still guards consistent data.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running gate: its configuration and what its sessions share.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    engine: Engine,
    principals: Vec<ConfiguredPrincipal>,
    sessions: session::Sessions,
}

impl Gate {
    pub fn new(
        config: GateConfig,
        engine: Engine,
        principals: Vec<ConfiguredPrincipal>,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            config,
            engine,
            principals,
            sessions: session::Sessions::default(),
        })
    }

    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Binds the gate's listen address.
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(&self.config.listen).await
    }

    /// Serves `/mcp` on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        let reaper = tokio::spawn(session::reap_idle(Arc::downgrade(&self)));
        let app = http::router(self.clone());
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
        reaper.abort();
        self.sessions.close_all("the gate stopped");
        served
    }

    /// How many downstream sessions hold an upstream connection (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions.count()
    }

    /// The process ids of the stdio upstream servers now running (for tests).
    pub fn upstream_pids(&self) -> Vec<u32> {
        self.sessions.pids()
    }
}
