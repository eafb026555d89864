//! The hub: topic -> subscribers, per-topic sequence numbers, the latest
//! state of each topic (for snapshots on subscribe), and fan-out.
//!
//! Each channel has its own lock; publishing an event takes only its
//! channel's lock, encodes the event once, and hands the shared frame to
//! every subscriber's `Outbox` (a short, non-blocking push). Delivering under
//! the channel lock keeps two guarantees simple: frames of a topic reach a
//! connection in sequence order, and a snapshot sent on subscribe is never
//! overtaken by an older update. The hub never awaits a socket.

mod outbox;
mod symbols;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

pub use outbox::{
    ConflateKey, Delivery, Drained, LazyFrame, Outbox, OutboxLimits, Pushed, TopicId, UNCAPPED,
};
use parking_lot::Mutex;
pub use symbols::{InvalidSymbol, Symbols};
use tokio::time::Instant;

use crate::{
    config::ChannelsConfig,
    event::{Event, Payload, TopicKey, UserId},
    metrics::Stats,
    protocol::{Encoder, Text},
    spec::{CHANNEL_COUNT, messages::Channel},
};

/// A connection's id, unique within one gateway process.
pub type SessionId = u64;

/// A connection as the hub sees it: where to push its frames, and in which
/// dialect they are encoded.
#[derive(Clone)]
pub struct Subscriber {
    pub id: SessionId,
    pub outbox: Arc<Outbox>,
    pub dialect: Dialect,
}

/// Most dialects one hub serves.
pub const MAX_DIALECTS: usize = 8;

/// A registered dialect: its number and its encoder.
#[derive(Clone)]
pub struct Dialect {
    id: usize,
    name: &'static str,
    encoder: Arc<dyn Encoder>,
}

impl Dialect {
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// `Hub::dialect` past `MAX_DIALECTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_DIALECTS} dialects registered on one hub")]
pub struct TooManyDialects;

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("channel {channel} is full ({max} subscribers); try again later")]
    ChannelFull { channel: Channel, max: usize },
}

pub struct Hub {
    channels: [ChannelHub; CHANNEL_COUNT],
    dialects: AtomicU64,
    symbols: Symbols,
    stats: Arc<Stats>,
    next_session: AtomicU64,
}

struct ChannelHub {
    channel: Channel,
    max_subscribers: usize,
    inner: Mutex<ChannelInner>,
}

#[derive(Default)]
struct ChannelInner {
    topics: HashMap<TopicKey, TopicState>,
    /// Connections subscribed to every symbol of a per-symbol channel.
    wildcard: Vec<Subscriber>,
    /// Subscriptions each connection holds on this channel; its length is
    /// the channel's subscriber count.
    members: HashMap<SessionId, u32>,
    /// The id the next new topic gets.
    next_id: TopicId,
}

impl ChannelInner {
    /// The topic of `key`, made (with the next id) if it is new.
    fn topic(&mut self, key: &TopicKey) -> &mut TopicState {
        topic_entry(&mut self.topics, &mut self.next_id, key)
    }
}

fn topic_entry<'a>(
    topics: &'a mut HashMap<TopicKey, TopicState>,
    next_id: &mut TopicId,
    key: &TopicKey,
) -> &'a mut TopicState {
    topics.entry(key.clone()).or_insert_with(|| {
        let id = *next_id;
        *next_id = next_id.wrapping_add(1);
        TopicState {
            id,
            ..TopicState::default()
        }
    })
}

#[derive(Default)]
struct TopicState {
    /// Identifies the topic's frames in outboxes.
    id: TopicId,
    seq: u64,
    subscribers: Vec<Subscriber>,
    /// The newest event and its sequence number, on channels whose state a
    /// new subscriber gets at once (ticks, books, candles).
    last: Option<(Arc<Event>, u64)>,
}

/// Channels whose newest event is sent to a new subscriber.
fn keeps_last(channel: Channel) -> bool {
    matches!(
        channel,
        Channel::MarketData | Channel::Orderbook | Channel::ChartData
    )
}

