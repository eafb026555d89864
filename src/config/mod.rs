//! Configuration: defaults, then an optional TOML file, then `TICKGATE_*`
//! environment variables, then command-line flags (applied by `main`).
//!
//! Every limit the gateway enforces lives here with its default, so the
//! configuration table of docs/configuration.md and `GET /api/v1/ws/config` read from one place.
//!
//! This module is plain data: it imports nothing of the runtime (only the
//! generated `Channel`). `validate` checks what the data alone can tell:
//! types, ranges and cross-field rules. Rules that need a runtime module
//! are checked by that module when the gateway starts, with a message that
//! names the key: `clock.*` by `Clock::from_config`, `calendar.*` by
//! `Calendar::from_config`, the gateway symbols of
//! `upstream.twelvedata.symbols` by `upstream::check_config`, and
//! `candles.max_initial_bars` against the history bound by `server::bind`.
//!
//! One file per section; everything is re-exported here, so
//! `crate::config::X` names every type.

mod auth;
mod calendar;
mod channels;
mod clock;
mod dialects;
mod log;
mod orchestrator;
mod redis;
mod server;
mod simulator;
mod store;
mod upstream;
mod ws;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use self::{
    auth::{AuthConfig, DEV_JWT_SECRET},
    calendar::{CalendarConfig, ScheduleConfig, SessionConfig},
    channels::{ChannelLimits, ChannelsConfig},
    clock::ClockConfig,
    dialects::{
        CandlesConfig, EnhancedConfig, MarketStreamConfig, QuotesConfig, RtOrchestratorConfig,
    },
    log::LogConfig,
    orchestrator::OrchestratorConfig,
    redis::RedisConfig,
    server::{HEADER_TIMEOUT_MS, MAX_HEADER_BYTES, ServerConfig},
    simulator::SimulatorConfig,
    store::StoreConfig,
    upstream::{Secret, TwelveDataConfig, UpstreamConfig, UpstreamMode, mask},
    ws::{CLOSE_GRACE_MS, WsConfig},
};

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

    /// Checks what serde cannot: ranges and cross-field rules (see the
    /// module documentation for the rules checked at start instead).
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.channels
            .check()
            .and_then(|()| self.auth.check_scopes())
            .and_then(|()| self.server.check())
            .and_then(|()| self.ws.check())
            .and_then(|()| self.simulator.check())
            .and_then(|()| self.candles.check())
            .and_then(|()| self.quotes.check())
            .and_then(|()| self.enhanced.check())
            .and_then(|()| self.store.check())
            .and_then(|()| self.upstream.twelvedata.check())
            .and_then(|()| self.auth.check_algorithm())
            .map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use figment::{
        Figment,
        providers::{Format, Serialized, Toml},
    };

    use super::*;

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
        let config = Config::default();
        assert_eq!(config.server.header_timeout_ms, 10_000);
        assert_eq!(config.server.max_header_bytes, 8192);
        assert_eq!(config.ws.close_grace_ms, 2000);
    }

    #[test]
    fn the_http_limits_load_from_a_file() {
        let config = from_toml(
            "[server]\nheader_timeout_ms = 300\nmax_header_bytes = 1024\n[ws]\nclose_grace_ms = 500\n",
        )
        .expect("loads");
        assert_eq!(config.server.header_timeout_ms, 300);
        assert_eq!(config.server.max_header_bytes, 1024);
        assert_eq!(config.ws.close_grace_ms, 500);
    }

    #[test]
    fn the_http_limits_are_bounded_at_both_ends() {
        let refused = |text: &str, key: &str| {
            let error = from_toml(text).expect_err(text).to_string();
            assert!(error.contains(key), "{text}: {error}");
        };
        let accepted = |text: &str| {
            from_toml(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        };
        for (key, range) in [
            (
                "server.header_timeout_ms",
                (*HEADER_TIMEOUT_MS.start(), *HEADER_TIMEOUT_MS.end()),
            ),
            (
                "server.max_header_bytes",
                (
                    *MAX_HEADER_BYTES.start() as u64,
                    *MAX_HEADER_BYTES.end() as u64,
                ),
            ),
            (
                "ws.close_grace_ms",
                (*CLOSE_GRACE_MS.start(), *CLOSE_GRACE_MS.end()),
            ),
        ] {
            let (section, name) = key.split_once('.').expect("dotted key");
            let file = |value: u64| format!("[{section}]\n{name} = {value}\n");
            refused(&file(0), key);
            refused(&file(range.0 - 1), key);
            accepted(&file(range.0));
            accepted(&file(range.1));
            refused(&file(range.1 + 1), key);
        }
    }

    #[test]
    fn a_configured_key_never_shows_but_reads_whole() {
        let config = from_toml("[upstream.twelvedata]\nkeys = [\" config-secret-key-0001 \"]\n")
            .expect("loads");
        let key = &config.upstream.twelvedata.keys[0];
        assert_eq!(key.expose(), "config-secret-key-0001");
        assert_eq!(key.masked(), "conf…01");
        assert_eq!(Secret::new("short").masked(), "****");
        assert!(!format!("{config:?}").contains("config-secret-key-0001"));
        let dumped = serde_json::to_string(&config).expect("serializes");
        assert!(!dumped.contains("config-secret-key-0001"), "{dumped}");
        assert!(dumped.contains("conf…01"), "{dumped}");
    }

    #[test]
    fn rules_of_the_runtime_are_not_checked_here() {
        // Each is refused when the gateway starts, by the module it
        // belongs to (see the module documentation).
        let mut config = Config::default();
        config.clock.start_at = Some("not an instant".into());
        config.calendar.default = ScheduleConfig::Keyword("sometimes".into());
        config.candles.max_initial_bars = 1_000_000;
        config.upstream.twelvedata.symbols = [("usd cop".to_owned(), "USD/COP".to_owned())].into();
        config.validate().expect("plain data validates");
    }
}
