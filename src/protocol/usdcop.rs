//! The codec of the USD/COP market-data stream (seed 000, also the market
//! data of seed 001's `/ws`): pure functions, no I/O. `decode` turns a client
//! frame into a command; `market_data` encodes a tick once for every client;
//! `encode` writes any other server frame. The types come from
//! `asyncapi.yaml` (`UsdcopClientFrame`, `UsdcopServerFrame`).

use crate::{
    event::{Event, Payload, TopicKey},
    protocol::Text,
    spec::{
        UsdcopTime,
        messages::{
            UsdcopClientFrame, UsdcopErrorCode, UsdcopMetadata, UsdcopMetadataDataQuality,
            UsdcopMetadataSource, UsdcopQuote, UsdcopServerFrame, UsdcopStatus,
            UsdcopStatusDetails,
        },
    },
};

/// A client command, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Pong,
}

/// Decodes one text frame; the error is the `INVALID_MESSAGE` text.
pub fn decode(text: &str) -> Result<Command, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| format!("Invalid message format: not JSON ({error})"))?;
    let frame: UsdcopClientFrame = serde_json::from_value(value).map_err(|error| {
        format!(
            "Invalid message format: expected {{\"action\": \"subscribe\"|\"unsubscribe\", \"symbols\": [...]}} or {{\"action\": \"pong\"}} ({error})"
        )
    })?;
    Ok(match frame {
        UsdcopClientFrame::Subscribe { symbols } => Command::Subscribe(symbols_of(symbols)),
        UsdcopClientFrame::Unsubscribe { symbols } => Command::Unsubscribe(symbols_of(symbols)),
        UsdcopClientFrame::Pong { .. } => Command::Pong,
    })
}

fn symbols_of(symbols: crate::spec::messages::UsdcopSymbols) -> Vec<String> {
    symbols.0.into_iter().map(|s| s.to_string()).collect()
}

/// The hub's encoder of the USD/COP streams' `market_data` frames (seeds
/// 000 and 001 share it, so each tick is encoded once for both).
pub struct MarketData;

impl super::Encoder for MarketData {
    fn event(&self, event: &Event, _seq: u64, _first: bool) -> Option<Text> {
        market_data(event)
    }
}

/// The `market_data` frame of a tick event, with its latency measured now;
/// None for any other event.
pub fn market_data(event: &Event) -> Option<Text> {
    let Payload::Tick(tick) = &event.payload else {
        return None;
    };
    let TopicKey::Symbol(symbol) = &event.topic.key else {
        return None;
    };
    let latency_ms = jiff::Timestamp::now()
        .duration_since(event.timestamp)
        .as_millis()
        .max(0);
    let data_quality = match latency_ms {
        0..1_000 => UsdcopMetadataDataQuality::High,
        1_000..5_000 => UsdcopMetadataDataQuality::Medium,
        _ => UsdcopMetadataDataQuality::Low,
    };
    let frame = UsdcopServerFrame::MarketData {
        timestamp: UsdcopTime(event.timestamp),
        symbol: symbol.to_string(),
        data: UsdcopQuote {
            price: tick.price,
            open: tick.open,
            high: tick.high,
            low: tick.low,
            close: tick.price,
            volume: tick.volume as f64,
            bid: tick.bid,
            ask: tick.ask,
            spread: tick.ask - tick.bid,
            change: tick.change,
            change_percent: tick.change_percent,
        },
        metadata: UsdcopMetadata {
            source: UsdcopMetadataSource::Realtime,
            latency_ms: u64::try_from(latency_ms).unwrap_or(u64::MAX),
            data_quality,
        },
    };
    Some(encode(&frame))
}

/// Any server frame.
pub fn encode(frame: &UsdcopServerFrame) -> Text {
    super::to_text(
        frame,
        r#"{"type":"error","code":"INVALID_MESSAGE","message":"frame did not serialize"}"#,
    )
}

/// The `ack` of a subscribe (`subscribed`) or unsubscribe.
pub fn ack(subscribed: bool, symbols: Vec<String>, now: jiff::Timestamp) -> Text {
    let n = symbols.len();
    let noun = if n == 1 { "symbol" } else { "symbols" };
    let message = match subscribed {
        true => format!("Subscribed to {n} {noun}"),
        false => format!("Unsubscribed from {n} {noun}"),
    };
    encode(&UsdcopServerFrame::Ack {
        message,
        symbols,
        timestamp: UsdcopTime(now),
    })
}

