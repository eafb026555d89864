//! The TwelveData wire: the REST client (`/quote`, `/price`), the price
//! stream's messages, and how the provider's answers map onto key-pool
//! outcomes. No task, no timer and no state lives here; the source in
//! `upstream/runner.rs` drives it.
//!
//! The provider reports errors two ways, and both are handled: an HTTP
//! status (429, 401, 403), or HTTP 200 with
//! `{"code":429,"message":"...","status":"error"}`. A key reaches the wire
//! only in the `apikey` query parameter; every error text is scrubbed of it.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::keys::{ApiKey, Outcome};

/// `source` of the ticks of the stream.
pub const SOURCE_WEBSOCKET: &str = "twelvedata_websocket";
/// `source` of the ticks of REST polling.
pub const SOURCE_REST: &str = "twelvedata_rest";

/// What went wrong with one request or one stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("rate limited by the provider: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("out of API credits: {message}")]
    OutOfCredits { message: String },
    #[error("API key refused (HTTP {status}): {message}")]
    Invalid { status: u16, message: String },
    #[error("provider error {code}: {message}")]
    Provider { code: u16, message: String },
    #[error("invalid provider JSON: {0}")]
    Decode(String),
    #[error("upstream unreachable: {0}")]
    Transport(String),
}

impl UpstreamError {
    /// What the key pool should learn from this error, if it is about the
    /// key (a transport or decoding failure is not).
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(Outcome::RateLimited {
                retry_after: *retry_after,
            }),
            Self::OutOfCredits { .. } => Some(Outcome::OutOfCredits { reset: None }),
            Self::Invalid { .. } => Some(Outcome::Invalid),
            Self::Provider { .. } | Self::Decode(_) | Self::Transport(_) => None,
        }
    }
}

/// The error an HTTP status and a body say, if any: `status` is the HTTP
/// status, `body` the parsed JSON (when it parsed).
pub fn classify(
    status: u16,
    body: Option<&Value>,
    retry_after: Option<Duration>,
) -> Result<(), UpstreamError> {
    let code = body
        .and_then(|b| b.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let is_error = body
        .and_then(|b| b.get("status"))
        .and_then(Value::as_str)
        .is_some_and(|s| s == "error");
    let message = body
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    let code = match (status, code) {
        (200..=299, Some(code)) if is_error => code,
        (200..=299, _) if is_error => 400,
        (200..=299, _) => return Ok(()),
        (status, _) => status,
    };
    let lower = message.to_ascii_lowercase();
    Err(match code {
        429 if lower.contains("run out of api credits") && !lower.contains("minute") => {
            UpstreamError::OutOfCredits { message }
        }
        429 => UpstreamError::RateLimited {
            retry_after,
            message,
        },
        401 | 403 => UpstreamError::Invalid {
            status: code,
            message,
        },
        code => UpstreamError::Provider { code, message },
    })
}

/// A number the provider writes as a JSON number or as a string.
fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Number(f64),
        Text(String),
    }
    Ok(match Option::<Loose>::deserialize(deserializer)? {
        Some(Loose::Number(n)) => Some(n),
        Some(Loose::Text(text)) => text.trim().parse().ok(),
        None => None,
    })
    .map(|n| n.filter(|n: &f64| n.is_finite()))
}

fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(lenient_f64(deserializer)?.map(|n| n as i64))
}

/// `GET /quote`: the fields the source reads (numbers arrive as strings).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Quote {
    pub symbol: String,
    #[serde(default)]
    pub datetime: Option<String>,
    /// Start of the quote's bar (the day, by default), Unix seconds.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
    /// When the provider last updated the quote, Unix seconds.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub last_quote_at: Option<i64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub open: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub high: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub low: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub close: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub previous_close: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub change: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub percent_change: Option<f64>,
    #[serde(default)]
    pub is_market_open: Option<bool>,
}

#[derive(Deserialize)]
struct PriceBody {
    #[serde(default, deserialize_with = "lenient_f64")]
    price: Option<f64>,
}

/// A provider answer and the credits the key has left (the
/// `api-credits-left` header).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub remaining_credits: Option<u32>,
}

/// The REST client. One per source; cheap to clone.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
}

