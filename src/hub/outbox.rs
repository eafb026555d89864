//! The bounded outbound queue of one connection.
//!
//! The hub pushes shared, already-encoded frames; the connection's writer
//! drains them. Nothing here awaits, so the hub never waits on a socket.
//!
//! Three kinds of queue, each with a stated bound and overflow policy:
//! - **control** (welcome, replies, errors): FIFO, at most `control` frames;
//!   overflow closes the connection with 4000 (slow consumer).
//! - **conflating lanes** (public channels): one entry per topic key. A newer
//!   frame of a queued key replaces the queued one in place (counted as
//!   conflated), so a lane never holds more than `conflation_slots` entries;
//!   past that, the connection is closed with 4000. A lane without a rate cap
//!   (the stream dialects) first queues every frame in order, up to `backlog`
//!   frames, and conflates only past that: a reader a few milliseconds late
//!   loses nothing, a reader that stays behind gets the newest values.
//! - **FIFO lanes** (private channels): never conflated or dropped; past
//!   `private` frames the connection is closed with 4000, so the client knows
//!   to resynchronise instead of silently missing an event.
//!
//! Each lane has its own rate limiter (the channel's frames per second); the
//! writer asks `drain` for what may be sent now and when to come back.

use std::{
    collections::VecDeque,
    num::NonZeroU32,
    sync::{Arc, OnceLock},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::{sync::Notify, time::Instant};

use crate::{
    protocol::{CloseReason, Text, close::SLOW_CONSUMER},
    spec::CHANNEL_COUNT,
};

/// A lane rate that means "no rate limit": the socket and conflation are the
/// only bounds.
pub const UNCAPPED: u32 = u32::MAX;

/// A topic's number within its channel, given by the hub when the topic is
/// first seen and never reused. Queues key frames by it: it is copied and
/// hashed for the price of an integer, where a symbol would be a shared
/// reference count touched by every subscriber of every event.
pub type TopicId = u32;

/// What identifies a conflatable frame within its lane: the topic plus a
/// discriminator for frames that must not replace each other (a candle's
/// start time, so a closed candle is never replaced by the next one).
pub type ConflateKey = (TopicId, i64);

/// A frame encoded on demand at most once, shared by every connection that
/// needs it (an order book snapshot that replaces a conflated update).
pub struct LazyFrame {
    cell: OnceLock<Text>,
    make: Box<dyn Fn() -> Text + Send + Sync>,
}

impl LazyFrame {
    pub fn new(make: impl Fn() -> Text + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            make: Box::new(make),
        }
    }

    pub fn get(&self) -> Text {
        self.cell.get_or_init(|| (self.make)()).clone()
    }
}

/// A data frame on its way to one connection.
pub struct Delivery<'a> {
    /// The channel's lane.
    pub lane: usize,
    /// `Some` on conflating lanes.
    pub key: Option<ConflateKey>,
    pub frame: &'a Text,
    /// What replaces a queued frame of the same key instead of `frame`.
    pub resync: Option<&'a Arc<LazyFrame>>,
    /// When the event entered the hub (for the latency histogram).
    pub published: Instant,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// It replaced a queued frame of the same topic.
    Conflated,
    /// The connection is closed (or was just closed because a bound was hit);
    /// the frame was not queued.
    Closed,
}

/// Bounds and rates of one connection's queues.
#[derive(Clone, Debug)]
pub struct OutboxLimits {
    pub control: usize,
    pub private: usize,
    pub conflation_slots: usize,
    /// Frames an uncapped conflating lane queues in order before it starts
    /// to conflate.
    pub backlog: usize,
    /// Frames per second of each lane, by channel index (`UNCAPPED` for
    /// none).
    pub rates: [u32; CHANNEL_COUNT],
    /// Whether each lane conflates, by channel index.
    pub conflates: [bool; CHANNEL_COUNT],
}

pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    limits: Arc<OutboxLimits>,
}

