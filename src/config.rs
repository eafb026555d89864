//! Configuration: defaults, then an optional TOML file, then `TICKGATE_*`
//! environment variables, then command-line flags (applied by `main`).
//!
//! Every limit the gateway enforces lives here with its default, so the
//! README's configuration table and `GET /api/v1/ws/config` read from one place.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::spec::messages::Channel;

/// The whole configuration of one gateway process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub ws: WsConfig,
    pub channels: ChannelsConfig,
    pub auth: AuthConfig,
    pub simulator: SimulatorConfig,
    pub store: StoreConfig,
    pub redis: RedisConfig,
    pub candles: CandlesConfig,
    pub quotes: QuotesConfig,
    pub market_stream: MarketStreamConfig,
    pub orchestrator: OrchestratorConfig,
    pub rt_orchestrator: RtOrchestratorConfig,
    pub enhanced: EnhancedConfig,
    pub clock: ClockConfig,
    pub calendar: CalendarConfig,
    pub upstream: UpstreamConfig,
    pub log: LogConfig,
}

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
}

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
}

/// Per-channel limits, keyed by channel name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelsConfig(pub BTreeMap<String, ChannelLimits>);

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    /// Most frames the channel sends one connection per second.
    pub rate_per_second: u32,
    /// Most connections subscribed to the channel at once.
    pub max_subscribers: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret (`TICKGATE_JWT_SECRET`). Ignored when `public_key_file` is set.
    pub jwt_secret: String,
    /// PEM public key for RS256 or ES256 tokens.
    pub public_key_file: Option<PathBuf>,
    /// `RS256` or `ES256` with `public_key_file`; `HS256` otherwise.
    pub algorithm: String,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Private channel name -> scope a token must carry to subscribe to it.
    /// Empty: a valid token opens every private channel of its `sub`.
    pub channel_scopes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Seed of every random choice the simulator makes.
    pub seed: u64,
    pub symbols: Vec<String>,
    /// Each symbol ticks after a random pause in [min, max] milliseconds.
    pub tick_interval_ms: [u64; 2],
    /// Load mode: when above 0, ticks at this aggregate rate (round-robin over
    /// the symbols) instead of the random pauses.
    pub ticks_per_second: u32,
    /// Order book depth on each side.
    pub book_depth: usize,
    /// Pause between private events of each kind for each subscribed user.
    pub private_interval_ms: u64,
    /// Pause between system notices, random in [min, max] milliseconds.
    pub system_interval_ms: [u64; 2],
    /// Bars of every timeframe (1m to 1W) generated for each symbol the
    /// store has no bars of, at start, so history answers at once.
    pub backfill_bars: usize,
    /// How often the in-progress candle is published.
    pub candle_publish_ms: u64,
}

/// Where ticks and candles are stored (the `store` module).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://...` for PostgreSQL or `sqlite://path` (`DATABASE_URL`).
    /// Unset: SQLite at `data_dir/tickgate.db`.
    pub url: Option<String>,
    /// Directory of the embedded SQLite database, created when missing.
    pub data_dir: PathBuf,
    /// Whether ticks are written to `realtime_market_data` (candles always are).
    pub ticks: bool,
    /// Most rows one write (one transaction) carries.
    pub batch_rows: usize,
    /// Rows buffered while the database is slow or down; beyond it new rows
    /// are dropped and counted (`tickgate_store_rows_dropped_total`).
    pub buffer_rows: usize,
    /// Longest a row waits in the buffer before a write starts.
    pub flush_ms: u64,
}

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

/// The candles dialect (seed 003) on its own listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandlesConfig {
    /// Serve the dialect (on `server.host`:`port`).
    pub enabled: bool,
    /// Port of its listener (WebSocket at `/`, `/health`, `/health/ws-stats`).
    pub port: u16,
    /// Symbols a client may subscribe to; others get `Invalid symbol`.
    pub symbols: Vec<String>,
    /// Bars in `initial` when `subscribe` names no `initialBars`.
    pub default_initial_bars: usize,
    /// Most bars in `initial`; a larger `initialBars` is capped.
    pub max_initial_bars: usize,
    /// Least time between two updates of one room.
    pub update_ms: u64,
}

