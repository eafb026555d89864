//! The v1 ten-channel dialect (`/api/v1/ws/v1`, seed 004).
//!
//! `decode` turns a client text frame into a generated `V1ClientFrame`, or a
//! `ProtocolError` that names the documented error code; `encode_*` turn
//! events and replies into shared text frames. Inbound frames are checked
//! against their message schema from asyncapi.yaml, so what the server accepts
//! is exactly what the contract says.

use std::{collections::HashMap, sync::LazyLock};

use jsonschema::{Validator, error::ValidationErrorKind};
use serde_json::Value;

use super::Text;
use crate::{
    event::{Event, Levels, Payload},
    spec::{
        self, Timestamp,
        messages::{
            CandleInterval, Channel, ErrorCode, PriceLevel, RequestId, Sequence, Symbol,
            V1ClientFrame, V1ServerFrame,
        },
    },
};

/// The client message types, in the order error messages list them, with the
/// name of their message in asyncapi.yaml.
const CLIENT_TYPES: [(&str, &str); 4] = [
    ("subscribe", "Subscribe"),
    ("unsubscribe", "Unsubscribe"),
    ("auth", "Auth"),
    ("ping", "Ping"),
];

/// A client frame that cannot be applied, as the `error` frame will say it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// The JSON pointer of the offending field (`schema_violation`).
    pub field: Option<String>,
    /// The frame's `id`, when it had a valid one.
    pub id: Option<RequestId>,
    pub channel: Option<Channel>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            id: None,
            channel: None,
        }
    }

    #[must_use]
    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }

    #[must_use]
    pub fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (RequestId::String(a), RequestId::String(b)) => a == b,
            (RequestId::Int64(a), RequestId::Int64(b)) => a == b,
            _ => false,
        }
    }
}

/// Why the client-frame schemas from asyncapi.yaml cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("asyncapi.yaml has no message {message}, the schema of client frames of type {kind:?}")]
    Missing {
        kind: &'static str,
        message: &'static str,
    },
    #[error("the schema of client message {message} (asyncapi.yaml) does not compile: {reason}")]
    Compile {
        message: &'static str,
        reason: String,
    },
}

