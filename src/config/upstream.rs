//! `[upstream]`: real market-data providers (the `upstream` module, which
//! checks the symbol mapping when the gateway starts).

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

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
    pub keys: Vec<Secret>,
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

impl TwelveDataConfig {
    /// What can be checked without the runtime: URLs, intervals, that the
    /// mapping is not empty. Whether each gateway symbol is a valid symbol
    /// is checked by `upstream::check_config` when the gateway starts.
    pub(super) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if !(self.rest_url.starts_with("http://") || self.rest_url.starts_with("https://")) {
            return Err("upstream.twelvedata.rest_url must start with http:// or https://".into());
        }
        if !(self.ws_url.starts_with("ws://") || self.ws_url.starts_with("wss://")) {
            return Err("upstream.twelvedata.ws_url must start with ws:// or wss://".into());
        }
        if self.symbols.is_empty() {
            return Err("upstream.twelvedata.symbols must map at least one symbol".into());
        }
        if self.poll_ms == 0
            || self.heartbeat_ms == 0
            || self.request_timeout_ms == 0
            || self.reconnect_min_ms == 0
            || self.reconnect_max_ms < self.reconnect_min_ms
        {
            return Err("upstream.twelvedata: poll_ms, heartbeat_ms, request_timeout_ms and reconnect_min_ms must be positive, reconnect_max_ms at least reconnect_min_ms".into());
        }
        Ok(())
    }
}

/// A secret from the configuration (an API key): its `Debug` and its
/// serialized form are masked, so a dumped configuration never shows it;
/// [`Secret::expose`] is the only way to its text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// `text` without surrounding whitespace.
    pub fn new(text: &str) -> Self {
        Self(text.trim().into())
    }

    /// The whole secret. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as logs may show it: see [`mask`].
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// `text` with every occurrence of this secret masked: for error
    /// messages that may quote a request URL.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(&*self.0, &self.masked())
    }
}

/// A secret as logs may show it: the first 4 and last 2 characters around
/// `…` when longer than 8 characters, `****` otherwise.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() > 8 {
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("{head}…{tail}")
    } else {
        "****".to_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

/// Serialized masked, so a dumped configuration never shows a secret.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::new(&text))
    }
}
