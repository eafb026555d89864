//! The edges of the wire dialects other than v1: each one's listener routes,
//! sessions and rooms over the shared core. Their codecs live in `protocol`.

pub mod candles;
pub mod enhanced;
pub mod market_stream;
pub mod quotes;
pub mod rt_orchestrator;
pub mod v1;
