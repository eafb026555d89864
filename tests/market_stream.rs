//! The USD/COP market-data stream (seed 000) on its own listener, driven by
//! real WebSocket clients whose every frame is validated against the
//! `marketStream` channel of asyncapi.yaml.

use serde_json::{Value, json};
use tickgate::Config;
use tokio_tungstenite::{connect_async, tungstenite::Error as WsError};

use crate::support::{Client, MARKET_OPEN, TestServer, WAIT, pin_clock, test_config, token};

fn url(server: &TestServer, query: &str) -> String {
    let addr = server.market_stream_addr.expect("market stream enabled");
    format!("ws://{addr}/ws/market-data{query}")
}

async fn connect(server: &TestServer) -> Client {
    Client::connect_dialect(&url(server, ""), "marketStream").await
}

fn subscribe(symbols: &[&str]) -> Value {
    json!({"action": "subscribe", "symbols": symbols})
}

fn unsubscribe(symbols: &[&str]) -> Value {
    json!({"action": "unsubscribe", "symbols": symbols})
}

/// The next frame that is not market data or a heartbeat.
async fn reply(client: &mut Client) -> Value {
    client
        .recv_until(|f| f["type"] != "market_data" && f["type"] != "heartbeat")
        .await
}

/// A stream-only configuration with the given limits.
fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    config.candles.enabled = false;
    pin_clock(&mut config, MARKET_OPEN, false);
    edit(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_acks_then_streams_market_data_of_those_symbols() {
    let server = TestServer::start(config(|_| {})).await;
    let mut client = connect(&server).await;
    client.send(subscribe(&["usdcop", "USDBRL"])).await;
    let ack = reply(&mut client).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["message"], "Subscribed to 2 symbols");
    assert_eq!(ack["symbols"], json!(["USDCOP", "USDBRL"]));
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let frame = client.recv_until(|f| f["type"] == "market_data").await;
        let symbol = frame["symbol"].as_str().expect("symbol").to_owned();
        assert!(symbol == "USDCOP" || symbol == "USDBRL", "{frame}");
        let data = &frame["data"];
        let (bid, ask) = (data["bid"].as_f64().unwrap(), data["ask"].as_f64().unwrap());
        let spread = data["spread"].as_f64().unwrap();
        assert!(
            (spread - (ask - bid)).abs() < 1e-9,
            "spread = ask - bid: {frame}"
        );
        assert_eq!(data["price"], data["close"], "{frame}");
        assert_eq!(frame["metadata"]["source"], "realtime");
        if symbol == "USDCOP" {
            let price = data["price"].as_f64().unwrap();
            assert!(
                (3_000.0..5_000.0).contains(&price),
                "USDCOP near 4,000: {frame}"
            );
        }
        seen.insert(symbol);
    }

    client.send(unsubscribe(&["usdbrl"])).await;
    let ack = reply(&mut client).await;
    assert_eq!(ack["message"], "Unsubscribed from 1 symbol");
    assert_eq!(ack["symbols"], json!(["USDBRL"]));
    for _ in 0..20 {
        let frame = client.recv_until(|f| f["type"] == "market_data").await;
        assert_eq!(
            frame["symbol"], "USDCOP",
            "nothing of USDBRL after its ack: {frame}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_symbols_and_bad_frames_get_error_frames_and_the_stream_goes_on() {
    let server = TestServer::start(config(|_| {})).await;
    let mut client = connect(&server).await;
    client.send(subscribe(&["USDCOP", "INVALID"])).await;
    let ack = reply(&mut client).await;
    assert_eq!(
        ack["symbols"],
        json!(["USDCOP"]),
        "the valid one is acked: {ack}"
    );
    let error = reply(&mut client).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "INVALID_SYMBOL");
    assert_eq!(error["message"], "Symbol 'INVALID' is not supported");

    for bad in [
        "not json",
        r#"{"action":"dance"}"#,
        r#"{"symbols":["USDCOP"]}"#,
    ] {
        client.send_text(bad).await;
        let error = reply(&mut client).await;
        assert_eq!(error["code"], "INVALID_MESSAGE", "{bad}: {error}");
    }
    let frame = client.recv_until(|f| f["type"] == "market_data").await;
    assert_eq!(frame["symbol"], "USDCOP", "still streaming: {frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_limit_holds_at_its_edge_and_comes_before_validation() {
    let server = TestServer::start(config(|c| c.market_stream.max_subscriptions = 3)).await;
    let mut client = connect(&server).await;
    client.send(subscribe(&["USDCOP", "USDBRL", "AAPL"])).await;
    assert_eq!(
        reply(&mut client).await["message"],
        "Subscribed to 3 symbols"
    );
    // Re-subscribing to held symbols is not a new subscription.
    client.send(subscribe(&["AAPL"])).await;
    assert_eq!(reply(&mut client).await["type"], "ack");
    // A fourth, even an invalid one, is over the limit.
    client.send(subscribe(&["NOSUCH"])).await;
    let error = reply(&mut client).await;
    assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 subscriptions"),
        "{error}"
    );
    // After one unsubscribe there is room again.
    client.send(unsubscribe(&["AAPL"])).await;
    assert_eq!(reply(&mut client).await["type"], "ack");
    client.send(subscribe(&["MSFT"])).await;
    let ack = reply(&mut client).await;
    assert_eq!(ack["symbols"], json!(["MSFT"]), "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_rate_limit_errors_then_disconnects_with_1008() {
    let server = TestServer::start(config(|c| c.market_stream.messages_per_minute = 5)).await;
    let mut client = connect(&server).await;
    for _ in 0..5 {
        client.send(subscribe(&["USDCOP"])).await;
        assert_eq!(reply(&mut client).await["type"], "ack");
    }
    client.send(subscribe(&["USDCOP"])).await;
    let error = reply(&mut client).await;
    assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED", "{error}");
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
}

/// The seed's limit as a bursting client meets it: 100 messages and more
/// sent before anything is read. Every time, the client gets 100 answers,
/// then `RATE_LIMIT_EXCEEDED`, then close 1008, although its later frames
/// were still unread when the server decided to close: the server reads
/// (and discards) them before it closes the socket, so the kernel never
/// answers with RST and discards the last frames. 100 runs, 100 deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_message_rate_gets_its_error_and_close_every_time() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start(config(|_| {})).await;
    let limit = server.gateway.config.market_stream.messages_per_minute as usize;
    assert_eq!(limit, 100, "seed 000's default");
    let frame = json!({"action": "unsubscribe", "symbols": ["USDCOP"]}).to_string();
    for run in 0..100 {
        let mut client = connect(&server).await;
        // Everything at once, flushed once: frames past the limit are in
        // the server's receive buffer when it refuses the 101st.
        for _ in 0..limit + 30 {
            client
                .ws
                .feed(Message::text(frame.clone()))
                .await
                .expect("feeds");
        }
        client.ws.flush().await.expect("flushes");
        let (mut acks, mut error, mut close) = (0, None, None);
        while close.is_none() {
            let message = tokio::time::timeout(WAIT, client.ws.next())
                .await
                .expect("a frame in time")
                .unwrap_or_else(|| panic!("run {run}: the stream ended before the close frame"))
                .unwrap_or_else(|e| panic!("run {run}: read failed (reset?): {e}"));
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON");
                    crate::support::SCHEMAS
                        .check_in("marketStream", &frame)
                        .unwrap_or_else(|e| panic!("{e}"));
                    match frame["type"].as_str() {
                        Some("ack") => {
                            assert!(error.is_none(), "run {run}: an ack after the error");
                            acks += 1;
                        }
                        Some("error") => error = Some(frame),
                        _ => {}
                    }
                }
                Message::Close(frame) => close = Some(frame.map(|f| u16::from(f.code))),
                _ => {}
            }
        }
        assert_eq!(
            acks, limit,
            "run {run}: every message within the limit is answered"
        );
        let error = error.unwrap_or_else(|| panic!("run {run}: no error frame"));
        assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED", "run {run}: {error}");
        assert_eq!(close, Some(Some(1008)), "run {run}");
        // tungstenite answers the close; the server then ends the stream.
        let end = tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("ends in time");
        assert!(
            matches!(end, None | Some(Err(WsError::ConnectionClosed))),
            "run {run}: the stream ends cleanly: {end:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_and_three_unanswered_ones_end_the_connection() {
    let server = TestServer::start(config(|c| c.market_stream.heartbeat_ms = 150)).await;
    // A client that answers stays: six heartbeats, each answered.
    let mut answering = connect(&server).await;
    let mut silent = connect(&server).await;
    for _ in 0..6 {
        let beat = answering.recv_until(|f| f["type"] == "heartbeat").await;
        assert!(beat["clients_connected"].as_u64().unwrap() >= 1, "{beat}");
        answering
            .send(json!({"action": "pong", "client_time": "2025-10-22T10:30:00Z"}))
            .await;
    }
    // A client that never answers gets exactly three, then close 4002.
    let mut beats = 0;
    let close = loop {
        let message = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut silent.ws))
            .await
            .expect("a frame in time")
            .expect("open until closed")
            .expect("reads");
        match message {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                crate::support::SCHEMAS
                    .check_in("marketStream", &frame)
                    .unwrap();
                if frame["type"] == "heartbeat" {
                    beats += 1;
                }
            }
            tokio_tungstenite::tungstenite::Message::Close(close) => break close,
            _ => {}
        }
    };
    assert_eq!(beats, 3, "three heartbeats unanswered, then the close");
    assert_eq!(u16::from(close.expect("close frame").code), 4002);
    // The answering client is still served.
    answering.send(subscribe(&["USDCOP"])).await;
    assert_eq!(reply(&mut answering).await["type"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped_at_the_handshake() {
    let server = TestServer::start(config(|c| c.market_stream.max_connections_per_ip = 2)).await;
    let first = connect(&server).await;
    let _second = connect(&server).await;
    match connect_async(url(&server, "")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED", "{body}");
        }
        other => panic!("the third connection from one IP is refused: {other:?}"),
    }
    drop(first);
    // The slot comes back once the first connection is gone.
    let mut third = None;
    for _ in 0..100 {
        if let Ok((ws, _)) = connect_async(url(&server, "")).await {
            third = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(third.is_some(), "a slot is free again after a close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_optional_but_must_verify_when_given() {
    let server = TestServer::start(config(|_| {})).await;
    let good = token("user_123", &[], 300);
    let mut client =
        Client::connect_dialect(&url(&server, &format!("?token={good}")), "marketStream").await;
    client.send(subscribe(&["USDCOP"])).await;
    assert_eq!(reply(&mut client).await["type"], "ack");
    let mut refused =
        Client::connect_dialect(&url(&server, "?token=not-a-jwt"), "marketStream").await;
    let error = refused.recv().await;
    assert_eq!(error["code"], "AUTHENTICATION_FAILED", "{error}");
    let close = refused.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_is_an_error_and_close_1009() {
    let server = TestServer::start(config(|c| c.ws.max_frame_bytes = 1024)).await;
    let mut client = connect(&server).await;
    let symbols: Vec<String> = (0..100).map(|i| format!("SYMBOL{i:04}")).collect();
    let frame = json!({"action": "subscribe", "symbols": symbols}).to_string();
    assert!(frame.len() > 1024);
    client.send_text(&frame).await;
    let error = reply(&mut client).await;
    assert_eq!(error["code"], "INVALID_MESSAGE", "{error}");
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_counts_the_streams_clients() {
    let server = TestServer::start(config(|_| {})).await;
    let _a = connect(&server).await;
    let _b = connect(&server).await;
    let addr = server.market_stream_addr.unwrap();
    let mut body = Value::Null;
    for _ in 0..100 {
        body = reqwest::get(format!("http://{addr}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["clients_connected"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["service"], "websocket-service", "{body}");
    assert_eq!(body["clients_connected"], 2, "{body}");
}
