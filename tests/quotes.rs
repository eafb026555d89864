//! The quotes dialect (seed 002) on the main listener, driven by real
//! WebSocket clients whose every frame is validated against the `quotes`
//! channel of asyncapi.yaml.

use std::collections::BTreeSet;

use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::support::{Client, TestServer, WAIT, test_config};

fn url(server: &TestServer, path: &str) -> String {
    format!("ws://{}{path}", server.addr)
}

async fn connect(server: &TestServer, path: &str) -> Client {
    Client::connect_dialect(&url(server, path), "quotes").await
}

/// Tickers of the next `n` quotes.
async fn tickers_of(client: &mut Client, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let quote = client.recv().await;
        seen.push(quote["ticker"].as_str().expect("ticker").to_owned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_streams_flat_quotes_of_every_ticker() {
    let server = TestServer::default().await;
    for path in [
        "/ws/quotes",
        "/ws",
        "/v1/ws/quotes",
        "/v1/ws",
        "/ws/quotes?tickers=*",
    ] {
        let mut client = connect(&server, path).await;
        let distinct: BTreeSet<String> = tickers_of(&mut client, 40).await.into_iter().collect();
        assert!(
            distinct.len() >= 3,
            "{path}: quotes of every ticker: {distinct:?}"
        );
        let quote = client.recv().await;
        let keys: BTreeSet<&str> = quote
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "ticker",
                "timestamp",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "bid",
                "ask"
            ]),
            "{path}: the flat quote and nothing else: {quote}"
        );
        let (open, high, low, close) = (
            quote["open"].as_f64(),
            quote["high"].as_f64(),
            quote["low"].as_f64(),
            quote["close"].as_f64(),
        );
        assert!(
            high >= open && high >= close && low <= open && low <= close,
            "{quote}"
        );
        assert!(quote["volume"].is_u64());
        assert_eq!(
            client.seen.iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([&"Quote".to_owned()])
        );
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickers_filter_on_the_server_case_insensitively() {
    let server = TestServer::default().await;
    let mut client = connect(&server, "/ws/quotes?tickers=aapl,Msft").await;
    let seen: BTreeSet<String> = tickers_of(&mut client, 30).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["AAPL".to_owned(), "MSFT".to_owned()]));
    // A ticker with a slash, percent-encoded.
    let mut client = connect(&server, "/v1/ws?tickers=btc%2Fusdt").await;
    let seen: BTreeSet<String> = tickers_of(&mut client, 5).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from(["BTC/USDT".to_owned()]));
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_sends_is_ignored() {
    let server = TestServer::default().await;
    let mut client = connect(&server, "/ws?tickers=AAPL").await;
    client.recv().await;
    for text in ["hello", "{\"type\":\"subscribe\"}", "", "[1,2"] {
        client.send_text(text).await;
    }
    client
        .ws
        .send(Message::binary(vec![0u8; 100]))
        .await
        .expect("send");
    // Quotes keep coming, and only quotes.
    let seen = tickers_of(&mut client, 10).await;
    assert!(seen.iter().all(|t| t == "AAPL"));
    server.stop().await.expect("clean stop");
}

async fn handshake(server: &TestServer, path: &str, origin: Option<&str>) -> Result<(), u16> {
    let mut request = url(server, path).into_client_request().expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
    }
    match connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_and_ticker_lists_are_checked_at_the_handshake() {
    let mut config = test_config();
    config.quotes.allowed_origins = vec!["https://app.example".into()];
    config.quotes.max_tickers = 3;
    let server = TestServer::start(config).await;
    assert_eq!(
        handshake(&server, "/ws/quotes", Some("https://evil.example")).await,
        Err(403)
    );
    assert_eq!(
        handshake(&server, "/ws/quotes", Some("https://app.example")).await,
        Ok(())
    );
    assert_eq!(
        handshake(&server, "/ws/quotes", None).await,
        Ok(()),
        "no Origin: not a browser"
    );
    assert_eq!(
        handshake(&server, "/ws/quotes?tickers=A,B,C,D", None).await,
        Err(400),
        "over quotes.max_tickers"
    );
    assert_eq!(
        handshake(&server, "/ws/quotes?tickers=A%20B", None).await,
        Err(400),
        "not a ticker"
    );
    // The refusals are JSON {code, message}.
    let response = reqwest::Client::new()
        .get(format!("http://{}/ws/quotes", server.addr))
        .header("origin", "https://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "origin_not_allowed");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_has_the_seed_shape_and_metrics_count_quotes() {
    let server = TestServer::default().await;
    let (status, health) = server.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["repository"], "tickgate");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let mut client = connect(&server, "/ws/quotes").await;
    tickers_of(&mut client, 5).await;
    let metrics = server.get("/metrics").await.text().await.expect("text");
    for series in [
        "tickgate_connections",
        "tickgate_subscribers",
        "tickgate_frames_out_total",
    ] {
        assert!(metrics.contains(series), "{series} in /metrics");
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_quotes_streams_with_1001_and_only_quotes() {
    let server = TestServer::default().await;
    let mut client = connect(&server, "/ws/quotes").await;
    client.recv().await;
    let stopping = tokio::spawn(server.stop());
    // expect_close validates every frame before the close as a Quote.
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stops")
        .expect("task")
        .expect("clean stop");
}

/// The conflated-frame count of the server's `/api/v1/ws/stats`.
async fn conflated(server: &TestServer) -> u64 {
    let (_, stats) = server.get_json("/api/v1/ws/stats").await;
    stats["conflated"].as_u64().expect("conflated")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_keeps_up_loses_nothing_to_conflation() {
    let mut config = test_config();
    config.simulator.ticks_per_second = 1_000;
    let server = TestServer::start(config).await;
    let mut client = connect(&server, "/ws/quotes").await;
    tickers_of(&mut client, 2_000).await;
    // Conflation starts only past ws.stream_backlog (1,024) queued frames:
    // a reader this close behind never gets there.
    assert_eq!(conflated(&server).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_gets_every_ticker_in_order_and_the_newest_past_its_backlog() {
    let mut config = test_config();
    config.simulator.ticks_per_second = 20_000;
    config.ws.stream_backlog = 16;
    let server = TestServer::start(config).await;
    // A small receive window, so the server's socket fills and frames stay
    // in the outbox while the client does not read.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(server.addr).await.expect("connects");
    let (ws, _) = tokio_tungstenite::client_async(
        url(&server, "/ws/quotes"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("WebSocket handshake");
    let mut client = Client {
        ws,
        channel: "quotes",
        welcome: Value::Null,
        seen: Vec::new(),
    };
    let mut waited = 0;
    while conflated(&server).await == 0 {
        waited += 1;
        assert!(
            waited < 300,
            "past a backlog of 16 frames, newer quotes replace queued ones"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Still open, and each ticker's quotes still come oldest first.
    let mut newest: std::collections::HashMap<String, String> = Default::default();
    for _ in 0..2_000 {
        let quote = client.recv().await;
        let ticker = quote["ticker"].as_str().expect("ticker").to_owned();
        let at = quote["timestamp"].as_str().expect("timestamp").to_owned();
        if let Some(before) = newest.get(&ticker) {
            assert!(at >= *before, "{ticker}: {at} came after {before}");
        }
        newest.insert(ticker, at);
    }
    assert!(newest.len() >= 3, "every ticker still streams: {newest:?}");
}
