//! Upstream market-data providers: sources that take prices from a real
//! provider and hand them to the core through `sources::Ingest`, like the
//! simulator does.
//!
//! `keys.rs` is the API-key pool (spacing, rotation, rests, usage);
//! `twelvedata.rs` is TwelveData's wire (REST client, stream messages, error
//! classification). The source itself is one task that collects while the
//! market gate is open, by polling `/quote` or from the price stream,
//! leasing a key from the pool for every request or connection and
//! reporting back what the provider answered: `runner.rs` is that task (the
//! I/O: connect, subscribe, read, reconnect with backoff), `feed.rs` turns
//! what the provider says into ticks, and `status.rs` is `UpstreamStatus`,
//! the state it shows `/status` and health. This file checks the
//! configuration and starts the task (`spawn`).
//!
//! The gate (`watch::Receiver<bool>`) belongs to whoever knows the market
//! hours: the source collects only while it reads `true`, and drops its
//! stream when it turns `false`.

mod feed;
pub mod keys;
mod runner;
mod status;
pub mod twelvedata;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::status::{UpstreamSnapshot, UpstreamStatus};
use self::{
    feed::Feed,
    keys::{ApiKey, KeyPool},
    runner::{Runner, Stops},
    twelvedata::{RestClient, UpstreamError},
};
use crate::{config::TwelveDataConfig, hub::InvalidSymbol, sources::Ingest};

/// The key pool of `config`: the keys of the environment `vars` (the caller
/// passes `std::env::vars()`), then the configured keys, with the
/// configured spacing and rate-limit rest.
pub fn key_pool(
    config: &TwelveDataConfig,
    vars: impl IntoIterator<Item = (String, String)>,
) -> KeyPool {
    let extra: Vec<ApiKey> = config
        .keys
        .iter()
        .map(|key| ApiKey::new(key.expose()))
        .collect();
    KeyPool::from_sources(vars, &extra)
        .with_min_spacing(Duration::from_millis(config.min_key_spacing_ms))
        .with_rate_limit_cooldown(Duration::from_millis(config.rate_limit_cooldown_ms))
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("upstream.twelvedata.symbols: {0}")]
    Symbol(#[from] InvalidSymbol),
    #[error("upstream.twelvedata: {0}")]
    Client(#[from] UpstreamError),
    #[error(
        "upstream.twelvedata.symbols.{0}: a gateway symbol (A-Z, 0-9, ./_:-^=) mapped to a provider symbol"
    )]
    Mapping(String),
}

/// Checks `config.symbols` when the source is enabled: each gateway symbol
/// valid, each mapped to a provider symbol. Run when the gateway starts
/// (`server::bind`), whether or not a key is configured.
///
/// # Errors
/// The first gateway symbol that is invalid or mapped to nothing.
pub fn check_config(config: &TwelveDataConfig) -> Result<(), SpawnError> {
    if !config.enabled {
        return Ok(());
    }
    for (ours, theirs) in &config.symbols {
        if crate::hub::Symbols::canonical(ours).is_err() || theirs.trim().is_empty() {
            return Err(SpawnError::Mapping(ours.clone()));
        }
    }
    Ok(())
}

/// Starts the TwelveData source on `tasks` when it is enabled and `pool`
/// has a key; returns whether it started. It registers its symbols, then
/// collects while `gate` reads `true`, until `shutdown`.
///
/// # Errors
/// A configured gateway symbol that is not a valid symbol, or the HTTP
/// client failing to initialize.
pub fn spawn(
    config: &TwelveDataConfig,
    pool: Arc<KeyPool>,
    ingest: Ingest,
    gate: watch::Receiver<bool>,
    status: Arc<UpstreamStatus>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<bool, SpawnError> {
    if !config.enabled {
        tracing::info!("twelvedata source disabled");
        return Ok(false);
    }
    if pool.is_empty() {
        tracing::info!(
            "twelvedata source off: no API key (set TWELVEDATA_API_KEY_G1_1 ... or upstream.twelvedata.keys)"
        );
        return Ok(false);
    }
    let mut feeds = Vec::new();
    for (ours, theirs) in &config.symbols {
        feeds.push(Feed::new(ingest.symbol(ours)?, theirs.clone()));
    }
    let rest = RestClient::new(
        &config.rest_url,
        Duration::from_millis(config.request_timeout_ms),
    )?;
    tracing::info!(
        keys = pool.len(),
        mode = ?config.mode,
        symbols = feeds.len(),
        "twelvedata source started"
    );
    let runner = Runner {
        config: config.clone(),
        pool,
        ingest,
        status,
        stops: Stops { shutdown, gate },
        feeds,
        rest,
    };
    tasks.spawn(runner.run());
    Ok(true)
}
