//! The TwelveData source against a fake TwelveData started by each test on
//! 127.0.0.1 (the real provider is unreachable here): a REST server for
//! `/quote` and `/price` and a WebSocket price stream, both recording the
//! `apikey` of every request and connection. Ticks are followed to a real
//! v1 client of a real gateway.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tickgate::{
    config::{TwelveDataConfig, UpstreamMode},
    sources::Ingest,
    upstream::{
        self, UpstreamStatus,
        keys::{ApiKey, KeyPool, KeyState},
        twelvedata::{RestClient, UpstreamError},
    },
};
use tokio::{net::TcpListener, sync::watch};
use tokio_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::support::{Client, TestServer, WAIT, subscribe, test_config};

/// How the fake answers one key's REST requests.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Quote,
    Http429,
    Json429Minute,
    Json429Day,
}

/// The fake REST API: records `(path, apikey, symbol)` of every request.
#[derive(Default)]
struct FakeRest {
    requests: Mutex<Vec<(String, String, String)>>,
    replies: Mutex<HashMap<String, Reply>>,
    served: AtomicU64,
}

impl FakeRest {
    fn keys(&self) -> Vec<String> {
        self.requests
            .lock()
            .iter()
            .map(|(_, k, _)| k.clone())
            .collect()
    }

    fn count(&self) -> usize {
        self.requests.lock().len()
    }

    fn answer(&self, request: &poem::Request) -> poem::Response {
        let query: HashMap<String, String> = request.params().unwrap_or_default();
        let key = query.get("apikey").cloned().unwrap_or_default();
        let symbol = query.get("symbol").cloned().unwrap_or_default();
        let path = request.uri().path().to_owned();
        self.requests
            .lock()
            .push((path.clone(), key.clone(), symbol.clone()));
        let reply = self
            .replies
            .lock()
            .get(&key)
            .copied()
            .unwrap_or(Reply::Quote);
        let json = |status: u16, body: Value| {
            poem::Response::builder()
                .status(poem::http::StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .header("api-credits-left", "7")
                .body(body.to_string())
        };
        match reply {
            Reply::Http429 => json(
                429,
                json!({"code": 429, "status": "error", "message": "Too many requests"}),
            ),
            Reply::Json429Minute => json(
                200,
                json!({"code": 429, "status": "error", "message": "You have run out of API credits for the current minute. 9 API credits were used, with the current limit being 8."}),
            ),
            Reply::Json429Day => json(
                200,
                json!({"code": 429, "status": "error", "message": "You have run out of API credits for the day. 801 API credits were used, with the current limit being 800."}),
            ),
            Reply::Quote => {
                let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
                let price = 4000.0 + n as f64;
                if path == "/price" {
                    return json(200, json!({"price": format!("{price}")}));
                }
                json(
                    200,
                    json!({
                        "symbol": symbol, "name": "US Dollar / Colombian Peso",
                        "exchange": "Forex", "datetime": "2025-10-22",
                        "timestamp": 1_761_091_200, "last_quote_at": 1_761_130_000 + n,
                        "open": "4000.0", "high": format!("{}", price + 5.0),
                        "low": "3990.0", "close": format!("{price}"), "volume": "0",
                        "previous_close": "3995.0", "change": format!("{}", price - 3995.0),
                        "percent_change": "0.1", "is_market_open": true
                    }),
                )
            }
        }
    }
}

async fn start_rest() -> (Arc<FakeRest>, String) {
    let fake = Arc::new(FakeRest::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let fake = fake.clone();
        poem::endpoint::make_sync(move |request: poem::Request| fake.answer(&request))
    };
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (fake, format!("http://{addr}"))
}

/// What one fake stream connection does after answering the subscription.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Sends prices `base + 1..=count`, then closes cleanly.
    PricesThenClose { base: f64, count: u32 },
    /// Sends invalid messages, then prices from `base` until it has read a
    /// heartbeat, then drops the TCP connection without a close frame.
    GarbageThenDropAfterHeartbeat { base: f64 },
    /// Sends a price from `base` every 20 ms until the client leaves.
    Prices { base: f64 },
}

/// The fake price stream: records each connection's `apikey`, the frames
/// it received and how many `Prices` connections the client ended.
#[derive(Default)]
struct FakeStream {
    keys: Mutex<Vec<String>>,
    received: Mutex<Vec<Value>>,
    ended: AtomicU64,
    scripts: Mutex<Vec<Script>>,
}