impl Default for CandlesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 7000,
            symbols: vec!["BTC/USDT".into()],
            default_initial_bars: 100,
            max_initial_bars: 1000,
            update_ms: 1000,
        }
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
            heartbeat_ms: 30_000,
            missed_heartbeats: 3,
            max_connections_per_ip: 100,
            messages_per_minute: 100,
            max_subscriptions: 10,
        }
    }
}

/// The collection orchestrator (seeds 000 and 001): when real-time data of
/// the calendar-bound symbols is collected.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// The symbol whose market calendar and stored history drive it.
    pub symbol: String,
    /// The L0 ready-signal file (seed 001: `/data/ready-signals/l0_ready.flag`).
    /// Unset: no L0 dependency; collection starts when the market opens.
    pub l0_signal_path: Option<PathBuf>,
    /// How long to wait for the L0 signal before falling back to the stored
    /// history.
    pub l0_timeout_s: u64,
    /// Stored history is fresh when its newest 5-minute bar is younger.
    pub freshness_hours: f64,
    /// Stored history is complete when at least this share of the last 24
    /// hours' in-session 5-minute bars is present.
    pub completeness_percent: f64,
    /// How often the state is re-evaluated.
    pub check_ms: u64,
    /// First and longest pause before leaving ERROR (doubling in between).
    pub error_backoff_ms: [u64; 2],
    /// While collecting, how long the upstream provider (when it runs) may
    /// stay disconnected before the orchestrator enters ERROR.
    pub upstream_grace_ms: u64,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            symbol: "USDCOP".into(),
            l0_signal_path: None,
            l0_timeout_s: 30 * 60,
            freshness_hours: 24.0,
            completeness_percent: 95.0,
            check_ms: 1000,
            error_backoff_ms: [1000, 60_000],
            upstream_grace_ms: 60_000,
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
}

impl Default for EnhancedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8080,
        }
    }
}

/// The Redis broker (the `broker` module); off unless `url` is set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (`REDIS_URL`). Unset: no Redis, one instance.
    pub url: Option<String>,
    /// Redis Cluster node addresses (`redis://host:port`). When set, the
    /// broker uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) across the
    /// cluster's shards and `url` is ignored.
    pub cluster_nodes: Vec<String>,
    /// Prefix of every Redis channel and key tickgate uses (tenants, tests).
    pub prefix: String,
}

/// The clock the gateway reads the time of day from (the `clock` module):
/// real time unless pinned or offset, so demos and CI can run at any hour.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// The instant the clock reads at start (RFC 3339 with an offset, e.g.
    /// `2026-11-30T12:49:50-05:00`); it runs forward from there. Unset: real
    /// time. Quoted or, in TOML, a bare datetime.
    #[serde(deserialize_with = "instant_text")]
    pub start_at: Option<String>,
    /// Seconds added to real time (negative: the past). Ignored when
    /// `start_at` is set.
    pub offset_seconds: i64,
    /// With `start_at`: the clock stands still there.
    pub frozen: bool,
}

/// `clock.start_at` as text: a string, or a TOML datetime written without
/// quotes (which TOML parses into a table of its own).
fn instant_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Plain(String),
        Toml {
            #[serde(rename = "$__toml_private_datetime")]
            datetime: String,
        },
    }
    Ok(
        Option::<Text>::deserialize(deserializer)?.map(|text| match text {
            Text::Plain(text) | Text::Toml { datetime: text } => text,
        }),
    )
}

/// When each symbol trades (the `calendar` module).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// The schedule of every symbol not in `symbols`: `"24/7"` or a session.
    pub default: ScheduleConfig,
    /// Symbol (case-insensitive) -> `"24/7"` or a session.
    pub symbols: BTreeMap<String, ScheduleConfig>,
}

/// A schedule: the keyword `"24/7"` (always open) or a weekly session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ScheduleConfig {
    Keyword(String),
    Session(SessionConfig),
}