impl Hub {
    pub fn new(channels: &ChannelsConfig, stats: Arc<Stats>) -> Self {
        Self {
            channels: Channel::ALL.map(|channel| ChannelHub {
                channel,
                max_subscribers: channels.limits(channel).max_subscribers as usize,
                inner: Mutex::new(ChannelInner::default()),
            }),
            symbols: Symbols::default(),
            dialects: AtomicU64::new(0),
            stats,
            next_session: AtomicU64::new(1),
        }
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Registers a dialect's encoder (at mount time).
    ///
    /// # Errors
    /// More than `MAX_DIALECTS` dialects.
    pub fn dialect(
        &self,
        name: &'static str,
        encoder: Arc<dyn Encoder>,
    ) -> Result<Dialect, TooManyDialects> {
        let id = self.dialects.fetch_add(1, Relaxed) as usize;
        if id >= MAX_DIALECTS {
            return Err(TooManyDialects);
        }
        Ok(Dialect { id, name, encoder })
    }

    /// Registers a connection of `dialect`; it receives nothing until it
    /// subscribes.
    pub fn register(&self, outbox: Arc<Outbox>, dialect: Dialect) -> Subscriber {
        let id = self.next_session.fetch_add(1, Relaxed);
        Subscriber {
            id,
            outbox,
            dialect,
        }
    }

    /// Forgets a connection and all its subscriptions.
    pub fn unregister(&self, id: SessionId) {
        for hub in &self.channels {
            let mut inner = hub.inner.lock();
            if inner.members.remove(&id).is_none() {
                continue;
            }
            inner.wildcard.retain(|s| s.id != id);
            for topic in inner.topics.values_mut() {
                topic.subscribers.retain(|s| s.id != id);
            }
        }
    }

    /// Assigns the event its topic's next sequence number and delivers it.
    pub fn publish(&self, event: Event) {
        let published = Instant::now();
        let channel = event.topic.channel;
        self.stats.event_published(channel_name(channel));
        let hub = &self.channels[channel.index()];
        let mut inner = hub.inner.lock();
        let ChannelInner {
            topics,
            wildcard,
            next_id,
            ..
        } = &mut *inner;
        let topic = topic_entry(topics, next_id, &event.topic.key);
        topic.seq += 1;
        let seq = topic.seq;
        let event = Arc::new(event);
        // Subscribers that joined before the topic's first event got no
        // snapshot: the dialect may send its first event as one.
        let first = keeps_last(channel) && topic.last.is_none();
        if keeps_last(channel) {
            topic.last = Some((event.clone(), seq));
        }
        let wildcard: &[Subscriber] = if channel.per_symbol() { wildcard } else { &[] };
        if topic.subscribers.is_empty() && wildcard.is_empty() {
            return;
        }
        // Encoded at most once per dialect, when a subscriber needs it.
        let mut frames: [Option<Option<Text>>; MAX_DIALECTS] = Default::default();
        let mut resyncs: [Option<Option<Arc<LazyFrame>>>; MAX_DIALECTS] = Default::default();
        let key = channel
            .conflates()
            .then(|| (topic.id, discriminator(&event)));
        let mut conflated = 0;
        for subscriber in topic.subscribers.iter().chain(wildcard) {
            let dialect = &subscriber.dialect;
            let encoder = &dialect.encoder;
            let frame = frames[dialect.id].get_or_insert_with(|| encoder.event(&event, seq, first));
            let Some(frame) = frame else {
                continue;
            };
            let resync = resyncs[dialect.id].get_or_insert_with(|| {
                encoder.resyncs(channel).then(|| {
                    let (event, encoder) = (event.clone(), encoder.clone());
                    let newer = frame.clone();
                    Arc::new(LazyFrame::new(move || {
                        encoder.resync(&event, seq).unwrap_or_else(|| newer.clone())
                    }))
                })
            });
            let pushed = subscriber.outbox.push(Delivery {
                lane: channel.index(),
                key,
                frame,
                resync: resync.as_ref(),
                published,
            });
            if pushed == Pushed::Conflated {
                conflated += 1;
            }
        }
        if conflated > 0 {
            self.stats.conflated(conflated);
        }
    }

    /// Subscribes a connection to one topic (`key`), or to every symbol of a
    /// per-symbol channel (`key` None). `reply` is queued first, then the
    /// topic's current state, all under the channel lock so no update can
    /// slip in between. Returns false when the subscription already existed
    /// (the reply is still sent).
    ///
    /// # Errors
    /// `ChannelFull` when the channel has its maximum of subscribers.
    pub fn subscribe(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
        reply: Text,
    ) -> Result<bool, HubError> {
        self.subscribe_inner(subscriber, channel, key, Some(reply), true)
    }

    /// Subscribes a connection of a stream dialect (no reply frame, not
    /// counted against the channel's `max_subscribers`, which is a v1 limit;
    /// those connections are bounded by `server.max_connections`).
    pub fn subscribe_stream(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
    ) {
        // Uncapped, so it cannot be refused.
        let _ = self.subscribe_inner(subscriber, channel, key, None, false);
    }

    fn subscribe_inner(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
        reply: Option<Text>,
        capped: bool,
    ) -> Result<bool, HubError> {
        let hub = &self.channels[channel.index()];
        let mut inner = hub.inner.lock();
        let id = subscriber.id;
        if capped && !inner.members.contains_key(&id) && inner.members.len() >= hub.max_subscribers
        {
            return Err(HubError::ChannelFull {
                channel,
                max: hub.max_subscribers,
            });
        }
        let ChannelInner {
            topics,
            wildcard,
            members,
            next_id,
        } = &mut *inner;
        let added = match key {
            None if channel.per_symbol() => {
                let added = !wildcard.iter().any(|s| s.id == id);
                if added {
                    for topic in topics.values_mut() {
                        topic.subscribers.retain(|s| s.id != id);
                    }
                    wildcard.push(subscriber.clone());
                    members.insert(id, 1);
                }
                if let Some(reply) = reply {
                    subscriber.outbox.push_control(reply);
                }
                if added {
                    for topic in topics.values() {
                        send_snapshot(subscriber, channel, topic);
                    }
                }
                added
            }
            key => {
                let key = key.unwrap_or(TopicKey::Global);
                if wildcard.iter().any(|s| s.id == id) {
                    if let Some(reply) = reply {
                        subscriber.outbox.push_control(reply);
                    }
                    return Ok(false);
                }
                let topic = topic_entry(topics, next_id, &key);
                let added = !topic.subscribers.iter().any(|s| s.id == id);
                if added {
                    topic.subscribers.push(subscriber.clone());
                    *members.entry(id).or_default() += 1;
                }
                if let Some(reply) = reply {
                    subscriber.outbox.push_control(reply);
                }
                if added {
                    send_snapshot(subscriber, channel, topic);
                }
                added
            }
        };
        let count = inner.members.len();
        drop(inner);
        self.stats.subscriptions(channel_name(channel), count);
        Ok(added)
    }

    /// Undoes `subscribe` with the same channel and key, dropping any queued
    /// frames of the topic so none follows `reply`. Returns false (and sends
    /// nothing) when there was no such subscription.
    pub fn unsubscribe(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
        reply: Text,
    ) -> bool {
        self.unsubscribe_inner(subscriber, channel, key, Some(reply))
    }

    /// Undoes `subscribe_stream` (no reply frame). Returns whether there was
    /// such a subscription.
    pub fn unsubscribe_stream(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
    ) -> bool {
        self.unsubscribe_inner(subscriber, channel, key, None)
    }

    fn unsubscribe_inner(
        &self,
        subscriber: &Subscriber,
        channel: Channel,
        key: Option<TopicKey>,
        reply: Option<Text>,
    ) -> bool {
        let hub = &self.channels[channel.index()];
        let mut inner = hub.inner.lock();
        let id = subscriber.id;
        let lane = channel.index();
        let removed = match key {
            None if channel.per_symbol() => {
                let before = inner.wildcard.len();
                inner.wildcard.retain(|s| s.id != id);
                let removed = inner.wildcard.len() != before;
                if removed {
                    subscriber.outbox.clear_lane(lane);
                }
                removed
            }
            key => {
                let key = key.unwrap_or(TopicKey::Global);
                let removed = match inner.topics.get_mut(&key) {
                    Some(topic) => {
                        let before = topic.subscribers.len();
                        topic.subscribers.retain(|s| s.id != id);
                        (topic.subscribers.len() != before).then_some(topic.id)
                    }
                    None => None,
                };
                if let Some(topic) = removed {
                    subscriber.outbox.purge(lane, |queued| queued == topic);
                }
                removed.is_some()
            }
        };
        if removed {
            match inner.members.get_mut(&id) {
                Some(count) if *count > 1 => *count -= 1,
                _ => {
                    inner.members.remove(&id);
                }
            }
            if let Some(reply) = reply {
                subscriber.outbox.push_control(reply);
            }
        }
        let count = inner.members.len();
        drop(inner);
        self.stats.subscriptions(channel_name(channel), count);
        removed
    }

    /// Connections subscribed to each channel.
    pub fn subscriber_counts(&self) -> [(Channel, usize); CHANNEL_COUNT] {
        Channel::ALL.map(|channel| {
            (
                channel,
                self.channels[channel.index()].inner.lock().members.len(),
            )
        })
    }

    /// Users with at least one private subscription.
    pub fn private_users(&self) -> BTreeSet<UserId> {
        let mut users = BTreeSet::new();
        for hub in self.channels.iter().filter(|h| h.channel.is_private()) {
            let inner = hub.inner.lock();
            for (key, topic) in &inner.topics {
                if let (TopicKey::User(user), false) = (key, topic.subscribers.is_empty()) {
                    users.insert(user.clone());
                }
            }
        }
        users
    }

    /// The newest event of a topic, if the channel keeps one.
    pub fn last_event(&self, channel: Channel, key: &TopicKey) -> Option<Arc<Event>> {
        let inner = self.channels[channel.index()].inner.lock();
        inner
            .topics
            .get(key)?
            .last
            .as_ref()
            .map(|(event, _)| event.clone())
    }

    /// Takes the next sequence number of `topic` without delivering an
    /// event (for a frame every connection gets, such as the shutdown
    /// notice, that a dialect encodes itself).
    pub fn next_seq(&self, topic: &crate::event::Topic) -> u64 {
        let mut inner = self.channels[topic.channel.index()].inner.lock();
        let topic = inner.topic(&topic.key);
        topic.seq += 1;
        topic.seq
    }

    /// Drops the frames of `channel` queued in `outbox` whose topic key
    /// `remove` selects.
    pub fn purge_queued(
        &self,
        outbox: &Outbox,
        channel: Channel,
        remove: impl Fn(&TopicKey) -> bool,
    ) {
        let inner = self.channels[channel.index()].inner.lock();
        let ids: Vec<TopicId> = inner
            .topics
            .iter()
            .filter(|(key, _)| remove(key))
            .map(|(_, topic)| topic.id)
            .collect();
        if !ids.is_empty() {
            outbox.purge(channel.index(), |topic| ids.contains(&topic));
        }
    }
}

/// Queues the topic's current state for a new subscriber.
fn send_snapshot(subscriber: &Subscriber, channel: Channel, topic: &TopicState) {
    let Some((event, seq)) = &topic.last else {
        return;
    };
    let frame = subscriber.dialect.encoder.snapshot(event, *seq);
    let Some(frame) = frame else {
        return;
    };
    subscriber.outbox.push(Delivery {
        lane: channel.index(),
        key: Some((topic.id, discriminator(event))),
        frame: &frame,
        resync: None,
        published: Instant::now(),
    });
}

/// Frames of one topic that must not replace each other differ here: a
/// candle's start time (a closed candle is never conflated with the next).
fn discriminator(event: &Event) -> i64 {
    match &event.payload {
        Payload::Candle(candle) => candle.time.as_second(),
        _ => 0,
    }
}

/// The channel's wire name, as a static string for metric labels.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::MarketData => "market_data",
        Channel::Orderbook => "orderbook",
        Channel::Trades => "trades",
        Channel::ChartData => "chart_data",
        Channel::System => "system",
        Channel::Heartbeat => "heartbeat",
        Channel::Account => "account",
        Channel::Positions => "positions",
        Channel::Orders => "orders",
        Channel::Notifications => "notifications",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::{
        config::{ChannelLimits, ChannelsConfig},
        event::{Book, BookUpdate, Tick, Topic},
    };

