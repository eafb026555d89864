//! The connection to Redis: one server or a cluster (`Backend`), the
//! command connections the publisher and the cache use, the health check's
//! `ping`, the connection state (`connected`, `watch`), and the reconnect
//! backoff both tasks share.

use std::{collections::HashMap, time::Duration};

use tokio::sync::watch;

use super::Broker;
use crate::backoff::Backoff;

/// One Redis, or a Redis Cluster (sharded pub/sub: `SPUBLISH`/`SSUBSCRIBE`,
/// each channel served by the shard that owns its slot).
pub(super) enum Backend {
    Single(redis::Client),
    Cluster(Vec<redis::ConnectionInfo>),
}

/// A connection for commands (publishing, the cache).
pub(super) enum CommandConn {
    Single(redis::aio::MultiplexedConnection),
    /// The cluster connection (the cache), and a connection to the node
    /// that owns each channel's slot (publishing).
    Cluster(
        redis::cluster_async::ClusterConnection,
        HashMap<String, redis::aio::MultiplexedConnection>,
    ),
}

impl CommandConn {
    pub(super) async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            CommandConn::Single(conn) => cmd.query_async(conn).await,
            CommandConn::Cluster(conn, _) => cmd.query_async(conn).await,
        }
    }
}

impl Broker {
    /// Round trip of a `PING` on a fresh connection (within 2 s), or None
    /// when Redis does not answer (health checks).
    pub async fn ping(&self) -> Option<std::time::Duration> {
        let started = std::time::Instant::now();
        let ping = async {
            match &self.backend {
                Backend::Single(client) => {
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                }
                Backend::Cluster(nodes) => {
                    let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                        .get_async_connection()
                        .await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => Some(started.elapsed()),
            _ => None,
        }
    }

    /// Whether this broker uses a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    pub(super) async fn command_conn(&self) -> redis::RedisResult<CommandConn> {
        match &self.backend {
            Backend::Single(client) => Ok(CommandConn::Single(
                client.get_multiplexed_async_connection().await?,
            )),
            Backend::Cluster(nodes) => {
                let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                    .get_async_connection()
                    .await?;
                let mut owners = HashMap::new();
                for channel in self.names.channels() {
                    let node = owner(&mut conn, channel).await?;
                    let node_conn = redis::Client::open(node.as_str())?
                        .get_multiplexed_async_connection()
                        .await?;
                    owners.insert(channel.to_owned(), node_conn);
                }
                Ok(CommandConn::Cluster(conn, owners))
            }
        }
    }

    /// Whether the subscription to Redis is up now.
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the connection state (true while subscribed).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.send_if_modified(|state| {
            let changed = *state != up;
            *state = up;
            changed
        });
        metrics::gauge!("tickgate_redis_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// The address (`redis://host:port`) of the cluster node that owns
/// `channel`'s slot, from `CLUSTER KEYSLOT` and `CLUSTER SLOTS`.
pub(super) async fn owner(
    conn: &mut redis::cluster_async::ClusterConnection,
    channel: &str,
) -> redis::RedisResult<String> {
    use redis::Value;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(channel)
        .query_async(conn)
        .await?;
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    if let Value::Array(ranges) = slots {
        for range in ranges {
            let Value::Array(fields) = range else {
                continue;
            };
            if let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
                && (*start..=*end).contains(&slot)
                && let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1))
            {
                let host = match host {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).to_string(),
                    Value::SimpleString(text) => text.clone(),
                    _ => continue,
                };
                return Ok(format!("redis://{host}:{port}"));
            }
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Client,
        "no cluster node owns the channel's slot",
    )))
}

/// Pauses between reconnects to Redis: 100 ms doubling to 5 s, jittered.
pub(super) fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}