struct State {
    control: VecDeque<Text>,
    lanes: [Option<Box<Lane>>; CHANNEL_COUNT],
    /// Lane to serve first on the next drain, so no channel starves another.
    next_lane: usize,
    closed: Option<CloseReason>,
    /// Frames discarded because the connection closed while they were queued.
    discarded: u64,
}

struct Lane {
    order: VecDeque<Entry>,
    slots: FxHashMap<ConflateKey, (Text, Instant)>,
    limiter: Option<DefaultDirectRateLimiter>,
}

enum Entry {
    /// A frame sent as it is; on a conflating lane, with its key (so an
    /// unsubscribe can purge it).
    Frame(Option<ConflateKey>, Text, Instant),
    Slot(ConflateKey),
}

/// The result of one `drain`.
#[derive(Debug, Default)]
pub struct Drained {
    /// When rate-limited frames remain: how long until the next may go.
    pub retry_after: Option<Duration>,
    /// Set once the connection must close; every frame to send before the
    /// close frame has been returned.
    pub close: Option<CloseReason>,
}

impl Outbox {
    pub fn new(limits: Arc<OutboxLimits>) -> Self {
        Self {
            state: Mutex::new(State {
                control: VecDeque::new(),
                lanes: Default::default(),
                next_lane: 0,
                closed: None,
                discarded: 0,
            }),
            notify: Notify::new(),
            limits,
        }
    }

