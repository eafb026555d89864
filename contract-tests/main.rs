//! Contract tests: the running gateway against `asyncapi.yaml` and
//! `openapi.yaml`.
//!
//! - `examples`: every example in asyncapi.yaml is valid and round-trips
//!   through the generated types.
//! - `channels`: one connection sees every server message the spec declares,
//!   on the right channel, with per-topic sequence numbers.
//! - `errors`: every `ErrorCode` is provoked by a client action.
//! - `rest`: every documented GET answers what openapi.yaml says, and the
//!   documented errors are JSON `{code, message}`.
//! - `golden`: the served documents equal the committed ones.
//! - `candles`: the candles and quotes dialects' clients see every server
//!   message of their channels, each valid against its schema.
//! - `usdcop`: the same for the USD/COP streams (seeds 000 and 001).
//! - `paths`: every served WebSocket path is a documented channel, and
//!   every documented address is served.

#[path = "../tests/support/mod.rs"]
mod support;

mod candles;
mod channels;
mod common;
mod errors;
mod examples;
mod golden;
mod paths;
mod rest;
mod usdcop;