impl RestClient {
    /// A client of the API at `base` (e.g. `https://api.twelvedata.com`).
    ///
    /// # Errors
    /// The TLS backend fails to initialize.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `GET /quote?symbol=..&apikey=..`.
    ///
    /// # Errors
    /// The provider's error (see [`classify`]), a body that is not a quote,
    /// or the request failing.
    pub async fn quote(&self, symbol: &str, key: &ApiKey) -> Result<Answer<Quote>, UpstreamError> {
        let (body, remaining_credits) = self.get("quote", symbol, key).await?;
        let value: Quote =
            serde_json::from_value(body).map_err(|e| UpstreamError::Decode(e.to_string()))?;
        if value.close.is_none() {
            return Err(UpstreamError::Decode("quote without close".into()));
        }
        Ok(Answer {
            value,
            remaining_credits,
        })
    }

    /// `GET /price?symbol=..&apikey=..`: the latest price.
    ///
    /// # Errors
    /// As for [`RestClient::quote`].
    pub async fn price(&self, symbol: &str, key: &ApiKey) -> Result<Answer<f64>, UpstreamError> {
        let (body, remaining_credits) = self.get("price", symbol, key).await?;
        let value = serde_json::from_value::<PriceBody>(body)
            .map_err(|e| UpstreamError::Decode(e.to_string()))?
            .price
            .ok_or_else(|| UpstreamError::Decode("price missing".into()))?;
        Ok(Answer {
            value,
            remaining_credits,
        })
    }

    async fn get(
        &self,
        path: &str,
        symbol: &str,
        key: &ApiKey,
    ) -> Result<(Value, Option<u32>), UpstreamError> {
        let transport =
            |e: reqwest::Error| UpstreamError::Transport(key.scrub(&e.without_url().to_string()));
        let response = self
            .http
            .get(format!("{}/{path}", self.base))
            .query(&[("symbol", symbol), ("apikey", key.expose())])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let remaining_credits = header("api-credits-left").and_then(|v| v.trim().parse().ok());
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(transport)?;
        let body = serde_json::from_str::<Value>(&text).ok();
        classify(status, body.as_ref(), retry_after).map_err(|e| scrub_error(e, key))?;
        let body = body.ok_or_else(|| {
            UpstreamError::Decode(format!(
                "not JSON: {}",
                key.scrub(&text.chars().take(120).collect::<String>())
            ))
        })?;
        Ok((body, remaining_credits))
    }
}

/// `error` with `key` masked in its message.
pub fn scrub_error(error: UpstreamError, key: &ApiKey) -> UpstreamError {
    use UpstreamError as E;
    match error {
        E::RateLimited {
            retry_after,
            message,
        } => E::RateLimited {
            retry_after,
            message: key.scrub(&message),
        },
        E::OutOfCredits { message } => E::OutOfCredits {
            message: key.scrub(&message),
        },
        E::Invalid { status, message } => E::Invalid {
            status,
            message: key.scrub(&message),
        },
        E::Provider { code, message } => E::Provider {
            code,
            message: key.scrub(&message),
        },
        E::Decode(message) => E::Decode(key.scrub(&message)),
        E::Transport(message) => E::Transport(key.scrub(&message)),
    }
}

/// The URL of the stream for `key`.
pub fn stream_url(ws_url: &str, key: &ApiKey) -> String {
    let separator = if ws_url.contains('?') { '&' } else { '?' };
    format!("{ws_url}{separator}apikey={}", key.expose())
}

/// The subscription for `symbols` (provider symbols).
pub fn subscribe_frame(symbols: &[&str]) -> String {
    serde_json::json!({"action": "subscribe", "params": {"symbols": symbols.join(",")}}).to_string()
}

/// The keep-alive the stream expects every 10 seconds.
pub const HEARTBEAT_FRAME: &str = r#"{"action":"heartbeat"}"#;

/// One `price` event of the stream.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PriceEvent {
    pub symbol: String,
    /// Unix seconds.
    #[serde(deserialize_with = "required_i64")]
    pub timestamp: i64,
    #[serde(deserialize_with = "required_f64")]
    pub price: f64,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub bid: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub ask: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub day_volume: Option<f64>,
}

fn required_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    lenient_f64(deserializer)?.ok_or_else(|| serde::de::Error::custom("a finite number"))
}

fn required_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    lenient_i64(deserializer)?.ok_or_else(|| serde::de::Error::custom("a number"))
}

/// A message of the stream, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamMessage {
    Price(PriceEvent),
    /// The answer to `subscribe`: provider symbols taken and refused.
    SubscribeStatus {
        success: Vec<String>,
        fails: Vec<String>,
    },
    /// The answer to a heartbeat.
    Heartbeat,
    /// An error the provider reported on the stream.
    Error(UpstreamError),
    /// An event this client does not use, by name.
    Other(String),
}

