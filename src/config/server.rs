//! `[server]`: the v1 listener and what every listener's HTTP layer enforces.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the v1 listener binds.
    pub host: IpAddr,
    /// Port of the v1 listener (REST, docs, metrics and `/api/v1/ws/v1`).
    pub port: u16,
    /// Concurrent WebSocket connections; the handshake beyond it gets HTTP 503.
    pub max_connections: usize,
    /// How long shutdown waits for sessions to flush before exiting.
    pub shutdown_grace_ms: u64,
    /// A connection must complete its HTTP request headers within this time
    /// (counted from the accept, and again from the end of each response on
    /// a keep-alive connection), or it is closed. Every listener.
    pub header_timeout_ms: u64,
    /// The largest single request header (name + value) accepted; a request
    /// with a larger one gets 431 `header_too_large`. Every listener.
    pub max_header_bytes: usize,
    /// Open WebSocket connections one client address may hold on each
    /// listener (8082 has its own: `market_stream.max_connections_per_ip`);
    /// the handshake beyond it gets 429 with `Retry-After`.
    pub max_connections_per_ip: usize,
    /// WebSocket handshakes one client address may make per second on each
    /// listener (as a burst, too); beyond it 429 with `Retry-After`.
    pub handshakes_per_ip_per_second: u32,
    /// Proxies whose `X-Forwarded-For` is believed: a request from one of
    /// them counts against the address it forwards for (the rightmost one
    /// that is not itself a trusted proxy). Anyone else's header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// `Origin` headers allowed to open a WebSocket on this listener (v1 and
    /// quotes; `quotes.allowed_origins` narrows the quotes stream further);
    /// `*` allows any (the development default). A request without `Origin`
    /// (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            max_connections: 1000,
            shutdown_grace_ms: 5000,
            header_timeout_ms: 10_000,
            max_header_bytes: 8192,
            max_connections_per_ip: 500,
            handshakes_per_ip_per_second: 50,
            trusted_proxies: Vec::new(),
            allowed_origins: vec!["*".into()],
        }
    }
}

/// Bounds of `server.header_timeout_ms`.
pub const HEADER_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

/// Bounds of `server.max_header_bytes`.
pub const MAX_HEADER_BYTES: std::ops::RangeInclusive<usize> = 512..=65_536;

impl ServerConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if !HEADER_TIMEOUT_MS.contains(&self.header_timeout_ms) {
            return Err(format!(
                "server.header_timeout_ms must be between {} and {}",
                HEADER_TIMEOUT_MS.start(),
                HEADER_TIMEOUT_MS.end()
            ));
        }
        if !MAX_HEADER_BYTES.contains(&self.max_header_bytes) {
            return Err(format!(
                "server.max_header_bytes must be between {} and {}",
                MAX_HEADER_BYTES.start(),
                MAX_HEADER_BYTES.end()
            ));
        }
        if self.max_connections_per_ip == 0 {
            return Err("server.max_connections_per_ip must be at least 1".into());
        }
        if self.handshakes_per_ip_per_second == 0 {
            return Err("server.handshakes_per_ip_per_second must be at least 1".into());
        }
        Ok(())
    }
}
