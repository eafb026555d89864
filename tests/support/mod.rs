//! Test harness shared by the integration tests (`tests/`) and the contract
//! tests (`contract-tests/`): a real gateway on an ephemeral port, a real
//! WebSocket client that validates every frame it receives against its
//! message schema from asyncapi.yaml, and HTTP helpers.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

pub mod db;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tickgate::{Config, gateway::Gateway, spec};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, protocol::CloseFrame},
};

/// How long a test waits for a frame before failing (not a performance
/// assertion: a generous bound so a broken server fails instead of hanging).
pub const WAIT: Duration = Duration::from_secs(15);

/// A configuration for tests: an ephemeral port and a fast simulator.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.shutdown_grace_ms = 2000;
    config.simulator.tick_interval_ms = [20, 60];
    config.simulator.private_interval_ms = 100;
    config.simulator.system_interval_ms = [100, 300];
    config.simulator.candle_publish_ms = 200;
    config.simulator.backfill_bars = 150;
    config.store.data_dir = temp_dir("store");
    config.candles.port = 0;
    config.candles.update_ms = 100;
    config.market_stream.port = 0;
    config.rt_orchestrator.port = 0;
    config.enhanced.port = 0;
    // Tests connect from one address, many times a second; the per-address
    // limits have tests of their own (tests/limits.rs).
    config.server.handshakes_per_ip_per_second = 100_000;
    config
}

/// `config` with the gateway's clock pinned at `at` (running, or frozen),
/// so market rules never depend on the hour the suite runs at.
pub fn pin_clock(config: &mut Config, at: &str, frozen: bool) {
    config.clock.start_at = Some(at.into());
    config.clock.frozen = frozen;
}

/// Inside a USDCOP session: Monday 30 November 2026, 10:00 in Bogota.
pub const MARKET_OPEN: &str = "2026-11-30T10:00:00-05:00";

/// A new empty directory under the system's temp dir, unique to this
/// process and call.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("tickgate-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A gateway running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The candles dialect's listener, when enabled.
    pub candles_addr: Option<SocketAddr>,
    /// The market-data stream's listener (seed 000), when enabled.
    pub market_stream_addr: Option<SocketAddr>,
    /// The RT orchestrator's REST listener (seed 000), when enabled.
    pub rt_orchestrator_addr: Option<SocketAddr>,
    /// Seed 001's enhanced service listener, when enabled.
    pub enhanced_addr: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), tickgate::ServerError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let bound = tickgate::bind(config).await.expect("gateway binds");
        let addr = bound.local_addr();
        let candles_addr = bound.candles_addr();
        let market_stream_addr = bound.dialect_addr(tickgate::server::Listener::MarketStream);
        let rt_orchestrator_addr = bound.dialect_addr(tickgate::server::Listener::RtOrchestrator);
        let enhanced_addr = bound.dialect_addr(tickgate::server::Listener::Enhanced);
        let gateway = bound.gateway().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(bound.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            candles_addr,
            market_stream_addr,
            rt_orchestrator_addr,
            enhanced_addr,
            gateway,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn default() -> Self {
        Self::start(test_config()).await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws/v1", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.expect("HTTP request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), tickgate::ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("shutdown finishes")
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Validators of every message, by channel and wire `type`, and by name.
pub struct Schemas {
    by_type: HashMap<(String, String), (String, jsonschema::Validator)>,
    by_name: HashMap<String, jsonschema::Validator>,
}

pub static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let doc: Value = serde_json::from_str(spec::ASYNCAPI_JSON).expect("asyncapi.json");
    let messages = doc["components"]["messages"].as_object().expect("messages");
    let schemas = spec::message_schemas();
    let build = |name: &str| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schemas[name])
            .unwrap_or_else(|e| panic!("schema of {name} compiles: {e}"))
    };
    let mut by_type = HashMap::new();
    let channels = doc["channels"].as_object().expect("channels");
    for (channel, body) in channels {
        let Some(refs) = body["messages"].as_object() else {
            continue;
        };
        for reference in refs.values() {
            let name = reference["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/messages/"))
                .expect("channel messages refer to components.messages");
            let wire = messages[name]["name"]
                .as_str()
                .expect("message name")
                .to_owned();
            by_type.insert((channel.clone(), wire), (name.to_owned(), build(name)));
        }
    }
    let by_name = messages
        .keys()
        .map(|name| (name.clone(), build(name)))
        .collect();
    Schemas { by_type, by_name }
});

impl Schemas {
    /// Validates a v1 server frame against the schema its `type` names.
    /// Returns the message's name in asyncapi.yaml.
    pub fn check_frame(&self, frame: &Value) -> Result<String, String> {
        self.check_in("v1", frame)
    }

