//! System operations: health, versions, WebSocket configuration and
//! statistics, and the AsyncAPI document.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock},
};

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    payload::{Json, Payload},
    registry::MetaSchemaRef,
    types::Type,
};

use crate::{
    gateway::Gateway,
    hub::channel_name,
    spec::{self, Timestamp, messages::Channel},
};

#[derive(Tags)]
pub enum ApiTags {
    /// Gateway health and versions.
    System,
    /// Configuration and statistics of the WebSocket API.
    WebSocket,
    /// The contract documents.
    Specs,
    /// TradingView UDF datafeed.
    Datafeed,
}

pub struct Api {
    gateway: Arc<Gateway>,
}

impl Api {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

/// Gateway health.
#[derive(Object)]
pub struct Health {
    /// `healthy`, or `degraded` while the store fails to write or Redis is
    /// unreachable.
    pub status: String,
    /// The gateway's version.
    pub version: String,
    /// Seconds since the gateway started.
    pub uptime_seconds: u64,
    /// Open WebSocket connections.
    pub connections: u64,
    /// The server's time, UTC with microseconds.
    pub timestamp: String,
    /// The store of ticks and candles.
    pub store: StoreHealth,
    /// The Redis broker.
    pub redis: RedisHealth,
}

/// The state of the Redis broker.
#[derive(Object)]
pub struct RedisHealth {
    /// Whether `REDIS_URL` is set.
    pub configured: bool,
    /// Whether the subscription to Redis is up (false when not configured).
    pub connected: bool,
}

/// The state of the store (SQLite or PostgreSQL).
#[derive(Object)]
pub struct StoreHealth {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// False after a failed write, until a write succeeds again.
    pub writing: bool,
    /// Rows waiting to be written.
    pub buffered_rows: u64,
    /// Rows dropped since start because the buffer was full.
    pub dropped_rows: u64,
}

/// One API version.
#[derive(Object)]
pub struct ApiVersion {
    /// The version's name, e.g. `v1`.
    pub version: String,
    /// `stable`, `beta` or `deprecated`.
    pub status: String,
    /// Base path of its REST API.
    pub rest_base: String,
    /// Path of its WebSocket endpoint.
    pub websocket: String,
    /// Path of its interactive documentation.
    pub docs: String,
}

/// The API versions this gateway serves.
#[derive(Object)]
pub struct Versions {
    /// The version new integrations should use.
    pub current: String,
    /// The gateway's own version.
    pub gateway_version: String,
    pub versions: Vec<ApiVersion>,
}

/// One channel of the v1 WebSocket API.
#[derive(Object)]
pub struct ChannelConfig {
    /// The channel's name.
    pub name: String,
    /// True when subscribing needs an authenticated connection.
    pub private: bool,
    /// True when the channel's topics are per symbol.
    pub per_symbol: bool,
    /// The most frames the channel sends one connection per second.
    pub rate_per_second: u32,
    /// The most connections subscribed to the channel at once.
    pub max_subscribers: u32,
}

/// Limits of every WebSocket connection.
#[derive(Object)]
pub struct ConnectionConfig {
    /// Concurrent connections; the handshake beyond it gets HTTP 503.
    pub max_connections: u64,
    /// Largest inbound frame in bytes; beyond it the connection closes with 1009.
    pub max_frame_bytes: u64,
    /// Sustained inbound frames per second per connection.
    pub inbound_per_second: u32,
    /// Inbound burst allowance.
    pub inbound_burst: u32,
    /// Rate-limited frames within 10 s after which the connection closes with 4001.
    pub rate_limit_close_after: u32,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: u64,
}

/// Heartbeat settings.
#[derive(Object)]
pub struct HeartbeatConfig {
    /// Interval of server WebSocket pings in milliseconds.
    pub ping_interval_ms: u64,
    /// A connection silent this long is closed with 4002.
    pub idle_timeout_ms: u64,
    /// Interval of the `heartbeat` channel's frames in milliseconds.
    pub heartbeat_channel_interval_ms: u64,
}

/// The v1 WebSocket API's configuration.
#[derive(Object)]
pub struct WsConfig {
    /// Path of the WebSocket endpoint.
    pub endpoint: String,
    pub channels: Vec<ChannelConfig>,
    pub connection: ConnectionConfig,
    pub heartbeat: HeartbeatConfig,
}

/// Subscribers of one channel.
#[derive(Object)]
pub struct ChannelStats {
    /// The channel's name.
    pub name: String,
    /// Connections subscribed to it.
    pub subscribers: u64,
}

/// Counters of the WebSocket API since the gateway started.
#[derive(Object)]
pub struct WsStats {
    /// Open connections.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Handshakes refused (connection limit, shutdown).
    pub handshakes_refused: u64,
    /// Frames received from clients.
    pub frames_in: u64,
    /// Frames sent to clients.
    pub frames_out: u64,
    /// Frames replaced by a newer frame of the same topic before being sent.
    pub conflated: u64,
    /// Frames discarded because their connection closed with them still queued (slow consumer, client close, shutdown).
    pub dropped: u64,
    /// Error frames sent.
    pub errors_sent: u64,
    /// Events published by the sources.
    pub events_published: u64,
    pub channels: Vec<ChannelStats>,
    /// Seconds since the gateway started.
    pub uptime_seconds: u64,
}

/// A YAML document. Its schema says what the YAML parses to: an object.
pub struct Yaml(pub String);

impl Payload for Yaml {
    const CONTENT_TYPE: &'static str = "application/yaml";

