//! Integration tests: one binary, a real gateway per test on an ephemeral
//! port, real WebSocket and HTTP clients.

mod support;

mod bench;
mod candles;
mod conformance;
mod http;
mod invariants;
mod lifecycle;
mod limits;
mod market_stream;
mod quotes;
mod redis;
mod rest;
mod store;
mod upstream;
mod usdcop;
mod ws;