    /// Queues a control frame (welcome, reply, error). Returns false when the
    /// connection is closed, or was closed now because the queue was full.
    pub fn push_control(&self, frame: Text) -> bool {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return false;
        }
        if state.control.len() >= self.limits.control {
            state.close(SLOW_CONSUMER);
            drop(state);
            self.notify.notify_one();
            return false;
        }
        state.control.push_back(frame);
        drop(state);
        self.notify.notify_one();
        true
    }

    /// Queues a data frame on its channel's lane.
    pub fn push(&self, delivery: Delivery<'_>) -> Pushed {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return Pushed::Closed;
        }
        let limits = &self.limits;
        let lane = state.lanes[delivery.lane]
            .get_or_insert_with(|| Box::new(Lane::new(limits.rates[delivery.lane].max(1))));
        let pushed = match delivery.key {
            // In order while the backlog is short and nothing is conflated
            // yet (a slot queued earlier must stay the newest of its key).
            Some(key)
                if limits.conflates[delivery.lane]
                    && lane.limiter.is_none()
                    && lane.slots.is_empty()
                    && lane.order.len() < limits.backlog =>
            {
                lane.order.push_back(Entry::Frame(
                    Some(key),
                    delivery.frame.clone(),
                    delivery.published,
                ));
                Pushed::Queued
            }
            Some(key) if limits.conflates[delivery.lane] => {
                if let Some(slot) = lane.slots.get_mut(&key) {
                    let frame = match delivery.resync {
                        Some(resync) => resync.get(),
                        None => delivery.frame.clone(),
                    };
                    // Keep the older publish time: the latency a reader sees
                    // counts from the first event it has not yet received.
                    slot.0 = frame;
                    Pushed::Conflated
                } else if lane.slots.len() >= limits.conflation_slots {
                    Pushed::Closed
                } else {
                    lane.slots
                        .insert(key, (delivery.frame.clone(), delivery.published));
                    lane.order.push_back(Entry::Slot(key));
                    Pushed::Queued
                }
            }
            _ => {
                if lane.order.len() >= limits.private {
                    Pushed::Closed
                } else {
                    lane.order.push_back(Entry::Frame(
                        None,
                        delivery.frame.clone(),
                        delivery.published,
                    ));
                    Pushed::Queued
                }
            }
        };
        if pushed == Pushed::Closed {
            state.close(SLOW_CONSUMER);
        }
        drop(state);
        if pushed != Pushed::Conflated {
            self.notify.notify_one();
        }
        pushed
    }

    /// Drops queued frames of `lane` whose topic `remove` selects (after an
    /// unsubscribe, so no frame of the topic follows `unsubscribed`).
    pub fn purge(&self, lane: usize, remove: impl Fn(TopicId) -> bool) {
        let mut state = self.state.lock();
        let Some(lane) = state.lanes[lane].as_mut() else {
            return;
        };
        lane.slots.retain(|(topic, _), _| !remove(*topic));
        let slots = &lane.slots;
        lane.order.retain(|entry| match entry {
            Entry::Slot(key) => slots.contains_key(key),
            Entry::Frame(Some((topic, _)), ..) => !remove(*topic),
            Entry::Frame(None, ..) => true,
        });
    }

    /// Drops every queued frame of `lane`.
    pub fn clear_lane(&self, lane: usize) {
        self.state.lock().lanes[lane] = None;
    }

    /// Asks the writer to close the connection after the control frames
    /// already queued. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        self.state.lock().close(reason);
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Frames discarded so far because the connection closed with them queued.
    pub fn discarded(&self) -> u64 {
        self.state.lock().discarded
    }

    /// Waits until something was pushed or the connection was closed.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Moves what may be sent now into `out` (at most `max` frames), with the
    /// publish time of each data frame in `published`.
    pub fn drain(&self, out: &mut Vec<Text>, published: &mut Vec<Instant>, max: usize) -> Drained {
        let mut state = self.state.lock();
        let mut drained = Drained::default();
        while out.len() < max {
            let Some(frame) = state.control.pop_front() else {
                break;
            };
            out.push(frame);
        }
        if let Some(reason) = state.closed {
            if state.control.is_empty() {
                drained.close = Some(reason);
            }
            return drained;
        }
        let start = state.next_lane;
        for step in 0..CHANNEL_COUNT {
            if out.len() >= max {
                break;
            }
            let index = (start + step) % CHANNEL_COUNT;
            let Some(lane) = state.lanes[index].as_mut() else {
                continue;
            };
            while out.len() < max && !lane.order.is_empty() {
                let refused = lane.limiter.as_ref().and_then(|limiter| {
                    let not_until = limiter.check().err()?;
                    Some(not_until.wait_time_from(limiter.clock().now()))
                });
                if let Some(wait) = refused {
                    drained.retry_after = Some(match drained.retry_after {
                        Some(current) => current.min(wait),
                        None => wait,
                    });
                    break;
                }
                let (frame, at) = match lane.order.pop_front() {
                    Some(Entry::Frame(_, frame, at)) => (frame, at),
                    Some(Entry::Slot(key)) => match lane.slots.remove(&key) {
                        Some(slot) => slot,
                        None => continue,
                    },
                    None => break,
                };
                out.push(frame);
                published.push(at);
            }
        }
        state.next_lane = (start + 1) % CHANNEL_COUNT;
        drained
    }
}

impl State {
    fn close(&mut self, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        let mut discarded = 0;
        for lane in self.lanes.iter_mut().filter_map(Option::take) {
            discarded += lane.order.len() as u64;
        }
        self.discarded += discarded;
    }
}

impl Lane {
    fn new(rate: u32) -> Self {
        Self {
            order: VecDeque::new(),
            slots: FxHashMap::default(),
            limiter: (rate != UNCAPPED).then(|| RateLimiter::direct(lane_quota(rate))),
        }
    }
}

