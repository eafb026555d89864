//! The subscriber: one task subscribes to every tickgate channel (`SUBSCRIBE`,
//! or `SSUBSCRIBE` on each channel's shard on a cluster), skips the messages
//! of its own origin, validates the others through `codec`, and hands them
//! to the core through `Ingest` (the relay-less `local_only` one). It seeds
//! the hub from the latest-quote hash on every (re)subscribe and
//! resubscribes with backoff after a loss.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Broker,
    codec::{self, Inbound, Invalid},
    connection::{Backend, owner, reconnect_backoff},
};
use crate::sources::Ingest;

/// `Broker::last_invalid_log` before the first invalid message is logged.
pub(super) const NEVER_LOGGED: u64 = u64::MAX;

/// Least time between two log lines about invalid messages.
const INVALID_LOG_EVERY_MS: u64 = 1000;

impl Broker {
    /// Subscribes to every channel and feeds what arrives to the core,
    /// resubscribing with backoff after a loss.
    pub(super) async fn subscribe_loop(
        self: Arc<Self>,
        ingest: Ingest,
        shutdown: CancellationToken,
    ) {
        let mut backoff = reconnect_backoff();
        let mut was_up = false;
        loop {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.subscribe() => result,
            };
            match subscribed {
                Ok(mut messages) => {
                    if was_up {
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("tickgate_redis_reconnects_total").increment(1);
                    }
                    was_up = true;
                    backoff.reset();
                    self.set_connected(true);
                    tracing::info!(origin = %self.origin, "subscribed to Redis");
                    self.seed_latest(&ingest).await;
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                self.set_connected(false);
                                return;
                            }
                            message = messages.next() => match message {
                                Some(message) => {
                                    let channel = message.get_channel_name().to_owned();
                                    self.handle(&channel, message.get_payload_bytes(), &ingest);
                                }
                                None => break,
                            },
                        }
                    }
                    self.set_connected(false);
                    tracing::warn!(
                        "lost the Redis subscription; local sources keep serving; reconnecting"
                    );
                }
                Err(error) => {
                    self.set_connected(false);
                    tracing::debug!(%error, "cannot subscribe to Redis");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Subscribes to every channel; the stream ends when the connection is
    /// lost.
    async fn subscribe(
        &self,
    ) -> redis::RedisResult<futures_util::stream::BoxStream<'static, redis::Msg>> {
        let channels = self.names.channels();
        match &self.backend {
            Backend::Single(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channels[..]).await?;
                Ok(pubsub.into_on_message().boxed())
            }
            Backend::Cluster(nodes) => {
                // Each channel is served by the shard that owns its slot:
                // one RESP3 connection to that node per shard, SSUBSCRIBE
                // there, messages as pushes. A lost connection, or a slot
                // moving away (`sunsubscribe` from the server), ends the
                // stream and the loop resubscribes from fresh slots.
                let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                    .get_async_connection()
                    .await?;
                let (tx, rx) = mpsc::unbounded_channel::<redis::PushInfo>();
                let mut connections = Vec::new();
                // One connection per channel: each carries exactly one
                // SSUBSCRIBE, so its confirmation cannot be mistaken for
                // another command's reply.
                for channel in channels {
                    let node = owner(&mut conn, channel).await?;
                    let mut info = redis::IntoConnectionInfo::into_connection_info(node.as_str())?;
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    info = info.set_redis_settings(settings);
                    let client = redis::Client::open(info)?;
                    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx.clone());
                    let mut node_conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    let _: redis::Value = redis::cmd("SSUBSCRIBE")
                        .arg(channel)
                        .query_async(&mut node_conn)
                        .await?;
                    connections.push(node_conn);
                }
                drop(tx);
                let stream = futures_util::stream::unfold(
                    (rx, connections),
                    |(mut rx, connections)| async move {
                        loop {
                            let push = rx.recv().await?;
                            match push.kind {
                                redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => {
                                    return None;
                                }
                                redis::PushKind::SMessage => {
                                    if let Some(message) = redis::Msg::from_push_info(push) {
                                        return Some((message, (rx, connections)));
                                    }
                                }
                                _ => {}
                            }
                        }
                    },
                );
                Ok(stream.boxed())
            }
        }
    }

    /// Gives the hub the cached latest quote of every ticker it has none of,
    /// so a new subscriber gets the current value at once.
    async fn seed_latest(&self, ingest: &Ingest) {
        let cached: redis::RedisResult<HashMap<String, Vec<u8>>> = async {
            let mut conn = self.command_conn().await?;
            conn.query(redis::cmd("HGETALL").arg(&self.names.latest))
                .await
        }
        .await;
        let cached = match cached {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(%error, "cannot read the latest-quote cache");
                return;
            }
        };
        let mut seeded = 0;
        for payload in cached.values() {
            if let Ok(Inbound::Quote {
                symbol, at, tick, ..
            }) = codec::decode(&self.names.quotes, payload, &self.names)
                && let Ok(symbol) = ingest.symbol(&symbol)
                && ingest.seed_latest(&symbol, at, tick)
            {
                seeded += 1;
            }
        }
        if seeded > 0 {
            tracing::info!(seeded, "latest quotes seeded from the Redis cache");
        }
    }

    /// Validates one message and feeds it to the core.
    fn handle(&self, channel: &str, payload: &[u8], ingest: &Ingest) {
        let inbound = match codec::decode(channel, payload, &self.names) {
            Ok(inbound) => inbound,
            Err(invalid) => return self.invalid(channel, &invalid),
        };
        if inbound.origin() == Some(self.origin.as_str()) {
            self.stats.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let result = match inbound {
            Inbound::Quote {
                symbol,
                at,
                tick,
                json,
                ..
            } => ingest.symbol(&symbol).map(|symbol| {
                self.latest.lock().insert(symbol.clone(), json);
                ingest.tick(&symbol, at, tick);
            }),
            Inbound::Trade {
                symbol, at, trade, ..
            } => ingest
                .symbol(&symbol)
                .map(|symbol| ingest.trade(&symbol, at, trade)),
            Inbound::Book {
                symbol,
                at,
                snapshot,
                bids,
                asks,
                ..
            } => ingest.symbol(&symbol).map(|symbol| {
                let update = {
                    let mut books = self.books.lock();
                    let book = books.entry(symbol.clone()).or_default();
                    codec::apply_book(book, snapshot, bids, asks)
                };
                ingest.book(&symbol, at, update);
            }),
            Inbound::Private {
                user,
                channel,
                at,
                payload,
                ..
            } => {
                ingest.private(channel, &user, at, payload);
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tickgate_redis_messages_total", "channel" => self.label(channel)).increment(1);
            }
            Err(error) => self.invalid(
                channel,
                &Invalid {
                    reason: "symbol",
                    detail: error.to_string(),
                },
            ),
        }
    }

    fn label(&self, channel: &str) -> &'static str {
        match channel {
            c if c == self.names.quotes => "quotes.realtime",
            c if c == self.names.trades => "tickgate.trades",
            c if c == self.names.orderbook => "tickgate.orderbook",
            c if c == self.names.private => "tickgate.private",
            _ => "other",
        }
    }

    /// Whether an invalid message seen at `now` gets a log line, and if so
    /// claims it: at most one line per second, so a flood of garbage does
    /// not become a flood of logs. Monotonic time: a wall-clock step must
    /// neither silence the log nor let a burst through.
    fn invalid_log_due(&self, now: tokio::time::Instant) -> bool {
        let now = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX)
            .min(NEVER_LOGGED - 1);
        let last = self.last_invalid_log.load(Ordering::Relaxed);
        (last == NEVER_LOGGED || now.saturating_sub(last) >= INVALID_LOG_EVERY_MS)
            && self
                .last_invalid_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn invalid(&self, channel: &str, invalid: &Invalid) {
        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "tickgate_redis_messages_invalid_total",
            "channel" => self.label(channel),
            "reason" => invalid.reason
        )
        .increment(1);
        if self.invalid_log_due(tokio::time::Instant::now()) {
            tracing::warn!(
                channel,
                reason = invalid.reason,
                detail = %invalid.detail,
                invalid_total = self.stats.invalid(),
                "invalid Redis message dropped (tickgate_redis_messages_invalid_total)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn invalid_messages_are_logged_at_most_once_a_second() {
        let broker = super::super::test_broker();
        let start = broker.started;
        let at = |ms| start + Duration::from_millis(ms);
        // The first one is logged at once, even right after the start.
        assert!(broker.invalid_log_due(at(0)));
        assert!(!broker.invalid_log_due(at(1)));
        assert!(!broker.invalid_log_due(at(999)));
        assert!(broker.invalid_log_due(at(1000)));
        assert!(!broker.invalid_log_due(at(1500)));
        assert!(broker.invalid_log_due(at(2000)));
        assert!(broker.invalid_log_due(at(60_000)));
    }
}
