//! The HTTP layer under every listener (`runtime::http`): the request-head
//! timeout, the header-size bounds, and that REST and WebSocket handshakes
//! still work through it. Malformed requests are written on raw sockets.
//!
//! No assertion is about how soon something happens (the machine is
//! noisy): a connection must close, and `WAIT` is only the bound after
//! which the test fails instead of hanging.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tickgate::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{TestServer, test_config};

/// The failure bound of every wait here.
const WAIT: Duration = Duration::from_secs(10);

/// `server.max_header_bytes` of these tests (the default).
const MAX_HEADER: usize = 8192;

/// A header far past `MAX_HEADER` but inside hyper's buffer (16 × it).
const BIG_HEADER: usize = 64 * 1024;

fn config() -> Config {
    let mut config = test_config();
    // Short, so a held connection is closed quickly.
    config.server.header_timeout_ms = 300;
    config.server.max_header_bytes = MAX_HEADER;
    config
}

/// One listener of the gateway: a REST path that answers 200 and, for
/// the listeners with streams, a WebSocket path.
struct Listener {
    name: &'static str,
    addr: SocketAddr,
    rest: &'static str,
    ws: Option<&'static str>,
}

fn listeners(server: &TestServer) -> Vec<Listener> {
    let dialect = |addr: Option<SocketAddr>, name| addr.unwrap_or_else(|| panic!("{name} enabled"));
    vec![
        Listener {
            name: "main",
            addr: server.addr,
            rest: "/api/v1/health",
            ws: Some("/api/v1/ws/v1"),
        },
        Listener {
            name: "candles",
            addr: dialect(server.candles_addr, "candles"),
            rest: "/health",
            ws: Some("/"),
        },
        Listener {
            name: "market_stream",
            addr: dialect(server.market_stream_addr, "market_stream"),
            rest: "/health",
            ws: Some("/ws/market-data"),
        },
        Listener {
            name: "rt_orchestrator",
            addr: dialect(server.rt_orchestrator_addr, "rt_orchestrator"),
            rest: "/openapi.json",
            ws: None,
        },
        Listener {
            name: "enhanced",
            addr: dialect(server.enhanced_addr, "enhanced"),
            rest: "/openapi.json",
            ws: Some("/ws"),
        },
    ]
}

/// Whether a read result means the peer closed the connection (a reset
/// too: the kernel answers a write after the close with one).
fn closed(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => is_reset(error),
    }
}

fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    )
}

/// Reads until the server closes `stream`; fails on data or after `WAIT`.
async fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {WAIT:?}"));
    assert!(closed(&read), "{what}: expected the close, read {read:?}");
}