    /// A hub with the v1 encoder registered, as a gateway mounts it.
    struct TestHub {
        hub: Hub,
        v1: Dialect,
    }

    impl std::ops::Deref for TestHub {
        type Target = Hub;
        fn deref(&self) -> &Hub {
            &self.hub
        }
    }

    fn hub(max_subscribers: u32) -> TestHub {
        let mut channels = ChannelsConfig::default();
        for channel in Channel::ALL {
            channels.0.insert(
                channel.to_string(),
                ChannelLimits {
                    rate_per_second: 10_000,
                    max_subscribers,
                },
            );
        }
        let hub = Hub::new(&channels, Arc::new(Stats::default()));
        let v1 = hub
            .dialect("v1", Arc::new(crate::protocol::v1::V1))
            .expect("one dialect");
        TestHub { hub, v1 }
    }

    /// A v1 connection.
    fn session(hub: &TestHub) -> Subscriber {
        hub.register(
            Arc::new(Outbox::new(Arc::new(OutboxLimits {
                control: 64,
                private: 64,
                conflation_slots: 64,
                backlog: 64,
                rates: [10_000; CHANNEL_COUNT],
                conflates: Channel::ALL.map(Channel::conflates),
            }))),
            hub.v1.clone(),
        )
    }

    #[test]
    fn dialects_are_bounded() {
        let hub = hub(1);
        for _ in 1..MAX_DIALECTS {
            assert!(
                hub.dialect("other", Arc::new(crate::protocol::NoEvents))
                    .is_ok()
            );
        }
        assert_eq!(
            hub.dialect("one too many", Arc::new(crate::protocol::NoEvents))
                .map(|d| d.name()),
            Err(TooManyDialects)
        );
    }

