//! The USD/COP services (seeds 000 and 001) under a pinned clock: market
//! events on the stream, the orchestrator's REST API on its listener (8085),
//! the enhanced service's REST and streams (8080), and the L0 dependency.

use std::time::Duration;

use serde_json::{Value, json};
use tickgate::Config;

use crate::support::{Client, MARKET_OPEN, TestServer, WAIT, pin_clock, temp_dir, test_config};

fn config(at: &str, frozen: bool, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    config.candles.enabled = false;
    pin_clock(&mut config, at, frozen);
    edit(&mut config);
    config
}

async fn stream(server: &TestServer) -> Client {
    let addr = server.market_stream_addr.expect("market stream enabled");
    Client::connect_dialect(&format!("ws://{addr}/ws/market-data"), "marketStream").await
}

/// The next frame that is not market data or a heartbeat.
async fn reply(client: &mut Client) -> Value {
    client
        .recv_until(|f| f["type"] != "market_data" && f["type"] != "heartbeat")
        .await
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().expect("a timestamp")
}

async fn get(url: String) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::get(url).await.expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("JSON body"))
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn rt(server: &TestServer, path: &str) -> String {
    format!(
        "http://{}{path}",
        server.rt_orchestrator_addr.expect("8085 on")
    )
}

fn enhanced(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.enhanced_addr.expect("8080 on"))
}