/// Compiled validators of the client messages, by `type`.
pub struct ClientValidators(HashMap<&'static str, Validator>);

impl ClientValidators {
    /// Compiles the schema of every client message type from `schemas` (the
    /// message schemas by message name, as `spec::message_schemas` gives
    /// them).
    ///
    /// # Errors
    /// A client message without a schema, or a schema that does not
    /// compile: the first such, in `CLIENT_TYPES` order.
    pub fn new(schemas: &serde_json::Map<String, Value>) -> Result<Self, SchemaError> {
        CLIENT_TYPES
            .iter()
            .map(|&(kind, message)| {
                let schema = schemas
                    .get(message)
                    .ok_or(SchemaError::Missing { kind, message })?;
                let validator =
                    jsonschema::validator_for(schema).map_err(|error| SchemaError::Compile {
                        message,
                        reason: error.to_string(),
                    })?;
                Ok((kind, validator))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn get(&self, kind: &str) -> Option<&Validator> {
        self.0.get(kind)
    }
}

/// The validators of asyncapi.yaml's client messages, compiled on first use.
static VALIDATORS: LazyLock<Result<ClientValidators, SchemaError>> =
    LazyLock::new(|| ClientValidators::new(&spec::message_schemas()));

/// Compiles the client-frame schemas now (once per process). The gateway
/// calls it when it is built, so a schema that does not compile stops the
/// start instead of turning every client frame into an error later.
///
/// # Errors
/// As `ClientValidators::new`, for the schemas built into this binary.
pub fn check_schemas() -> Result<(), SchemaError> {
    VALIDATORS.as_ref().map(drop).map_err(Clone::clone)
}

/// Decodes one client text frame.
///
/// # Errors
/// `invalid_json`, `unknown_type`, `unknown_channel` or `schema_violation`,
/// echoing the frame's `id` when it had a valid one.
pub fn decode(text: &str) -> Result<V1ClientFrame, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        ProtocolError::new(
            ErrorCode::InvalidJson,
            format!("frame is not valid JSON ({error}); send a JSON object such as {{\"type\":\"ping\"}}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidJson,
            "frame must be a JSON object such as {\"type\":\"ping\"}",
        ));
    };
    let id = object
        .get("id")
        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
        .filter(|id| match id {
            RequestId::String(s) => s.chars().count() <= 64,
            RequestId::Int64(_) => true,
        });
    let kind = match object.get("type") {
        None => {
            return Err(schema_violation("/type", "field type is required").with_id(id));
        }
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(schema_violation(
                "/type",
                format!("field /type must be a string, not {other}"),
            )
            .with_id(id));
        }
    };
    let validators = VALIDATORS.as_ref().map_err(|error| {
        // Unreachable in a gateway: construction fails first (`check_schemas`).
        tracing::error!(%error, "client frames cannot be validated");
        ProtocolError::new(
            ErrorCode::InternalError,
            "the server cannot validate client frames",
        )
        .with_id(id.clone())
    })?;
    let Some(validator) = validators.get(kind) else {
        let supported: Vec<&str> = CLIENT_TYPES.iter().map(|(kind, _)| *kind).collect();
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type {}; supported types: {}",
                Value::String(truncate(kind, 64)),
                supported.join(", ")
            ),
        )
        .with_id(id));
    };
    if let Some(error) = validator.iter_errors(&value).next() {
        let path = error.instance_path().as_str().to_owned();
        if path == "/channel"
            && let Some(Value::String(name)) = object.get("channel")
        {
            let names: Vec<String> = Channel::ALL.iter().map(ToString::to_string).collect();
            return Err(ProtocolError::new(
                ErrorCode::UnknownChannel,
                format!(
                    "unknown channel {}; channels: {}",
                    Value::String(truncate(name, 64)),
                    names.join(", ")
                ),
            )
            .with_id(id));
        }
        let field = match error.kind() {
            ValidationErrorKind::Required { property } => {
                format!("{path}/{}", property.as_str().unwrap_or_default())
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                format!(
                    "{path}/{}",
                    unexpected.first().map(String::as_str).unwrap_or_default()
                )
            }
            _ => path,
        };
        let message = format!("field {field}: {error}");
        return Err(schema_violation(&field, truncate(&message, 300)).with_id(id));
    }
    serde_json::from_value::<V1ClientFrame>(value).map_err(|error| {
        schema_violation("", format!("frame does not match its schema: {error}")).with_id(id)
    })
}

fn schema_violation(field: &str, message: impl Into<String>) -> ProtocolError {
    ProtocolError {
        field: Some(field.to_owned()),
        ..ProtocolError::new(ErrorCode::SchemaViolation, message)
    }
}

/// At most `max` characters of `text`, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Serializes a server frame.
pub fn encode(frame: &V1ServerFrame) -> Text {
    super::to_text(
        frame,
        r#"{"type":"error","code":"internal_error","message":"frame did not serialize"}"#,
    )
}

/// The `error` frame of a protocol error.
pub fn encode_error(error: &ProtocolError) -> Text {
    encode(&V1ServerFrame::Error {
        channel: error.channel,
        code: error.code,
        field: error.field.clone(),
        id: error.id.clone(),
        message: error.message.clone(),
        symbol: None,
    })
}

/// The wire form of a symbol; None (logged) for one the schema refuses.
/// Symbols are validated where they enter the gateway (`hub::Symbols`, with
/// the schema's rule), so None means a bug upstream: the frame that would
/// carry it is not sent, rather than sent with an invented symbol.
pub fn wire_symbol(symbol: &str) -> Option<Symbol> {
    match Symbol::try_from(symbol.to_owned()) {
        Ok(symbol) => Some(symbol),
        Err(error) => {
            tracing::error!(%error, symbol, "a symbol the schema refuses reached the v1 encoder; frame not sent");
            None
        }
    }
}