/// Decodes one text frame of the stream.
///
/// # Errors
/// `Decode` for text that is not a JSON object with an `event`, or a
/// `price` event without its fields.
pub fn decode_stream(text: &str) -> Result<StreamMessage, UpstreamError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| UpstreamError::Decode(e.to_string()))?;
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::Decode("message without event".into()))?
        .to_owned();
    let failed = value.get("status").and_then(Value::as_str) == Some("error");
    let symbols = |field: &str| -> Vec<String> {
        value
            .get(field)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        item.get("symbol")
                            .and_then(Value::as_str)
                            .or_else(|| item.as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match event.as_str() {
        "price" => serde_json::from_value(value)
            .map(StreamMessage::Price)
            .map_err(|e| UpstreamError::Decode(format!("price event: {e}"))),
        "subscribe-status" => {
            let success = symbols("success");
            let fails = symbols("fails");
            if failed && success.is_empty() && value.get("code").is_some() {
                return Ok(StreamMessage::Error(error_of(&value)));
            }
            Ok(StreamMessage::SubscribeStatus { success, fails })
        }
        "heartbeat" if !failed => Ok(StreamMessage::Heartbeat),
        _ if failed => Ok(StreamMessage::Error(error_of(&value))),
        _ => Ok(StreamMessage::Other(event.chars().take(40).collect())),
    }
}

fn error_of(value: &Value) -> UpstreamError {
    let mut body = value.clone();
    if body.get("code").is_none()
        && let Some(object) = body.as_object_mut()
    {
        object.insert("code".into(), 400.into());
    }
    match classify(200, Some(&body), None) {
        Err(error) => error,
        Ok(()) => UpstreamError::Provider {
            code: 400,
            message: "error".into(),
        },
    }
}

/// What a failed stream handshake says about the key: the HTTP status of a
/// refused upgrade, or a transport failure with the key scrubbed.
pub fn handshake_error(
    error: tokio_tungstenite::tungstenite::Error,
    key: &ApiKey,
) -> UpstreamError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match error {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok());
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            match classify(status, body.as_ref(), retry_after) {
                Err(error) => scrub_error(error, key),
                Ok(()) => UpstreamError::Transport(format!("handshake answered HTTP {status}")),
            }
        }
        other => UpstreamError::Transport(key.scrub(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(status: u16, body: Value, expected: Result<(), UpstreamError>) {
        assert_eq!(
            classify(status, Some(&body), None),
            expected,
            "{status} {body}"
        );
    }

    #[test]
    fn classification() {
        check(200, json!({"price": "4350.5"}), Ok(()));
        check(
            200,
            json!({"code": 429, "status": "error", "message": "You have run out of API credits for the current minute. 9 API credits were used, with the current limit being 8."}),
            Err(UpstreamError::RateLimited {
                retry_after: None,
                message: "You have run out of API credits for the current minute. 9 API credits were used, with the current limit being 8.".into(),
            }),
        );
        check(
            429,
            json!({"code": 429, "status": "error", "message": "You have run out of API credits for the day."}),
            Err(UpstreamError::OutOfCredits {
                message: "You have run out of API credits for the day.".into(),
            }),
        );
        check(
            429,
            json!({}),
            Err(UpstreamError::RateLimited {
                retry_after: None,
                message: String::new(),
            }),
        );
        check(
            200,
            json!({"code": 401, "status": "error", "message": "**apikey** parameter is incorrect"}),
            Err(UpstreamError::Invalid {
                status: 401,
                message: "**apikey** parameter is incorrect".into(),
            }),
        );
        check(
            403,
            json!(null),
            Err(UpstreamError::Invalid {
                status: 403,
                message: String::new(),
            }),
        );
        check(
            200,
            json!({"code": 400, "status": "error", "message": "symbol not found"}),
            Err(UpstreamError::Provider {
                code: 400,
                message: "symbol not found".into(),
            }),
        );
        check(
            500,
            json!("oops"),
            Err(UpstreamError::Provider {
                code: 500,
                message: String::new(),
            }),
        );
        assert_eq!(
            classify(429, None, Some(Duration::from_secs(7))),
            Err(UpstreamError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                message: String::new(),
            })
        );
    }

    #[test]
    fn outcomes() {
        let limited = UpstreamError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            message: String::new(),
        };
        assert_eq!(
            limited.outcome(),
            Some(Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            })
        );
        assert_eq!(
            UpstreamError::OutOfCredits {
                message: String::new()
            }
            .outcome(),
            Some(Outcome::OutOfCredits { reset: None })
        );
        assert_eq!(UpstreamError::Transport("x".into()).outcome(), None);
    }

    #[test]
    fn quote_fields_as_strings_or_numbers() {
        let quote: Quote = serde_json::from_value(json!({
            "symbol": "USD/COP", "name": "US Dollar / Colombian Peso", "exchange": "Forex",
            "datetime": "2025-10-22", "timestamp": 1761091200, "last_quote_at": "1761130000",
            "open": "4350.10", "high": "4360.0", "low": 4340.5, "close": "4355.25",
            "volume": "0", "previous_close": "4349.00", "change": "6.25",
            "percent_change": "0.14371", "is_market_open": true,
            "fifty_two_week": {"low": "3900.0", "high": "4500.0"}
        }))
        .unwrap();
        assert_eq!(quote.close, Some(4355.25));
        assert_eq!(quote.low, Some(4340.5));
        assert_eq!(quote.last_quote_at, Some(1_761_130_000));
        assert_eq!(quote.timestamp, Some(1_761_091_200));
        assert_eq!(quote.previous_close, Some(4349.0));
        assert_eq!(quote.is_market_open, Some(true));
        let sparse: Quote =
            serde_json::from_value(json!({"symbol": "X", "close": "NaN", "open": null})).unwrap();
        assert_eq!((sparse.close, sparse.open), (None, None));
    }

    #[test]
    fn stream_messages() {
        let check = |text: &str, expected: Result<StreamMessage, ()>| {
            assert_eq!(decode_stream(text).map_err(|_| ()), expected, "{text}");
        };
        check(
            r#"{"event":"price","symbol":"USD/COP","currency_base":"US Dollar","exchange":"Forex","type":"Physical Currency","timestamp":1700000000,"price":4350.5,"bid":4350.2,"ask":4350.8,"day_volume":1200}"#,
            Ok(StreamMessage::Price(PriceEvent {
                symbol: "USD/COP".into(),
                timestamp: 1_700_000_000,
                price: 4350.5,
                bid: Some(4350.2),
                ask: Some(4350.8),
                day_volume: Some(1200.0),
            })),
        );
        check(
            r#"{"event":"price","symbol":"USD/BRL","timestamp":1700000001,"price":"5.43"}"#,
            Ok(StreamMessage::Price(PriceEvent {
                symbol: "USD/BRL".into(),
                timestamp: 1_700_000_001,
                price: 5.43,
                bid: None,
                ask: None,
                day_volume: None,
            })),
        );
        check(
            r#"{"event":"subscribe-status","status":"ok","success":[{"symbol":"USD/COP","exchange":"Forex"}],"fails":[{"symbol":"XXX/YYY"}]}"#,
            Ok(StreamMessage::SubscribeStatus {
                success: vec!["USD/COP".into()],
                fails: vec!["XXX/YYY".into()],
            }),
        );
        check(
            r#"{"event":"heartbeat","status":"ok"}"#,
            Ok(StreamMessage::Heartbeat),
        );
        check(
            r#"{"event":"subscribe-status","status":"error","code":429,"message":"You have run out of API credits for the day."}"#,
            Ok(StreamMessage::Error(UpstreamError::OutOfCredits {
                message: "You have run out of API credits for the day.".into(),
            })),
        );
        check(
            r#"{"event":"reset-status","status":"ok"}"#,
            Ok(StreamMessage::Other("reset-status".into())),
        );
        check(
            r#"{"event":"price","symbol":"USD/COP","timestamp":1}"#,
            Err(()),
        );
        check(
            r#"{"event":"price","symbol":"USD/COP","timestamp":1,"price":"abc"}"#,
            Err(()),
        );
        check(r#"{"price":1}"#, Err(()));
        check("not json", Err(()));
        check("[1,2]", Err(()));
    }

    #[test]
    fn frames_and_urls() {
        let key = ApiKey::new("abcdefghijkl");
        assert_eq!(
            stream_url("wss://ws.twelvedata.com/v1/quotes/price", &key),
            "wss://ws.twelvedata.com/v1/quotes/price?apikey=abcdefghijkl"
        );
        assert_eq!(
            stream_url("ws://h/p?x=1", &key),
            "ws://h/p?x=1&apikey=abcdefghijkl"
        );
        let frame: Value = serde_json::from_str(&subscribe_frame(&["USD/COP", "USD/BRL"])).unwrap();
        assert_eq!(
            frame,
            json!({"action": "subscribe", "params": {"symbols": "USD/COP,USD/BRL"}})
        );
        let error = scrub_error(
            UpstreamError::Transport("GET ws://h/p?apikey=abcdefghijkl failed".into()),
            &key,
        );
        assert!(!error.to_string().contains("abcdefghijkl"));
    }
}