/// Polls `url` until `pred` holds on its JSON body.
async fn until(url: impl Fn() -> String, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, _, body) = get(url()).await;
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_then_closed_then_opening_follow_the_pinned_clock() {
    let server = TestServer::start(config("2026-11-30T12:49:58-05:00", true, |_| {})).await;
    let clock = server.gateway.clock.clone();
    let mut client = stream(&server).await;
    client
        .send(json!({"action": "subscribe", "symbols": ["USDCOP"]}))
        .await;
    assert_eq!(reply(&mut client).await["type"], "ack");

    clock.set(at("2026-11-30T12:50:00-05:00"));
    let closing = reply(&mut client).await;
    assert_eq!(closing["type"], "system_status", "{closing}");
    assert_eq!(closing["status"], "market_closing");
    assert_eq!(closing["details"]["seconds_until_close"], 300);
    assert_eq!(
        closing["details"]["market_close_time"],
        "2026-11-30T17:55:00Z"
    );

    clock.set(at("2026-11-30T12:55:00-05:00"));
    let closed = reply(&mut client).await;
    assert_eq!(closed["status"], "market_closed", "{closed}");
    assert_eq!(
        closed["details"]["next_session_start"],
        "2026-12-01T13:00:00Z"
    );
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(
        u16::from(close.code),
        1000,
        "closed at the close: {close:?}"
    );

    // While closed: acknowledged, then MARKET_CLOSED; the connection stays.
    let mut late = stream(&server).await;
    late.send(json!({"action": "subscribe", "symbols": ["USDCOP", "AAPL"]}))
        .await;
    let ack = reply(&mut late).await;
    assert_eq!(ack["symbols"], json!(["USDCOP", "AAPL"]), "{ack}");
    let error = reply(&mut late).await;
    assert_eq!(error["code"], "MARKET_CLOSED", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("2026-12-01T08:00:00-05:00"),
        "{error}"
    );
    // No USDCOP tick while closed; AAPL (24/7) keeps streaming.
    for _ in 0..30 {
        let frame = late.recv_until(|f| f["type"] == "market_data").await;
        assert_eq!(frame["symbol"], "AAPL", "{frame}");
    }

    clock.set(at("2026-12-01T07:55:00-05:00"));
    let opening = reply(&mut late).await;
    assert_eq!(opening["status"], "market_opening", "{opening}");
    assert_eq!(opening["details"]["seconds_until_open"], 300);
    clock.set(at("2026-12-01T08:00:00-05:00"));
    let usdcop = late
        .recv_until(|f| f["type"] == "market_data" && f["symbol"] == "USDCOP")
        .await;
    assert_eq!(usdcop["metadata"]["source"], "realtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_is_closed_and_the_session_api_says_when_it_reopens() {
    // Monday 16 November 2026: Independence of Cartagena, moved to Monday.
    let server = TestServer::start(config("2026-11-16T10:00:00-05:00", true, |_| {})).await;
    let (status, _, session) = get(enhanced(&server, "/market/session")).await;
    assert_eq!(status, 200);
    assert_eq!(session["status"], "closed", "{session}");
    assert_eq!(session["market_open"], false);
    assert_eq!(session["timezone"], "America/Bogota");
    assert_eq!(session["next_session_start"], "2026-11-17T08:00:00-05:00");
    assert!(session["holiday"].is_string(), "{session}");
    assert!(session["current_session_end"].is_null());

    // An ordinary open session, and the closing window.
    let open = TestServer::start(config("2026-11-30T12:51:00-05:00", true, |_| {})).await;
    let (_, _, session) = get(enhanced(&open, "/market/session")).await;
    assert_eq!(session["status"], "closing", "{session}");
    assert_eq!(
        session["current_session_start"],
        "2026-11-30T08:00:00-05:00"
    );
    assert_eq!(session["current_session_end"], "2026-11-30T12:55:00-05:00");
    assert_eq!(session["minutes_until_close"], 4);
    let (_, _, status) = get(enhanced(&open, "/status")).await;
    assert_eq!(
        status["market_session"], session,
        "/status embeds the same object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_api_reports_and_force_start_respects_market_hours() {
    let server = TestServer::start(config("2026-11-30T14:00:00-05:00", true, |_| {})).await;
    let (status, headers, health) = get(rt(&server, "/health")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "rt-orchestrator");
    assert_eq!(health["market_hours_active"], false);
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(headers.contains_key(name), "{name} on every response");
    }
    let market = until(
        || rt(&server, "/api/market-status"),
        |m| m["realtime_collection"]["active"] == false,
    )
    .await;
    assert_eq!(market["market_open"], false);
    assert_eq!(market["current_time"], "2026-11-30T14:00:00-05:00");
    assert_eq!(
        market["market_hours"],
        json!({"open": "08:00", "close": "12:55"})
    );
    let (_, _, dependency) = get(rt(&server, "/api/pipeline-dependency")).await;
    assert_eq!(dependency["l0_completed"], false, "{dependency}");
    assert_eq!(dependency["fallback_mode"], false);

    let (status, refused) = post(
        rt(&server, "/api/force-start"),
        json!({"reason": "L0 pipeline stuck"}),
    )
    .await;
    assert_eq!(status, 409, "never outside market hours: {refused}");
    assert_eq!(refused["code"], "market_closed");

    // Inside market hours it starts, once.
    let clock = server.gateway.clock.clone();
    clock.set(at("2026-11-30T10:00:00-05:00"));
    let (status, started) = post(
        rt(&server, "/api/force-start"),
        json!({"reason": "L0 pipeline stuck", "requested_by": "ops@example"}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert!(
        started["status"] == "force_started" || started["status"] == "already_started",
        "{started}"
    );
    let (status, again) = post(rt(&server, "/api/force-start"), json!({"reason": "again"})).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "already_started");
    assert_eq!(
        again["started_at"], started["started_at"],
        "the original start"
    );

    let (status, rotation) = post(rt(&server, "/api/rotate-api-keys"), json!({})).await;
    assert_eq!(status, 409, "no keys configured: {rotation}");
    assert!(rotation["message"].as_str().unwrap().contains("API key"));
    let (_, _, service) = get(enhanced(&server, "/status")).await;
    assert_eq!(
        service["api_key_usage"]["total_keys"], 0,
        "the real pool size"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_start_is_recorded_in_system_health() {
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.orchestrator.l0_signal_path = Some(temp_dir("l0").join("l0_ready.flag"));
    }))
    .await;
    let (status, started) = post(
        rt(&server, "/api/force-start"),
        json!({"reason": "L0 pipeline stuck", "requested_by": "ops@example"}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "force_started");
    let store = server.gateway.writer.store().clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let details = loop {
        if let Some(details) = store
            .latest_health("rt-orchestrator", "force_started")
            .await
            .expect("query")
        {
            break details;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no system_health row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(details["reason"], "L0 pipeline stuck");
    assert_eq!(details["requested_by"], "ops@example");
    let (_, _, dependency) = get(rt(&server, "/api/pipeline-dependency")).await;
    assert_eq!(dependency["fallback_mode"], true, "{dependency}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_of_the_orchestrator_api_holds_at_its_edge() {
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.rt_orchestrator.requests_per_minute = 5;
    }))
    .await;
    for expected in (0..5).rev() {
        let (status, headers, _) = get(rt(&server, "/api/pipeline-dependency")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            expected.to_string().as_str()
        );
    }
    let (status, headers, body) = get(rt(&server, "/health")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limit_exceeded");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > jiff::Timestamp::now().as_second(), "reset is ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_waits_for_the_l0_signal_then_starts() {
    let signal = temp_dir("l0").join("l0_ready.flag");
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.orchestrator.l0_signal_path = Some(signal.clone());
        c.orchestrator.check_ms = 50;
    }))
    .await;
    let waiting = until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "waiting_l0",
    )
    .await;
    assert_eq!(waiting["l0_integration"]["ready_signal_exists"], false);
    assert_eq!(waiting["realtime_collection"]["active"], false);
    let (status, _, health) = get(rt(&server, "/health")).await;
    assert_eq!(status, 200, "healthy while waiting for L0: {health}");

    std::fs::write(
        &signal,
        r#"{"ready": true, "timestamp": "2026-11-30T07:00:00-05:00"}"#,
    )
    .expect("write the signal");
    let active = until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "active",
    )
    .await;
    assert_eq!(active["l0_integration"]["ready_signal_exists"], true);
    assert_eq!(active["l0_integration"]["is_fresh"], true, "{active}");
    assert_eq!(active["realtime_collection"]["active"], true);
    let (_, _, dependency) = get(rt(&server, "/api/pipeline-dependency")).await;
    assert_eq!(dependency["l0_completed"], true);
    assert_eq!(dependency["completed_at"], "2026-11-30T12:00:00Z");
    assert_eq!(dependency["fallback_mode"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_l0_signal_in_time_it_falls_back_to_history() {
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.orchestrator.l0_signal_path = Some(temp_dir("l0").join("never.flag"));
        c.orchestrator.l0_timeout_s = 60;
        c.orchestrator.check_ms = 50;
    }))
    .await;
    until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "waiting_l0",
    )
    .await;
    server
        .gateway
        .clock
        .advance(jiff::SignedDuration::from_secs(61));
    let dependency = until(
        || rt(&server, "/api/pipeline-dependency"),
        |d| d["fallback_mode"] == true,
    )
    .await;
    assert_eq!(dependency["l0_completed"], false);
    assert!(dependency["wait_duration_seconds"].as_i64().unwrap() >= 60);
    until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "active",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enhanced_service_answers_health_latest_and_its_streams() {
    let server = TestServer::start(config(MARKET_OPEN, false, |_| {})).await;
    let (status, _, health) = get(enhanced(&server, "/health")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["service"], "enhanced-websocket-service");
    assert_eq!(health["connectivity"]["database"]["connected"], true);
    assert_eq!(health["connectivity"]["redis"]["configured"], false);
    for key in ["cpu_percent", "memory_percent", "disk_percent"] {
        let value = health["system_resources"][key].as_f64().expect(key);
        assert!((0.0..=100.0).contains(&value), "{key}: {value}");
    }
    assert!(
        health["system_resources"]["memory_percent"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let latest = until(
        || enhanced(&server, "/market/latest"),
        |l| l["symbol"] == "USDCOP" && l["source"] == "simulator",
    )
    .await;
    let price = latest["price"].as_f64().unwrap();
    assert!((3_000.0..5_000.0).contains(&price), "{latest}");
    assert!(latest["timestamp"].as_str().unwrap().ends_with("-05:00"));

    let addr = server.enhanced_addr.unwrap();
    let mut all = Client::connect_dialect(&format!("ws://{addr}/ws"), "enhanced").await;
    all.send(json!({"type": "heartbeat"})).await;
    let beat = all.recv_until(|f| f["type"] == "heartbeat_response").await;
    assert_eq!(beat["server_status"]["market_status"], "open", "{beat}");
    assert_eq!(beat["server_status"]["clients_connected"], 1);
    all.send_text("hello").await;
    all.recv_until(|f| f["type"] == "error").await;
    // The USD/COP system's symbols (the calendar-bound ones), and only
    // those, although the simulator also streams AAPL, BTC/USDT...
    let mut symbols = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let frame = all.recv_until(|f| f["type"] == "market_data").await;
        symbols.insert(frame["symbol"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        symbols,
        ["USDBRL", "USDCOP"].map(String::from).into(),
        "/ws streams the calendar-bound symbols"
    );

    let mut one = Client::connect_dialect(&format!("ws://{addr}/ws/usdcop"), "enhanced").await;
    for _ in 0..5 {
        let frame = one.recv_until(|f| f["type"] == "market_data").await;
        assert_eq!(frame["symbol"], "USDCOP", "{frame}");
    }
    // An unknown symbol, and one the gateway streams that is not the USD/COP
    // system's, are refused alike.
    for path in ["/ws/NOSUCH", "/ws/AAPL"] {
        let refused = tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 404, "{path}");
            }
            other => panic!("{path} is refused: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_answers_with_the_last_close_while_the_market_is_closed() {
    // Saturday: no USDCOP tick is collected, the stored history answers.
    let server = TestServer::start(config("2026-11-28T10:00:00-05:00", true, |_| {})).await;
    let latest = until(
        || enhanced(&server, "/market/latest"),
        |l| l["symbol"] == "USDCOP",
    )
    .await;
    assert_eq!(latest["source"], "store", "{latest}");
    assert!(latest["price"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_rotate_and_status_reports_the_real_pool_size() {
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        // The pool without the source: nothing may reach the real provider.
        c.upstream.twelvedata.enabled = false;
        c.upstream.twelvedata.keys = ["key-one-0001", "key-two-0002", "key-three-03"]
            .map(tickgate::config::Secret::new)
            .to_vec();
    }))
    .await;
    let (_, _, status) = get(enhanced(&server, "/status")).await;
    assert_eq!(status["api_key_usage"]["total_keys"], 3, "{status}");
    let (code, first) = post(rt(&server, "/api/rotate-api-keys"), json!({})).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["status"], "rotated");
    let (_, second) = post(rt(&server, "/api/rotate-api-keys"), json!({})).await;
    assert_eq!(second["previous_key_index"], first["current_key_index"]);
    assert_ne!(second["current_key_index"], first["current_key_index"]);
    let text = format!("{status}{first}{second}");
    assert!(!text.contains("key-one-0001"), "keys never appear in full");

    let single = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.upstream.twelvedata.enabled = false;
        c.upstream.twelvedata.keys = vec![tickgate::config::Secret::new("only-one-key")];
    }))
    .await;
    let (code, refused) = post(rt(&single, "/api/rotate-api-keys"), json!({})).await;
    assert_eq!(code, 409, "{refused}");
    let (_, _, status) = get(enhanced(&single, "/status")).await;
    assert_eq!(status["api_key_usage"]["total_keys"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_and_the_health_monitor_announce_their_status() {
    let server = TestServer::start(config(MARKET_OPEN, true, |_| {})).await;
    let mut client = stream(&server).await;
    client
        .send(json!({"action": "subscribe", "symbols": ["USDCOP"]}))
        .await;
    assert_eq!(reply(&mut client).await["type"], "ack");
    let (status, sent) = post(
        rt(&server, "/api/system-status"),
        json!({"status": "maintenance_mode", "message": "Upgrade at 13:00"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["clients"], 1);
    let frame = reply(&mut client).await;
    assert_eq!(frame["status"], "maintenance_mode", "{frame}");
    assert_eq!(frame["message"], "Upgrade at 13:00");
    let (status, _) = post(
        rt(&server, "/api/system-status"),
        json!({"status": "shutting_down", "message": "x"}),
    )
    .await;
    assert_eq!(status, 400, "only the documented statuses");

    // A Redis that never answers: the health monitor reports degraded
    // service, also to a client that connects during the outage.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let degraded = TestServer::start(config(MARKET_OPEN, true, |c| {
        c.redis.url = Some(format!("redis://{unused}"));
    }))
    .await;
    let mut client = stream(&degraded).await;
    let frame = reply(&mut client).await;
    assert_eq!(frame["type"], "system_status", "{frame}");
    assert_eq!(frame["status"], "degraded_service");
    let (status, _, health) = get(rt(&degraded, "/health")).await;
    assert_eq!(status, 503, "a configured Redis is down: {health}");
    assert_eq!(health["status"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_enters_error_and_recovers_with_backoff() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let server = TestServer::start(config(MARKET_OPEN, true, |c| {
        let upstream = &mut c.upstream.twelvedata;
        upstream.keys = ["key-one-0001", "key-two-0002"]
            .map(tickgate::config::Secret::new)
            .to_vec();
        upstream.ws_url = format!("ws://{closed}/v1/quotes/price");
        upstream.rest_url = format!("http://{closed}");
        upstream.reconnect_min_ms = 50;
        upstream.reconnect_max_ms = 100;
        c.orchestrator.check_ms = 50;
        c.orchestrator.upstream_grace_ms = 300;
        c.orchestrator.error_backoff_ms = [300, 600];
    }))
    .await;
    let failed = until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "error",
    )
    .await;
    assert_eq!(failed["realtime_collection"]["active"], false, "{failed}");
    assert_eq!(failed["realtime_collection"]["websocket_connected"], false);
    // After the backoff it tries again on its own.
    until(
        || enhanced(&server, "/status"),
        |s| s["service_status"] == "active",
    )
    .await;
}

/// Seed 001's `/health` reads the background probe: with the probe
/// interval an hour, thirty requests all report the same probe (its
/// `checked_at`), so none of them pinged the database or Redis or listed the
/// disks itself; and the report is still the real one (database connected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reads_the_background_probe_and_opens_nothing() {
    let server = TestServer::start(config(MARKET_OPEN, false, |c| {
        c.enhanced.health_probe_ms = 3_600_000;
    }))
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, _, health) = get(enhanced(&server, "/health")).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(
            health["connectivity"]["database"]["connected"], true,
            "{health}"
        );
        seen.insert(
            health["connectivity"]["checked_at"]
                .as_str()
                .expect("checked_at")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 1, "every request read the one probe: {seen:?}");
}