/// A GET of `path` with one extra header `x-pad` of `value_len` bytes.
fn get_with_header(addr: SocketAddr, path: &str, value_len: usize, upgrade: bool) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if upgrade {
        request.push_str(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    } else {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("x-pad: ");
    request.push_str(&"v".repeat(value_len));
    request.push_str("\r\n\r\n");
    request.into_bytes()
}

/// The length of `x-pad`'s value that makes its name + value `total` bytes.
fn pad_for(total: usize) -> usize {
    total - "x-pad".len()
}

/// A parsed HTTP response.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "a JSON body ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response from `stream`: the head, then a `Content-Length`
/// body or, without one, everything up to the close.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("a response within the bound");
        match read {
            Ok(0) => panic!(
                "closed before a complete head: {:?}",
                String::from_utf8_lossy(&data)
            ),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(error) => panic!(
                "{error} before a complete head: {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status in {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = data[head_end..].to_vec();
    if status == 101 {
        // What follows is the upgraded protocol's, not a body.
        return Answer {
            status,
            headers,
            body: Vec::new(),
        };
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok());
    loop {
        if length.is_some_and(|length| body.len() >= length) {
            break;
        }
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the body within the bound");
        match read {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(error) if length.is_none() && is_reset(&error) => break,
            Err(error) => panic!("{error} while reading the body"),
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends `request` on a new connection and reads the answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(request)
        .await
        .expect("the request is sent");
    read_answer(&mut stream).await
}

fn assert_header_too_large(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 431, "{what}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = answer.json();
    assert_eq!(body["code"], "header_too_large", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_on_every_listener() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let mut stream = TcpStream::connect(listener.addr).await.expect("connects");
        expect_closed(&mut stream, listener.name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_dribbles_its_headers_is_closed_on_every_listener() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let mut stream = TcpStream::connect(listener.addr).await.expect("connects");
        // A valid head that never ends: one byte every 100 ms.
        let mut bytes = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nx-slow: ",
            listener.rest, listener.addr
        )
        .into_bytes()
        .into_iter()
        .chain(std::iter::repeat(b'a'));
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => {
                    assert!(closed(&read), "{}: expected the close, read {read:?}", listener.name);
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let byte = bytes.next().expect("endless");
                    if stream.write_all(&[byte]).await.is_err() {
                        // Written after the server closed: closed too.
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    panic!("{}: a dribbling connection still open after {WAIT:?}", listener.name);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_on_every_listener() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let mut stream = TcpStream::connect(listener.addr).await.expect("connects");
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            listener.rest, listener.addr
        );
        stream.write_all(request.as_bytes()).await.expect("sent");
        let answer = read_answer(&mut stream).await;
        assert_eq!(answer.status, 200, "{}", listener.name);
        assert_ne!(answer.header("connection"), Some("close"), "kept alive");
        // No next request: the head timeout runs again and closes it.
        expect_closed(&mut stream, listener.name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_header_gets_431_on_every_listener_also_on_a_websocket_handshake() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let what = format!("{} GET {}", listener.name, listener.rest);
        let request = get_with_header(listener.addr, listener.rest, BIG_HEADER, false);
        assert_header_too_large(&exchange(listener.addr, &request).await, &what);
        if let Some(ws) = listener.ws {
            let what = format!("{} upgrade {ws}", listener.name);
            let request = get_with_header(listener.addr, ws, BIG_HEADER, true);
            let answer = exchange(listener.addr, &request).await;
            assert_header_too_large(&answer, &what);
            assert_eq!(answer.header("connection"), Some("close"), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_of_max_header_bytes_passes_and_one_byte_more_is_431() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let at_limit = get_with_header(listener.addr, listener.rest, pad_for(MAX_HEADER), false);
        let answer = exchange(listener.addr, &at_limit).await;
        assert_eq!(answer.status, 200, "{}: {MAX_HEADER} bytes", listener.name);
        let over = get_with_header(listener.addr, listener.rest, pad_for(MAX_HEADER + 1), false);
        let what = format!("{}: {} bytes", listener.name, MAX_HEADER + 1);
        assert_header_too_large(&exchange(listener.addr, &over).await, &what);
        if let Some(ws) = listener.ws {
            // The handshake with a header at the limit is upgraded.
            let request = get_with_header(listener.addr, ws, pad_for(MAX_HEADER), true);
            let answer = exchange(listener.addr, &request).await;
            assert_eq!(
                answer.status, 101,
                "{} upgrade {ws} at the limit",
                listener.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_larger_than_the_buffer_gets_hyper_431_on_every_listener() {
    let server = TestServer::start(config()).await;
    // Past hyper's read buffer (16 × MAX_HEADER): hyper itself answers 431
    // with an empty body and closes, before any header is looked at.
    let size = 16 * MAX_HEADER + 4096;
    for listener in listeners(&server) {
        let request = get_with_header(listener.addr, listener.rest, size, false);
        let mut stream = TcpStream::connect(listener.addr).await.expect("connects");
        let (mut reader, mut writer) = stream.split();
        // The server stops reading at its bound: write beside the read,
        // and ignore a write refused once it has answered and closed.
        let write = async {
            let _ = writer.write_all(&request).await;
        };
        let read = async {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break data,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
        };
        let ((), data) = tokio::time::timeout(WAIT, async { tokio::join!(write, read) })
            .await
            .unwrap_or_else(|_| panic!("{}: no answer", listener.name));
        let text = String::from_utf8_lossy(&data);
        assert!(
            text.starts_with("HTTP/1.1 431 "),
            "{}: {text:?}",
            listener.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_websocket_connects_still_work_on_every_listener() {
    let server = TestServer::start(config()).await;
    for listener in listeners(&server) {
        let url = format!("http://{}{}", listener.addr, listener.rest);
        let response = reqwest::get(&url).await.expect("REST answers");
        assert_eq!(response.status(), 200, "{url}");
        if let Some(ws) = listener.ws {
            let url = format!("ws://{}{ws}", listener.addr);
            let (mut socket, response) =
                tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
                    .await
                    .unwrap_or_else(|_| panic!("{url}: no handshake"))
                    .unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!(response.status(), 101, "{url}");
            socket.close(None).await.expect("closes");
        }
    }
    // The v1 session still runs over the upgraded stream: its first
    // frame, a schema-checked `welcome`.
    let client = crate::support::Client::connect(&server).await;
    assert_eq!(client.welcome["type"], "welcome");
}