/// A daily session in a time zone, `[open, close)`, not crossing midnight.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// IANA time zone, e.g. `America/Bogota`.
    pub tz: String,
    /// Local opening time, `HH:MM` or `HH:MM:SS` (open from it).
    pub open: String,
    /// Local closing time (closed from it); after `open`.
    pub close: String,
    /// Trading days: `mon` .. `sun`.
    pub weekdays: Vec<String>,
    /// Days without a session: `colombia` or `none`.
    #[serde(default = "no_holidays")]
    pub holidays: String,
}

fn no_holidays() -> String {
    "none".to_owned()
}

impl SessionConfig {
    /// Monday to Friday, 08:00 to 12:55 in Bogota, except Colombian holidays:
    /// the USDCOP spot market.
    pub fn bogota_fx() -> Self {
        Self {
            tz: "America/Bogota".to_owned(),
            open: "08:00".to_owned(),
            close: "12:55".to_owned(),
            weekdays: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            holidays: "colombia".to_owned(),
        }
    }
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            default: ScheduleConfig::Keyword("24/7".to_owned()),
            symbols: ["USDCOP", "USDBRL"]
                .map(|symbol| {
                    (
                        symbol.to_owned(),
                        ScheduleConfig::Session(SessionConfig::bogota_fx()),
                    )
                })
                .into(),
        }
    }
}

/// Upstream market-data providers (the `upstream` module).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    pub twelvedata: TwelveDataConfig,
}

/// How the TwelveData source collects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    /// One price stream (`ws_url`) for all symbols.
    #[default]
    Websocket,
    /// `GET {rest_url}/quote` per symbol every `poll_ms`.
    Rest,
}

/// The TwelveData source and its API-key pool. Keys come from the
/// `TWELVEDATA_API_KEY*` environment variables (see `upstream::keys`) and
/// from `keys`; the source starts only when `enabled` and at least one key
/// is configured.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwelveDataConfig {
    pub enabled: bool,
    /// Base URL of the REST API (`/quote`, `/price`).
    pub rest_url: String,
    /// URL of the WebSocket price stream (`?apikey=` is appended).
    pub ws_url: String,
    pub mode: UpstreamMode,
    /// Pause between two polling rounds in `rest` mode.
    pub poll_ms: u64,
    /// Least time between two uses of one key.
    pub min_key_spacing_ms: u64,
    /// How long a rate-limited key rests when the provider gives no
    /// `Retry-After`.
    pub rate_limit_cooldown_ms: u64,
    /// Gateway symbol -> provider symbol.
    pub symbols: BTreeMap<String, String>,
    /// Keys after the environment's (serialized masked).
    pub keys: Vec<crate::upstream::keys::ApiKey>,
    /// First reconnect delay of the stream; it doubles up to
    /// `reconnect_max_ms`, each delay drawn in [half, full] (jitter).
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Interval of `{"action":"heartbeat"}` on the stream.
    pub heartbeat_ms: u64,
    /// Limit of one REST request or stream handshake.
    pub request_timeout_ms: u64,
}

