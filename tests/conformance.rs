//! RFC 6455 conformance of every WebSocket endpoint, driven by a raw TCP
//! client that can send what a well-behaved library never would: invalid
//! UTF-8, oversized and malformed frames, floods, frames after the close.
//!
//! For each endpoint × case the table below says the close code the server
//! must send, and every case checks that the connection then ends with the
//! server's FIN, not RST (an RST discards what the client has not read yet,
//! such as the error frame and the close frame).

use std::net::SocketAddr;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{SCHEMAS, TestServer, WAIT, test_config};

/// One WebSocket endpoint of the gateway.
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    name: &'static str,
    /// The asyncapi.yaml channel its frames are checked against.
    channel: &'static str,
    addr: SocketAddr,
    path: &'static str,
    /// Whether the dialect's spec has an error frame for a refused frame.
    error_frames: bool,
    /// The close code of an inbound flood.
    flood_close: u16,
}

fn endpoints(server: &TestServer) -> Vec<Endpoint> {
    let main = server.addr;
    vec![
        Endpoint {
            name: "v1",
            channel: "v1",
            addr: main,
            path: "/api/v1/ws/v1",
            error_frames: true,
            flood_close: 4001,
        },
        Endpoint {
            name: "quotes",
            channel: "quotes",
            addr: main,
            path: "/ws/quotes",
            error_frames: false,
            flood_close: 4001,
        },
        Endpoint {
            name: "candles",
            channel: "candles",
            addr: server.candles_addr.expect("candles listener"),
            path: "/",
            error_frames: true,
            flood_close: 4001,
        },
        Endpoint {
            name: "market stream",
            channel: "marketStream",
            addr: server.market_stream_addr.expect("market stream listener"),
            path: "/ws/market-data",
            error_frames: true,
            flood_close: 1008,
        },
        Endpoint {
            name: "enhanced",
            channel: "enhanced",
            addr: server.enhanced_addr.expect("enhanced listener"),
            path: "/ws",
            error_frames: true,
            flood_close: 4001,
        },
    ]
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const CONTINUATION: u8 = 0x0;

/// A frame as the client puts it on the wire.
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl Frame {
    fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            payload: payload.into(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let mask_bit = u8::from(self.masked) << 7;
        let len = self.payload.len();
        header_len(&mut out, mask_bit, len as u64);
        let key = [0x37, 0xfa, 0x21, 0x3d];
        if self.masked {
            out.extend_from_slice(&key);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

fn header_len(out: &mut Vec<u8>, mask_bit: u8, len: u64) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// What the server sent until it closed.
#[derive(Debug, Default)]
struct Outcome {
    texts: Vec<Value>,
    close: Option<u16>,
    pongs: usize,
    pings: usize,
}

/// A WebSocket client over a raw TCP stream.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    endpoint: Endpoint,
}

impl Raw {
    async fn open(endpoint: Endpoint) -> Self {
        let mut stream = TcpStream::connect(endpoint.addr).await.expect("connects");
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            endpoint.path, endpoint.addr
        );
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("handshake answered in time")
                .expect("reads");
            assert!(n > 0, "{}: closed during the handshake", endpoint.name);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{}: upgrade refused: {head}",
            endpoint.name
        );
        buf.drain(..end);
        Self {
            stream,
            buf,
            endpoint,
        }
    }

    async fn send(&mut self, frame: Frame) {
        self.send_bytes(&frame.bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        // A server that already closed may refuse the rest; what it sent
        // before is still read by `outcome`.
        let _ = self.stream.write_all(bytes).await;
    }

    async fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(false);
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
        Ok(true)
    }

    /// The next server frame (opcode, payload), None at EOF.
    async fn frame(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        if !self.fill(2).await? {
            return Ok(None);
        }
        let opcode = self.buf[0] & 0x0f;
        assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
        let (len, start) = match self.buf[1] & 0x7f {
            126 => {
                if !self.fill(4).await? {
                    return Ok(None);
                }
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                if !self.fill(10).await? {
                    return Ok(None);
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(len) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        if !self.fill(start + len).await? {
            return Ok(None);
        }
        let payload = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Ok(Some((opcode, payload)))
    }

    /// Sends 64 KiB of valid frames behind a hostile one: bytes the server
    /// has not read when it decides to close, which it must read before it
    /// closes the socket (or the kernel answers with RST).
    async fn pad(&mut self) {
        for _ in 0..2 {
            self.send(Frame::new(TEXT, vec![b' '; 32 * 1024])).await;
        }
    }

    /// Reads until the server's close frame, answers it, and reads to the
    /// end of the stream. Panics when the connection is reset.
    async fn outcome(&mut self) -> Outcome {
        let name = self.endpoint.name;
        // Let the server close first, while its frames wait unread here: an
        // RST would discard them (not a timing assertion; it only makes a
        // reset visible).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut outcome = Outcome::default();
        let read = tokio::time::timeout(WAIT, async {
            loop {
                match self.frame().await {
                    Ok(Some((CLOSE, payload))) => {
                        outcome.close = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return Ok(());
                    }
                    Ok(Some((TEXT, payload))) => {
                        let frame: Value =
                            serde_json::from_slice(&payload).expect("server frames are JSON");
                        SCHEMAS
                            .check_in(self.endpoint.channel, &frame)
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        outcome.texts.push(frame);
                    }
                    Ok(Some((0xA, _))) => outcome.pongs += 1,
                    Ok(Some((PING, _))) => outcome.pings += 1,
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(error) => return Err(error),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: the server closes in time"));
        if let Err(error) = read {
            panic!(
                "{name}: reading the server's frames failed ({error}): reset before its close frame was read"
            );
        }
        // The close handshake, from our side; then the server's FIN.
        let mut reply = vec![];
        if let Some(code) = outcome.close {
            reply = code.to_be_bytes().to_vec();
        }
        // A write or read error from here on is the server's RST.
        if let Err(error) = self
            .stream
            .write_all(&Frame::new(CLOSE, reply).bytes())
            .await
        {
            panic!("{name}: the connection was reset instead of closed (our close frame): {error}");
        }
        if let Err(error) = self.stream.shutdown().await {
            panic!("{name}: the connection was reset instead of closed (our FIN): {error}");
        }
        let end = tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: the server ends the stream in time"));
        if let Err(error) = end {
            panic!("{name}: the connection was reset instead of closed: {error}");
        }
        outcome
    }
}

/// Asserts the close code, and an error frame where the dialect has one.
fn assert_refused(
    endpoint: &Endpoint,
    case: &str,
    outcome: &Outcome,
    code: u16,
    error_frame: bool,
) {
    assert_eq!(
        outcome.close,
        Some(code),
        "{} / {case}: close code (frames: {:?})",
        endpoint.name,
        outcome.texts
    );
    if error_frame && endpoint.error_frames {
        assert!(
            outcome.texts.iter().any(|f| f["type"] == "error"),
            "{} / {case}: an error frame before the close: {:?}",
            endpoint.name,
            outcome.texts
        );
    }
}

fn config() -> tickgate::Config {
    let mut config = test_config();
    // Nothing streams into the sockets but the frames under test.
    config.simulator.enabled = false;
    config
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start(config()).await;
    for endpoint in endpoints(&server) {
        let mut raw = Raw::open(endpoint).await;
        raw.send(Frame::new(TEXT, vec![b'{', 0xff, 0xfe, b'}']))
            .await;
        raw.pad().await;
        let outcome = raw.outcome().await;
        assert_refused(&endpoint, "invalid UTF-8", &outcome, 1007, false);
    }
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let server = TestServer::start(config()).await;
    let max = server.gateway.config.ws.max_frame_bytes;
    for endpoint in endpoints(&server) {
        // Over the limit but read whole; far over it (the header is enough);
        // and one byte over, the edge.
        for size in [max + 1, 2 * max - 10, 1 << 20] {
            let mut raw = Raw::open(endpoint).await;
            raw.send(Frame::new(TEXT, vec![b' '; size])).await;
            raw.pad().await;
            let outcome = raw.outcome().await;
            assert_refused(&endpoint, &format!("{size} bytes"), &outcome, 1009, true);
        }
        // At the limit: accepted (whatever the dialect answers, it stays
        // open: a ping still gets its pong).
        let mut raw = Raw::open(endpoint).await;
        raw.send(Frame::new(TEXT, vec![b' '; max])).await;
        raw.send(Frame::new(PING, b"edge".to_vec())).await;
        let pong = tokio::time::timeout(WAIT, async {
            loop {
                match raw.frame().await.expect("reads") {
                    Some((0xA, payload)) => return payload,
                    Some((CLOSE, payload)) => {
                        panic!("{}: closed at the limit: {payload:?}", endpoint.name)
                    }
                    Some(_) => {}
                    None => panic!("{}: EOF at the limit", endpoint.name),
                }
            }
        })
        .await
        .expect("pong in time");
        assert_eq!(pong, b"edge");
    }
}

#[tokio::test]
async fn a_16_mib_frame_is_refused_without_reset() {
    let server = TestServer::start(config()).await;
    for endpoint in endpoints(&server) {
        let raw = Raw::open(endpoint).await;
        let Raw {
            stream,
            buf,
            endpoint,
        } = raw;
        let (read, mut write) = stream.into_split();
        // The header announces 16 MiB; the payload streams behind it while
        // the server has already refused the frame.
        let mut header = vec![0x80 | TEXT];
        header_len(&mut header, 0x80, 16 << 20);
        header.extend_from_slice(&[1, 2, 3, 4]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_stop = stop.clone();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&header).await;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..256 {
                if writer_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            write
        });
        let mut half = HalfReader { read, buf };
        let close = half.until_close(endpoint).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let write = writer.await.expect("writer");
        let mut stream = half.read.reunite(write).expect("one stream");
        assert_eq!(close, Some(1009), "{}: 16 MiB frame", endpoint.name);
        let written = stream
            .write_all(&Frame::new(CLOSE, 1009u16.to_be_bytes().to_vec()).bytes())
            .await
            .and(stream.shutdown().await);
        assert!(
            written.is_ok(),
            "{}: reset instead of closed: {written:?}",
            endpoint.name
        );
        let end = tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
        })
        .await
        .expect("the server ends the stream in time");
        assert!(
            end.is_ok(),
            "{}: reset instead of closed: {end:?}",
            endpoint.name
        );
    }
}

/// The read half of a raw client (for the case that writes while it reads).
struct HalfReader {
    read: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
}

impl HalfReader {
    /// Reads server frames until the close frame; its code.
    async fn until_close(&mut self, endpoint: Endpoint) -> Option<u16> {
        tokio::time::timeout(WAIT, async {
            loop {
                while self.buf.len() >= 2 {
                    let len = usize::from(self.buf[1] & 0x7f);
                    let (len, start) = match len {
                        126 if self.buf.len() >= 4 => (
                            usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                            4,
                        ),
                        126 => break,
                        n => (n, 2),
                    };
                    if self.buf.len() < start + len {
                        break;
                    }
                    let opcode = self.buf[0] & 0x0f;
                    let payload: Vec<u8> = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    if opcode == CLOSE {
                        return (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    }
                }
                let mut chunk = [0u8; 4096];
                match self.read.read(&mut chunk).await {
                    Ok(0) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(error) => {
                        panic!("{}: reset before the close frame: {error}", endpoint.name)
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: close in time", endpoint.name))
    }
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let server = TestServer::start(config()).await;
    let cases: Vec<(&str, Vec<Frame>)> = vec![
        (
            "unmasked frame",
            vec![Frame {
                masked: false,
                ..Frame::new(TEXT, b"{}".to_vec())
            }],
        ),
        (
            "reserved bits",
            vec![Frame {
                rsv: 0b100,
                ..Frame::new(TEXT, b"{}".to_vec())
            }],
        ),
        (
            "reserved data opcode",
            vec![Frame::new(0x3, b"{}".to_vec())],
        ),
        ("reserved control opcode", vec![Frame::new(0xB, Vec::new())]),
        (
            "continuation without a start",
            vec![Frame::new(CONTINUATION, b"{}".to_vec())],
        ),
        (
            "unfinished fragments, then a new message",
            vec![
                Frame {
                    fin: false,
                    ..Frame::new(TEXT, b"{\"a\":".to_vec())
                },
                Frame::new(TEXT, b"{}".to_vec()),
            ],
        ),
        (
            "fragmented ping",
            vec![Frame {
                fin: false,
                ..Frame::new(PING, Vec::new())
            }],
        ),
        (
            "ping over 125 bytes",
            vec![Frame::new(PING, vec![0u8; 126])],
        ),
        (
            "close with a one-byte body",
            vec![Frame::new(CLOSE, vec![3])],
        ),
    ];
    for endpoint in endpoints(&server) {
        for (case, frames) in &cases {
            let mut raw = Raw::open(endpoint).await;
            for frame in frames {
                raw.send(Frame {
                    payload: frame.payload.clone(),
                    ..*frame
                })
                .await;
            }
            // Bytes behind the violation, left unread by the server: it
            // must still end with FIN, not RST.
            raw.pad().await;
            let outcome = raw.outcome().await;
            assert_refused(&endpoint, case, &outcome, 1002, false);
        }
    }
}

#[tokio::test]
async fn binary_frames_get_the_dialects_answer() {
    let server = TestServer::start(config()).await;
    for endpoint in endpoints(&server) {
        let mut raw = Raw::open(endpoint).await;
        raw.send(Frame::new(BINARY, vec![1, 2, 3])).await;
        raw.send(Frame::new(PING, b"after".to_vec())).await;
        let mut texts = Vec::new();
        tokio::time::timeout(WAIT, async {
            loop {
                match raw.frame().await.expect("reads") {
                    Some((0xA, payload)) => {
                        assert_eq!(payload, b"after");
                        break;
                    }
                    Some((TEXT, payload)) => {
                        texts.push(serde_json::from_slice::<Value>(&payload).expect("JSON"));
                    }
                    Some((CLOSE, payload)) => {
                        panic!("{}: closed on a binary frame: {payload:?}", endpoint.name)
                    }
                    Some(_) => {}
                    None => panic!("{}: EOF", endpoint.name),
                }
            }
        })
        .await
        .expect("pong in time");
        let errors = texts.iter().filter(|f| f["type"] == "error").count();
        match endpoint.error_frames {
            true => assert_eq!(errors, 1, "{}: one error frame: {texts:?}", endpoint.name),
            // Seed 002's stream ignores what the client sends.
            false => assert_eq!(errors, 0, "{}: ignored: {texts:?}", endpoint.name),
        }
        for frame in &texts {
            SCHEMAS
                .check_in(endpoint.channel, frame)
                .unwrap_or_else(|e| panic!("{}: {e}", endpoint.name));
        }
    }
}

#[tokio::test]
async fn a_ping_flood_is_closed_by_the_rate_limit() {
    let server = TestServer::start(config()).await;
    for endpoint in endpoints(&server) {
        let mut raw = Raw::open(endpoint).await;
        let mut flood = Vec::new();
        for _ in 0..2000 {
            flood.extend(Frame::new(PING, Vec::new()).bytes());
        }
        raw.send_bytes(&flood).await;
        let outcome = raw.outcome().await;
        assert_refused(
            &endpoint,
            "ping flood",
            &outcome,
            endpoint.flood_close,
            false,
        );
    }
}

#[tokio::test]
async fn frames_after_the_close_are_ignored() {
    let server = TestServer::start(config()).await;
    for endpoint in endpoints(&server) {
        let mut raw = Raw::open(endpoint).await;
        raw.send(Frame::new(CLOSE, 1000u16.to_be_bytes().to_vec()))
            .await;
        raw.send(Frame::new(TEXT, b"{\"after\":\"close\"}".to_vec()))
            .await;
        let outcome = raw.outcome().await;
        // The server echoes the client's code, and sends nothing for the
        // frame after it.
        assert_eq!(outcome.close, Some(1000), "{}", endpoint.name);
        assert!(
            outcome.texts.iter().all(|f| f["type"] != "error"),
            "{}: {:?}",
            endpoint.name,
            outcome.texts
        );
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_by_its_dialects_liveness_rule() {
    let mut config = config();
    config.ws.ping_interval_ms = 100;
    config.ws.idle_timeout_ms = 400;
    config.market_stream.heartbeat_ms = 100;
    let server = TestServer::start(config).await;
    for endpoint in endpoints(&server) {
        // A client that never answers a ping or a heartbeat, as one whose
        // peer vanished (half-open TCP) looks to the server.
        let mut raw = Raw::open(endpoint).await;
        let outcome = raw.outcome().await;
        assert_refused(&endpoint, "silent client", &outcome, 4002, false);
        let beats = outcome
            .texts
            .iter()
            .filter(|f| f["type"] == "heartbeat")
            .count();
        // Seed 000's rule is its heartbeat frames, unanswered by `pong`;
        // every other dialect's is the WebSocket ping (no heartbeat frame).
        let expected = match endpoint.name {
            "market stream" => server.gateway.config.market_stream.missed_heartbeats as usize,
            _ => 0,
        };
        assert_eq!(beats, expected, "{}: {outcome:?}", endpoint.name);
        // Exactly one mechanism each: 8082 sends no WebSocket pings.
        assert_eq!(
            outcome.pings > 0,
            endpoint.name != "market stream",
            "{}: pings before the close: {outcome:?}",
            endpoint.name
        );
    }
}

/// The handshake checks come in one order, the upgrade first: a plain GET
/// gets 426 on every endpoint, even with what a dialect's own checks would
/// refuse (a foreign `Origin`, a bad `tickers` list, an unknown symbol).
#[tokio::test]
async fn a_request_that_is_not_an_upgrade_gets_426_before_any_dialect_check() {
    let mut config = config();
    config.quotes.allowed_origins = vec!["https://app.example".into()];
    let server = TestServer::start(config).await;
    let client = reqwest::Client::new();
    let mut urls: Vec<String> = endpoints(&server)
        .iter()
        .map(|e| format!("http://{}{}?tickers=%21%21%21", e.addr, e.path))
        .collect();
    urls.push(format!(
        "http://{}/ws/NOSUCH",
        server.enhanced_addr.expect("enhanced")
    ));
    for url in urls {
        let response = client
            .get(&url)
            .header("Origin", "https://evil.example")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 426, "{url}");
        assert_eq!(
            response.headers().get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..]),
            "{url}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["code"], "upgrade_required", "{url}: {body}");
    }
}
