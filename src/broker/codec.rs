//! Redis messages <-> events. Inbound messages are validated against their
//! asyncapi.yaml schema (`RedisQuote`, `RedisTrade`, `RedisBook`,
//! `RedisPrivate`; a private event's `data` against its v1 message) before
//! they are read into the generated types; outbound ones are written from
//! the same types. Pure functions, no I/O.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, LazyLock},
};

use serde_json::{Map, Value, json};

use super::{MAX_MESSAGE_BYTES, Names};
use crate::{
    event::{
        AccountUpdate, Book, BookUpdate, Event, Levels, Notification, OrderUpdate, Payload,
        PositionUpdate, Tick, Trade, UserId,
    },
    protocol::v1,
    spec::{
        RedisTimestamp,
        messages::{
            Channel, RedisBook, RedisLevel, RedisPrivate, RedisPrivateChannel, RedisQuote,
            RedisTrade, V1ServerFrame,
        },
    },
};

/// Why a message was rejected: a short reason (a metric label) and detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub reason: &'static str,
    pub detail: String,
}

fn invalid(reason: &'static str, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}

/// A valid message, read.
#[derive(Debug)]
pub enum Inbound {
    Quote {
        symbol: String,
        at: jiff::Timestamp,
        tick: Tick,
        origin: Option<String>,
        /// The message as received, for the latest-quote cache.
        json: String,
    },
    Trade {
        symbol: String,
        at: jiff::Timestamp,
        trade: Trade,
        origin: Option<String>,
    },
    Book {
        symbol: String,
        at: jiff::Timestamp,
        snapshot: bool,
        bids: Levels,
        asks: Levels,
        origin: Option<String>,
    },
    Private {
        user: UserId,
        channel: Channel,
        at: jiff::Timestamp,
        payload: Payload,
        origin: Option<String>,
    },
}

impl Inbound {
    pub fn origin(&self) -> Option<&str> {
        match self {
            Inbound::Quote { origin, .. }
            | Inbound::Trade { origin, .. }
            | Inbound::Book { origin, .. }
            | Inbound::Private { origin, .. } => origin.as_deref(),
        }
    }
}

/// The messages Redis input is validated against: the four Redis messages,
/// and the v1 messages a private event's `data` is checked as.
const SCHEMAS: [&str; 8] = [
    "RedisQuote",
    "RedisTrade",
    "RedisBook",
    "RedisPrivate",
    "AccountUpdate",
    "PositionUpdate",
    "OrderUpdate",
    "Notification",
];

/// Why the schemas Redis messages are validated against cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("asyncapi.yaml has no message {0}, which Redis messages are validated against")]
    Missing(&'static str),
    #[error(
        "the schema of message {message} (asyncapi.yaml), which Redis messages are validated against, does not compile: {reason}"
    )]
    Compile {
        message: &'static str,
        reason: String,
    },
}

