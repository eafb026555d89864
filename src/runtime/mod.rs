//! The shared connection runtime, beneath the dialects: the HTTP accept
//! loop of every listener, the WebSocket handshake, and the one driver every
//! dialect's connections run on. Dialects (`src/dialects/`) supply a
//! `driver::Handler` and `driver::Rules`; nothing here knows a dialect.

pub mod driver;
pub mod handshake;
pub mod http;
pub mod ip;
pub mod registry;
