//! `[ws]`: the limits of one WebSocket connection.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Largest inbound frame; a larger one gets `frame_too_large` and close 1009.
    pub max_frame_bytes: usize,
    /// Sustained inbound frames per second per connection.
    pub inbound_per_second: u32,
    /// Inbound burst allowance per connection.
    pub inbound_burst: u32,
    /// Rate-limited frames within 10 s after which the connection closes with 4001.
    pub rate_limit_close_after: u32,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Interval of server WebSocket pings.
    pub ping_interval_ms: u64,
    /// A connection silent for this long is closed with 4002.
    pub idle_timeout_ms: u64,
    /// Private frames queued for one connection before it is closed with 4000.
    pub private_queue: usize,
    /// Replies and errors queued for one connection before it is closed with 4000.
    pub control_queue: usize,
    /// Distinct conflated topics queued on one channel of one connection
    /// before it is closed with 4000 (bounds memory when symbols are many).
    pub conflation_slots: usize,
    /// Frames a stream connection (quotes, the USD/COP streams: no rate
    /// cap) queues in order on one channel before it starts to conflate.
    pub stream_backlog: usize,
    /// How long a closing WebSocket waits for the client's close frame (or
    /// EOF) after sending its own. Not read yet: the sessions wait their
    /// fixed `CLOSE_GRACE` (2 s) until the connection code reads it.
    pub close_grace_ms: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            inbound_per_second: 20,
            inbound_burst: 40,
            rate_limit_close_after: 100,
            max_subscriptions: 50,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            private_queue: 1024,
            control_queue: 256,
            conflation_slots: 4096,
            stream_backlog: 1024,
            close_grace_ms: 2000,
        }
    }
}

/// Bounds of `ws.close_grace_ms`.
pub const CLOSE_GRACE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

impl WsConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_frame_bytes < 64 {
            return Err("ws.max_frame_bytes must be at least 64".into());
        }
        if self.inbound_per_second == 0 || self.inbound_burst == 0 {
            return Err("ws.inbound_per_second and ws.inbound_burst must be at least 1".into());
        }
        if self.max_subscriptions == 0 {
            return Err("ws.max_subscriptions must be at least 1".into());
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms <= self.ping_interval_ms {
            return Err("ws.idle_timeout_ms must exceed ws.ping_interval_ms (> 0)".into());
        }
        if self.private_queue == 0
            || self.control_queue < 8
            || self.conflation_slots == 0
            || self.stream_backlog == 0
        {
            return Err("ws queue sizes must be positive (control_queue at least 8)".into());
        }
        if !CLOSE_GRACE_MS.contains(&self.close_grace_ms) {
            return Err(format!(
                "ws.close_grace_ms must be between {} and {}",
                CLOSE_GRACE_MS.start(),
                CLOSE_GRACE_MS.end()
            ));
        }
        Ok(())
    }
}
