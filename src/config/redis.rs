//! `[redis]`: the Redis broker (the `broker` module); off unless a URL or
//! cluster nodes are set.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (`REDIS_URL`). Unset: no Redis, one instance.
    pub url: Option<String>,
    /// Redis Cluster node addresses (`redis://host:port`). When set, the
    /// broker uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) across the
    /// cluster's shards and `url` is ignored.
    pub cluster_nodes: Vec<String>,
    /// Prefix of every Redis channel and key tickgate uses (tenants, tests).
    pub prefix: String,
}
