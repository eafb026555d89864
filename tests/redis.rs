//! Several gateways sharing a real Redis: the machine's server on
//! 127.0.0.1:6379 (each test isolated by its own `redis.prefix`), and for
//! the outage test a private `redis-server` the test starts, kills and
//! restarts.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use tickgate::Config;

use crate::support::{Client, TestServer, WAIT, subscribe, test_config, token};

const SHARED: &str = "redis://127.0.0.1:6379";

/// A test configuration on `url` with a prefix no other test uses.
fn config(url: &str, label: &str) -> Config {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut config = test_config();
    config.redis.url = Some(url.to_owned());
    config.redis.prefix = format!("t{}_{label}_{n}:", std::process::id());
    config
}

fn with_symbols(mut config: Config, symbols: &[&str]) -> Config {
    config.simulator.symbols = symbols.iter().map(|s| (*s).to_owned()).collect();
    config.simulator.enabled = !symbols.is_empty();
    config.candles.enabled = false;
    config
}

async fn publish(url: &str, channel: &str, payload: &[u8]) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers (scripts/services.sh starts it)");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .expect("PUBLISH");
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected(server: &TestServer) -> bool {
    server.get_json("/api/v1/health").await.1["redis"]["connected"] == true
}

fn quote(ticker: &str, timestamp: &str, close: f64) -> String {
    json!({"ticker": ticker, "timestamp": timestamp, "open": close - 1.0, "high": close + 1.0,
           "low": close - 2.0, "close": close, "volume": 1000})
    .to_string()
}

/// Every frame `client` receives within `window`.
async fn frames_within(client: &mut Client, window: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(frame) = tokio::time::timeout_at(deadline, client.recv()).await {
        frames.push(frame);
    }
    frames
}