fn sequence(seq: u64) -> Sequence {
    Sequence(std::num::NonZeroU64::new(seq).unwrap_or(std::num::NonZeroU64::MIN))
}

fn levels(levels: &Levels) -> Vec<PriceLevel> {
    levels
        .iter()
        .map(|&(price, size)| PriceLevel { price, size })
        .collect()
}

/// The symbol of a per-symbol event's topic; None (logged) when its topic
/// has none, a bug of the source that published it.
fn topic_symbol(event: &Event) -> Option<Symbol> {
    match &event.topic.key {
        crate::event::TopicKey::Symbol(symbol) => wire_symbol(symbol),
        key => {
            tracing::error!(?key, channel = %event.topic.channel, "a per-symbol event without a symbol; frame not sent");
            None
        }
    }
}

fn topic_user(event: &Event) -> String {
    match &event.topic.key {
        crate::event::TopicKey::User(user) => user.to_string(),
        _ => String::new(),
    }
}

/// The data frame of `event` with sequence number `seq`.
/// The hub's encoder of v1 frames: an order book's first event, and a
/// conflated book update, go out as a snapshot.
pub struct V1;

impl super::Encoder for V1 {
    fn event(&self, event: &Event, seq: u64, first: bool) -> Option<Text> {
        if first && let Some(snapshot) = encode_book_snapshot(event, seq) {
            return Some(snapshot);
        }
        encode_event(event, seq)
    }

    fn snapshot(&self, event: &Event, seq: u64) -> Option<Text> {
        encode_book_snapshot(event, seq).or_else(|| encode_event(event, seq))
    }

    fn resyncs(&self, channel: Channel) -> bool {
        channel == Channel::Orderbook
    }

    fn resync(&self, event: &Event, seq: u64) -> Option<Text> {
        encode_book_snapshot(event, seq)
    }
}

/// The frame of an event; None when the event cannot be one (see
/// `topic_symbol`).
pub fn encode_event(event: &Event, seq: u64) -> Option<Text> {
    event_frame(event, seq).map(|frame| encode(&frame))
}

/// The `orderbook_snapshot` of the book carried by an order book event.
pub fn encode_book_snapshot(event: &Event, seq: u64) -> Option<Text> {
    let Payload::Book(update) = &event.payload else {
        return None;
    };
    Some(encode(&V1ServerFrame::OrderbookSnapshot {
        asks: levels(&update.book.asks),
        bids: levels(&update.book.bids),
        channel: event.topic.channel,
        seq: sequence(seq),
        symbol: topic_symbol(event)?,
        timestamp: Timestamp(event.timestamp),
    }))
}