    fn frames(subscriber: &Subscriber) -> Vec<Value> {
        let (mut out, mut at) = (Vec::new(), Vec::new());
        subscriber.outbox.drain(&mut out, &mut at, 1000);
        out.iter()
            .map(|t| serde_json::from_str(t.as_str()).unwrap_or_default())
            .collect()
    }

    fn tick(symbol: &str, price: f64) -> Event {
        Event {
            topic: Topic::symbol(Channel::MarketData, symbol.into()),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload::Tick(Tick {
                price,
                open: price,
                high: price,
                low: price,
                bid: price,
                ask: price,
                size: 1,
                volume: 1,
                change: 0.0,
                change_percent: 0.0,
                source: "test".into(),
            }),
        }
    }

    fn book(symbol: &str, bid: f64) -> Event {
        let levels = vec![(bid, 1.0)];
        Event {
            topic: Topic::symbol(Channel::Orderbook, symbol.into()),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload::Book(BookUpdate {
                bids: levels.clone(),
                asks: vec![],
                book: Arc::new(Book {
                    bids: levels,
                    asks: vec![],
                }),
            }),
        }
    }

    fn key(symbol: &str) -> Option<TopicKey> {
        Some(TopicKey::Symbol(symbol.into()))
    }

    fn reply() -> Text {
        Text::from(r#"{"type":"subscribed"}"#.to_owned())
    }

    #[test]
    fn sequences_per_topic_and_snapshot_follows_the_reply() {
        let hub = hub(10);
        hub.publish(tick("AAPL", 1.0));
        hub.publish(tick("AAPL", 2.0));
        hub.publish(tick("MSFT", 3.0));
        let s = session(&hub);
        hub.subscribe(&s, Channel::MarketData, key("AAPL"), reply())
            .unwrap();
        hub.publish(tick("AAPL", 4.0));
        let got = frames(&s);
        assert_eq!(got[0]["type"], "subscribed");
        assert_eq!(
            got.len(),
            2,
            "the snapshot and the next tick share one conflated slot"
        );
        assert_eq!(
            (got[1]["seq"].as_u64(), got[1]["price"].as_f64()),
            (Some(3), Some(4.0))
        );
        hub.publish(tick("AAPL", 5.0));
        assert_eq!(frames(&s)[0]["seq"], 4);
        let late = session(&hub);
        hub.subscribe(&late, Channel::MarketData, key("AAPL"), reply())
            .unwrap();
        let got = frames(&late);
        assert_eq!(
            (got[1]["seq"].as_u64(), got[1]["price"].as_f64()),
            (Some(4), Some(5.0)),
            "a new subscriber gets the newest tick"
        );
    }

    #[test]
    fn first_book_event_goes_out_as_a_snapshot() {
        let hub = hub(10);
        let s = session(&hub);
        hub.subscribe(&s, Channel::Orderbook, key("AAPL"), reply())
            .unwrap();
        hub.publish(book("AAPL", 1.0));
        let got = frames(&s);
        assert_eq!(got[1]["type"], "orderbook_snapshot");
        hub.publish(book("AAPL", 2.0));
        assert_eq!(frames(&s)[0]["type"], "orderbook_update");
        hub.publish(book("AAPL", 3.0));
        hub.publish(book("AAPL", 4.0));
        let got = frames(&s);
        assert_eq!(
            (got.len(), got[0]["type"].as_str(), got[0]["seq"].as_u64()),
            (1, Some("orderbook_snapshot"), Some(4)),
            "a conflated update becomes a snapshot"
        );
    }

    #[test]
    fn wildcard_covers_new_symbols_and_counts_once() {
        let hub = hub(1);
        let s = session(&hub);
        hub.subscribe(&s, Channel::MarketData, key("AAPL"), reply())
            .unwrap();
        hub.subscribe(&s, Channel::MarketData, None, reply())
            .unwrap();
        hub.publish(tick("NEW", 1.0));
        hub.publish(tick("AAPL", 1.0));
        let symbols: Vec<Value> = frames(&s)
            .iter()
            .filter(|f| f["type"] == "market_tick")
            .map(|f| f["symbol"].clone())
            .collect();
        assert_eq!(symbols, ["NEW", "AAPL"], "each once");
        assert_eq!(hub.subscriber_counts()[0], (Channel::MarketData, 1));
        let other = session(&hub);
        assert_eq!(
            hub.subscribe(&other, Channel::MarketData, key("AAPL"), reply()),
            Err(HubError::ChannelFull {
                channel: Channel::MarketData,
                max: 1
            })
        );
        hub.unregister(s.id);
        assert!(
            hub.subscribe(&other, Channel::MarketData, key("AAPL"), reply())
                .is_ok(),
            "unregister frees the place"
        );
    }

    #[test]
    fn unsubscribe_drops_queued_frames_of_the_topic() {
        let hub = hub(10);
        let s = session(&hub);
        hub.subscribe(&s, Channel::MarketData, key("AAPL"), reply())
            .unwrap();
        hub.subscribe(&s, Channel::MarketData, key("MSFT"), reply())
            .unwrap();
        frames(&s);
        hub.publish(tick("AAPL", 1.0));
        hub.publish(tick("MSFT", 1.0));
        assert!(hub.unsubscribe(&s, Channel::MarketData, key("AAPL"), reply()));
        assert!(
            !hub.unsubscribe(&s, Channel::MarketData, key("AAPL"), reply()),
            "only once"
        );
        let symbols: Vec<Value> = frames(&s)
            .iter()
            .filter_map(|f| f.get("symbol").cloned())
            .collect();
        assert_eq!(symbols, ["MSFT"]);
    }

    #[test]
    fn private_topics_are_per_user() {
        let hub = hub(10);
        let (a, b) = (session(&hub), session(&hub));
        hub.subscribe(
            &a,
            Channel::Account,
            Some(TopicKey::User("a".into())),
            reply(),
        )
        .unwrap();
        hub.subscribe(
            &b,
            Channel::Account,
            Some(TopicKey::User("b".into())),
            reply(),
        )
        .unwrap();
        assert_eq!(
            hub.private_users()
                .into_iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        hub.publish(Event {
            topic: Topic::user(Channel::Account, "a".into()),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload::Account(crate::event::AccountUpdate {
                currency: "USD".into(),
                balance: 1.0,
                available: 1.0,
                equity: 1.0,
            }),
        });
        assert_eq!(
            frames(&a).last().map(|f| f["user"].clone()),
            Some(Value::from("a"))
        );
        assert_eq!(frames(&b).len(), 1, "b got only its reply");
    }
}