/// Frames of `client` for `symbol` arriving within `window`.
async fn frames_for(client: &mut Client, symbol: &str, window: Duration) -> Vec<Value> {
    let mut frames = frames_within(client, window).await;
    frames.retain(|frame| frame["symbol"] == symbol);
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_events_each_exactly_once() {
    let base = config(SHARED, "fanout");
    let prefix = base.redis.prefix.clone();
    let a = TestServer::start(with_symbols(base.clone(), &["ZQA1"])).await;
    let b = TestServer::start(with_symbols(base.clone(), &["ZQB1"])).await;
    wait_for("both instances subscribed", async || {
        connected(&a).await && connected(&b).await
    })
    .await;

    // B's source reaches a client on A; both see the same ticks, once each.
    wait_for("B's symbol known on A", async || {
        a.gateway.hub.symbols().get("ZQB1").is_some()
    })
    .await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    let reply = on_a
        .request(subscribe("market_data", Some("ZQB1")), json!(1))
        .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    on_b.request(subscribe("market_data", Some("ZQB1")), json!(1))
        .await;
    let key = |f: &Value| {
        (
            f["timestamp"].as_str().unwrap_or_default().to_owned(),
            f["price"].to_string(),
        )
    };
    let mut from_a = Vec::new();
    while from_a.len() < 10 {
        from_a.push(key(&on_a.recv_type("market_tick").await));
    }
    let mut from_b = Vec::new();
    while from_b.len() < 30 && !from_b.contains(from_a.last().expect("ticks")) {
        from_b.push(key(&on_b.recv_type("market_tick").await));
    }
    // B's books and trades reach A too.
    on_a.request(subscribe("orderbook", Some("ZQB1")), json!(11))
        .await;
    on_a.recv_type("orderbook_snapshot").await;
    on_a.request(subscribe("trades", Some("ZQB1")), json!(12))
        .await;
    on_a.recv_type("trade").await;
    let distinct: BTreeSet<_> = from_a.iter().collect();
    assert_eq!(
        distinct.len(),
        from_a.len(),
        "no tick twice on A: {from_a:?}"
    );
    let start = from_b
        .iter()
        .position(|k| *k == from_a[1])
        .expect("A's ticks are B's ticks");
    assert_eq!(
        &from_b[start..start + 9],
        &from_a[1..],
        "the same ticks in the same order"
    );

    // An external publisher's quote of a new symbol, with its timestamp.
    let mut all_a = Client::connect(&a).await;
    let mut all_b = Client::connect(&b).await;
    all_a
        .request(subscribe("market_data", None), json!(2))
        .await;
    all_b
        .request(subscribe("market_data", None), json!(2))
        .await;
    let at = "2026-02-12T10:30:00.123456Z";
    publish(
        SHARED,
        &format!("{prefix}quotes.realtime"),
        quote("zqx1", at, 42.5).as_bytes(),
    )
    .await;
    for client in [&mut all_a, &mut all_b] {
        let frames = frames_for(client, "ZQX1", Duration::from_millis(1500)).await;
        assert_eq!(frames.len(), 1, "exactly once: {frames:?}");
        assert_eq!(frames[0]["timestamp"], at, "the publisher's timestamp");
        assert_eq!(frames[0]["price"], 42.5);
        assert_eq!(frames[0]["source"], "redis");
    }
    let (_, found) = a.get_json("/api/v1/datafeed/search?query=ZQX1").await;
    assert_eq!(
        found[0]["symbol"], "ZQX1",
        "the new symbol joined A's list: {found}"
    );

    // Trades and order books from a publisher.
    on_a.request(subscribe("trades", Some("ZQX1")), json!(3))
        .await;
    on_a.request(subscribe("orderbook", Some("ZQX1")), json!(4))
        .await;
    let trade = json!({"symbol": "ZQX1", "timestamp": at, "trade_id": 7, "price": 42.5, "size": 3, "side": "sell"});
    publish(
        SHARED,
        &format!("{prefix}tickgate.trades"),
        trade.to_string().as_bytes(),
    )
    .await;
    let frame = on_a
        .recv_until(|f| f["type"] == "trade" && f["symbol"] == "ZQX1")
        .await;
    assert_eq!(
        (frame["trade_id"].as_u64(), frame["side"].as_str()),
        (Some(7), Some("sell"))
    );
    let book = json!({"symbol": "ZQX1", "timestamp": at, "snapshot": true, "bids": [[42.4, 5]], "asks": [[42.6, 6]]});
    publish(
        SHARED,
        &format!("{prefix}tickgate.orderbook"),
        book.to_string().as_bytes(),
    )
    .await;
    let snapshot = on_a
        .recv_until(|f| f["type"] == "orderbook_snapshot" && f["symbol"] == "ZQX1")
        .await;
    assert_eq!(snapshot["bids"], json!([{"price": 42.4, "size": 5.0}]));
    let change = json!({"symbol": "ZQX1", "timestamp": at, "bids": [[42.45, 2]], "asks": []});
    publish(
        SHARED,
        &format!("{prefix}tickgate.orderbook"),
        change.to_string().as_bytes(),
    )
    .await;
    let update = on_a
        .recv_until(|f| f["type"] == "orderbook_update" && f["symbol"] == "ZQX1")
        .await;
    assert_eq!(update["bids"], json!([{"price": 42.45, "size": 2.0}]));

    // Private events reach their user only.
    let mut u1 = Client::connect(&a).await;
    let mut u2 = Client::connect(&a).await;
    for (client, user) in [(&mut u1, "zq_u1"), (&mut u2, "zq_u2")] {
        client
            .request(
                json!({"type": "auth", "token": token(user, &[], 3600)}),
                json!(5),
            )
            .await;
        client.request(subscribe("account", None), json!(6)).await;
    }
    let private = json!({"user": "zq_u1", "channel": "account", "timestamp": at,
                         "data": {"currency": "EUR", "balance": 12.5, "available": 10.0, "equity": 13.0}});
    publish(
        SHARED,
        &format!("{prefix}tickgate.private"),
        private.to_string().as_bytes(),
    )
    .await;
    let update = u1
        .recv_until(|f| f["type"] == "account_update" && f["currency"] == "EUR")
        .await;
    assert_eq!(
        (update["user"].as_str(), update["balance"].as_f64()),
        (Some("zq_u1"), Some(12.5))
    );
    let u2_frames = frames_within(&mut u2, Duration::from_millis(800)).await;
    assert!(
        !u2_frames.iter().any(|f| f["currency"] == "EUR"),
        "u2 does not get u1's event: {u2_frames:?}"
    );

    // B goes away: A keeps serving its own source.
    b.stop().await.expect("B stops");
    let mut own = Client::connect(&a).await;
    own.request(subscribe("market_data", Some("ZQA1")), json!(7))
        .await;
    for _ in 0..3 {
        own.recv_type("market_tick").await;
    }
    a.stop().await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_counted_and_dropped() {
    let base = config(SHARED, "invalid");
    let prefix = base.redis.prefix.clone();
    let server = TestServer::start(with_symbols(base, &[])).await;
    wait_for("subscribed", async || connected(&server).await).await;
    let broker = server.gateway.broker.clone().expect("a broker");
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", None), json!(1))
        .await;
    let at = "2026-02-12T10:30:00Z";
    let quotes = format!("{prefix}quotes.realtime");
    let bad: Vec<(String, Vec<u8>)> = vec![
        (quotes.clone(), b"\x00\xffgarbage".to_vec()),
        (quotes.clone(), b"not json".to_vec()),
        (quotes.clone(), json!({"ticker": "ZQI1"}).to_string().into_bytes()),
        (quotes.clone(), json!({"ticker": "ZQI1", "timestamp": at, "open": "1", "high": 1, "low": 1, "close": 1, "volume": 1}).to_string().into_bytes()),
        (quotes.clone(), json!({"ticker": "ZQI1", "timestamp": at, "open": 1, "high": 1, "low": 1, "close": -1, "volume": 1}).to_string().into_bytes()),
        (quotes.clone(), json!({"ticker": "BAD TICKER", "timestamp": at, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}).to_string().into_bytes()),
        (format!("{prefix}tickgate.trades"), json!({"symbol": "ZQI1", "timestamp": at, "trade_id": 1, "price": 1, "size": 1, "side": "hold"}).to_string().into_bytes()),
        (format!("{prefix}tickgate.private"), json!({"user": "u", "channel": "wallet", "timestamp": at, "data": {}}).to_string().into_bytes()),
        (quotes.clone(), vec![b'{'; 1024 * 1024]),
    ];
    for (channel, payload) in &bad {
        publish(SHARED, channel, payload).await;
    }
    let count = bad.len() as u64;
    wait_for("every invalid message counted", async || {
        broker.stats().invalid() >= count
    })
    .await;
    publish(SHARED, &quotes, quote("ZQI2", at, 5.0).as_bytes()).await;
    let frame = client.recv_until(|f| f["symbol"] == "ZQI2").await;
    assert_eq!(frame["price"], 5.0, "a valid message still gets through");
    assert_eq!(
        broker.stats().invalid(),
        count,
        "each invalid message counted once"
    );
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("tickgate_redis_messages_invalid_total"),
        "exported"
    );
    assert!(
        server.gateway.hub.symbols().get("ZQI1").is_none(),
        "nothing invalid was forwarded"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_answers_the_latest_quote_at_once() {
    let base = config(SHARED, "latest");
    let prefix = base.redis.prefix.clone();
    let a = TestServer::start(with_symbols(base.clone(), &[])).await;
    wait_for("subscribed", async || connected(&a).await).await;
    let at = "2026-02-12T10:30:00.5Z";
    publish(
        SHARED,
        &format!("{prefix}quotes.realtime"),
        quote("ZQL1", at, 77.25).as_bytes(),
    )
    .await;
    // A writes the cache within a quarter second of the quote.
    let client = redis::Client::open(SHARED).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    wait_for("the cached quote", async || {
        let cached: Option<String> = redis::cmd("HGET")
            .arg(format!("{prefix}quotes.latest"))
            .arg("ZQL1")
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        cached.is_some()
    })
    .await;
    let c = TestServer::start(with_symbols(base, &[])).await;
    wait_for("C subscribed", async || connected(&c).await).await;
    let mut client = Client::connect(&c).await;
    client
        .request(subscribe("market_data", Some("ZQL1")), json!(1))
        .await;
    let tick = client.recv_type("market_tick").await;
    assert_eq!(
        (tick["price"].as_f64(), tick["timestamp"].as_str()),
        (Some(77.25), Some("2026-02-12T10:30:00.500000Z"))
    );
    let (status, quotes) = c.get_json("/api/v1/datafeed/quotes?symbols=ZQL1").await;
    assert_eq!(status, 200);
    assert_eq!(quotes["d"][0]["s"], "ok", "{quotes}");
    assert_eq!(
        quotes["d"][0]["v"]["lp"], 77.25,
        "C answers the latest from the cache"
    );
    a.stop().await.expect("stop");
    c.stop().await.expect("stop");
}

/// A private redis-server on a free port, killed and restarted by the test.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_health_keeps_local_data_and_recovers() {
    let mut redis = PrivateRedis::start();
    let base = config(&redis.url(), "outage");
    let prefix = base.redis.prefix.clone();
    let server = TestServer::start(with_symbols(base, &["ZQO1"])).await;
    wait_for("subscribed", async || connected(&server).await).await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", None), json!(1))
        .await;
    let quotes_url = format!("ws://{}/ws/quotes?tickers=ZQO1", server.addr);
    let mut quotes = Client::connect_dialect(&quotes_url, "quotes").await;
    quotes.recv().await;

    redis.kill();
    wait_for("health degraded", async || {
        let (_, health) = server.get_json("/api/v1/health").await;
        health["status"] == "degraded" && health["redis"]["connected"] == false
    })
    .await;
    // Local clients keep getting the instance's own source.
    for _ in 0..3 {
        let tick = client.recv_type("market_tick").await;
        assert_eq!(tick["symbol"], "ZQO1");
    }
    // The quotes stream depends on Redis: closed with 1011, and refused with
    // 503 while Redis is down.
    let close = quotes.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1011);
    let refused = tokio_tungstenite::connect_async(&quotes_url).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }

    redis.restart();
    wait_for("reconnected", async || {
        let (_, health) = server.get_json("/api/v1/health").await;
        health["status"] == "healthy" && health["redis"]["connected"] == true
    })
    .await;
    assert!(
        server
            .gateway
            .broker
            .as_ref()
            .expect("broker")
            .stats()
            .reconnects()
            >= 1
    );
    // Fan-out resumed without a restart: an external quote arrives.
    publish(
        &redis.url(),
        &format!("{prefix}quotes.realtime"),
        quote("ZQO2", "2026-02-12T10:30:00Z", 9.5).as_bytes(),
    )
    .await;
    let frame = client.recv_until(|f| f["symbol"] == "ZQO2").await;
    assert_eq!(frame["price"], 9.5);
    // And the quotes stream accepts connections again.
    let mut quotes = Client::connect_dialect(&quotes_url, "quotes").await;
    quotes.recv().await;
    server.stop().await.expect("clean stop");
}

