//! The PostgreSQL gate: a proxy that speaks the PostgreSQL wire protocol to clients and to the
//! upstream server, turns every statement into an attempt for the engine, and forwards, holds or
//! refuses it.

pub mod md5;
pub mod scram;
