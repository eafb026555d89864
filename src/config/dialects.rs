//! The dialects other than v1: `[quotes]` on the main listener, and
//! `[candles]`, `[market_stream]`, `[rt_orchestrator]` and `[enhanced]`,
//! each on a listener of its own.

use serde::{Deserialize, Serialize};

/// The quotes dialect (seed 002) on the main listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotesConfig {
    /// `Origin` headers allowed to open a quotes stream; `*` allows any (the
    /// development default). A request without `Origin` (not a browser) is
    /// always allowed.
    pub allowed_origins: Vec<String>,
    /// Most tickers one `?tickers=` list may name.
    pub max_tickers: usize,
}

impl Default for QuotesConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["*".into()],
            max_tickers: 1000,
        }
    }
}

impl QuotesConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_tickers == 0 {
            return Err("quotes.max_tickers must be at least 1".into());
        }
        Ok(())
    }
}

/// The candles dialect (seed 003) on its own listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandlesConfig {
    /// Serve the dialect (on `server.host`:`port`).
    pub enabled: bool,
    /// Port of its listener (WebSocket at `/`, `/health`, `/health/ws-stats`).
    pub port: u16,
    /// `Origin` headers allowed to open a WebSocket on this listener; `*`
    /// allows any (the development default). A request without `Origin`
    /// (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Symbols a client may subscribe to; others get `Invalid symbol`.
    pub symbols: Vec<String>,
    /// Bars in `initial` when `subscribe` names no `initialBars`.
    pub default_initial_bars: usize,
    /// Most bars in `initial`; a larger `initialBars` is capped. At most
    /// what one history read returns (checked when the listener is bound).
    pub max_initial_bars: usize,
    /// Least time between two updates of one room.
    pub update_ms: u64,
}

impl Default for CandlesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 7000,
            allowed_origins: vec!["*".into()],
            symbols: vec!["BTC/USDT".into()],
            default_initial_bars: 100,
            max_initial_bars: 1000,
            update_ms: 1000,
        }
    }
}

impl CandlesConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.enabled
            && (self.symbols.is_empty()
                || self.default_initial_bars == 0
                || self.max_initial_bars == 0
                || self.update_ms == 0)
        {
            return Err(
                "candles: symbols must name at least one symbol, default_initial_bars, max_initial_bars and update_ms must be positive".into(),
            );
        }
        Ok(())
    }
}

/// The USD/COP market-data WebSocket (seed 000) on its own listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketStreamConfig {
    /// Serve the stream (on `server.host`:`port`).
    pub enabled: bool,
    /// Port of its listener (WebSocket at `/ws/market-data`, `GET /health`).
    pub port: u16,
    /// `Origin` headers allowed to open a WebSocket on this listener; `*`
    /// allows any (the development default). A request without `Origin`
    /// (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Interval of `heartbeat` frames.
    pub heartbeat_ms: u64,
    /// Heartbeats in a row a client may leave unanswered; at the next one it
    /// is closed with 4002.
    pub missed_heartbeats: u32,
    /// Open connections from one client IP; the handshake beyond gets 429.
    pub max_connections_per_ip: usize,
    /// Client messages per minute per connection; the next one gets
    /// `RATE_LIMIT_EXCEEDED` and the connection is closed with 1008.
    pub messages_per_minute: u32,
    /// Symbols one connection may be subscribed to.
    pub max_subscriptions: usize,
}

impl Default for MarketStreamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8082,
            allowed_origins: vec!["*".into()],
            heartbeat_ms: 30_000,
            missed_heartbeats: 3,
            max_connections_per_ip: 100,
            messages_per_minute: 100,
            max_subscriptions: 10,
        }
    }
}

/// The RT orchestrator's REST API (seed 000) on its own listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtOrchestratorConfig {
    /// Serve it (on `server.host`:`port`).
    pub enabled: bool,
    /// Port of its listener.
    pub port: u16,
    /// Requests per minute per client IP; beyond: 429.
    pub requests_per_minute: u32,
}

impl Default for RtOrchestratorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8085,
            requests_per_minute: 60,
        }
    }
}

/// Seed 001's enhanced WebSocket service (REST and streams) on its own listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnhancedConfig {
    /// Serve it (on `server.host`:`port`).
    pub enabled: bool,
    /// Port of its listener.
    pub port: u16,
    /// `Origin` headers allowed to open a WebSocket on this listener; `*`
    /// allows any (the development default). A request without `Origin`
    /// (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// How often `/health`'s connectivity and resource figures are
    /// refreshed by a background probe (health requests only read them).
    pub health_probe_ms: u64,
}

impl Default for EnhancedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8080,
            allowed_origins: vec!["*".into()],
            health_probe_ms: 2000,
        }
    }
}

impl EnhancedConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.health_probe_ms) {
            return Err("enhanced.health_probe_ms must be between 100 and 3600000".into());
        }
        Ok(())
    }
}