fn event_frame(event: &Event, seq: u64) -> Option<V1ServerFrame> {
    let channel = event.topic.channel;
    let timestamp = Timestamp(event.timestamp);
    let seq = sequence(seq);
    Some(match &event.payload {
        Payload::Tick(tick) => V1ServerFrame::MarketTick {
            ask: tick.ask,
            bid: tick.bid,
            change: tick.change,
            change_percent: tick.change_percent,
            channel,
            price: tick.price,
            seq,
            source: tick.source.to_string(),
            symbol: topic_symbol(event)?,
            timestamp,
            volume: tick.volume,
        },
        Payload::Book(update) => V1ServerFrame::OrderbookUpdate {
            asks: levels(&update.asks),
            bids: levels(&update.bids),
            channel,
            seq,
            symbol: topic_symbol(event)?,
            timestamp,
        },
        Payload::Trade(trade) => V1ServerFrame::Trade {
            channel,
            price: trade.price,
            seq,
            side: trade.side,
            size: trade.size,
            symbol: topic_symbol(event)?,
            timestamp,
            trade_id: trade.trade_id,
        },
        Payload::Candle(candle) => V1ServerFrame::Candle {
            channel,
            close: candle.close,
            closed: candle.closed,
            high: candle.high,
            interval: CandleInterval::X1m,
            low: candle.low,
            open: candle.open,
            seq,
            symbol: topic_symbol(event)?,
            time: Timestamp(candle.time),
            timestamp,
            volume: candle.volume,
        },
        Payload::System(notice) => V1ServerFrame::SystemStatus {
            channel,
            message: notice.message.clone(),
            seq,
            status: notice.status,
            timestamp,
        },
        Payload::Heartbeat { connections } => V1ServerFrame::Heartbeat {
            channel,
            connections: *connections,
            seq,
            timestamp,
        },
        Payload::Account(account) => V1ServerFrame::AccountUpdate {
            available: account.available,
            balance: account.balance,
            channel,
            currency: account.currency.clone(),
            equity: account.equity,
            seq,
            timestamp,
            user: topic_user(event),
        },
        Payload::Position(position) => V1ServerFrame::PositionUpdate {
            avg_price: position.avg_price,
            channel,
            market_price: position.market_price,
            quantity: position.quantity,
            seq,
            symbol: wire_symbol(&position.symbol)?,
            timestamp,
            unrealized_pnl: position.unrealized_pnl,
            user: topic_user(event),
        },
        Payload::Order(order) => V1ServerFrame::OrderUpdate {
            channel,
            filled_quantity: order.filled_quantity,
            order_id: order.order_id.clone(),
            order_type: order.order_type,
            price: order.price,
            quantity: order.quantity,
            seq,
            side: order.side,
            status: order.status,
            symbol: wire_symbol(&order.symbol)?,
            timestamp,
            user: topic_user(event),
        },
        Payload::Notification(notification) => V1ServerFrame::Notification {
            channel,
            level: notification.level,
            message: notification.message.clone(),
            seq,
            timestamp,
            title: notification.title.clone(),
            user: topic_user(event),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` and checks the error code and field (or success).
    fn check(input: &str, expected: Result<&str, (ErrorCode, Option<&str>)>) {
        match (decode(input), expected) {
            (Ok(frame), Ok(kind)) => {
                let json = serde_json::to_value(&frame).unwrap_or_default();
                assert_eq!(json["type"], kind, "{input}");
            }
            (Err(error), Err((code, field))) => {
                assert_eq!(error.code, code, "{input}: {}", error.message);
                assert_eq!(error.field.as_deref(), field, "{input}: {}", error.message);
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn an_event_that_cannot_be_a_frame_is_not_sent_with_an_invented_symbol() {
        use crate::event::{Tick, Topic, TopicKey};
        let tick = |key: TopicKey| Event {
            topic: Topic {
                channel: Channel::MarketData,
                key,
            },
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload::Tick(Tick {
                price: 1.0,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                bid: 1.0,
                ask: 1.0,
                size: 1,
                volume: 1,
                change: 0.0,
                change_percent: 0.0,
                source: "test".into(),
            }),
        };
        let sent = encode_event(&tick(TopicKey::Symbol("AAPL".into())), 1).expect("a frame");
        assert!(sent.contains(r#""symbol":"AAPL""#), "{sent}");
        // No symbol on a per-symbol topic, or one the schema refuses: no
        // frame at all (the old encoder sent "UNKNOWN" and "INVALID").
        assert_eq!(encode_event(&tick(TopicKey::Global), 1), None);
        assert_eq!(encode_event(&tick(TopicKey::Symbol("".into())), 1), None);
        assert_eq!(wire_symbol(&"X".repeat(33)), None);
    }

    #[test]
    fn the_built_in_client_schemas_compile() {
        assert_eq!(check_schemas(), Ok(()));
    }

    #[test]
    fn a_client_schema_that_does_not_compile_is_an_error() {
        let mut schemas = spec::message_schemas();
        assert!(ClientValidators::new(&schemas).is_ok());
        // Not a JSON Schema: `type` must be a name or a list of names.
        schemas.insert("Unsubscribe".into(), serde_json::json!({"type": 12}));
        match ClientValidators::new(&schemas) {
            Err(SchemaError::Compile { message, reason }) => {
                assert_eq!(message, "Unsubscribe");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a broken schema compiled"),
        }
        // A pattern that is not a regular expression.
        let mut schemas = spec::message_schemas();
        schemas.insert(
            "Auth".into(),
            serde_json::json!({"type": "object", "properties": {"token": {"type": "string", "pattern": "(unclosed"}}}),
        );
        assert!(matches!(
            ClientValidators::new(&schemas),
            Err(SchemaError::Compile {
                message: "Auth",
                ..
            })
        ));
    }

    #[test]
    fn a_client_message_without_a_schema_is_an_error() {
        let mut schemas = spec::message_schemas();
        schemas.remove("Ping");
        assert_eq!(
            ClientValidators::new(&schemas).err(),
            Some(SchemaError::Missing {
                kind: "ping",
                message: "Ping"
            })
        );
    }

    #[test]
    fn decodes_every_client_type() {
        check(
            r#"{"type":"subscribe","channel":"market_data","symbol":"AAPL"}"#,
            Ok("subscribe"),
        );
        check(
            r#"{"type":"subscribe","channel":"orderbook"}"#,
            Ok("subscribe"),
        );
        check(
            r#"{"type":"unsubscribe","channel":"trades","symbol":"msft","id":"x"}"#,
            Ok("unsubscribe"),
        );
        check(r#"{"type":"auth","token":"abc","id":7}"#, Ok("auth"));
        check(r#"{"type":"ping"}"#, Ok("ping"));
    }

    #[test]
    fn names_the_error() {
        use ErrorCode::*;
        check("not json", Err((InvalidJson, None)));
        check("[1,2]", Err((InvalidJson, None)));
        check("", Err((InvalidJson, None)));
        check(r#"{"channel":"x"}"#, Err((SchemaViolation, Some("/type"))));
        check(r#"{"type":5}"#, Err((SchemaViolation, Some("/type"))));
        check(r#"{"type":"bogus"}"#, Err((UnknownType, None)));
        check(
            r#"{"type":"subscribe"}"#,
            Err((SchemaViolation, Some("/channel"))),
        );
        check(
            r#"{"type":"subscribe","channel":5}"#,
            Err((SchemaViolation, Some("/channel"))),
        );
        check(
            r#"{"type":"subscribe","channel":"nope"}"#,
            Err((UnknownChannel, None)),
        );
        check(
            r#"{"type":"subscribe","channel":"trades","symbol":""}"#,
            Err((SchemaViolation, Some("/symbol"))),
        );
        check(
            r#"{"type":"subscribe","channel":"trades","extra":1}"#,
            Err((SchemaViolation, Some("/extra"))),
        );
        check(r#"{"type":"auth"}"#, Err((SchemaViolation, Some("/token"))));
        check(
            r#"{"type":"ping","id":{"a":1}}"#,
            Err((SchemaViolation, Some("/id"))),
        );
    }

    #[test]
    fn unknown_type_lists_supported_types() {
        let error = decode(r#"{"type":"bogus"}"#).unwrap_err();
        assert!(
            error.message.contains("subscribe, unsubscribe, auth, ping"),
            "{}",
            error.message
        );
    }

    #[test]
    fn errors_echo_a_valid_id() {
        let error = decode(r#"{"type":"bogus","id":"abc"}"#).unwrap_err();
        assert_eq!(error.id, Some(RequestId::String("abc".parse().unwrap())));
        let error = decode(r#"{"type":"subscribe","id":12}"#).unwrap_err();
        assert_eq!(error.id, Some(RequestId::Int64(12)));
    }

    #[test]
    fn encodes_timestamps_with_six_fractional_digits() {
        let text = encode(&V1ServerFrame::Pong {
            id: Some(RequestId::Int64(1)),
            timestamp: Timestamp("2025-10-11T08:30:00Z".parse().unwrap()),
        });
        assert_eq!(
            text.as_str(),
            r#"{"type":"pong","id":1,"timestamp":"2025-10-11T08:30:00.000000Z"}"#
        );
    }
}
