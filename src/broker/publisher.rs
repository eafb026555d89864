//! The publisher: `Relay` puts every local event, encoded and tagged with
//! this instance's origin, on a bounded queue without waiting; one task
//! writes the queue to Redis in pipelined batches (`PUBLISH`, or `SPUBLISH`
//! per shard on a cluster) and the latest quotes to their hash,
//! reconnecting with backoff. What cannot be published is dropped and
//! counted.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Broker, codec,
    connection::{CommandConn, reconnect_backoff},
};
use crate::{event::Event, sources::Relay};

/// Events queued for publishing. The relay never waits for room: beyond
/// the bound (and while Redis is down) an event is not relayed, and is
/// counted in `relay_dropped` and `tickgate_redis_relay_dropped_total`;
/// local delivery is unaffected.
pub(super) const QUEUE: usize = 65_536;

/// Most messages one pipeline carries.
const BATCH: usize = 1024;

/// How often the latest-quote cache is written.
const LATEST_EVERY: Duration = Duration::from_millis(250);

impl CommandConn {
    /// Publishes a batch: one pipeline on one Redis; on a cluster, one
    /// `SPUBLISH` per message, all in flight at once (each goes to the
    /// shard of its channel).
    async fn publish(&mut self, batch: &[(String, String)]) -> redis::RedisResult<()> {
        match self {
            CommandConn::Single(conn) => {
                let mut pipe = redis::pipe();
                for (channel, payload) in batch {
                    pipe.publish(channel, payload).ignore();
                }
                pipe.query_async(conn).await
            }
            CommandConn::Cluster(_, owners) => {
                // One pipeline of SPUBLISH per channel, to its shard.
                let mut pipes: HashMap<&str, redis::Pipeline> = HashMap::new();
                for (channel, payload) in batch {
                    pipes
                        .entry(channel.as_str())
                        .or_insert_with(redis::pipe)
                        .cmd("SPUBLISH")
                        .arg(channel)
                        .arg(payload)
                        .ignore();
                }
                for (channel, pipe) in pipes {
                    let conn = owners.get_mut(channel).ok_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::Client, "no shard for channel"))
                    })?;
                    let _: () = pipe.query_async(conn).await?;
                }
                Ok(())
            }
        }
    }
}

impl Broker {
    /// Writes queued events to Redis in pipelined batches, and the latest
    /// quotes to their hash, reconnecting with backoff.
    pub(super) async fn publish_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, String)>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = reconnect_backoff();
        let mut batch: Vec<(String, String)> = Vec::with_capacity(BATCH);
        loop {
            let mut conn = tokio::select! {
                () = shutdown.cancelled() => return,
                conn = self.command_conn() => match conn {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::debug!(%error, "redis publisher cannot connect");
                        // What was queued meanwhile is stale for the others.
                        self.drop_queued(&mut rx);
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff.next_delay()) => continue,
                        }
                    }
                },
            };
            backoff.reset();
            let mut latest_timer = tokio::time::interval(LATEST_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = latest_timer.tick() => {
                        let fields: Vec<(String, String)> = self
                            .latest
                            .lock()
                            .drain()
                            .map(|(symbol, quote)| (symbol.to_string(), quote))
                            .collect();
                        if fields.is_empty() {
                            continue;
                        }
                        let result: redis::RedisResult<()> = conn
                            .query(redis::cmd("HSET").arg(&self.names.latest).arg(fields))
                            .await;
                        if let Err(error) = result {
                            tracing::debug!(%error, "latest-quote cache write failed");
                            break;
                        }
                    }
                    count = rx.recv_many(&mut batch, BATCH) => {
                        if count == 0 {
                            return;
                        }
                        match conn.publish(&batch).await {
                            Ok(()) => {
                                self.stats.published.fetch_add(count as u64, Ordering::Relaxed);
                                batch.clear();
                            }
                            Err(error) => {
                                tracing::debug!(%error, "redis publish failed");
                                self.count_dropped(batch.len() as u64);
                                batch.clear();
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    fn drop_queued(&self, rx: &mut mpsc::Receiver<(String, String)>) {
        let mut dropped = 0;
        while rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            self.count_dropped(dropped);
        }
    }

    fn count_dropped(&self, events: u64) {
        self.stats
            .relay_dropped
            .fetch_add(events, Ordering::Relaxed);
        metrics::counter!("tickgate_redis_relay_dropped_total").increment(events);
    }
}

impl Relay for Broker {
    fn relay(&self, event: &Event) {
        let Some((channel, payload)) = codec::encode(event, &self.origin, &self.names) else {
            return;
        };
        if channel == self.names.quotes
            && let crate::event::TopicKey::Symbol(symbol) = &event.topic.key
        {
            self.latest.lock().insert(symbol.clone(), payload.clone());
        }
        if !self.connected() {
            self.count_dropped(1);
            return;
        }
        if self.outgoing.try_send((channel, payload)).is_err() {
            self.count_dropped(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Payload, Tick, Topic},
        spec::messages::Channel,
    };

    fn tick(n: usize) -> Event {
        let price = 100.0 + n as f64 / 1000.0;
        Event {
            topic: Topic::symbol(Channel::MarketData, "AAPL".into()),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload::Tick(Tick {
                price,
                open: 100.0,
                high: price,
                low: 100.0,
                bid: price,
                ask: price,
                size: 1,
                volume: n as u64,
                change: 0.0,
                change_percent: 0.0,
                source: "test".into(),
            }),
        }
    }

    /// No task drains the queue here, so every relay past `QUEUE` finds it
    /// full: it returns at once, and the event is counted as dropped.
    #[test]
    fn relays_past_the_bound_are_dropped_and_counted() {
        let broker = super::super::test_broker();
        // While disconnected nothing is queued: each event is a drop.
        broker.relay(&tick(0));
        assert_eq!(broker.stats().relay_dropped(), 1);
        assert_eq!(broker.outgoing.capacity(), QUEUE);

        broker.set_connected(true);
        const PAST: usize = 5;
        for n in 0..QUEUE + PAST {
            broker.relay(&tick(n));
        }
        assert_eq!(broker.outgoing.capacity(), 0, "the queue is full");
        assert_eq!(broker.outgoing.max_capacity(), QUEUE);
        assert_eq!(broker.stats().relay_dropped(), 1 + PAST as u64);
        assert_eq!(broker.stats().published(), 0);
    }
}