/// An `error` frame.
pub fn error(code: UsdcopErrorCode, message: impl Into<String>, now: jiff::Timestamp) -> Text {
    encode(&UsdcopServerFrame::Error {
        code,
        message: message.into(),
        timestamp: UsdcopTime(now),
    })
}

/// A `heartbeat` frame.
pub fn heartbeat(clients_connected: u64, now: jiff::Timestamp) -> Text {
    encode(&UsdcopServerFrame::Heartbeat {
        timestamp: UsdcopTime(now),
        server_time: UsdcopTime(now),
        clients_connected,
    })
}

/// A `system_status` frame.
pub fn system_status(
    status: UsdcopStatus,
    message: impl Into<String>,
    details: Option<UsdcopStatusDetails>,
    now: jiff::Timestamp,
) -> Text {
    encode(&UsdcopServerFrame::SystemStatus {
        status,
        message: message.into(),
        timestamp: UsdcopTime(now),
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Tick, Topic},
        spec::messages::Channel,
    };

    #[test]
    fn commands_decode_and_bad_frames_say_why() {
        assert_eq!(
            decode(r#"{"action":"subscribe","symbols":["usdcop","USDBRL"]}"#),
            Ok(Command::Subscribe(vec!["usdcop".into(), "USDBRL".into()]))
        );
        assert_eq!(
            decode(r#"{"action":"unsubscribe","symbols":[]}"#),
            Ok(Command::Unsubscribe(vec![]))
        );
        assert_eq!(
            decode(r#"{"action":"pong","client_time":"2025-10-22T10:30:00Z"}"#),
            Ok(Command::Pong)
        );
        for bad in [
            "not json",
            r#"{"action":"dance"}"#,
            r#"{"action":"subscribe"}"#,
            r#"{"action":"subscribe","symbols":"USDCOP"}"#,
        ] {
            let error = decode(bad).expect_err(bad);
            assert!(error.starts_with("Invalid message format"), "{error}");
        }
    }

    #[test]
    fn a_tick_is_market_data_with_spread_and_metadata() {
        let at: jiff::Timestamp = "2025-10-22T10:30:05.123456Z".parse().unwrap();
        let event = Event {
            topic: Topic::symbol(Channel::MarketData, "USDCOP".into()),
            timestamp: at,
            payload: Payload::Tick(Tick {
                price: 4350.5,
                open: 4348.0,
                high: 4352.0,
                low: 4347.5,
                bid: 4350.25,
                ask: 4350.75,
                size: 10,
                volume: 1_234_567,
                change: 2.5,
                change_percent: 0.0575,
                source: "simulator".into(),
            }),
        };
        let frame: serde_json::Value = serde_json::from_str(&market_data(&event).unwrap()).unwrap();
        assert_eq!(frame["type"], "market_data");
        assert_eq!(frame["timestamp"], "2025-10-22T10:30:05Z");
        assert_eq!(frame["symbol"], "USDCOP");
        assert_eq!(
            frame["data"],
            serde_json::json!({"price": 4350.5, "open": 4348.0, "high": 4352.0,
                "low": 4347.5, "close": 4350.5, "volume": 1234567.0, "bid": 4350.25,
                "ask": 4350.75, "spread": 0.5, "change": 2.5, "change_percent": 0.0575})
        );
        assert_eq!(frame["metadata"]["source"], "realtime");
        // The tick is a year old: its latency is large and its quality low.
        assert!(frame["metadata"]["latency_ms"].as_u64().unwrap() > 1_000_000);
        assert_eq!(frame["metadata"]["data_quality"], "low");
    }

    #[test]
    fn acks_count_their_symbols() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let one: serde_json::Value =
            serde_json::from_str(&ack(false, vec!["USDBRL".into()], now)).unwrap();
        assert_eq!(one["message"], "Unsubscribed from 1 symbol");
        let two: serde_json::Value =
            serde_json::from_str(&ack(true, vec!["USDCOP".into(), "USDBRL".into()], now)).unwrap();
        assert_eq!(two["message"], "Subscribed to 2 symbols");
        assert_eq!(two["timestamp"], "1970-01-01T00:00:00Z");
    }
}