    /// Validates a frame of asyncapi.yaml's `channel` against the schema its
    /// `type` names. Returns the message's name in asyncapi.yaml.
    pub fn check_in(&self, channel: &str, frame: &Value) -> Result<String, String> {
        // A channel with one message (the quotes stream) needs no `type`.
        let only: Vec<&String> = self
            .by_type
            .keys()
            .filter(|(c, _)| c == channel)
            .map(|(_, wire)| wire)
            .collect();
        let kind = match (frame["type"].as_str(), only.as_slice()) {
            (Some(kind), _) => kind,
            (None, [only]) => only.as_str(),
            (None, _) => return Err(format!("frame without type: {frame}")),
        };
        let (name, validator) = self
            .by_type
            .get(&(channel.to_owned(), kind.to_owned()))
            .ok_or_else(|| {
                format!("frame type {kind:?} is not a message of channel {channel}: {frame}")
            })?;
        let errors: Vec<String> = validator
            .iter_errors(frame)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(name.clone())
        } else {
            Err(format!(
                "{name} frame violates its schema: {errors:?}\n{frame}"
            ))
        }
    }

    pub fn check_named(&self, name: &str, value: &Value) -> Result<(), String> {
        let validator = self
            .by_name
            .get(name)
            .ok_or_else(|| format!("no message {name}"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| e.to_string())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{name}: {errors:?}"))
        }
    }
}

/// A client of one dialect: every frame it receives is validated against
/// the messages of its channel in asyncapi.yaml.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The asyncapi.yaml channel its frames belong to (`v1`, `candles`).
    pub channel: &'static str,
    pub welcome: Value,
    /// Names of the messages received so far (for coverage checks).
    pub seen: Vec<String>,
}

impl Client {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_url(&server.ws_url()).await
    }

    pub async fn connect_url(url: &str) -> Self {
        let mut client = Self::connect_dialect(url, "v1").await;
        let welcome = client.recv().await;
        assert_eq!(
            welcome["type"], "welcome",
            "first frame is welcome: {welcome}"
        );
        client.welcome = welcome;
        client
    }

    /// A client of `channel`'s dialect; nothing is read yet.
    pub async fn connect_dialect(url: &str, channel: &'static str) -> Self {
        let (ws, _) = connect_async(url).await.expect("WebSocket connects");
        Self {
            ws,
            channel,
            welcome: Value::Null,
            seen: Vec::new(),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next frame, validated. Fails the test on timeout or close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame arrives in time")
                .expect("connection open")
                .expect("frame reads");
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    let name = SCHEMAS
                        .check_in(self.channel, &frame)
                        .unwrap_or_else(|e| panic!("{e}"));
                    self.seen.push(name);
                    return frame;
                }
                Message::Close(close) => panic!("connection closed unexpectedly: {close:?}"),
                _ => continue,
            }
        }
    }

    /// Frames until one satisfies `pred`; returns it (and validates them all).
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching frame in time"
            );
            let frame = self.recv().await;
            if pred(&frame) {
                return frame;
            }
        }
    }

    /// The next frame of one of `types`, skipping data frames of others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_until(|f| f["type"] == kind).await
    }

    /// Sends a frame and returns the reply that echoes `id`.
    pub async fn request(&mut self, mut frame: Value, id: Value) -> Value {
        frame["id"] = id.clone();
        self.send(frame).await;
        self.recv_until(|f| f["id"] == id).await
    }

    /// Reads (validating text frames) until the server closes; returns the close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close arrives in time");
            match message {
                Some(Ok(Message::Close(close))) => return close,
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON");
                    let name = SCHEMAS
                        .check_in(self.channel, &frame)
                        .unwrap_or_else(|e| panic!("{e}"));
                    self.seen.push(name);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Subscribe frame.
pub fn subscribe(channel: &str, symbol: Option<&str>) -> Value {
    let mut frame = json!({"type": "subscribe", "channel": channel});
    if let Some(symbol) = symbol {
        frame["symbol"] = json!(symbol);
    }
    frame
}

pub fn unsubscribe(channel: &str, symbol: Option<&str>) -> Value {
    let mut frame = json!({"type": "unsubscribe", "channel": channel});
    if let Some(symbol) = symbol {
        frame["symbol"] = json!(symbol);
    }
    frame
}

/// A token signed with the development secret.
pub fn token(sub: &str, scopes: &[&str], ttl: u64) -> String {
    tickgate::auth::mint(
        tickgate::config::DEV_JWT_SECRET,
        sub,
        scopes.iter().map(|s| s.to_string()).collect(),
        ttl,
    )
    .expect("token")
}

/// Sets one channel's limits in `config`.
pub fn set_channel(config: &mut Config, channel: &str, rate_per_second: u32, max_subscribers: u32) {
    config.channels.0.insert(
        channel.to_owned(),
        tickgate::config::ChannelLimits {
            rate_per_second,
            max_subscribers,
        },
    );
}