/// A second gateway as its own process (the built binary), sharing Redis
/// with one in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_process_shares_its_ticks_and_can_die() {
    let base = config(SHARED, "process");
    let prefix = base.redis.prefix.clone();
    let a = TestServer::start(with_symbols(base, &["ZQA2"])).await;
    wait_for("A subscribed", async || connected(&a).await).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = crate::support::temp_dir("process-b");
    let mut b = Command::new(env!("CARGO_BIN_EXE_tickgate"))
        .args(["--port", &port.to_string()])
        .env("REDIS_URL", SHARED)
        .env("TICKGATE_REDIS__PREFIX", &prefix)
        .env("TICKGATE_CANDLES__ENABLED", "false")
        .env("TICKGATE_MARKET_STREAM__ENABLED", "false")
        .env("TICKGATE_RT_ORCHESTRATOR__ENABLED", "false")
        .env("TICKGATE_ENHANCED__ENABLED", "false")
        .env("TICKGATE_STORE__DATA_DIR", &data)
        .env("TICKGATE_SIMULATOR__SYMBOLS", "[ZQP1]")
        .env("TICKGATE_SIMULATOR__TICK_INTERVAL_MS", "[20, 40]")
        .env("TICKGATE_SIMULATOR__BACKFILL_BARS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the tickgate binary");
    wait_for("B's symbol known on A", async || {
        a.gateway.hub.symbols().get("ZQP1").is_some()
    })
    .await;
    let mut client = Client::connect(&a).await;
    let reply = client
        .request(subscribe("market_data", Some("ZQP1")), json!(1))
        .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let mut seen = BTreeSet::new();
    while seen.len() < 5 {
        let tick = client.recv_type("market_tick").await;
        assert!(
            seen.insert(tick["timestamp"].as_str().unwrap_or_default().to_owned()),
            "no duplicate"
        );
    }
    b.kill().expect("kill B");
    let _ = b.wait();
    let mut own = Client::connect(&a).await;
    own.request(subscribe("market_data", Some("ZQA2")), json!(2))
        .await;
    for _ in 0..3 {
        own.recv_type("market_tick").await;
    }
    a.stop().await.expect("stop");
}

