//! The codec of the quotes dialect (seed 002): one flat `Quote` frame per
//! tick. Clients send nothing the gateway reads, so there is no `decode`.

use crate::{
    event::{Event, Payload},
    protocol::Text,
    spec::{Timestamp, messages::Quote},
};

/// The hub's encoder of quotes.
pub struct Quotes;

impl super::Encoder for Quotes {
    fn event(&self, event: &Event, _seq: u64, _first: bool) -> Option<Text> {
        encode(event)
    }
}

/// The frame of a tick event; None for any other event.
pub fn encode(event: &Event) -> Option<Text> {
    let Payload::Tick(tick) = &event.payload else {
        return None;
    };
    let crate::event::TopicKey::Symbol(symbol) = &event.topic.key else {
        return None;
    };
    let quote = Quote {
        ticker: symbol.to_string().try_into().ok()?,
        timestamp: Timestamp(event.timestamp),
        open: tick.open,
        high: tick.high,
        low: tick.low,
        close: tick.price,
        volume: tick.volume,
        bid: Some(tick.bid),
        ask: Some(tick.ask),
    };
    match serde_json::to_string(&quote) {
        Ok(json) => Some(Text::from(json)),
        Err(error) => {
            // Not reachable with the generated type; the quote is skipped
            // rather than sent wrong.
            tracing::error!(%error, "a quote did not serialize");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Tick, Topic},
        spec::messages::Channel,
    };

    #[test]
    fn a_tick_is_a_flat_quote() {
        let event = Event {
            topic: Topic::symbol(Channel::MarketData, "AAPL".into()),
            timestamp: "2026-02-12T10:30:00.123456Z".parse().unwrap(),
            payload: Payload::Tick(Tick {
                price: 150.9,
                open: 150.25,
                high: 151.1,
                low: 150.05,
                bid: 150.88,
                ask: 150.92,
                size: 10,
                volume: 1_000_000,
                change: 0.65,
                change_percent: 0.43,
                source: "test".into(),
            }),
        };
        let frame: serde_json::Value = serde_json::from_str(&encode(&event).unwrap()).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"ticker": "AAPL", "timestamp": "2026-02-12T10:30:00.123456Z",
                "open": 150.25, "high": 151.1, "low": 150.05, "close": 150.9,
                "volume": 1_000_000, "bid": 150.88, "ask": 150.92})
        );
    }
}
