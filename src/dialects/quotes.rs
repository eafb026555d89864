//! The quotes dialect (seed 002) on the main listener: a stream of flat
//! quotes at `/ws/quotes`, `/ws`, `/v1/ws/quotes` and `/v1/ws`, filtered by
//! `?tickers=`, and the seed's `GET /health`.
//!
//! A quotes connection is a hub subscriber of dialect `Quotes` on
//! `market_data` (one topic per ticker, or every symbol): the hub encodes
//! each tick once as a quote for all such subscribers, and the connection's
//! outbox conflates per ticker for a slow reader. What the client sends is
//! read (to notice closes and keep the idle timer) and otherwise ignored.

use std::sync::Arc;

use poem::{
    Endpoint, Request, handler,
    http::{HeaderValue, StatusCode, header},
    web::Json,
};
use serde_json::json;

use crate::{
    event::{Symbol, TopicKey},
    gateway::Gateway,
    hub::Dialect,
    protocol::{Text, close},
    runtime::{
        driver::{Conn, Handler, Rules},
        handshake::{Policy, Refused, json_error, upgrade, with_header},
        registry::{Entry, Registry},
    },
    spec::messages::Channel,
};

/// The paths of the stream, all identical.
pub const PATHS: [&str; 4] = ["/ws/quotes", "/ws", "/v1/ws/quotes", "/v1/ws"];

/// The stream's endpoint (one for all of `PATHS`; clone the `Arc` per path).
///
/// The handshake: 403 for a disallowed `Origin`, 400 for a bad `tickers`
/// list, 503 while a configured Redis is down, otherwise as every dialect.
///
/// Starts the task that closes every stream when a configured Redis fails.
pub fn endpoint(
    gateway: Arc<Gateway>,
    dialect: Dialect,
    policy: Arc<Policy>,
) -> Arc<impl Endpoint> {
    let registry = Arc::new(Registry::default());
    if gateway.broker.is_some() {
        let task = watch_redis(gateway.clone(), registry.clone());
        gateway.tasks.spawn(task);
    }
    let rules = Arc::new(Rules::standard(
        &gateway,
        dialect,
        gateway.quotes_outbox_limits.clone(),
    ));
    Arc::new(poem::endpoint::make_sync(move |request: Request| {
        upgrade(&request, &gateway, &policy, || {
            let tickers = admit(&request, &gateway)?;
            let registry = registry.clone();
            Ok((rules.clone(), move |conn: &Conn<'_>| {
                Quotes::open(conn, &registry, tickers)
            }))
        })
    }))
}

/// The dialect's own handshake checks; the tickers to stream.
fn admit(request: &Request, gateway: &Gateway) -> Result<Option<Vec<Symbol>>, Refused> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = &gateway.config.quotes.allowed_origins;
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|o| o == "*" || o == origin) {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this Origin may not open a quotes stream; add it to quotes.allowed_origins",
            )
            .into());
        }
    }
    let query = request
        .params::<std::collections::HashMap<String, String>>()
        .unwrap_or_default();
    let tickers =
        tickers(query.get("tickers").map(String::as_str), gateway).map_err(|message| {
            Refused::from(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_tickers",
                &message,
            ))
        })?;
    // With Redis configured, quotes come through it: no stream while it is
    // down (seed 002).
    if gateway.broker.as_ref().is_some_and(|b| !b.connected()) {
        let response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the Redis pub/sub that feeds quotes is unavailable; retry shortly",
        );
        return Err(
            with_header(response, header::RETRY_AFTER, HeaderValue::from_static("1")).into(),
        );
    }
    Ok(tickers)
}

/// With Redis: a failure mid-stream closes every stream with 1011 (seed
/// 002).
async fn watch_redis(gateway: Arc<Gateway>, registry: Arc<Registry>) {
    let Some(broker) = &gateway.broker else {
        return;
    };
    let mut up = broker.watch();
    loop {
        tokio::select! {
            () = gateway.shutdown.cancelled() => return,
            changed = up.changed() => {
                if changed.is_err() || !*up.borrow() {
                    registry.close_all(None, close::INTERNAL_ERROR);
                }
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One quotes connection. What the client sends is not part of the
/// contract: read (for liveness and the limits) and ignored.
struct Quotes {
    _entry: Entry,
}

impl Quotes {
    fn open(conn: &Conn<'_>, registry: &Arc<Registry>, tickers: Option<Vec<Symbol>>) -> Self {
        let gateway = conn.gateway;
        let entry = registry.enter(conn);
        if gateway.broker.as_ref().is_some_and(|b| !b.connected()) {
            // Redis went down between the handshake and now.
            conn.outbox().close(close::INTERNAL_ERROR);
        }
        match tickers {
            None => gateway
                .hub
                .subscribe_stream(conn.subscriber, Channel::MarketData, None),
            Some(tickers) => {
                for ticker in tickers {
                    gateway.hub.subscribe_stream(
                        conn.subscriber,
                        Channel::MarketData,
                        Some(TopicKey::Symbol(ticker)),
                    );
                }
            }
        }
        Self { _entry: entry }
    }
}

impl Handler for Quotes {
    fn on_text(&mut self, _conn: &Conn<'_>, _text: Text) {}
}

/// The tickers of `?tickers=` (None: every ticker).
fn tickers(list: Option<&str>, gateway: &Gateway) -> Result<Option<Vec<Symbol>>, String> {
    let Some(list) = list else {
        return Ok(None);
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() || names.contains(&"*") {
        return Ok(None);
    }
    let max = gateway.config.quotes.max_tickers;
    if names.len() > max {
        return Err(format!(
            "tickers names {} tickers; at most {max}",
            names.len()
        ));
    }
    let mut symbols = Vec::with_capacity(names.len());
    for name in names {
        // A ticker that is not known yet may appear later (a publisher).
        let symbol = match gateway.hub.symbols().get(name) {
            Some(symbol) => symbol,
            None => crate::hub::Symbols::canonical(name)
                .map(Symbol::from)
                .map_err(|error| format!("invalid ticker: {error}"))?,
        };
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    Ok(Some(symbols))
}

/// `GET /health` in seed 002's shape.
#[handler]
pub fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "repository": "tickgate",
    }))
}