/// A three-shard Redis Cluster of private `redis-server`s in a temp dir.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
}

impl Cluster {
    fn start() -> Self {
        let dir = crate::support::temp_dir("cluster");
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                ])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            ports.push(port);
            children.push(child);
        }
        for port in &ports {
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create");
        let cluster = Self { ports, children };
        for _ in 0..200 {
            let info = Command::new("redis-cli")
                .args(["-p", &cluster.ports[0].to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not become ok");
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the node that owns `key`'s slot (from `CLUSTER SLOTS`).
    async fn owner(&self, key: &str) -> u16 {
        use redis::Value;
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.ports[0])).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("keyslot");
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("slots");
        let Value::Array(ranges) = slots else {
            panic!("CLUSTER SLOTS: {slots:?}")
        };
        for range in ranges {
            let Value::Array(fields) = range else {
                continue;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            if (*start..=*end).contains(&slot)
                && let Some(Value::Int(port)) = master.get(1)
            {
                return u16::try_from(*port).expect("a port");
            }
        }
        panic!("no owner of slot {slot}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_carries_the_fan_out_over_sharded_pub_sub() {
    let cluster = Cluster::start();
    let mut base = config(SHARED, "cluster");
    base.redis.url = None;
    base.redis.cluster_nodes = cluster.urls();
    let prefix = base.redis.prefix.clone();
    let channels = [
        "quotes.realtime",
        "tickgate.trades",
        "tickgate.orderbook",
        "tickgate.private",
    ]
    .map(|c| format!("{prefix}{c}"));
    let mut owners = BTreeSet::new();
    for channel in &channels {
        owners.insert(cluster.owner(channel).await);
    }
    assert!(
        owners.len() >= 2,
        "the four channels spread over shards: {owners:?}"
    );

    let a = TestServer::start(with_symbols(base.clone(), &[])).await;
    let b = TestServer::start(with_symbols(base, &["ZQC1"])).await;
    wait_for("both subscribed", async || {
        connected(&a).await && connected(&b).await
    })
    .await;
    assert!(a.gateway.broker.as_ref().expect("broker").is_cluster());
    wait_for("B's symbol known on A", async || {
        a.gateway.hub.symbols().get("ZQC1").is_some()
    })
    .await;
    let mut client = Client::connect(&a).await;
    client
        .request(subscribe("market_data", Some("ZQC1")), json!(1))
        .await;
    let mut stamps = BTreeSet::new();
    while stamps.len() < 5 {
        let tick = client.recv_type("market_tick").await;
        assert!(
            stamps.insert(tick["timestamp"].as_str().unwrap_or_default().to_owned()),
            "once each"
        );
    }
    // B's books too (subscribed now: recv_type skips other frames).
    client
        .request(subscribe("orderbook", Some("ZQC1")), json!(2))
        .await;
    client.recv_type("orderbook_snapshot").await;
    // An external SPUBLISH reaches A.
    let cluster_client =
        redis::cluster::ClusterClient::new(cluster.urls()).expect("cluster client");
    let mut conn = cluster_client
        .get_async_connection()
        .await
        .expect("connect");
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(&channels[0])
        .arg(quote("ZQC2", "2026-02-12T10:30:00Z", 3.5))
        .query_async(&mut conn)
        .await
        .expect("SPUBLISH");
    let mut all = Client::connect(&a).await;
    all.request(subscribe("market_data", None), json!(3)).await;
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(&channels[0])
        .arg(quote("ZQC2", "2026-02-12T10:30:01Z", 3.75))
        .query_async(&mut conn)
        .await
        .expect("SPUBLISH");
    let frame = all
        .recv_until(|f| f["symbol"] == "ZQC2" && f["price"] == 3.75)
        .await;
    assert_eq!(frame["timestamp"], "2026-02-12T10:30:01.000000Z");
    a.stop().await.expect("stop");
    b.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_published_on_redis_reach_matching_quotes_clients() {
    let base = config(SHARED, "quotes");
    let prefix = base.redis.prefix.clone();
    let server = TestServer::start(with_symbols(base, &["ZQS1"])).await;
    wait_for("subscribed", async || connected(&server).await).await;
    let url = |query: &str| format!("ws://{}/ws/quotes{query}", server.addr);
    let mut matching = Client::connect_dialect(&url("?tickers=zqq1"), "quotes").await;
    let mut other = Client::connect_dialect(&url("?tickers=ZQS1"), "quotes").await;
    other.recv().await;
    let at = "2026-02-12T10:30:00.654321Z";
    publish(
        SHARED,
        &format!("{prefix}quotes.realtime"),
        quote("ZQQ1", at, 12.5).as_bytes(),
    )
    .await;
    let frame = matching.recv().await;
    assert_eq!(
        frame,
        json!({"ticker": "ZQQ1", "timestamp": at, "open": 11.5, "high": 13.5, "low": 10.5,
               "close": 12.5, "volume": 1000, "bid": 12.5, "ask": 12.5}),
        "the publisher's quote, as published"
    );
    let others = frames_within(&mut other, Duration::from_millis(500)).await;
    assert!(
        others.iter().all(|f| f["ticker"] == "ZQS1"),
        "filtered: {others:?}"
    );
    server.stop().await.expect("stop");
}