    fn schema_ref() -> MetaSchemaRef {
        <BTreeMap<String, serde_json::Value> as Type>::schema_ref()
    }
}

impl IntoResponse for Yaml {
    fn into_response(self) -> Response {
        self.0.with_content_type(Self::CONTENT_TYPE).into_response()
    }
}

#[derive(ApiResponse)]
pub enum YamlDocument {
    /// The document.
    #[oai(status = 200)]
    Ok(Yaml),
}

#[OpenApi]
impl Api {
    /// Gateway health
    ///
    /// 200 while the gateway serves: `healthy`, or `degraded` while the
    /// store fails to write (rows are buffered and retried) or Redis, when
    /// configured, is unreachable (local sources keep serving).
    #[oai(
        path = "/health",
        method = "get",
        tag = "ApiTags::System",
        operation_id = "getHealth"
    )]
    async fn health(&self) -> Json<Health> {
        let writer = &self.gateway.writer;
        let stats = writer.stats();
        let dropped = ["realtime_market_data", "market_data", "system_health"]
            .iter()
            .map(|table| stats.dropped(table))
            .sum();
        let broker = self.gateway.broker.as_ref();
        let redis = RedisHealth {
            configured: broker.is_some(),
            connected: broker.is_some_and(|b| b.connected()),
        };
        let degraded = stats.is_down() || (redis.configured && !redis.connected);
        Json(Health {
            status: if degraded { "degraded" } else { "healthy" }.into(),
            redis,
            store: StoreHealth {
                kind: writer.store().kind().into(),
                writing: !stats.is_down(),
                buffered_rows: writer.buffered() as u64,
                dropped_rows: dropped,
            },
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.gateway.started.elapsed().as_secs(),
            connections: self.gateway.stats.connections(),
            timestamp: Timestamp(self.gateway.clock.now()).to_string(),
        })
    }

    /// API versions
    ///
    /// The API versions this gateway serves, with the REST base path,
    /// WebSocket endpoint and documentation of each.
    #[oai(
        path = "/versions",
        method = "get",
        tag = "ApiTags::System",
        operation_id = "getVersions"
    )]
    async fn versions(&self) -> Json<Versions> {
        Json(Versions {
            current: "v1".into(),
            gateway_version: env!("CARGO_PKG_VERSION").into(),
            versions: vec![ApiVersion {
                version: "v1".into(),
                status: "stable".into(),
                rest_base: "/api/v1".into(),
                websocket: crate::dialects::v1::PATH.into(),
                docs: "/api/v1/docs".into(),
            }],
        })
    }

    /// WebSocket configuration
    ///
    /// Every channel with its public or private flag, rate and subscriber
    /// cap; the connection limits; the heartbeat settings.
    #[oai(
        path = "/ws/config",
        method = "get",
        tag = "ApiTags::WebSocket",
        operation_id = "getWsConfig"
    )]
    async fn ws_config(&self) -> Json<WsConfig> {
        let config = &self.gateway.config;
        let channels = Channel::ALL
            .iter()
            .map(|&channel| {
                let limits = config.channels.limits(channel);
                ChannelConfig {
                    name: channel.to_string(),
                    private: channel.is_private(),
                    per_symbol: channel.per_symbol(),
                    rate_per_second: limits.rate_per_second,
                    max_subscribers: limits.max_subscribers,
                }
            })
            .collect();
        Json(WsConfig {
            endpoint: crate::dialects::v1::PATH.into(),
            channels,
            connection: ConnectionConfig {
                max_connections: config.server.max_connections as u64,
                max_frame_bytes: config.ws.max_frame_bytes as u64,
                inbound_per_second: config.ws.inbound_per_second,
                inbound_burst: config.ws.inbound_burst,
                rate_limit_close_after: config.ws.rate_limit_close_after,
                max_subscriptions: config.ws.max_subscriptions as u64,
            },
            heartbeat: HeartbeatConfig {
                ping_interval_ms: config.ws.ping_interval_ms,
                idle_timeout_ms: config.ws.idle_timeout_ms,
                heartbeat_channel_interval_ms: 1000,
            },
        })
    }

    /// WebSocket statistics
    ///
    /// Counters since the gateway started: connections, frames in and out,
    /// conflated and dropped frames, errors, and subscribers per channel.
    #[oai(
        path = "/ws/stats",
        method = "get",
        tag = "ApiTags::WebSocket",
        operation_id = "getWsStats"
    )]
    async fn ws_stats(&self) -> Json<WsStats> {
        let stats = self.gateway.stats.snapshot();
        let channels = self
            .gateway
            .hub
            .subscriber_counts()
            .iter()
            .map(|&(channel, subscribers)| ChannelStats {
                name: channel_name(channel).into(),
                subscribers: subscribers as u64,
            })
            .collect();
        Json(WsStats {
            connections: stats.connections,
            connections_total: stats.connections_total,
            handshakes_refused: stats.handshakes_refused,
            frames_in: stats.frames_in,
            frames_out: stats.frames_out,
            conflated: stats.conflated,
            dropped: stats.dropped,
            errors_sent: stats.errors_sent,
            events_published: stats.events_published,
            channels,
            uptime_seconds: self.gateway.started.elapsed().as_secs(),
        })
    }

    /// AsyncAPI document (YAML)
    ///
    /// The committed asyncapi.yaml, byte for byte.
    #[oai(
        path = "/asyncapi.yaml",
        method = "get",
        tag = "ApiTags::Specs",
        operation_id = "getAsyncApiYaml"
    )]
    async fn asyncapi_yaml(&self) -> YamlDocument {
        YamlDocument::Ok(Yaml(spec::ASYNCAPI_YAML.to_owned()))
    }

    /// AsyncAPI document (JSON)
    ///
    /// The committed asyncapi.yaml converted to JSON.
    #[oai(
        path = "/asyncapi.json",
        method = "get",
        tag = "ApiTags::Specs",
        operation_id = "getAsyncApiJson"
    )]
    async fn asyncapi_json(&self) -> Json<BTreeMap<String, serde_json::Value>> {
        static DOCUMENT: LazyLock<BTreeMap<String, serde_json::Value>> =
            LazyLock::new(|| serde_json::from_str(spec::ASYNCAPI_JSON).unwrap_or_default());
        Json(DOCUMENT.clone())
    }
}