/// The quota of a lane capped at `rate` frames per second: bursts of a tenth
/// of the rate (a snapshot of several symbols goes out at once), and cells
/// that come back slowly enough that no one-second window ever holds more
/// than `rate` frames. With a burst of B, a window holds B frames plus one
/// per cell replenished within it, so cells come back `rate - B + 1` times a
/// second.
fn lane_quota(rate: u32) -> Quota {
    let rate = rate.max(1);
    let burst = (rate / 10).max(1);
    let period = Duration::from_secs(1) / (rate - burst + 1);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32) -> Arc<OutboxLimits> {
        Arc::new(OutboxLimits {
            control: 8,
            private: 3,
            conflation_slots: 2,
            backlog: 4,
            rates: [rate; CHANNEL_COUNT],
            conflates: [
                true, true, true, true, true, true, false, false, false, false,
            ],
        })
    }

    fn text(s: &str) -> Text {
        Text::from(s.to_owned())
    }

    /// A topic id per test symbol, as the hub would give them.
    fn key(symbol: &str) -> Option<ConflateKey> {
        let id = ["AAPL", "MSFT", "A", "B", "C", "user"]
            .iter()
            .position(|s| *s == symbol)
            .expect("a test symbol");
        Some((id as TopicId, 0))
    }

    fn push(outbox: &Outbox, lane: usize, key: Option<ConflateKey>, frame: &str) -> Pushed {
        outbox.push(Delivery {
            lane,
            key,
            frame: &text(frame),
            resync: None,
            published: Instant::now(),
        })
    }

    fn drain_all(outbox: &Outbox) -> (Vec<String>, Drained) {
        let (mut out, mut at) = (Vec::new(), Vec::new());
        let drained = outbox.drain(&mut out, &mut at, 1000);
        (out.iter().map(|t| t.as_str().to_owned()).collect(), drained)
    }

    #[test]
    fn newer_frame_replaces_queued_one_of_same_topic() {
        let outbox = Outbox::new(limits(1000));
        assert_eq!(push(&outbox, 0, key("AAPL"), "a1"), Pushed::Queued);
        assert_eq!(push(&outbox, 0, key("MSFT"), "m1"), Pushed::Queued);
        assert_eq!(push(&outbox, 0, key("AAPL"), "a2"), Pushed::Conflated);
        let (frames, drained) = drain_all(&outbox);
        assert_eq!(frames, ["a2", "m1"]);
        assert!(drained.close.is_none());
    }

    #[test]
    fn resync_frame_replaces_conflated_update() {
        let outbox = Outbox::new(limits(1000));
        push(&outbox, 1, key("AAPL"), "update-1");
        let resync = Arc::new(LazyFrame::new(|| Text::from("snapshot-2".to_owned())));
        let pushed = outbox.push(Delivery {
            lane: 1,
            key: key("AAPL"),
            frame: &text("update-2"),
            resync: Some(&resync),
            published: Instant::now(),
        });
        assert_eq!(pushed, Pushed::Conflated);
        assert_eq!(drain_all(&outbox).0, ["snapshot-2"]);
    }

    #[test]
    fn conflation_slots_bound_closes_slow_consumer() {
        let outbox = Outbox::new(limits(1000));
        assert_eq!(push(&outbox, 0, key("A"), "1"), Pushed::Queued);
        assert_eq!(push(&outbox, 0, key("B"), "2"), Pushed::Queued);
        assert_eq!(push(&outbox, 0, key("C"), "3"), Pushed::Closed);
        let (frames, drained) = drain_all(&outbox);
        assert!(frames.is_empty());
        assert_eq!(drained.close, Some(SLOW_CONSUMER));
        assert_eq!(outbox.discarded(), 2);
    }

    #[test]
    fn private_frames_are_never_conflated_and_overflow_closes() {
        let outbox = Outbox::new(limits(1000));
        for frame in ["p1", "p2", "p3"] {
            assert_eq!(push(&outbox, 6, key("user"), frame), Pushed::Queued);
        }
        assert_eq!(push(&outbox, 6, key("user"), "p4"), Pushed::Closed);
        assert!(outbox.is_closed());
    }

    #[test]
    fn private_frames_keep_order() {
        let outbox = Outbox::new(limits(1000));
        for frame in ["p1", "p2", "p3"] {
            push(&outbox, 6, None, frame);
        }
        assert_eq!(drain_all(&outbox).0, ["p1", "p2", "p3"]);
    }

    #[test]
    fn control_frames_go_first_and_overflow_closes() {
        let outbox = Outbox::new(limits(1000));
        push(&outbox, 0, key("A"), "data");
        assert!(outbox.push_control(text("reply")));
        assert_eq!(drain_all(&outbox).0, ["reply", "data"]);
        for _ in 0..8 {
            assert!(outbox.push_control(text("c")));
        }
        assert!(!outbox.push_control(text("one too many")));
        let (frames, drained) = drain_all(&outbox);
        assert_eq!(
            frames.len(),
            8,
            "queued control frames still go out before the close"
        );
        assert_eq!(drained.close, Some(SLOW_CONSUMER));
    }

    #[test]
    fn rate_limit_defers_frames_and_says_when() {
        // 10 frames/s with a burst of 1: one frame now, the next in ~100 ms.
        let outbox = Outbox::new(limits(10));
        push(&outbox, 6, None, "p1");
        push(&outbox, 6, None, "p2");
        let (frames, drained) = drain_all(&outbox);
        assert_eq!(frames, ["p1"]);
        let wait = drained.retry_after.expect("a frame is waiting");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
    }

    #[test]
    fn no_one_second_window_exceeds_the_lane_rate() {
        use governor::clock::FakeRelativeClock;
        for rate in [1, 7, 10, 100, 250, 1000] {
            // A reader that takes every frame the limiter allows, checked
            // every 100 us for 10 s.
            let clock = FakeRelativeClock::default();
            let limiter = RateLimiter::direct_with_clock(lane_quota(rate), clock.clone());
            let step = Duration::from_micros(100);
            let mut sent = Vec::new();
            for tick in 0..100_000u32 {
                while limiter.check().is_ok() {
                    sent.push(step * tick);
                }
                clock.advance(step);
            }
            let busiest = sent
                .iter()
                .enumerate()
                .map(|(i, start)| {
                    sent[i..]
                        .iter()
                        .take_while(|t| **t < *start + Duration::from_secs(1))
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert_eq!(busiest, rate as usize, "rate {rate}: the busiest window");
            assert!(
                sent.len() as f64 >= 0.85 * f64::from(rate) * 10.0,
                "rate {rate}: {} frames in 10 s",
                sent.len()
            );
        }
    }

    #[test]
    fn uncapped_lane_queues_in_order_then_conflates() {
        let mut limits = (*limits(1000)).clone();
        limits.rates = [UNCAPPED; CHANNEL_COUNT];
        limits.conflation_slots = 8;
        let outbox = Outbox::new(Arc::new(limits));
        for frame in ["a1", "m1", "a2", "m2"] {
            let symbol = if frame.starts_with('a') {
                "AAPL"
            } else {
                "MSFT"
            };
            assert_eq!(push(&outbox, 0, key(symbol), frame), Pushed::Queued);
        }
        // The backlog (4) is full: from here on, one slot per topic.
        assert_eq!(push(&outbox, 0, key("AAPL"), "a3"), Pushed::Queued);
        assert_eq!(push(&outbox, 0, key("AAPL"), "a4"), Pushed::Conflated);
        assert_eq!(push(&outbox, 0, key("MSFT"), "m3"), Pushed::Queued);
        assert_eq!(
            drain_all(&outbox).0,
            ["a1", "m1", "a2", "m2", "a4", "m3"],
            "every frame of the backlog, then the newest of each topic"
        );
        // Drained: in order again, and an unsubscribe purges queued frames.
        push(&outbox, 0, key("AAPL"), "a5");
        push(&outbox, 0, key("MSFT"), "m4");
        outbox.purge(0, |topic| Some((topic, 0)) == key("AAPL"));
        assert_eq!(drain_all(&outbox).0, ["m4"]);
    }

    #[test]
    fn purge_removes_only_selected_topics() {
        let outbox = Outbox::new(limits(1000));
        push(&outbox, 0, key("AAPL"), "a");
        push(&outbox, 0, key("MSFT"), "m");
        outbox.purge(0, |topic| Some((topic, 0)) == key("AAPL"));
        assert_eq!(drain_all(&outbox).0, ["m"]);
    }
}
