//! The candles dialect (seed 003) on its own listener, driven by a real
//! WebSocket client whose every frame is validated against the `candles`
//! channel of asyncapi.yaml.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, TestServer, WAIT, test_config};

const BTC: &str = "BTC/USDT";

async fn connect(server: &TestServer) -> Client {
    let addr = server.candles_addr.expect("the candles listener is on");
    Client::connect_dialect(&format!("ws://{addr}/"), "candles").await
}

fn candles_url(server: &TestServer, path: &str) -> String {
    format!(
        "http://{}{path}",
        server.candles_addr.expect("candles listener")
    )
}

fn subscribe(interval: &str, bars: Option<i64>) -> Value {
    let mut frame = json!({"type": "subscribe", "symbol": BTC, "interval": interval});
    if let Some(bars) = bars {
        frame["initialBars"] = json!(bars);
    }
    frame
}

fn seconds(time: &Value) -> i64 {
    time.as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or_else(|| panic!("bar time {time}"))
}

/// Start (unix seconds) of the period of `interval` containing `time`.
fn bucket(interval: &str, time: i64) -> i64 {
    let size = match interval {
        "1m" => 60,
        "5m" => 300,
        "15m" => 900,
        "1h" => 3600,
        "4h" => 14_400,
        "1D" => 86_400,
        "1W" => 7 * 86_400,
        other => panic!("interval {other}"),
    };
    if interval == "1W" {
        // Weeks start on Monday; 1970-01-01 was a Thursday.
        let monday = 4 * 86_400;
        (time - monday).div_euclid(size) * size + monday
    } else {
        time.div_euclid(size) * size
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_answers_initial_bars_then_updates_in_place() {
    let server = TestServer::default().await;
    let mut client = connect(&server).await;
    client.send(subscribe("1m", Some(50))).await;
    let initial = client.recv().await;
    assert_eq!(initial["type"], "initial", "{initial}");
    assert_eq!(
        (initial["symbol"].as_str(), initial["interval"].as_str()),
        (Some(BTC), Some("1m"))
    );
    let bars = initial["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 50, "the backfill holds 150 bars; 50 were asked");
    let times: Vec<i64> = bars.iter().map(|b| seconds(&b["time"])).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "sorted by time");
    assert!(times.iter().all(|&t| t % 60 == 0), "aligned to the minute");
    let now = jiff::Timestamp::now().as_second();
    assert!(
        times[49] <= now && now - times[49] < 120,
        "the last bar is the current one"
    );

    // Updates: the same candle again and again, then the next one.
    let mut last_time = times[49];
    let mut updates = 0;
    while updates < 5 {
        let update = client.recv().await;
        assert_eq!(update["type"], "update", "{update}");
        assert_eq!(update["interval"], "1m");
        let time = seconds(&update["bar"]["time"]);
        assert!(time >= last_time, "a candle never goes back in time");
        assert_eq!(time % 60, 0);
        let bar = &update["bar"];
        let (o, h, l, c) = (
            bar["open"].as_f64(),
            bar["high"].as_f64(),
            bar["low"].as_f64(),
            bar["close"].as_f64(),
        );
        assert!(h >= o && h >= c && l <= o && l <= c, "{bar}");
        last_time = time;
        updates += 1;
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interval_is_aligned_and_aggregates_its_minutes() {
    let server = TestServer::default().await;
    let mut client = connect(&server).await;
    client.send(subscribe("1m", Some(1000))).await;
    let minutes = client.recv_type("initial").await;
    let minutes = minutes["bars"].as_array().expect("bars").clone();
    let first_minute = seconds(&minutes[0]["time"]);
    for interval in ["5m", "15m", "1h", "4h", "1D", "1W"] {
        client.send(subscribe(interval, Some(1000))).await;
        let initial = client.recv_type("initial").await;
        assert_eq!(initial["interval"], interval);
        let bars = initial["bars"].as_array().expect("bars");
        assert!(
            bars.len() >= 150,
            "{interval}: backfilled history: {}",
            bars.len()
        );
        for bar in bars {
            let time = seconds(&bar["time"]);
            assert_eq!(
                time,
                bucket(interval, time),
                "{interval} bar at {}",
                bar["time"]
            );
        }
        // A completed bar whose period the minutes cover is their aggregate.
        let completed = &bars[..bars.len() - 1];
        let mut checked = 0;
        for bar in completed {
            let start = seconds(&bar["time"]);
            if start < first_minute {
                continue;
            }
            let inside: Vec<&Value> = minutes
                .iter()
                .filter(|m| bucket(interval, seconds(&m["time"])) == start)
                .collect();
            assert!(!inside.is_empty(), "{interval} {start}");
            let max = inside
                .iter()
                .map(|m| m["high"].as_f64().unwrap_or(f64::MIN))
                .fold(f64::MIN, f64::max);
            let min = inside
                .iter()
                .map(|m| m["low"].as_f64().unwrap_or(f64::MAX))
                .fold(f64::MAX, f64::min);
            let volume: f64 = inside
                .iter()
                .map(|m| m["volume"].as_f64().unwrap_or(0.0))
                .sum();
            assert_eq!(bar["open"], inside[0]["open"], "{interval} open");
            assert_eq!(
                bar["close"],
                inside[inside.len() - 1]["close"],
                "{interval} close"
            );
            assert_eq!(
                (
                    bar["high"].as_f64(),
                    bar["low"].as_f64(),
                    bar["volume"].as_f64()
                ),
                (Some(max), Some(min), Some(volume)),
                "{interval} at {}",
                bar["time"]
            );
            checked += 1;
        }
        if matches!(interval, "5m" | "15m") {
            assert!(
                checked > 0,
                "{interval}: some bars were checked against the minutes"
            );
        }
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_worded_as_the_seed_and_keep_the_connection() {
    let server = TestServer::default().await;
    let mut client = connect(&server).await;
    let cases = [
        (
            json!({"type": "subscribe", "symbol": BTC, "interval": "10m"}).to_string(),
            "Invalid interval: 10m. Valid: 1m, 5m, 15m, 1h, 4h, 1D, 1W",
        ),
        (
            json!({"type": "subscribe", "symbol": "ETH/USDT", "interval": "5m"}).to_string(),
            "Invalid symbol: ETH/USDT. Only BTC/USDT is supported.",
        ),
        (
            json!({"type": "unsubscribe", "symbol": "ETH/USDT", "interval": "5m"}).to_string(),
            "Invalid symbol: ETH/USDT. Only BTC/USDT is supported.",
        ),
        ("not json".to_owned(), "Invalid message format"),
        ("{\"type\":\"bogus\"}".to_owned(), "Invalid message format"),
        (
            "{\"type\":\"subscribe\",\"symbol\":5,\"interval\":\"5m\"}".to_owned(),
            "Invalid message format",
        ),
        ("{}".to_owned(), "Invalid message format"),
        (
            json!({"type": "subscribe", "symbol": BTC, "interval": "5m", "initialBars": 0})
                .to_string(),
            "Invalid initialBars: 0. Must be at least 1 (at most 1000 are sent)",
        ),
    ];
    for (frame, message) in cases {
        client.send_text(&frame).await;
        let error = client.recv().await;
        assert_eq!(
            error,
            json!({"type": "error", "message": message}),
            "for {frame}"
        );
    }
    client
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    let error = client.recv().await;
    assert_eq!(error["message"], "Invalid message format");
    client.send(json!({"type": "ping"})).await;
    assert_eq!(
        client.recv().await,
        json!({"type": "pong"}),
        "still open after every error"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_bars_default_to_100_and_are_capped() {
    let mut config = test_config();
    config.candles.max_initial_bars = 120;
    let server = TestServer::start(config).await;
    let mut client = connect(&server).await;
    client.send(subscribe("1m", None)).await;
    let initial = client.recv_type("initial").await;
    assert_eq!(
        initial["bars"].as_array().map(Vec::len),
        Some(100),
        "the default"
    );
    client.send(subscribe("5m", Some(1_000_000))).await;
    let initial = client.recv_type("initial").await;
    assert_eq!(
        initial["bars"].as_array().map(Vec::len),
        Some(120),
        "capped at max_initial_bars"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_the_rooms_updates() {
    let server = TestServer::default().await;
    let mut client = connect(&server).await;
    client.send(subscribe("1m", Some(1))).await;
    client.recv_type("initial").await;
    client.recv_type("update").await;
    client
        .send(json!({"type": "unsubscribe", "symbol": BTC, "interval": "1m"}))
        .await;
    client.send(json!({"type": "ping"})).await;
    client.recv_type("pong").await;
    // Several broadcast rounds (100 ms each in tests) pass without an update.
    let quiet = tokio::time::timeout(Duration::from_millis(800), client.ws.next()).await;
    assert!(quiet.is_err(), "no frame after unsubscribe: {quiet:?}");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_sends_its_clients_the_same_update() {
    let server = TestServer::default().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    for client in [&mut a, &mut b] {
        client.send(subscribe("5m", Some(1))).await;
        client.recv_type("initial").await;
    }
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    for _ in 0..4 {
        from_a.push(a.recv_type("update").await);
        from_b.push(b.recv_type("update").await);
    }
    assert!(
        from_a.iter().any(|u| from_b.contains(u)),
        "the two clients of BTC/USDT:5m got the same updates"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ws_stats_have_the_seed_shape() {
    let server = TestServer::default().await;
    let mut clients = Vec::new();
    for interval in ["5m", "5m", "1h"] {
        let mut client = connect(&server).await;
        client.send(subscribe(interval, Some(1))).await;
        client.recv_type("initial").await;
        clients.push(client);
    }
    // Each room broadcasts at least once.
    for client in &mut clients {
        client.recv_type("update").await;
    }
    let health: Value = reqwest::get(candles_url(&server, "/health"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["status"], "ok");
    let stats: Value = reqwest::get(candles_url(&server, "/health/ws-stats"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats["connections"], 3, "{stats}");
    let broadcaster = &stats["broadcaster"];
    assert_eq!(
        (
            broadcaster["totalRooms"].as_u64(),
            broadcaster["totalClients"].as_u64()
        ),
        (Some(2), Some(3)),
        "{stats}"
    );
    let rooms = broadcaster["rooms"].as_array().expect("rooms");
    let room = |key: &str| {
        rooms
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("room {key} in {stats}"))
    };
    assert_eq!(room("BTC/USDT:5m")["clientCount"], 2);
    assert_eq!(room("BTC/USDT:1h")["clientCount"], 1);
    for room in rooms {
        assert_eq!(room["hasCandle"], true);
        let last = room["lastBroadcast"].as_i64().expect("lastBroadcast in ms");
        assert!((jiff::Timestamp::now().as_millisecond() - last).abs() < 600_000);
    }
    assert!(
        stats["aggregator"]["oneMinuteCandlesCount"].as_u64() >= Some(150),
        "{stats}"
    );
    drop(clients);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_candles_clients_with_1001() {
    let server = TestServer::default().await;
    let mut client = connect(&server).await;
    client.send(subscribe("1m", Some(1))).await;
    client.recv_type("initial").await;
    let stopping = tokio::spawn(server.stop());
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stops")
        .expect("task")
        .expect("clean stop");
}
