//! The shared connection runtime: the WebSocket handshake and the one
//! driver every dialect's connections run on. Dialects (`src/dialects/`)
//! supply a `driver::Handler` and `driver::Rules`; nothing here knows a
//! dialect.

pub mod driver;
pub mod handshake;
pub mod registry;
