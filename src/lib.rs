//! tickgate: a spec-first real-time market-data gateway.
//!
//! Sources (`sources`) hand normalized events (`event`) to the hub (`hub`),
//! which sequences them, encodes each once with the dialect codec
//! (`protocol`) and pushes the shared frame into every subscribed
//! connection's bounded outbox; each connection (`session`) writes its outbox
//! to the socket. REST (`rest`) reads the hub's statistics and the candles
//! (`market`). Message types come from `asyncapi.yaml` (`spec`). The market
//! calendar (`calendar`) says when each symbol trades, at the time the
//! gateway's clock (`clock`) reads.
//! See ARCHITECTURE.md for the map.

pub mod auth;
pub mod backoff;
pub mod bars;
pub mod bench;
pub mod broker;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod dialects;
pub mod event;
pub mod gateway;
pub mod hub;
pub mod market;
pub mod metrics;
pub mod orchestrator;
pub mod protocol;
pub mod rest;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod spec;
pub mod store;
pub mod upstream;

pub use config::Config;
pub use server::{Bound, ServerError, bind, run};