impl Default for TwelveDataConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rest_url: "https://api.twelvedata.com".into(),
            ws_url: "wss://ws.twelvedata.com/v1/quotes/price".into(),
            mode: UpstreamMode::Websocket,
            poll_ms: 8000,
            min_key_spacing_ms: 8000,
            rate_limit_cooldown_ms: 60_000,
            symbols: [("USDCOP", "USD/COP"), ("USDBRL", "USD/BRL")]
                .map(|(ours, theirs)| (ours.to_owned(), theirs.to_owned()))
                .into(),
            keys: Vec::new(),
            reconnect_min_ms: 1000,
            reconnect_max_ms: 30_000,
            heartbeat_ms: 10_000,
            request_timeout_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,tickgate=debug`.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

/// The development secret; using it logs a warning.
pub const DEV_JWT_SECRET: &str = "dev-secret-change-me";

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            max_connections: 1000,
            shutdown_grace_ms: 5000,
        }
    }
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
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self(
            Channel::ALL
                .iter()
                .map(|&channel| {
                    let (rate_per_second, max_subscribers) = seed_limits(channel);
                    (
                        channel.to_string(),
                        ChannelLimits {
                            rate_per_second,
                            max_subscribers,
                        },
                    )
                })
                .collect(),
        )
    }
}

/// The per-channel rates and subscriber caps of seed 004.
fn seed_limits(channel: Channel) -> (u32, u32) {
    match channel {
        Channel::MarketData => (100, 500),
        Channel::Orderbook => (50, 200),
        Channel::Trades => (100, 300),
        Channel::ChartData => (10, 100),
        Channel::System => (5, 1000),
        Channel::Heartbeat => (1, 1000),
        Channel::Account => (10, 50),
        Channel::Positions => (20, 50),
        Channel::Orders => (50, 100),
        Channel::Notifications => (20, 200),
    }
}

impl ChannelsConfig {
    /// The limits of `channel`, falling back to the seed's defaults.
    pub fn limits(&self, channel: Channel) -> ChannelLimits {
        self.0
            .get(&channel.to_string())
            .copied()
            .unwrap_or_else(|| {
                let (rate_per_second, max_subscribers) = seed_limits(channel);
                ChannelLimits {
                    rate_per_second,
                    max_subscribers,
                }
            })
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.to_owned(),
            public_key_file: None,
            algorithm: "HS256".to_owned(),
            audience: None,
            issuer: None,
            channel_scopes: BTreeMap::new(),
        }
    }
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            seed: 42,
            symbols: [
                "AAPL", "GOOGL", "MSFT", "TSLA", "AMZN", "NVDA", "META", "BTC/USDT", "USDCOP",
                "USDBRL",
            ]
            .map(String::from)
            .to_vec(),
            tick_interval_ms: [500, 2000],
            ticks_per_second: 0,
            book_depth: 10,
            private_interval_ms: 2000,
            system_interval_ms: [30_000, 60_000],
            backfill_bars: 300,
            candle_publish_ms: 5000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from("data"),
            ticks: true,
            batch_rows: 1000,
            buffer_rows: 100_000,
            flush_ms: 200,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: "text".to_owned(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` (if given), then `TICKGATE_*` variables: nested
    /// keys use `__` (`TICKGATE_SERVER__PORT=9000`), `TICKGATE_JWT_SECRET`
    /// sets `auth.jwt_secret`, `DATABASE_URL` sets `store.url`, `REDIS_URL`
    /// sets `redis.url`, and `TICKGATE_CONFIG` (the file, read by the
    /// command line) is not a key.
    ///
    /// # Errors
    /// An unreadable file, an unknown key or a value of the wrong type.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(
                Env::prefixed("TICKGATE_")
                    .ignore(&["JWT_SECRET", "CONFIG"])
                    .split("__"),
            )
            .merge(
                Env::raw()
                    .only(&["TICKGATE_JWT_SECRET"])
                    .map(|_| "auth.jwt_secret".into()),
            )
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "store.url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and cross-field rules.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        for name in self.channels.0.keys() {
            if name.parse::<Channel>().is_err() {
                return invalid(format!("channels.{name}: no such channel"));
            }
        }
        for (name, limits) in &self.channels.0 {
            if limits.rate_per_second == 0 || limits.max_subscribers == 0 {
                return invalid(format!(
                    "channels.{name}: rate_per_second and max_subscribers must be at least 1"
                ));
            }
        }
        for name in self.auth.channel_scopes.keys() {
            match name.parse::<Channel>() {
                Ok(channel) if channel.is_private() => {}
                _ => return invalid(format!("auth.channel_scopes.{name}: not a private channel")),
            }
        }
        let ws = &self.ws;
        if ws.max_frame_bytes < 64 {
            return invalid("ws.max_frame_bytes must be at least 64".into());
        }
        if ws.inbound_per_second == 0 || ws.inbound_burst == 0 {
            return invalid("ws.inbound_per_second and ws.inbound_burst must be at least 1".into());
        }
        if ws.max_subscriptions == 0 {
            return invalid("ws.max_subscriptions must be at least 1".into());
        }
        if ws.ping_interval_ms == 0 || ws.idle_timeout_ms <= ws.ping_interval_ms {
            return invalid("ws.idle_timeout_ms must exceed ws.ping_interval_ms (> 0)".into());
        }
        if ws.private_queue == 0
            || ws.control_queue < 8
            || ws.conflation_slots == 0
            || ws.stream_backlog == 0
        {
            return invalid("ws queue sizes must be positive (control_queue at least 8)".into());
        }
        let sim = &self.simulator;
        if sim.tick_interval_ms[0] == 0 || sim.tick_interval_ms[0] > sim.tick_interval_ms[1] {
            return invalid(
                "simulator.tick_interval_ms must be [min, max] with 0 < min <= max".into(),
            );
        }
        if sim.system_interval_ms[0] == 0 || sim.system_interval_ms[0] > sim.system_interval_ms[1] {
            return invalid(
                "simulator.system_interval_ms must be [min, max] with 0 < min <= max".into(),
            );
        }
        if sim.symbols.is_empty() && sim.enabled {
            return invalid("simulator.symbols must name at least one symbol".into());
        }
        if sim.backfill_bars == 1 {
            return invalid("simulator.backfill_bars must be 0 (off) or at least 2".into());
        }
        if sim.private_interval_ms == 0 || sim.candle_publish_ms == 0 || sim.book_depth == 0 {
            return invalid("simulator intervals and book_depth must be positive".into());
        }
        let candles = &self.candles;
        if candles.enabled
            && (candles.symbols.is_empty()
                || candles.default_initial_bars == 0
                || candles.max_initial_bars == 0
                || candles.max_initial_bars > crate::market::candles::MAX_BARS
                || candles.update_ms == 0)
        {
            return invalid(format!(
                "candles: symbols must name at least one symbol, default_initial_bars, max_initial_bars (at most {}) and update_ms must be positive",
                crate::market::candles::MAX_BARS
            ));
        }
        crate::clock::Clock::from_config(&self.clock)
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        crate::calendar::Calendar::from_config(&self.calendar)
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if self.quotes.max_tickers == 0 {
            return invalid("quotes.max_tickers must be at least 1".into());
        }
        let store = &self.store;
        if store.batch_rows == 0 || store.buffer_rows < store.batch_rows || store.flush_ms == 0 {
            return invalid(
                "store.batch_rows and store.flush_ms must be positive, store.buffer_rows at least store.batch_rows".into(),
            );
        }
        if let Some(url) = &store.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return invalid(
                "store.url (DATABASE_URL) must start with sqlite:, postgres:// or postgresql://"
                    .into(),
            );
        }
        let td = &self.upstream.twelvedata;
        if td.enabled {
            if !(td.rest_url.starts_with("http://") || td.rest_url.starts_with("https://")) {
                return invalid(
                    "upstream.twelvedata.rest_url must start with http:// or https://".into(),
                );
            }
            if !(td.ws_url.starts_with("ws://") || td.ws_url.starts_with("wss://")) {
                return invalid(
                    "upstream.twelvedata.ws_url must start with ws:// or wss://".into(),
                );
            }
            if td.symbols.is_empty() {
                return invalid("upstream.twelvedata.symbols must map at least one symbol".into());
            }
            for (ours, theirs) in &td.symbols {
                if crate::hub::Symbols::canonical(ours).is_err() || theirs.trim().is_empty() {
                    return invalid(format!(
                        "upstream.twelvedata.symbols.{ours}: a gateway symbol (A-Z, 0-9, ./_:-^=) mapped to a provider symbol"
                    ));
                }
            }
            if td.poll_ms == 0
                || td.heartbeat_ms == 0
                || td.request_timeout_ms == 0
                || td.reconnect_min_ms == 0
                || td.reconnect_max_ms < td.reconnect_min_ms
            {
                return invalid("upstream.twelvedata: poll_ms, heartbeat_ms, request_timeout_ms and reconnect_min_ms must be positive, reconnect_max_ms at least reconnect_min_ms".into());
            }
        }
        if !matches!(self.auth.algorithm.as_str(), "HS256" | "RS256" | "ES256") {
            return invalid("auth.algorithm must be HS256, RS256 or ES256".into());
        }
        if self.auth.algorithm != "HS256" && self.auth.public_key_file.is_none() {
            return invalid(format!(
                "auth.algorithm {} needs auth.public_key_file",
                self.auth.algorithm
            ));
        }
        Ok(())
    }
}
