//! `tickgate bench`: the load tool. `run` drives N WebSocket clients of one
//! dialect against a gateway on loopback while a publisher (Redis, or the
//! gateway's own simulator in load mode) produces stamped quotes, and prints
//! one JSON line: publish-to-receive latency, delivered frames/s, loss,
//! connect errors, the server's CPU time and RSS. `limit` measures what this
//! machine's loopback absorbs from a trivial server; `idle` the server's
//! memory per idle connection; `churn` subscribe/unsubscribe cycles.
//!
//! Every loop here is bounded in count and in time: a run has a hard
//! deadline, and connects are bounded by a semaphore and a timeout.

mod client;
mod limit;
mod report;
mod run;
mod sessions;

use std::{net::IpAddr, net::SocketAddr, time::Duration};

use clap::{Args, Subcommand};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{http::Uri, protocol::WebSocketConfig},
};

/// The subcommands of `tickgate bench`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// N clients of one dialect, a publisher, one JSON result line.
    Run(run::RunArgs),
    /// A trivial built-in server writing pre-encoded frames to N built-in
    /// clients, one frame per write and then in 64 KiB writes.
    Limit(limit::LimitArgs),
    /// Server memory per idle connection subscribed to one channel.
    Idle(sessions::IdleArgs),
    /// v1 clients subscribing and unsubscribing while data flows.
    Churn(sessions::ChurnArgs),
}

/// Why a bench command failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid url {0:?}: expected ws://HOST:PORT/PATH")]
    Url(String),
    #[error("{0} is not a loopback address: the bench tool only drives this machine")]
    NotLoopback(String),
    #[error("invalid {what} {value:?}: {hint}")]
    Arg {
        what: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("redis: {0}; is Redis running at --redis-url?")]
    Redis(#[from] redis::RedisError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("no client connected ({0} connect errors); is the gateway running at --url?")]
    NoClients(u64),
}

/// Runs one bench command on a fresh runtime and prints its JSON line.
///
/// # Errors
/// Bad arguments, a non-loopback target, or nothing to measure.
pub fn main(command: BenchCommand) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Runtime::new()?;
    let line = runtime.block_on(async {
        match command {
            BenchCommand::Run(args) => run::run(args).await,
            BenchCommand::Limit(args) => limit::run(args).await,
            BenchCommand::Idle(args) => sessions::idle(args).await,
            BenchCommand::Churn(args) => sessions::churn(args).await,
        }
    })?;
    println!("{line}");
    // Clients still parked in a closing handshake must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// A loopback WebSocket endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH` and refuses any host but loopback.
    ///
    /// # Errors
    /// A malformed URL, or a host that is not loopback.
    pub fn parse(url: &str) -> Result<Self, BenchError> {
        let uri: Uri = url.parse().map_err(|_| BenchError::Url(url.into()))?;
        if uri.scheme_str() != Some("ws") {
            return Err(BenchError::Url(url.into()));
        }
        let host = uri.host().ok_or_else(|| BenchError::Url(url.into()))?;
        let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            other => other
                .parse()
                .map_err(|_| BenchError::NotLoopback(host.into()))?,
        };
        if !ip.is_loopback() {
            return Err(BenchError::NotLoopback(ip.to_string()));
        }
        let port = uri.port_u16().unwrap_or(80);
        Ok(Self {
            url: url.into(),
            addr: SocketAddr::new(ip, port),
        })
    }

    /// The same endpoint with another path and query.
    pub fn with_path(&self, path_and_query: &str) -> Self {
        Self {
            url: format!("ws://{}{path_and_query}", self.addr),
            addr: self.addr,
        }
    }
}

/// Source addresses for client sockets, used round-robin, so that more than
/// one address's ephemeral ports (about 28,000) can be opened.
#[derive(Clone, Debug)]
pub struct SourceIps(Vec<IpAddr>);

impl SourceIps {
    /// Parses `127.0.0.1-127.0.0.20` (an IPv4 range) or one address.
    ///
    /// # Errors
    /// A malformed range, a range of more than 65,536 addresses or an
    /// address that is not loopback.
    pub fn parse(text: &str) -> Result<Self, BenchError> {
        let bad = |hint| BenchError::Arg {
            what: "source range",
            value: text.into(),
            hint,
        };
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let first: std::net::Ipv4Addr = first
            .trim()
            .parse()
            .map_err(|_| bad("expected A.B.C.D-A.B.C.D"))?;
        let last: std::net::Ipv4Addr = last
            .trim()
            .parse()
            .map_err(|_| bad("expected A.B.C.D-A.B.C.D"))?;
        let (a, b) = (u32::from(first), u32::from(last));
        if b < a || b - a > 65_535 {
            return Err(bad("the range must go up, with at most 65,536 addresses"));
        }
        let ips: Vec<IpAddr> = (a..=b)
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::from(n)))
            .collect();
        if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
            return Err(BenchError::NotLoopback(ip.to_string()));
        }
        Ok(Self(ips))
    }

    /// The source address of client `n`; None lets the kernel choose.
    pub fn pick(this: Option<&Self>, n: usize) -> Option<IpAddr> {
        this.map(|ips| ips.0[n % ips.0.len()])
    }
}

/// A client's WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens a TCP connection from `source` (when given) and makes the
/// WebSocket handshake, both within `timeout`. `read_buffer` is
/// tungstenite's read buffer: small for idle connections, larger for busy
/// ones.
///
/// # Errors
/// The connect, the handshake or the timeout failing.
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    read_buffer: usize,
    timeout: Duration,
) -> Result<Ws, BenchError> {
    let attempt = async {
        let socket = match target.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0);
        let (ws, _) = client_async_with_config(target.url.as_str(), stream, Some(config)).await?;
        Ok::<_, BenchError>(ws)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| BenchError::Timeout("connect"))?
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s or 500ms"))?;
    if !(0.0..=86_400.0).contains(&(value * unit)) {
        return Err(format!("{text:?} is not between 0 and one day"));
    }
    Ok(Duration::from_secs_f64(value * unit))
}

/// Arguments every client-driving mode shares.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// WebSocket URL of the gateway (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws/quotes")]
    pub url: String,
    /// Number of clients.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Source addresses for client sockets, round-robin:
    /// `127.0.0.1-127.0.0.20`.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// PID of the gateway, for its CPU time and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl ClientArgs {
    fn sources(&self) -> Result<Option<SourceIps>, BenchError> {
        self.source_ips.as_deref().map(SourceIps::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse("ws://127.0.0.1:8000/ws/quotes").is_ok());
        assert!(Target::parse("ws://localhost:8000/ws").is_ok());
        assert!(Target::parse("ws://[::1]:8000/ws").is_ok());
        assert!(matches!(
            Target::parse("ws://10.0.0.1:8000/ws"),
            Err(BenchError::NotLoopback(_))
        ));
        assert!(matches!(
            Target::parse("ws://example.com/ws"),
            Err(BenchError::NotLoopback(_))
        ));
        assert!(Target::parse("http://127.0.0.1/").is_err());
    }

    #[test]
    fn source_ranges() {
        let ips = SourceIps::parse("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(ips.0.len(), 3);
        assert_eq!(
            SourceIps::pick(Some(&ips), 4),
            Some(IpAddr::from([127, 0, 0, 2]))
        );
        assert!(SourceIps::parse("127.0.0.3-127.0.0.1").is_err());
        assert!(SourceIps::parse("10.0.0.1-10.0.0.2").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }
}
