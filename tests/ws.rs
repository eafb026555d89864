//! The v1 WebSocket API driven like a client would: subscriptions, data
//! frames, private-channel isolation, auth.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::support::{Client, TestServer, subscribe, test_config, token, unsubscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_subscriber_gets_ticks_of_its_symbol() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .request(subscribe("market_data", Some("aapl")), json!(1))
        .await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "id": 1, "channel": "market_data", "symbol": "AAPL"})
    );
    for _ in 0..5 {
        let tick = client.recv_type("market_tick").await;
        assert_eq!(tick["symbol"], "AAPL");
        assert_eq!(tick["channel"], "market_data");
        assert_eq!(tick["source"], "simulator");
        assert!(tick["bid"].as_f64() <= tick["ask"].as_f64(), "{tick}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_lists_channels_limits_and_symbols() {
    let server = TestServer::default().await;
    let client = Client::connect(&server).await;
    let channels = client.welcome["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 10);
    let market = channels
        .iter()
        .find(|c| c["name"] == "market_data")
        .expect("market_data");
    assert_eq!(market["rate_per_second"], 100);
    assert_eq!(market["max_subscribers"], 500);
    assert_eq!(market["private"], false);
    let account = channels
        .iter()
        .find(|c| c["name"] == "account")
        .expect("account");
    assert_eq!(
        (
            account["private"].clone(),
            account["rate_per_second"].clone()
        ),
        (json!(true), json!(10))
    );
    assert_eq!(client.welcome["limits"]["max_subscriptions"], 50);
    assert_eq!(client.welcome["limits"]["max_frame_bytes"], 65536);
    let symbols: HashSet<&str> = client.welcome["symbols"]
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        symbols,
        HashSet::from([
            "AAPL", "GOOGL", "MSFT", "TSLA", "AMZN", "NVDA", "META", "BTC/USDT", "USDCOP", "USDBRL"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_symbols_subscription_reaches_several_symbols_once() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", Some("AAPL")), json!("a"))
        .await;
    let reply = client
        .request(subscribe("market_data", None), json!("all"))
        .await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "id": "all", "channel": "market_data"})
    );
    // A single-symbol subscribe on a channel covered by all symbols changes nothing.
    let again = client
        .request(subscribe("market_data", Some("AAPL")), json!("again"))
        .await;
    assert_eq!(again["type"], "subscribed");
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    while last_seq.len() < 4 {
        let tick = client.recv_type("market_tick").await;
        let symbol = tick["symbol"].as_str().expect("symbol").to_owned();
        let seq = tick["seq"].as_u64().expect("seq");
        if let Some(previous) = last_seq.insert(symbol.clone(), seq) {
            assert!(
                seq > previous,
                "{symbol}: seq {seq} after {previous} (a duplicate or reorder)"
            );
        }
    }
    // The all-symbols subscription counts once, and the AAPL one was absorbed.
    let (_, stats) = server.get_json("/api/v1/ws/stats").await;
    let market = stats["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["name"] == "market_data")
        .cloned();
    assert_eq!(market.expect("market_data")["subscribers"], 1);
    let error = client
        .request(unsubscribe("market_data", Some("AAPL")), json!("u"))
        .await;
    assert_eq!(error["code"], "not_subscribed", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("all-symbols"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderbook_starts_with_a_snapshot_then_sequenced_updates() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("orderbook", Some("MSFT")), json!(1))
        .await;
    let first = client.recv_until(|f| f["channel"] == "orderbook").await;
    assert_eq!(
        first["type"], "orderbook_snapshot",
        "the first book frame is a snapshot: {first}"
    );
    let mut book: HashMap<String, f64> = HashMap::new();
    let apply = |book: &mut HashMap<String, f64>, frame: &Value, replace: bool| {
        if replace {
            book.clear();
        }
        for side in ["bids", "asks"] {
            for level in frame[side].as_array().expect("levels") {
                let key = format!("{side}:{}", level["price"]);
                let size = level["size"].as_f64().expect("size");
                if size == 0.0 {
                    book.remove(&key);
                } else {
                    book.insert(key, size);
                }
            }
        }
    };
    apply(&mut book, &first, true);
    let mut seq = first["seq"].as_u64().expect("seq");
    for _ in 0..10 {
        let frame = client.recv_until(|f| f["channel"] == "orderbook").await;
        let next = frame["seq"].as_u64().expect("seq");
        match frame["type"].as_str() {
            Some("orderbook_update") => {
                assert_eq!(next, seq + 1, "an update applies on top of seq - 1");
                apply(&mut book, &frame, false);
            }
            Some("orderbook_snapshot") => {
                assert!(next > seq, "a resync snapshot moves forward");
                apply(&mut book, &frame, true);
            }
            other => panic!("unexpected {other:?}"),
        }
        seq = next;
        assert_eq!(book.len(), 20, "a 10-level book on each side stays whole");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_the_topic() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", Some("TSLA")), json!(1))
        .await;
    client.recv_type("market_tick").await;
    let reply = client
        .request(unsubscribe("market_data", Some("TSLA")), json!(2))
        .await;
    assert_eq!(
        reply,
        json!({"type": "unsubscribed", "id": 2, "channel": "market_data", "symbol": "TSLA"})
    );
    // Watch the connection across three heartbeats: no TSLA tick may follow.
    client.request(subscribe("heartbeat", None), json!(3)).await;
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let frame = client.recv().await;
        assert_ne!(
            frame["type"], "market_tick",
            "a tick after unsubscribed: {frame}"
        );
        if frame["type"] == "heartbeat" {
            heartbeats += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_data_sends_one_minute_candles() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("chart_data", Some("NVDA")), json!(1))
        .await;
    let candle = client.recv_type("candle").await;
    assert_eq!(
        (candle["symbol"].clone(), candle["interval"].clone()),
        (json!("NVDA"), json!("1m"))
    );
    let time = candle["time"].as_str().expect("time");
    assert!(
        time.ends_with(":00.000000Z"),
        "a candle starts on a minute: {time}"
    );
    let (open, high, low, close) = (
        candle["open"].as_f64(),
        candle["high"].as_f64(),
        candle["low"].as_f64(),
        candle["close"].as_f64(),
    );
    assert!(
        low <= open && open <= high && low <= close && close <= high,
        "{candle}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_system_channels_deliver() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client.request(subscribe("heartbeat", None), json!(1)).await;
    client.request(subscribe("system", None), json!(2)).await;
    let first = client.recv_type("heartbeat").await;
    let second = client.recv_type("heartbeat").await;
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    assert!(first["connections"].as_u64() >= Some(1));
    let status = client.recv_type("system_status").await;
    assert_eq!(status["channel"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_reach_only_their_user() {
    let server = TestServer::default().await;
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    for (client, user) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let reply = client
            .request(
                json!({"type": "auth", "token": token(user, &[], 600)}),
                json!("auth"),
            )
            .await;
        assert_eq!(
            (reply["type"].clone(), reply["user"].clone()),
            (json!("authenticated"), json!(user))
        );
        for channel in ["account", "positions", "orders", "notifications"] {
            let reply = client
                .request(subscribe(channel, None), json!(channel))
                .await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
        }
    }
    for (client, user) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let mut kinds = HashSet::new();
        while kinds.len() < 4 {
            let frame = client.recv().await;
            if let Some(owner) = frame.get("user") {
                assert_eq!(owner, user, "{user} received another user's frame: {frame}");
                kinds.insert(frame["type"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channel_needs_auth_and_bad_tokens_keep_the_connection() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    let error = client.request(subscribe("orders", None), json!(1)).await;
    assert_eq!(
        (error["code"].clone(), error["channel"].clone()),
        (json!("auth_required"), json!("orders"))
    );
    for bad in ["longer-than-ten-characters", "a.b.c"] {
        let error = client
            .request(json!({"type": "auth", "token": bad}), json!(2))
            .await;
        assert_eq!(error["code"], "auth_failed", "{error}");
    }
    let pong = client.request(json!({"type": "ping"}), json!(3)).await;
    assert_eq!(
        pong["type"], "pong",
        "the connection stays open after auth_failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_user_drops_the_previous_users_subscriptions() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(
            json!({"type": "auth", "token": token("first", &[], 600)}),
            json!(1),
        )
        .await;
    client.request(subscribe("account", None), json!(2)).await;
    client
        .recv_until(|f| f["type"] == "account_update" && f["user"] == "first")
        .await;
    client
        .send(json!({"type": "auth", "token": token("second", &[], 600), "id": 3}))
        .await;
    let dropped = client.recv_type("unsubscribed").await;
    assert_eq!(dropped["channel"], "account");
    let reply = client.recv_until(|f| f["id"] == 3).await;
    assert_eq!(reply["user"], "second");
    // Only a new subscription brings events again, and only the new user's.
    client.request(subscribe("account", None), json!(4)).await;
    let update = client.recv_type("account_update").await;
    assert_eq!(update["user"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rules_restrict_private_channels() {
    let mut config = test_config();
    config
        .auth
        .channel_scopes
        .insert("orders".into(), "trading:read".into());
    let server = TestServer::start(config).await;
    let mut plain = Client::connect(&server).await;
    plain
        .request(
            json!({"type": "auth", "token": token("u1", &[], 600)}),
            json!(1),
        )
        .await;
    let error = plain.request(subscribe("orders", None), json!(2)).await;
    assert_eq!(error["code"], "forbidden");
    let ok = plain.request(subscribe("account", None), json!(3)).await;
    assert_eq!(
        ok["type"], "subscribed",
        "channels without a rule stay open"
    );
    let mut scoped = Client::connect(&server).await;
    scoped
        .request(
            json!({"type": "auth", "token": token("u2", &["trading:read"], 600)}),
            json!(1),
        )
        .await;
    let ok = scoped.request(subscribe("orders", None), json!(2)).await;
    assert_eq!(ok["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_drops_private_subscriptions() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .request(
            json!({"type": "auth", "token": token("brief", &[], 2)}),
            json!(1),
        )
        .await;
    assert_eq!(reply["type"], "authenticated");
    client
        .request(subscribe("notifications", None), json!(2))
        .await;
    let error = client.recv_until(|f| f["type"] == "error").await;
    assert_eq!(error["code"], "auth_expired", "{error}");
    let again = client
        .request(subscribe("notifications", None), json!(3))
        .await;
    assert_eq!(
        again["code"], "auth_required",
        "private channels need a new token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_as_sent() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    for id in [
        json!(0),
        json!(-42),
        json!(9_007_199_254_740_993_i64),
        json!("x"),
        json!(""),
    ] {
        let pong = client.request(json!({"type": "ping"}), id.clone()).await;
        assert_eq!(pong["id"], id);
        assert_eq!(pong["type"], "pong");
    }
    let error = client.request(json!({"type": "bogus"}), json!("e1")).await;
    assert_eq!(
        (error["code"].clone(), error["id"].clone()),
        (json!("unknown_type"), json!("e1"))
    );
}

/// Prices of AAPL's first ticks with the default configuration and seed 42,
/// as the integrator recipe (docs/integrators.md) documents them.
const SEED_42_AAPL: [(u64, f64); 5] = [
    (1, 149.75),
    (2, 149.73),
    (3, 150.01),
    (4, 150.11),
    (5, 150.31),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_42_reproduces_the_documented_prices() {
    let mut config = tickgate::Config::default();
    config.server.port = 0;
    config.simulator.seed = 42;
    config.store.data_dir = crate::support::temp_dir("seed42");
    config.candles.port = 0;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", Some("AAPL")), json!(1))
        .await;
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(seq, _)| *seq < 5) {
        let tick = client.recv_type("market_tick").await;
        seen.push((
            tick["seq"].as_u64().unwrap_or(0),
            tick["price"].as_f64().unwrap_or(0.0),
        ));
    }
    for (seq, price) in &seen {
        let documented = SEED_42_AAPL.iter().find(|(s, _)| s == seq).map(|(_, p)| *p);
        assert_eq!(documented, Some(*price), "seq {seq}");
    }
}