async fn start_stream(scripts: Vec<Script>) -> (Arc<FakeStream>, String) {
    let fake = Arc::new(FakeStream {
        scripts: Mutex::new(scripts),
        ..FakeStream::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = fake.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((tcp, _)) = listener.accept().await {
            let fake = server.clone();
            let script = fake
                .scripts
                .lock()
                .get(n)
                .copied()
                .unwrap_or(Script::Prices { base: 9000.0 });
            n += 1;
            tokio::spawn(async move { serve_stream(fake, tcp, script).await });
        }
    });
    (fake, format!("ws://{addr}/v1/quotes/price"))
}

fn price_event(symbol: &str, price: f64, n: u32) -> Message {
    Message::text(
        json!({"event": "price", "symbol": symbol, "currency_base": "US Dollar",
               "exchange": "Forex", "type": "Physical Currency",
               "timestamp": 1_700_000_000 + n, "price": price})
        .to_string(),
    )
}

async fn serve_stream(fake: Arc<FakeStream>, tcp: tokio::net::TcpStream, script: Script) {
    let seen_key = Arc::new(Mutex::new(String::new()));
    let record = seen_key.clone();
    // The handshake callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let key = request
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|pair| pair.strip_prefix("apikey="))
                .unwrap_or("")
                .to_owned();
            *record.lock() = key;
            Ok(response)
        };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    fake.keys.lock().push(seen_key.lock().clone());
    // The subscription comes first.
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        return;
    };
    let frame: Value = serde_json::from_str(&text).unwrap();
    fake.received.lock().push(frame);
    let status = json!({"event": "subscribe-status", "status": "ok",
        "success": [{"symbol": "USD/COP", "exchange": "Forex", "type": "Physical Currency"}],
        "fails": []});
    if ws.send(Message::text(status.to_string())).await.is_err() {
        return;
    }
    match script {
        Script::PricesThenClose { base, count } => {
            for n in 1..=count {
                let _ = ws
                    .send(price_event("USD/COP", base + f64::from(n), n))
                    .await;
            }
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        Script::GarbageThenDropAfterHeartbeat { base } => {
            let _ = ws.send(Message::text("not json at all")).await;
            let _ = ws
                .send(Message::text(r#"{"event":"price","symbol":"USD/COP"}"#))
                .await;
            let mut n = 0;
            loop {
                n += 1;
                let _ = ws
                    .send(price_event("USD/COP", base + f64::from(n), n))
                    .await;
                match tokio::time::timeout(Duration::from_millis(20), ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        let heartbeat = frame == json!({"action": "heartbeat"});
                        fake.received.lock().push(frame);
                        if heartbeat {
                            // Dropped without a close frame.
                            return;
                        }
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(_) => return,
                }
                assert!(n < 2000, "no heartbeat from the source");
            }
        }
        Script::Prices { base } => {
            for n in 1..=1500 {
                if ws
                    .send(price_event("USD/COP", base + f64::from(n), n))
                    .await
                    .is_err()
                {
                    fake.ended.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match tokio::time::timeout(Duration::from_millis(20), ws.next()).await {
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                        fake.ended.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(Some(Ok(Message::Text(text)))) => {
                        fake.received
                            .lock()
                            .push(serde_json::from_str(&text).unwrap());
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                }
            }
        }
    }
}

/// A source under test: its pool, status, gate and stop.
struct Source {
    pool: Arc<KeyPool>,
    status: Arc<UpstreamStatus>,
    gate: watch::Sender<bool>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn keys(prefix: &str, n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| {
            (
                format!("TWELVEDATA_API_KEY_G1_{i}"),
                format!("{prefix}-key-{i:02}"),
            )
        })
        .collect()
}

fn config(rest_url: &str, ws_url: &str, mode: UpstreamMode) -> TwelveDataConfig {
    TwelveDataConfig {
        rest_url: rest_url.to_owned(),
        ws_url: ws_url.to_owned(),
        mode,
        poll_ms: 10,
        min_key_spacing_ms: 0,
        symbols: [("USDCOP".to_owned(), "USD/COP".to_owned())].into(),
        reconnect_min_ms: 10,
        reconnect_max_ms: 40,
        heartbeat_ms: 50,
        request_timeout_ms: 5000,
        ..TwelveDataConfig::default()
    }
}

fn start_source(
    config: &TwelveDataConfig,
    vars: Vec<(String, String)>,
    server: &TestServer,
    gate_open: bool,
) -> Source {
    let pool = Arc::new(upstream::key_pool(config, vars));
    let status = Arc::new(UpstreamStatus::new());
    let (gate, gate_rx) = watch::channel(gate_open);
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ingest = Ingest::new(
        server.gateway.hub.clone(),
        server.gateway.candles.clone(),
        None,
    );
    let started = upstream::spawn(
        config,
        pool.clone(),
        ingest,
        gate_rx,
        status.clone(),
        shutdown.clone(),
        &tasks,
    )
    .expect("source spawns");
    assert!(started, "a pool with keys starts the source");
    Source {
        pool,
        status,
        gate,
        shutdown,
        tasks,
    }
}

/// Waits (bounded by `WAIT`) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("in time: {what}"));
}

async fn gateway() -> TestServer {
    let mut config = test_config();
    config.simulator.symbols = vec!["AAPL".into()];
    TestServer::start(config).await
}

async fn subscribed_client(server: &TestServer) -> Client {
    let mut client = Client::connect(server).await;
    let reply = client
        .request(subscribe("market_data", Some("USDCOP")), json!(1))
        .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    client
}

fn key_names(prefix: &str, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .map(|i| format!("{prefix}-key-{:02}", i + 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_polling_rotates_keys_in_order_and_ticks_reach_clients() {
    let server = gateway().await;
    let (fake, rest_url) = start_rest().await;
    let mut config = config(&rest_url, "ws://127.0.0.1:9", UpstreamMode::Rest);
    // Three keys, polls far faster than the spacing: k1, k2, k3, then a
    // wait for k1's spacing.
    config.min_key_spacing_ms = 1500;
    let source = start_source(&config, keys("rest", 3), &server, false);
    let mut client = subscribed_client(&server).await;
    source.gate.send(true).unwrap();

    let tick = client.recv_type("market_tick").await;
    assert_eq!(tick["symbol"], "USDCOP");
    assert_eq!(tick["source"], "twelvedata_rest");
    assert!(tick["price"].as_f64().unwrap() > 4000.0, "{tick}");
    assert_eq!(
        tick["change"].as_f64().unwrap(),
        tick["price"].as_f64().unwrap() - 3995.0
    );
    assert!(tick["bid"].as_f64().unwrap() < tick["ask"].as_f64().unwrap());

    until("four requests", || fake.count() >= 4).await;
    let requests = fake.requests.lock().clone();
    assert_eq!(
        fake.keys()[..4],
        key_names("rest", &[0, 1, 2, 0])[..],
        "round-robin, spaced"
    );
    assert!(
        requests
            .iter()
            .all(|(path, _, symbol)| path == "/quote" && symbol == "USD/COP")
    );
    let usage = source.pool.usage();
    assert!(usage.total_calls >= 4);
    assert_eq!(usage.keys[1].remaining_credits, Some(7));
    assert!(source.status.snapshot().connected);
    assert!(source.status.snapshot().ticks >= 3);
    source.shutdown.cancel();
    source.tasks.close();
    tokio::time::timeout(WAIT, source.tasks.wait())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_spent_keys_rotate_to_the_next_key() {
    let server = gateway().await;
    let (fake, rest_url) = start_rest().await;
    {
        let mut replies = fake.replies.lock();
        replies.insert("limit-key-01".into(), Reply::Http429);
        replies.insert("limit-key-02".into(), Reply::Json429Minute);
        replies.insert("limit-key-03".into(), Reply::Json429Day);
    }
    let config = config(&rest_url, "ws://127.0.0.1:9", UpstreamMode::Rest);
    let source = start_source(&config, keys("limit", 4), &server, true);

    until("a tick and more polls", || {
        source.status.snapshot().ticks >= 1 && fake.count() >= 8
    })
    .await;
    let keys = fake.keys();
    assert_eq!(keys[..4], key_names("limit", &[0, 1, 2, 3])[..]);
    assert!(
        keys[4..].iter().all(|k| k == "limit-key-04"),
        "resting keys are not used again: {keys:?}"
    );
    let usage = source.pool.usage();
    let states: Vec<KeyState> = usage.keys.iter().map(|k| k.state).collect();
    assert_eq!(
        states,
        [
            KeyState::RateLimited,
            KeyState::RateLimited,
            KeyState::OutOfCredits,
            KeyState::Ready
        ]
    );
    assert_eq!(usage.current_key_index, Some(3));
    assert!(usage.keys[0].cooldown_until.is_some());
    let status = source.status.snapshot();
    assert_eq!(status.errors, 3);
    assert!(status.last_error.unwrap().contains("out of API credits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prices_become_ticks_and_the_source_reconnects_on_the_next_key() {
    let server = gateway().await;
    let (fake, ws_url) = start_stream(vec![
        Script::PricesThenClose {
            base: 4000.0,
            count: 3,
        },
        Script::GarbageThenDropAfterHeartbeat { base: 5000.0 },
        Script::Prices { base: 6000.0 },
    ])
    .await;
    let config = config("http://127.0.0.1:9", &ws_url, UpstreamMode::Websocket);
    let source = start_source(&config, keys("ws", 3), &server, false);
    let mut client = subscribed_client(&server).await;
    source.gate.send(true).unwrap();

    let first = client.recv_type("market_tick").await;
    assert_eq!(first["source"], "twelvedata_websocket");
    // The provider's time, not the receive time.
    assert!(
        first["timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:2"),
        "{first}"
    );
    let price = |frame: &Value| frame["price"].as_f64().unwrap_or(0.0);
    assert!((4001.0..=4003.0).contains(&price(&first)), "{first}");
    // After the clean close and the dropped connection, the third
    // connection's prices flow.
    client
        .recv_until(|f| f["type"] == "market_tick" && price(f) > 6000.0)
        .await;

    assert_eq!(*fake.keys.lock(), key_names("ws", &[0, 1, 2]));
    let received = fake.received.lock().clone();
    let subscription = json!({"action": "subscribe", "params": {"symbols": "USD/COP"}});
    assert_eq!(
        received.iter().filter(|f| **f == subscription).count(),
        3,
        "every connection subscribes: {received:?}"
    );
    assert!(received.contains(&json!({"action": "heartbeat"})));
    let status = source.status.snapshot();
    assert!(status.connected);
    assert!(status.reconnects >= 2, "{status:?}");
    // Two invalid messages and the dropped connection; no panic.
    assert!(status.errors >= 2, "{status:?}");
    assert!(status.ticks >= 4, "{status:?}");
    assert_eq!(source.pool.usage().current_key_index, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_sends_no_request_and_drops_the_stream() {
    let server = gateway().await;
    let (fake, rest_url) = start_rest().await;
    let rest = config(&rest_url, "ws://127.0.0.1:9", UpstreamMode::Rest);
    let closed = start_source(&rest, keys("closed", 2), &server, false);
    let open = start_source(&rest, keys("open", 2), &server, true);
    // The open source polls many times meanwhile: the closed one none.
    until("the open source polls", || fake.count() >= 10).await;
    assert!(fake.keys().iter().all(|k| k.starts_with("open-")));
    assert_eq!(closed.pool.usage().total_calls, 0);
    assert!(!closed.status.snapshot().active);
    drop(open);

    let (stream, ws_url) = start_stream(vec![]).await;
    let streaming = config("http://127.0.0.1:9", &ws_url, UpstreamMode::Websocket);
    let source = start_source(&streaming, keys("gate", 2), &server, true);
    until("a stream connection", || stream.keys.lock().len() == 1).await;
    until("prices", || source.status.snapshot().ticks >= 1).await;
    assert!(source.status.snapshot().active);
    source.gate.send(false).unwrap();
    until("the source leaves the stream", || {
        stream.ended.load(Ordering::Relaxed) == 1
    })
    .await;
    until("inactive", || !source.status.snapshot().active).await;
    assert!(!source.status.snapshot().connected);
    source.gate.send(true).unwrap();
    until("a new connection", || stream.keys.lock().len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_price_and_quote_and_masks_keys_in_errors() {
    let (fake, rest_url) = start_rest().await;
    let client = RestClient::new(&rest_url, Duration::from_secs(5)).unwrap();
    let key = ApiKey::new("client-key-0001");
    let price = client.price("USD/COP", &key).await.unwrap();
    assert_eq!(price.value, 4001.0);
    assert_eq!(price.remaining_credits, Some(7));
    let quote = client.quote("USD/BRL", &key).await.unwrap();
    assert_eq!(quote.value.symbol, "USD/BRL");
    assert_eq!(quote.value.close, Some(4002.0));
    assert_eq!(
        *fake.requests.lock(),
        [
            (
                "/price".to_owned(),
                "client-key-0001".to_owned(),
                "USD/COP".to_owned()
            ),
            (
                "/quote".to_owned(),
                "client-key-0001".to_owned(),
                "USD/BRL".to_owned()
            ),
        ]
    );
    fake.replies
        .lock()
        .insert("client-key-0001".into(), Reply::Http429);
    assert!(matches!(
        client.quote("USD/COP", &key).await,
        Err(UpstreamError::RateLimited { .. })
    ));
    // Nothing listens on port 9: the error must not quote the key.
    let unreachable = RestClient::new("http://127.0.0.1:9", Duration::from_secs(5)).unwrap();
    let error = unreachable.quote("USD/COP", &key).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Transport(_)), "{error:?}");
    assert!(!error.to_string().contains("client-key-0001"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_no_source() {
    let server = gateway().await;
    let config = TwelveDataConfig::default();
    let pool = Arc::new(upstream::key_pool(
        &config,
        vec![(
            "TWELVEDATA_API_KEY_G1_1".to_owned(),
            "your_real_api_key_here".to_owned(),
        )],
    ));
    let (_gate, gate) = watch::channel(true);
    let tasks = TaskTracker::new();
    let started = upstream::spawn(
        &config,
        pool.clone(),
        Ingest::new(
            server.gateway.hub.clone(),
            server.gateway.candles.clone(),
            None,
        ),
        gate,
        Arc::new(UpstreamStatus::new()),
        CancellationToken::new(),
        &tasks,
    )
    .unwrap();
    assert!(!started);
    assert!(tasks.is_empty());
    assert_eq!(pool.usage().total_keys, 0);
    assert_eq!(pool.usage().current_key_index, None);
}

#[test]
fn the_configuration_section_loads_and_never_shows_a_key() {
    let dir = crate::support::temp_dir("upstream-config");
    let file = dir.join("tickgate.toml");
    std::fs::write(
        &file,
        r#"
[upstream.twelvedata]
mode = "rest"
poll_ms = 500
keys = ["config-secret-key-0001"]
symbols = { EURUSD = "EUR/USD" }
"#,
    )
    .unwrap();
    let config = tickgate::Config::load(Some(&file)).expect("loads");
    let td = &config.upstream.twelvedata;
    assert_eq!(td.mode, UpstreamMode::Rest);
    assert_eq!((td.poll_ms, td.min_key_spacing_ms), (500, 8000));
    assert_eq!(td.keys[0].expose(), "config-secret-key-0001");
    assert!(!format!("{config:?}").contains("config-secret-key-0001"));
    let pool = upstream::key_pool(
        td,
        vec![(
            "TWELVEDATA_API_KEY".to_owned(),
            "env-secret-key-0001".to_owned(),
        )],
    );
    let masked: Vec<String> = pool.usage().keys.into_iter().map(|k| k.masked).collect();
    assert_eq!(masked, ["env-…01", "conf…01"]);

    let mut bad = config.clone();
    bad.upstream.twelvedata.ws_url = "https://ws.example".into();
    assert!(bad.validate().unwrap_err().to_string().contains("ws_url"));
    let mut bad = config.clone();
    bad.upstream.twelvedata.symbols = [("usd cop".to_owned(), "USD/COP".to_owned())].into();
    // Checked when the gateway starts, by the source's module.
    let error = upstream::check_config(&bad.upstream.twelvedata).unwrap_err();
    assert!(error.to_string().contains("symbols.usd cop"), "{error}");
    let mut off = config;
    off.upstream.twelvedata.enabled = false;
    off.upstream.twelvedata.symbols.clear();
    off.validate().expect("a disabled source is not checked");
    upstream::check_config(&off.upstream.twelvedata).expect("a disabled source is not checked");
}
