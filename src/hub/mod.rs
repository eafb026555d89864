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

pub use outbox::{ConflateKey, Delivery, Drained, LazyFrame, Outbox, OutboxLimits, Pushed};
use parking_lot::Mutex;
pub use symbols::{InvalidSymbol, Symbols};
use tokio::time::Instant;

use crate::{
    config::ChannelsConfig,
    event::{Event, Payload, TopicKey, UserId},
    metrics::Stats,
    protocol::{CloseReason, Text, v1},
    spec::{CHANNEL_COUNT, messages::Channel},
};

/// A connection's id, unique within one gateway process.
pub type SessionId = u64;

/// A connection as the hub sees it: where to push its frames.
#[derive(Clone)]
pub struct Subscriber {
    pub id: SessionId,
    pub outbox: Arc<Outbox>,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("channel {channel} is full ({max} subscribers); try again later")]
    ChannelFull { channel: Channel, max: usize },
}

pub struct Hub {
    channels: [ChannelHub; CHANNEL_COUNT],
    symbols: Symbols,
    stats: Arc<Stats>,
    sessions: Mutex<HashMap<SessionId, Arc<Outbox>>>,
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
}

#[derive(Default)]
struct TopicState {
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
            stats,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        }
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Registers a connection; it receives nothing until it subscribes.
    pub fn register(&self, outbox: Arc<Outbox>) -> Subscriber {
        let id = self.next_session.fetch_add(1, Relaxed);
        self.sessions.lock().insert(id, outbox.clone());
        Subscriber { id, outbox }
    }

    /// Forgets a connection and all its subscriptions.
    pub fn unregister(&self, id: SessionId) {
        self.sessions.lock().remove(&id);
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
            topics, wildcard, ..
        } = &mut *inner;
        let topic = topics.entry(event.topic.key.clone()).or_default();
        topic.seq += 1;
        let seq = topic.seq;
        let event = Arc::new(event);
        if keeps_last(channel) {
            topic.last = Some((event.clone(), seq));
        }
        let wildcard: &[Subscriber] = if channel.per_symbol() { wildcard } else { &[] };
        if topic.subscribers.is_empty() && wildcard.is_empty() {
            return;
        }
        let frame = v1::encode_event(&event, seq);
        let resync = (channel == Channel::Orderbook).then(|| {
            let event = event.clone();
            Arc::new(LazyFrame::new(move || {
                v1::encode_book_snapshot(&event, seq).unwrap_or_default()
            }))
        });
        let key = channel
            .conflates()
            .then(|| (event.topic.key.clone(), discriminator(&event)));
        let mut conflated = 0;
        for subscriber in topic.subscribers.iter().chain(wildcard) {
            let pushed = subscriber.outbox.push(Delivery {
                lane: channel.index(),
                key: key.clone(),
                frame: &frame,
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
        let hub = &self.channels[channel.index()];
        let mut inner = hub.inner.lock();
        let id = subscriber.id;
        if !inner.members.contains_key(&id) && inner.members.len() >= hub.max_subscribers {
            return Err(HubError::ChannelFull {
                channel,
                max: hub.max_subscribers,
            });
        }
        let ChannelInner {
            topics,
            wildcard,
            members,
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
                subscriber.outbox.push_control(reply);
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
                    subscriber.outbox.push_control(reply);
                    return Ok(false);
                }
                let topic = topics.entry(key).or_default();
                let added = !topic.subscribers.iter().any(|s| s.id == id);
                if added {
                    topic.subscribers.push(subscriber.clone());
                    *members.entry(id).or_default() += 1;
                }
                subscriber.outbox.push_control(reply);
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
                        topic.subscribers.len() != before
                    }
                    None => false,
                };
                if removed {
                    subscriber.outbox.purge(lane, |queued| *queued == key);
                }
                removed
            }
        };
        if removed {
            match inner.members.get_mut(&id) {
                Some(count) if *count > 1 => *count -= 1,
                _ => {
                    inner.members.remove(&id);
                }
            }
            subscriber.outbox.push_control(reply);
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

    /// Queues `frame` (if any) to every connection, then closes each with
    /// `reason`. Used at shutdown.
    pub fn close_all(&self, frame: Option<Text>, reason: CloseReason) {
        let sessions: Vec<Arc<Outbox>> = self.sessions.lock().values().cloned().collect();
        for outbox in sessions {
            if let Some(frame) = &frame {
                outbox.push_control(frame.clone());
            }
            outbox.close(reason);
        }
    }

    /// Assigns the event its topic's next sequence number and returns its
    /// frame without delivering it (for frames every connection gets, such
    /// as the shutdown notice).
    pub fn broadcast_frame(&self, event: Event) -> Text {
        let channel = event.topic.channel;
        let mut inner = self.channels[channel.index()].inner.lock();
        let topic = inner.topics.entry(event.topic.key.clone()).or_default();
        topic.seq += 1;
        v1::encode_event(&event, topic.seq)
    }
}

/// Queues the topic's current state for a new subscriber.
fn send_snapshot(subscriber: &Subscriber, channel: Channel, topic: &TopicState) {
    let Some((event, seq)) = &topic.last else {
        return;
    };
    let frame = match channel {
        Channel::Orderbook => v1::encode_book_snapshot(event, *seq),
        _ => Some(v1::encode_event(event, *seq)),
    };
    let Some(frame) = frame else {
        return;
    };
    subscriber.outbox.push(Delivery {
        lane: channel.index(),
        key: Some((event.topic.key.clone(), discriminator(event))),
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
