//! Where events come from. Every source hands its events to `Ingest`, the
//! one narrow entry into the core: it keeps the symbol list and the candles
//! up to date and publishes to the hub. Sources know nothing of sessions,
//! dialects or sockets.

pub mod simulator;

use std::sync::Arc;

use crate::{
    event::{BookUpdate, Event, Payload, Symbol, SystemNotice, Tick, Topic, Trade, UserId},
    hub::{Hub, InvalidSymbol},
    market::candles::CandleBook,
    spec::messages::Channel,
    store::{TickRow, Writer},
};

/// Where locally produced events go besides the local hub: the Redis broker,
/// which hands them to the other instances.
pub trait Relay: Send + Sync + 'static {
    fn relay(&self, event: &Event);
}

/// Decides whether a tick enters the core: the orchestrator lets ticks of
/// symbols with trading hours through only while it collects.
pub trait Gate: Send + Sync + 'static {
    /// Whether a tick of `symbol` at `at` enters (and is counted as collected).
    fn admit(&self, symbol: &Symbol, at: jiff::Timestamp) -> bool;
    /// Whether other market data of `symbol` (trades, books) enters now.
    fn allows(&self, symbol: &Symbol) -> bool;
}

/// The entry point of every source.
#[derive(Clone)]
pub struct Ingest {
    hub: Arc<Hub>,
    candles: Arc<CandleBook>,
    relay: Option<Arc<dyn Relay>>,
    writer: Option<Arc<Writer>>,
    gate: Option<Arc<dyn Gate>>,
}

impl Ingest {
    /// An entry that stores ticks through `writer` when there is one.
    pub fn new(hub: Arc<Hub>, candles: Arc<CandleBook>, writer: Option<Arc<Writer>>) -> Self {
        Self {
            hub,
            candles,
            relay: None,
            writer,
            gate: None,
        }
    }

    /// This entry with every tick first offered to `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// This entry with every event also handed to `relay`.
    pub fn with_relay(mut self, relay: Arc<dyn Relay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// This entry without the relay: for events that arrived through it.
    pub fn local_only(&self) -> Self {
        Self {
            relay: None,
            ..self.clone()
        }
    }

    /// Registers a symbol (validating it) so "all symbols" includes it.
    ///
    /// # Errors
    /// An invalid symbol name.
    pub fn symbol(&self, name: &str) -> Result<Symbol, InvalidSymbol> {
        self.hub.symbols().insert(name)
    }

    pub fn candles(&self) -> &CandleBook {
        &self.candles
    }

    /// The time of day by the gateway's clock (the candle book's): what
    /// sources stamp the events they make with.
    pub fn now(&self) -> jiff::Timestamp {
        self.candles.now()
    }

    /// A tick; dropped when the gate holds it back (its market is closed).
    pub fn tick(&self, symbol: &Symbol, at: jiff::Timestamp, tick: Tick) {
        if let Some(gate) = &self.gate
            && !gate.admit(symbol, at)
        {
            return;
        }
        self.candles.on_tick(symbol, at, tick.price, tick.size);
        if let Some(writer) = &self.writer {
            writer.tick(TickRow {
                symbol: symbol.clone(),
                time: at,
                bid: tick.bid,
                ask: tick.ask,
                last: tick.price,
                volume: i64::try_from(tick.volume).unwrap_or(i64::MAX),
                source: tick.source.clone(),
            });
        }
        self.publish(
            Topic::symbol(Channel::MarketData, symbol.clone()),
            at,
            Payload::Tick(tick),
        );
    }

    /// Gives the hub a tick as the symbol's latest state without delivering
    /// it as news: only when the hub has no tick of the symbol yet (a cached
    /// quote at start). Candles and the store are not touched. Returns
    /// whether it was taken.
    pub fn seed_latest(&self, symbol: &Symbol, at: jiff::Timestamp, tick: Tick) -> bool {
        let topic = Topic::symbol(Channel::MarketData, symbol.clone());
        if self
            .hub
            .last_event(Channel::MarketData, &topic.key)
            .is_some()
        {
            return false;
        }
        self.hub.publish(Event {
            topic,
            timestamp: at,
            payload: Payload::Tick(tick),
        });
        true
    }

    pub fn book(&self, symbol: &Symbol, at: jiff::Timestamp, update: BookUpdate) {
        if self.gate.as_ref().is_some_and(|gate| !gate.allows(symbol)) {
            return;
        }
        self.publish(
            Topic::symbol(Channel::Orderbook, symbol.clone()),
            at,
            Payload::Book(update),
        );
    }

    pub fn trade(&self, symbol: &Symbol, at: jiff::Timestamp, trade: Trade) {
        if self.gate.as_ref().is_some_and(|gate| !gate.allows(symbol)) {
            return;
        }
        self.publish(
            Topic::symbol(Channel::Trades, symbol.clone()),
            at,
            Payload::Trade(trade),
        );
    }

    pub fn system(&self, at: jiff::Timestamp, notice: SystemNotice) {
        self.publish(Topic::global(Channel::System), at, Payload::System(notice));
    }

    /// A private event for `user` on a private channel.
    pub fn private(&self, channel: Channel, user: &UserId, at: jiff::Timestamp, payload: Payload) {
        debug_assert!(channel.is_private());
        self.publish(Topic::user(channel, user.clone()), at, payload);
    }

    fn publish(&self, topic: Topic, timestamp: jiff::Timestamp, payload: Payload) {
        let event = Event {
            topic,
            timestamp,
            payload,
        };
        if let Some(relay) = &self.relay {
            relay.relay(&event);
        }
        self.hub.publish(event);
    }
}
