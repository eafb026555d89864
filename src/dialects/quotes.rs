//! The quotes dialect (seed 002) on the main listener: a stream of flat
//! quotes at `/ws/quotes`, `/ws`, `/v1/ws/quotes` and `/v1/ws`, filtered by
//! `?tickers=`, and the seed's `GET /health`.
//!
//! A quotes connection is a hub subscriber of dialect `Quotes` on
//! `market_data` (one topic per ticker, or every symbol): the hub encodes
//! each tick once as a quote for all such subscribers, and the connection's
//! outbox conflates per ticker for a slow reader. What the client sends is
//! read (to notice closes and keep the idle timer) and otherwise ignored.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::SplitStream};
use poem::{
    Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::{
    event::{Symbol, TopicKey},
    gateway::Gateway,
    hub::Dialect,
    protocol::close,
    session::{
        StreamConn, close_stream, open_stream,
        upgrade::{Socket, accept, json_error},
    },
    spec::messages::Channel,
};

/// The paths of the stream, all identical.
pub const PATHS: [&str; 4] = ["/ws/quotes", "/ws", "/v1/ws/quotes", "/v1/ws"];

/// The stream's handshake: 403 for a disallowed `Origin`, 400 for a bad
/// `tickers` list, otherwise as every dialect (426, 503).
#[handler]
pub fn endpoint(request: &Request, Data(gateway): Data<&Arc<Gateway>>) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = &gateway.config.quotes.allowed_origins;
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|o| o == "*" || o == origin) {
            return json_error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this Origin may not open a quotes stream; add it to quotes.allowed_origins",
            );
        }
    }
    let query = request
        .params::<std::collections::HashMap<String, String>>()
        .unwrap_or_default();
    let tickers = match tickers(query.get("tickers").map(String::as_str), gateway) {
        Ok(tickers) => tickers,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "invalid_tickers", &message),
    };
    // With Redis configured, quotes come through it: no stream while it is
    // down (seed 002).
    if gateway.broker.as_ref().is_some_and(|b| !b.connected()) {
        let response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the Redis pub/sub that feeds quotes is unavailable; retry shortly",
        );
        return crate::session::upgrade::with_header(
            response,
            header::RETRY_AFTER,
            poem::http::HeaderValue::from_static("1"),
        );
    }
    accept(request, gateway, move |gateway, socket| {
        // Split the socket (and start the writer) before anything async
        // takes it: a future that captured the socket by value would keep
        // room for it for the connection's whole life, though it moved on.
        let (conn, stream) = open_stream(&gateway, socket, Dialect::Quotes);
        serve(gateway, conn, stream, tickers).instrument(tracing::info_span!("quotes"))
    })
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

async fn serve(
    gateway: Arc<Gateway>,
    mut conn: StreamConn,
    mut stream: SplitStream<Socket>,
    tickers: Option<Vec<Symbol>>,
) {
    let outbox = conn.outbox.clone();
    match tickers {
        None => gateway
            .hub
            .subscribe_stream(&conn.subscriber, Channel::MarketData, None),
        Some(tickers) => {
            for ticker in tickers {
                gateway.hub.subscribe_stream(
                    &conn.subscriber,
                    Channel::MarketData,
                    Some(TopicKey::Symbol(ticker)),
                );
            }
        }
    }
    let idle = Duration::from_millis(gateway.config.ws.idle_timeout_ms);
    let mut last_seen = Instant::now();
    // With Redis: a failure mid-stream closes the stream with 1011 (seed 002).
    let mut redis = gateway.broker.as_ref().map(|b| b.watch());
    loop {
        tokio::select! {
            changed = async { redis.as_mut()?.changed().await.ok() }, if redis.is_some() => {
                let up = redis.as_ref().is_some_and(|r| *r.borrow());
                if changed.is_none() || !up {
                    outbox.close(close::INTERNAL_ERROR);
                    break;
                }
            }
            message = stream.next() => match message {
                Some(Ok(message)) => {
                    last_seen = Instant::now();
                    if message.is_close() {
                        break;
                    }
                    if message.is_text() || message.is_binary() {
                        // Client frames are not part of the contract: ignored.
                        gateway.stats.frame_in();
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "read failed");
                    break;
                }
                None => break,
            },
            () = sleep_until(last_seen + idle) => {
                outbox.close(close::HEARTBEAT_TIMEOUT);
                break;
            }
            () = conn.writer_stopped() => break,
        }
    }
    close_stream(&gateway, conn).await;
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
