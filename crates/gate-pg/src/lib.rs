//! The PostgreSQL gate: a proxy that speaks the PostgreSQL wire protocol to clients and to the
//! upstream server, turns every statement into an attempt for the engine, and forwards, holds
//! or refuses it.
//!
//! A client changes only its connection string: the user name is its principal id and the
//! password its countersign token. The upstream credentials live only in the gate. Like every
//! gate, this one decides nothing itself: [`classify`] says what a statement is, the engine
//! says what happens to it, and the session carries that out on the wire.

mod cancel;
pub mod classify;
pub mod config;
pub mod md5;
pub mod scram;
mod session;
pub mod shape;
mod tls;
mod upstream;
pub mod wire;

pub use config::{ConfigError, DEFAULT_MAX_CONNECTIONS, GateConfig, PgGateSection};
pub use scram::ScramVerifier;

use countersign_core::ConfiguredPrincipal;
use countersign_engine::Engine;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A principal that may log in through the gate: its token hash and, for SCRAM-SHA-256 over
/// unencrypted connections, the verifier derived from its token.
#[derive(Debug, Clone)]
pub struct PgLogin {
    pub credential: ConfiguredPrincipal,
    pub scram: Option<ScramVerifier>,
}

/// Locks `m`; every critical section in the gate is a few map operations, so a lock poisoned
/// by a panicking holder still guards consistent data.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many statement shapes each gate keeps classified.
const SHAPE_CACHE_CAPACITY: usize = 10_000;

/// A running gate: its configuration and what its sessions share.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    engine: Engine,
    logins: Vec<PgLogin>,
    cancels: Arc<cancel::CancelRegistry>,
    shapes: shape::ShapeCache,
    /// Seeds the fake SCRAM salts of unknown users, so that they look like real ones.
    mock_secret: [u8; 32],
    /// One permit per session served; `max_connections` of them.
    sessions: Arc<tokio::sync::Semaphore>,
}

impl Gate {
    pub fn new(config: GateConfig, engine: Engine, logins: Vec<PgLogin>) -> Arc<Gate> {
        Arc::new(Gate {
            engine,
            logins,
            cancels: Arc::default(),
            shapes: shape::ShapeCache::new(SHAPE_CACHE_CAPACITY),
            mock_secret: rand::random(),
            sessions: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
            config,
        })
    }

    /// Binds the gate's listen address.
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(&self.config.listen).await
    }

    /// Accepts clients on `listener` until the task is dropped; each session runs on its own.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => match self.sessions.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let gate = self.clone();
                        tokio::spawn(async move {
                            session::serve(gate, tcp, peer).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(session::refuse_busy(self.clone(), tcp));
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(gate = %self.config.name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
