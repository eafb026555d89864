//! Every limit at and past its edge: channel rates, subscriber caps,
//! subscriptions per connection, frame size, connections, inbound rate,
//! idle timeout, slow consumers; and floods of bad input.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::support::{Client, TestServer, set_channel, subscribe, test_config, token, unsubscribe};

fn close_code(close: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    close.map(|c| u16::from(c.code)).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_rate_caps_what_one_connection_receives_and_conflates_the_rest() {
    let mut config = test_config();
    config.simulator.tick_interval_ms = [1, 3]; // about 3,500 ticks/s over 7 symbols
    set_channel(&mut config, "market_data", 20, 500);
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", None), json!(1))
        .await;
    client.recv_type("market_tick").await;
    let started = tokio::time::Instant::now();
    let mut ticks = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        if client.recv().await["type"] == "market_tick" {
            ticks += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // 20 frames/s with a burst of 2, measured over the time actually waited.
    let allowed = (20.0 * elapsed).ceil() as u64 + 2;
    assert!(
        ticks <= allowed,
        "{ticks} ticks in {elapsed:.2}s exceeds the cap of {allowed}"
    );
    assert!(ticks >= 10, "the channel still delivers: {ticks}");
    let (_, stats) = server.get_json("/api/v1/ws/stats").await;
    assert!(
        stats["conflated"].as_u64() > Some(0),
        "faster data was conflated: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_subscriber_cap_at_and_past_its_edge() {
    let mut config = test_config();
    set_channel(&mut config, "trades", 100, 2);
    let server = TestServer::start(config).await;
    let mut first = Client::connect(&server).await;
    let mut second = Client::connect(&server).await;
    let mut third = Client::connect(&server).await;
    assert_eq!(
        first
            .request(subscribe("trades", Some("AAPL")), json!(1))
            .await["type"],
        "subscribed"
    );
    // The same connection subscribing to another symbol is still one subscriber.
    assert_eq!(
        first
            .request(subscribe("trades", Some("MSFT")), json!(2))
            .await["type"],
        "subscribed"
    );
    assert_eq!(
        second.request(subscribe("trades", None), json!(1)).await["type"],
        "subscribed"
    );
    let full = third
        .request(subscribe("trades", Some("AAPL")), json!(1))
        .await;
    assert_eq!(
        (full["code"].clone(), full["channel"].clone()),
        (json!("channel_full"), json!("trades"))
    );
    second.request(unsubscribe("trades", None), json!(2)).await;
    assert_eq!(
        third
            .request(subscribe("trades", Some("AAPL")), json!(3))
            .await["type"],
        "subscribed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_at_and_past_the_edge() {
    let mut config = test_config();
    config.ws.max_subscriptions = 3;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    for (i, symbol) in ["AAPL", "MSFT", "TSLA"].iter().enumerate() {
        let reply = client
            .request(subscribe("market_data", Some(symbol)), json!(i))
            .await;
        assert_eq!(reply["type"], "subscribed");
    }
    let again = client
        .request(subscribe("market_data", Some("AAPL")), json!("dup"))
        .await;
    assert_eq!(
        again["type"], "subscribed",
        "a repeat does not count against the limit"
    );
    let error = client
        .request(subscribe("trades", Some("AAPL")), json!("over"))
        .await;
    assert_eq!(error["code"], "subscription_limit");
    // All symbols replaces the three single-symbol subscriptions: one in all.
    assert_eq!(
        client
            .request(subscribe("market_data", None), json!("all"))
            .await["type"],
        "subscribed"
    );
    assert_eq!(
        client
            .request(subscribe("trades", Some("AAPL")), json!("t"))
            .await["type"],
        "subscribed"
    );
    assert_eq!(
        client
            .request(subscribe("heartbeat", None), json!("h"))
            .await["type"],
        "subscribed"
    );
    assert_eq!(
        client.request(subscribe("system", None), json!("s")).await["code"],
        "subscription_limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_size_at_and_past_the_limit() {
    let server = TestServer::default().await;
    let limit = 64 * 1024;
    let mut client = Client::connect(&server).await;
    // Exactly the limit: accepted and answered (with a schema error, as the
    // token is longer than the schema allows).
    let padding = "x".repeat(limit - r#"{"type":"auth","token":""}"#.len());
    let frame = format!(r#"{{"type":"auth","token":"{padding}"}}"#);
    assert_eq!(frame.len(), limit);
    client.send_text(&frame).await;
    let error = client.recv_type("error").await;
    assert_eq!(error["code"], "schema_violation", "{error}");
    assert_eq!(
        client.request(json!({"type": "ping"}), json!(1)).await["type"],
        "pong"
    );
    // One byte more: frame_too_large, then close 1009.
    let frame = format!(r#"{{"type":"auth","token":"{padding}x"}}"#);
    client.send_text(&frame).await;
    let error = client.recv_type("error").await;
    assert_eq!(error["code"], "frame_too_large");
    assert_eq!(close_code(client.expect_close().await), 1009);
    // Far past the limit the connection ends at once; the server carries on.
    let mut huge = Client::connect(&server).await;
    let _ = huge.ws.send(Message::text("x".repeat(1024 * 1024))).await;
    let _ = huge.expect_close().await;
    let mut after = Client::connect(&server).await;
    assert_eq!(
        after.request(json!({"type": "ping"}), json!(2)).await["type"],
        "pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_the_handshake_with_503() {
    let mut config = test_config();
    config.server.max_connections = 3;
    let server = TestServer::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&server).await);
    }
    match connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON body");
            assert_eq!(body["code"], "connection_limit");
        }
        other => panic!("the fourth connection must be refused with 503, got {other:?}"),
    }
    // Closing one frees its place (after the server has cleaned it up).
    let mut closing = clients.pop().expect("a client");
    closing.ws.close(None).await.expect("close");
    let _ = closing.expect_close().await;
    let mut reconnected = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = connect_async(server.ws_url()).await {
            reconnected = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected.is_some(), "a freed place is reusable");
    let (_, stats) = server.get_json("/api/v1/ws/stats").await;
    assert!(stats["handshakes_refused"].as_u64() >= Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_rate_limit_errors_then_closes_persistent_abuse() {
    let mut config = test_config();
    config.ws.inbound_per_second = 2;
    config.ws.inbound_burst = 3;
    config.ws.rate_limit_close_after = 5;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    for i in 0..3 {
        client.send(json!({"type": "ping", "id": i})).await;
    }
    for i in 0..3 {
        let pong = client.recv().await;
        assert_eq!(
            (pong["type"].clone(), pong["id"].clone()),
            (json!("pong"), json!(i)),
            "a burst of 3 is allowed"
        );
    }
    client.send(json!({"type": "ping", "id": 3})).await;
    let error = client.recv().await;
    assert_eq!(
        (error["code"].clone(), error["type"].clone()),
        (json!("rate_limited"), json!("error"))
    );
    for i in 4..20 {
        client.send(json!({"type": "ping", "id": i})).await;
    }
    assert_eq!(close_code(client.expect_close().await), 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_flood_never_panics_the_server() {
    let mut config = test_config();
    config.ws.inbound_per_second = 10_000;
    config.ws.inbound_burst = 10_000;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    let nested = "[".repeat(50_000);
    let bad: Vec<String> = vec![
        "".into(),
        "{".into(),
        "null".into(),
        "[]".into(),
        r#"{"type":null}"#.into(),
        r#"{"type":"subscribe","channel":"market_data","symbol":12}"#.into(),
        r#"{"type":"subscribe","channel":"market_data","symbol":"\u0000"}"#.into(),
        r#"{"type":"auth","token":123}"#.into(),
        r#"{"type":"ping","id":1.5}"#.into(),
        r#"{"type":"ping","id":"0123456789012345678901234567890123456789012345678901234567890123456789"}"#.into(),
        r#"{"type":"unsubscribe","channel":"orders","symbol":"X"}"#.into(),
        nested,
        "\u{feff}{}".into(),
    ];
    // Each bad frame earns an error frame; this client reads only at the
    // end, so stay well under the 256-frame control queue (its overflow is
    // covered by the outbox's unit tests).
    let rounds = 10;
    for _ in 0..rounds {
        for frame in &bad {
            client
                .ws
                .feed(Message::text(frame.as_str()))
                .await
                .expect("feed");
        }
        client
            .ws
            .feed(Message::binary(vec![0xff, 0x00, 0x80]))
            .await
            .expect("feed");
    }
    client.ws.flush().await.expect("flush");
    client.send(json!({"type": "ping", "id": "after"})).await;
    let mut errors = 0;
    loop {
        let frame = client.recv().await;
        if frame["id"] == "after" {
            assert_eq!(frame["type"], "pong");
            break;
        }
        assert_eq!(frame["type"], "error", "{frame}");
        errors += 1;
    }
    assert_eq!(
        errors,
        rounds * (bad.len() + 1),
        "every bad frame gets exactly one error frame"
    );
    let (status, health) = server.get_json("/api/v1/health").await;
    assert_eq!((status, health["status"].clone()), (200, json!("healthy")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_and_a_reading_one_is_kept() {
    let mut config = test_config();
    config.ws.ping_interval_ms = 100;
    config.ws.idle_timeout_ms = 400;
    let server = TestServer::start(config).await;
    // A client that keeps reading answers the server's pings automatically.
    let mut live = Client::connect(&server).await;
    live.request(subscribe("heartbeat", None), json!(1)).await;
    for _ in 0..2 {
        live.recv_type("heartbeat").await;
    }
    assert_eq!(
        live.request(json!({"type": "ping"}), json!(2)).await["type"],
        "pong"
    );
    // A client that never reads never answers: closed with 4002.
    let (mut silent, _) = connect_async(server.ws_url()).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut code = 0;
    while let Some(Ok(message)) = silent.next().await {
        if let Message::Close(close) = message {
            code = close_code(close);
            break;
        }
    }
    assert_eq!(code, 4002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_backlog_past_its_bound_closes_a_slow_consumer() {
    let mut config = test_config();
    // Events every 20 ms, but the account lane may send 1 per second: the
    // backlog grows, and past 5 queued frames the connection is closed.
    config.simulator.private_interval_ms = 20;
    config.ws.private_queue = 5;
    set_channel(&mut config, "account", 1, 50);
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    client
        .request(
            json!({"type": "auth", "token": token("slow", &[], 600)}),
            json!(1),
        )
        .await;
    client.request(subscribe("account", None), json!(2)).await;
    assert_eq!(close_code(client.expect_close().await), 4000);
    let mut tries = 0;
    loop {
        let (_, stats) = server.get_json("/api/v1/ws/stats").await;
        if stats["dropped"].as_u64() > Some(0) {
            break;
        }
        tries += 1;
        assert!(tries < 50, "discarded frames are counted: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every WebSocket listener's URL (v1 and quotes share the main listener and
/// its per-address count).
fn websocket_urls(server: &TestServer) -> Vec<String> {
    vec![
        server.ws_url(),
        format!("ws://{}/", server.candles_addr.expect("candles")),
        format!(
            "ws://{}/ws/market-data",
            server.market_stream_addr.expect("8082")
        ),
        format!("ws://{}/ws", server.enhanced_addr.expect("enhanced")),
    ]
}

/// A handshake's status, `Retry-After` and JSON `code` when refused.
async fn refused(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> Option<(u16, Option<String>, String)> {
    match connect_async(request).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a JSON body");
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Some((
                response.status().as_u16(),
                retry,
                body["code"].as_str().unwrap_or_default().to_owned(),
            ))
        }
        Err(other) => panic!("handshake failed without a response: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped_on_every_listener() {
    let mut config = test_config();
    config.server.max_connections_per_ip = 2;
    config.market_stream.max_connections_per_ip = 2;
    let server = TestServer::start(config).await;
    for url in websocket_urls(&server) {
        // At the edge: two open connections from one address.
        let (first, _) = connect_async(&url).await.expect("first");
        let (_second, _) = connect_async(&url).await.expect("second");
        // Past it: 429 with Retry-After.
        let (status, retry, code) = refused(url.as_str()).await.expect("the third is refused");
        assert_eq!(status, 429, "{url}");
        assert!(retry.is_some(), "{url}: Retry-After");
        let expected = match url.contains("/ws/market-data") {
            true => "RATE_LIMIT_EXCEEDED",
            false => "ip_connection_limit",
        };
        assert_eq!(code, expected, "{url}");
        // A slot comes back once a connection is gone.
        drop(first);
        let mut again = None;
        for _ in 0..100 {
            if refused(url.as_str()).await.is_none() {
                again = Some(());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(again.is_some(), "{url}: a slot is free again after a close");
    }
    let stats = server.gateway.stats.snapshot();
    assert!(stats.handshakes_refused >= 4, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_per_address_per_second_are_capped_on_every_listener() {
    let mut config = test_config();
    config.server.handshakes_per_ip_per_second = 2;
    let server = TestServer::start(config).await;
    for url in websocket_urls(&server) {
        // Within the burst: two. Then one every 500 ms: of ten handshakes
        // in a row, one is refused unless each took longer than that (the
        // assertion needs no timing beyond it).
        let mut outcomes = Vec::new();
        for _ in 0..10 {
            outcomes.push(refused(url.as_str()).await);
        }
        assert!(
            outcomes[..2].iter().all(Option::is_none),
            "{url}: {outcomes:?}"
        );
        let refusal = outcomes
            .iter()
            .flatten()
            .next()
            .unwrap_or_else(|| panic!("{url}: a handshake past the rate is refused"));
        assert_eq!(refusal.0, 429, "{url}");
        let retry: u64 = refusal
            .1
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(retry >= 1, "{url}: {retry}");
        let expected = match url.contains("/ws/market-data") {
            // Seed 000's word for every per-address refusal.
            true => "RATE_LIMIT_EXCEEDED",
            false => "ip_handshake_rate",
        };
        assert_eq!(refusal.2, expected, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let forwarded = |url: &str, client: &str| {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().expect("header"));
        request
    };
    // Untrusted (the default): the header is ignored, both count as 127.0.0.1.
    let mut config = test_config();
    config.server.max_connections_per_ip = 1;
    let server = TestServer::start(config.clone()).await;
    let url = server.ws_url();
    let (_a, _) = connect_async(forwarded(&url, "203.0.113.1"))
        .await
        .expect("a");
    let refusal = refused(forwarded(&url, "203.0.113.2")).await;
    assert_eq!(
        refusal.map(|r| r.0),
        Some(429),
        "a header from anyone is not believed"
    );
    drop(server);
    // Behind a trusted proxy (loopback here): each forwarded client has its
    // own allowance; a spoofed hop before the proxy's is the one counted.
    config.server.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    let server = TestServer::start(config).await;
    let url = server.ws_url();
    let (_a, _) = connect_async(forwarded(&url, "203.0.113.1"))
        .await
        .expect("a");
    let (_b, _) = connect_async(forwarded(&url, "203.0.113.2"))
        .await
        .expect("b");
    let refusal = refused(forwarded(&url, "198.51.100.9, 203.0.113.1")).await;
    assert_eq!(
        refusal.map(|r| r.0),
        Some(429),
        "the rightmost untrusted hop counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_checks_origin_against_its_allowlist() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let allowed = vec!["https://app.example".to_owned()];
    let mut config = test_config();
    config.server.allowed_origins = allowed.clone();
    config.candles.allowed_origins = allowed.clone();
    config.market_stream.allowed_origins = allowed.clone();
    config.enhanced.allowed_origins = allowed;
    let server = TestServer::start(config).await;
    let from = |url: &str, origin: &str| {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header"));
        request
    };
    let mut urls = websocket_urls(&server);
    urls.push(format!("ws://{}/ws/quotes", server.addr));
    for url in urls {
        let refusal = refused(from(&url, "https://evil.example")).await;
        let (status, _, code) = refusal.unwrap_or_else(|| panic!("{url}: a foreign Origin"));
        assert_eq!(
            (status, code.as_str()),
            (403, "origin_not_allowed"),
            "{url}"
        );
        assert!(
            refused(from(&url, "https://app.example")).await.is_none(),
            "{url}: allowed"
        );
        // Not a browser: no Origin, no check.
        assert!(
            refused(url.as_str()).await.is_none(),
            "{url}: without Origin"
        );
    }
}
