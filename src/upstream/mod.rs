//! Upstream market-data providers: sources that take prices from a real
//! provider and hand them to the core through `sources::Ingest`.
//!
//! `keys.rs` is the API-key pool (spacing, rotation, rests, usage).

pub mod keys;
