//! The edges of the wire dialects: each one's endpoints, handshake checks,
//! rules and connection handler over the shared runtime (`runtime`), and
//! the USD/COP REST APIs. Their codecs live in `protocol`.

pub mod candles;
pub mod enhanced;
pub mod market_stream;
pub mod quotes;
pub mod rt_orchestrator;
pub mod v1;

/// The listener a WebSocket path is served on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Port {
    /// `server.port` (8000): v1, quotes and REST.
    Main,
    /// `candles.port` (7000).
    Candles,
    /// `market_stream.port` (8082).
    MarketStream,
    /// `enhanced.port` (8080).
    Enhanced,
}

/// Every WebSocket path the gateway serves, in poem's syntax (`:name` for a
/// path parameter). The routers mount these constants, and a contract test
/// compares the list with asyncapi.yaml's channels, so no served path is
/// undocumented.
pub fn websocket_paths() -> Vec<(Port, &'static str)> {
    let mut paths = vec![(Port::Main, v1::PATH)];
    paths.extend(quotes::PATHS.map(|path| (Port::Main, path)));
    paths.push((Port::Candles, candles::PATH));
    paths.push((Port::MarketStream, market_stream::PATH));
    paths.extend(enhanced::PATHS.map(|path| (Port::Enhanced, path)));
    paths
}