/// Compiled validators of the messages in `SCHEMAS`, by message name.
pub struct Validators(HashMap<&'static str, jsonschema::Validator>);

impl Validators {
    /// Compiles the schema of every message in `SCHEMAS` from `schemas`
    /// (the message schemas by name, as `spec::message_schemas` gives them).
    ///
    /// # Errors
    /// A message without a schema, or a schema that does not compile: the
    /// first such, in `SCHEMAS` order.
    pub fn new(schemas: &Map<String, Value>) -> Result<Self, SchemaError> {
        SCHEMAS
            .into_iter()
            .map(|message| {
                let schema = schemas.get(message).ok_or(SchemaError::Missing(message))?;
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(schema)
                    .map_err(|error| SchemaError::Compile {
                        message,
                        reason: error.to_string(),
                    })?;
                Ok((message, validator))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The validators of asyncapi.yaml's schemas, compiled on first use.
static VALIDATORS: LazyLock<Result<Validators, SchemaError>> =
    LazyLock::new(|| Validators::new(&crate::spec::message_schemas()));

/// Compiles the schemas Redis messages are validated against now (once per
/// process). `Broker::from_config` calls it, so a schema that is missing or
/// does not compile stops the start instead of making every message of its
/// channel invalid later.
///
/// # Errors
/// As `Validators::new`, for the schemas built into this binary.
pub fn check_schemas() -> Result<(), SchemaError> {
    VALIDATORS.as_ref().map(drop).map_err(Clone::clone)
}

fn check(schema: &str, value: &Value) -> Result<(), Invalid> {
    // Unusable validators are unreachable in a gateway: `Broker::from_config`
    // fails first (`check_schemas`).
    let validators = VALIDATORS
        .as_ref()
        .map_err(|error| invalid("schema", format!("cannot validate: {error}")))?;
    let validator = validators
        .0
        .get(schema)
        .ok_or_else(|| invalid("schema", format!("no schema {schema}")))?;
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => {
            let path = error.instance_path().to_string();
            let field = if path.is_empty() { "/".into() } else { path };
            Err(invalid("schema", format!("field {field}: {error}")))
        }
    }
}

/// Reads and validates one message of `channel`.
pub fn decode(channel: &str, payload: &[u8], names: &Names) -> Result<Inbound, Invalid> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(invalid(
            "too_large",
            format!("{} bytes; at most {MAX_MESSAGE_BYTES}", payload.len()),
        ));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| invalid("not_json", e.to_string()))?;
    let read = |e: serde_json::Error| invalid("schema", e.to_string());
    if channel == names.quotes {
        check("RedisQuote", &value)?;
        let quote: RedisQuote = serde_json::from_value(value).map_err(read)?;
        let (open, close) = (*quote.open, *quote.close);
        let change = quote.change.unwrap_or(close - open);
        let tick = Tick {
            price: close,
            open,
            high: *quote.high,
            low: *quote.low,
            bid: quote.bid.as_ref().map_or(close, |b| **b),
            ask: quote.ask.as_ref().map_or(close, |a| **a),
            size: quote.size.unwrap_or(0),
            volume: quote.volume,
            change,
            change_percent: quote
                .change_percent
                .unwrap_or_else(|| (change / open * 10_000.0).round() / 100.0),
            source: quote
                .source
                .as_deref()
                .map_or("redis", |s| s.as_str())
                .into(),
        };
        let json = serde_json::to_string(&quote).unwrap_or_default();
        return Ok(Inbound::Quote {
            symbol: quote.ticker.to_string(),
            at: quote.timestamp.0,
            tick,
            origin: quote.origin.map(|o| o.to_string()),
            json,
        });
    }
    if channel == names.trades {
        check("RedisTrade", &value)?;
        let trade: RedisTrade = serde_json::from_value(value).map_err(read)?;
        return Ok(Inbound::Trade {
            symbol: trade.symbol.to_string(),
            at: trade.timestamp.0,
            trade: Trade {
                trade_id: trade.trade_id,
                price: *trade.price,
                size: trade.size,
                side: trade.side,
            },
            origin: trade.origin.map(|o| o.to_string()),
        });
    }
    if channel == names.orderbook {
        check("RedisBook", &value)?;
        let book: RedisBook = serde_json::from_value(value).map_err(read)?;
        let levels = |levels: &[RedisLevel]| levels.iter().map(|l| (l[0], l[1])).collect();
        return Ok(Inbound::Book {
            symbol: book.symbol.to_string(),
            at: book.timestamp.0,
            snapshot: book.snapshot.unwrap_or(false),
            bids: levels(&book.bids),
            asks: levels(&book.asks),
            origin: book.origin.map(|o| o.to_string()),
        });
    }
    if channel == names.private {
        check("RedisPrivate", &value)?;
        let private: RedisPrivate = serde_json::from_value(value).map_err(read)?;
        let (channel, kind, schema) = match private.channel {
            RedisPrivateChannel::Account => (Channel::Account, "account_update", "AccountUpdate"),
            RedisPrivateChannel::Positions => {
                (Channel::Positions, "position_update", "PositionUpdate")
            }
            RedisPrivateChannel::Orders => (Channel::Orders, "order_update", "OrderUpdate"),
            RedisPrivateChannel::Notifications => {
                (Channel::Notifications, "notification", "Notification")
            }
        };
        // `data` is the v1 message without its envelope: check it as one.
        let mut frame: Map<String, Value> = private.data.clone();
        frame.insert("type".into(), json!(kind));
        frame.insert("channel".into(), json!(channel.to_string()));
        frame.insert("seq".into(), json!(1));
        frame.insert("user".into(), json!(private.user.to_string()));
        frame.insert(
            "timestamp".into(),
            json!(crate::spec::Timestamp(private.timestamp.0).to_string()),
        );
        let frame = Value::Object(frame);
        check(schema, &frame).map_err(|e| invalid("schema", format!("data: {}", e.detail)))?;
        let frame: V1ServerFrame = serde_json::from_value(frame).map_err(read)?;
        let payload = match frame {
            V1ServerFrame::AccountUpdate {
                currency,
                balance,
                available,
                equity,
                ..
            } => Payload::Account(AccountUpdate {
                currency,
                balance,
                available,
                equity,
            }),
            V1ServerFrame::PositionUpdate {
                symbol,
                quantity,
                avg_price,
                market_price,
                unrealized_pnl,
                ..
            } => Payload::Position(PositionUpdate {
                symbol: symbol.to_string().into(),
                quantity,
                avg_price,
                market_price,
                unrealized_pnl,
            }),
            V1ServerFrame::OrderUpdate {
                order_id,
                symbol,
                side,
                order_type,
                status,
                quantity,
                filled_quantity,
                price,
                ..
            } => Payload::Order(OrderUpdate {
                order_id,
                symbol: symbol.to_string().into(),
                side,
                order_type,
                status,
                quantity,
                filled_quantity,
                price,
            }),
            V1ServerFrame::Notification {
                level,
                title,
                message,
                ..
            } => Payload::Notification(Notification {
                level,
                title,
                message,
            }),
            _ => return Err(invalid("schema", "not a private message")),
        };
        return Ok(Inbound::Private {
            user: private.user.to_string().into(),
            channel,
            at: private.timestamp.0,
            payload,
            origin: private.origin.map(|o| o.to_string()),
        });
    }
    Err(invalid("channel", format!("unknown channel {channel}")))
}

/// The Redis channel and JSON of an event this instance relays (ticks,
/// trades, books and private events; None for the rest).
pub fn encode(event: &Event, origin: &str, names: &Names) -> Option<(String, String)> {
    let at = RedisTimestamp(event.timestamp);
    let origin_value = Some(origin.to_owned().try_into().ok()?);
    let symbol = match &event.topic.key {
        crate::event::TopicKey::Symbol(symbol) => Some(symbol.to_string()),
        _ => None,
    };
    let (channel, json) = match &event.payload {
        Payload::Tick(tick) => {
            let quote = RedisQuote {
                ticker: symbol?.try_into().ok()?,
                timestamp: at,
                open: positive(tick.open)?,
                high: positive(tick.high)?,
                low: positive(tick.low)?,
                close: positive(tick.price)?,
                volume: tick.volume,
                bid: positive(tick.bid),
                ask: positive(tick.ask),
                size: Some(tick.size),
                change: Some(tick.change),
                change_percent: Some(tick.change_percent),
                source: tick.source.to_string().try_into().ok(),
                origin: origin_value,
            };
            (&names.quotes, serde_json::to_string(&quote).ok()?)
        }
        Payload::Trade(trade) => {
            let trade = RedisTrade {
                symbol: symbol?.try_into().ok()?,
                timestamp: at,
                trade_id: trade.trade_id,
                price: positive(trade.price)?,
                size: trade.size,
                side: trade.side,
                origin: origin_value,
            };
            (&names.trades, serde_json::to_string(&trade).ok()?)
        }
        Payload::Book(update) => {
            let levels =
                |levels: &Levels| levels.iter().map(|&(p, s)| RedisLevel([p, s])).collect();
            let book = RedisBook {
                symbol: symbol?.try_into().ok()?,
                timestamp: at,
                snapshot: Some(true),
                bids: levels(&update.book.bids),
                asks: levels(&update.book.asks),
                origin: origin_value,
            };
            (&names.orderbook, serde_json::to_string(&book).ok()?)
        }
        Payload::Account(_)
        | Payload::Position(_)
        | Payload::Order(_)
        | Payload::Notification(_) => {
            let crate::event::TopicKey::User(user) = &event.topic.key else {
                return None;
            };
            // The v1 frame without its envelope is the `data`.
            let frame: Value = serde_json::from_str(&v1::encode_event(event, 0)?).ok()?;
            let Value::Object(mut data) = frame else {
                return None;
            };
            for key in ["type", "channel", "seq", "user", "timestamp"] {
                data.remove(key);
            }
            let channel = match event.topic.channel {
                Channel::Account => RedisPrivateChannel::Account,
                Channel::Positions => RedisPrivateChannel::Positions,
                Channel::Orders => RedisPrivateChannel::Orders,
                Channel::Notifications => RedisPrivateChannel::Notifications,
                _ => return None,
            };
            let private = RedisPrivate {
                user: user.to_string().try_into().ok()?,
                channel,
                timestamp: at,
                data,
                origin: origin_value,
            };
            (&names.private, serde_json::to_string(&private).ok()?)
        }
        _ => return None,
    };
    Some((channel.clone(), json))
}

fn positive(value: f64) -> Option<crate::spec::messages::RedisPrice> {
    (value.is_finite() && value > 0.0).then_some(crate::spec::messages::RedisPrice(value))
}

/// Applies a snapshot or level changes to `book`; returns the update the hub
/// publishes (the changed levels and the whole book after).
pub fn apply_book(book: &mut Book, snapshot: bool, bids: Levels, asks: Levels) -> BookUpdate {
    let side = |current: &mut Levels, incoming: Levels, descending: bool| -> Levels {
        let key = |price: f64| (price * 1e8).round() as i64;
        let mut levels: BTreeMap<i64, (f64, f64)> = if snapshot {
            BTreeMap::new()
        } else {
            current.iter().map(|&(p, s)| (key(p), (p, s))).collect()
        };
        let old: BTreeMap<i64, f64> = current.iter().map(|&(p, s)| (key(p), s)).collect();
        for (price, size) in incoming {
            if size == 0.0 {
                levels.remove(&key(price));
            } else {
                levels.insert(key(price), (price, size));
            }
        }
        let mut changed: Levels = levels
            .iter()
            .filter(|(k, (_, s))| old.get(k) != Some(s))
            .map(|(_, &(p, s))| (p, s))
            .collect();
        changed.extend(
            old.iter()
                .filter(|(k, _)| !levels.contains_key(k))
                .map(|(k, _)| (*k as f64 / 1e8, 0.0)),
        );
        let mut next: Levels = levels.into_values().collect();
        if descending {
            next.reverse();
        }
        *current = next;
        changed
    };
    let changed_bids = side(&mut book.bids, bids, true);
    let changed_asks = side(&mut book.asks, asks, false);
    BookUpdate {
        bids: changed_bids,
        asks: changed_asks,
        book: Arc::new(book.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("")
    }

    #[test]
    fn seed_quotes_decode() {
        let quote = br#"{"ticker":"aapl","timestamp":"2026-02-12T10:30:00.123456Z","open":150.25,"high":151.1,"low":150.05,"close":150.9,"volume":1000000}"#;
        let Ok(Inbound::Quote {
            symbol,
            at,
            tick,
            origin,
            ..
        }) = decode("quotes.realtime", quote, &names())
        else {
            panic!("a seed 002 quote is valid");
        };
        assert_eq!(symbol, "aapl");
        assert_eq!(at.to_string(), "2026-02-12T10:30:00.123456Z");
        assert_eq!(
            (tick.price, tick.bid, tick.ask, tick.volume),
            (150.9, 150.9, 150.9, 1_000_000)
        );
        assert_eq!(origin, None);
    }

    #[test]
    fn invalid_messages_name_their_reason() {
        let cases: [(&str, &[u8], &str); 7] = [
            ("quotes.realtime", b"\xff\xfe garbage", "not_json"),
            ("quotes.realtime", b"{\"ticker\":\"AAPL\"}", "schema"),
            ("quotes.realtime", br#"{"ticker":"AAPL","timestamp":"2026-02-12T10:30:00Z","open":"1","high":1,"low":1,"close":1,"volume":1}"#, "schema"),
            ("quotes.realtime", br#"{"ticker":"AAPL","timestamp":"2026-02-12T10:30:00Z","open":1,"high":1,"low":1,"close":-5,"volume":1}"#, "schema"),
            ("tickgate.trades", br#"{"symbol":"AAPL","timestamp":"2026-02-12T10:30:00Z","trade_id":1,"price":1,"size":1,"side":"hold"}"#, "schema"),
            ("tickgate.private", br#"{"user":"u1","channel":"wallet","timestamp":"2026-02-12T10:30:00Z","data":{}}"#, "schema"),
            ("tickgate.private", br#"{"user":"u1","channel":"account","timestamp":"2026-02-12T10:30:00Z","data":{"currency":"USD"}}"#, "schema"),
        ];
        for (channel, payload, reason) in cases {
            let error = decode(channel, payload, &names()).expect_err("invalid");
            assert_eq!(
                error.reason,
                reason,
                "{}: {}",
                String::from_utf8_lossy(payload),
                error.detail
            );
        }
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            decode("quotes.realtime", &huge, &names())
                .expect_err("too large")
                .reason,
            "too_large"
        );
    }

    #[test]
    fn the_built_in_schemas_compile() {
        assert_eq!(check_schemas(), Ok(()));
    }

    #[test]
    fn a_schema_that_does_not_compile_is_an_error() {
        let mut schemas = crate::spec::message_schemas();
        assert!(Validators::new(&schemas).is_ok());
        // Not a JSON Schema: `type` must be a name or a list of names.
        schemas.insert("RedisQuote".into(), json!({"type": 12}));
        match Validators::new(&schemas) {
            Err(SchemaError::Compile { message, reason }) => {
                assert_eq!(message, "RedisQuote");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a broken schema compiled"),
        }
        // A pattern that is not a regular expression, in a `data` schema.
        let mut schemas = crate::spec::message_schemas();
        schemas.insert(
            "Notification".into(),
            json!({"type": "object", "properties": {"title": {"type": "string", "pattern": "(unclosed"}}}),
        );
        assert!(matches!(
            Validators::new(&schemas),
            Err(SchemaError::Compile {
                message: "Notification",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_schema_is_an_error() {
        let mut schemas = crate::spec::message_schemas();
        schemas.remove("RedisBook");
        assert_eq!(
            Validators::new(&schemas).err(),
            Some(SchemaError::Missing("RedisBook"))
        );
    }

    #[test]
    fn books_apply_snapshots_and_changes() {
        let mut book = Book::default();
        let update = apply_book(
            &mut book,
            true,
            vec![(10.0, 1.0), (9.0, 2.0)],
            vec![(11.0, 3.0)],
        );
        assert_eq!(book.bids, [(10.0, 1.0), (9.0, 2.0)]);
        assert_eq!(update.bids.len(), 2);
        let update = apply_book(&mut book, false, vec![(10.0, 0.0), (9.5, 4.0)], vec![]);
        assert_eq!(book.bids, [(9.5, 4.0), (9.0, 2.0)]);
        assert_eq!(update.bids, [(9.5, 4.0), (10.0, 0.0)]);
        assert!(update.asks.is_empty());
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::event::Topic;

    #[test]
    fn relayed_events_decode_on_the_other_side() {
        let names = Names::new("p:");
        let at: jiff::Timestamp = "2026-02-12T10:30:00.123456Z".parse().unwrap();
        let book = Book {
            bids: vec![(10.0, 100.0), (9.99, 20.0)],
            asks: vec![(10.01, 50.0)],
        };
        let events = [
            Event {
                topic: Topic::symbol(Channel::Orderbook, "AAPL".into()),
                timestamp: at,
                payload: Payload::Book(BookUpdate {
                    bids: book.bids.clone(),
                    asks: book.asks.clone(),
                    book: Arc::new(book),
                }),
            },
            Event {
                topic: Topic::symbol(Channel::Trades, "AAPL".into()),
                timestamp: at,
                payload: Payload::Trade(Trade {
                    trade_id: 3,
                    price: 10.0,
                    size: 5.0,
                    side: crate::spec::messages::Side::Buy,
                }),
            },
            Event {
                topic: Topic::user(Channel::Account, "u1".into()),
                timestamp: at,
                payload: Payload::Account(AccountUpdate {
                    currency: "USD".into(),
                    balance: 1.0,
                    available: 1.0,
                    equity: 1.0,
                }),
            },
        ];
        for event in events {
            let (channel, json) = encode(&event, "me", &names).expect("relayed");
            let inbound = decode(&channel, json.as_bytes(), &names)
                .unwrap_or_else(|e| panic!("{channel}: {e:?}\n{json}"));
            assert_eq!(inbound.origin(), Some("me"));
        }
    }
}
