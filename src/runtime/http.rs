//! The HTTP/1.1 server beneath every listener: it accepts, sets
//! `TCP_NODELAY` (each connection's writer already gathers every ready
//! frame into one flush, so Nagle's algorithm would only add delay), bounds
//! how long and how large a request head may be, and shuts down
//! gracefully; the listener's poem endpoint answers each request.
//!
//! poem's own `Server` sets no timer on hyper, so a client that never
//! completes its request head was held forever, and it exposes no bound on
//! the read buffer (hyper's default, about 400 KB, let a 64 KiB header
//! through). This serves hyper's HTTP/1 connection directly, as poem does
//! inside its `Server`, with:
//!
//! - `header_read_timeout` (`server.header_timeout_ms`) and a tokio timer.
//!   hyper starts the deadline when it begins to read a request head: at
//!   the accept, and again as soon as a keep-alive connection has sent its
//!   response and goes idle. A connection that sends nothing, dribbles its
//!   head, or stays idle between requests that long is closed (no response
//!   is written). Once a head is complete the deadline is cleared: neither
//!   a slow body nor a slow endpoint is bounded by it.
//! - `max_buf_size`: 16 × `server.max_header_bytes` (at least hyper's
//!   minimum, 8 KiB), the memory one connection's request head may take.
//!   A head that does not fit gets hyper's own 431 (empty body) and the
//!   connection is closed.
//! - a check of every header before the endpoint sees the request: one
//!   whose name and value together exceed `server.max_header_bytes` gets
//!   431 `header_too_large` (JSON) and `Connection: close`, so a WebSocket
//!   handshake carrying one is refused before it is upgraded.
//!
//! Only HTTP/1.1 is served (poem's server also detected HTTP/2 with prior
//! knowledge; hyper-util's detection reads the first bytes without any
//! timeout, which is the hole this closes). WebSocket upgrades go through
//! hyper's `with_upgrades`: the connection future ends at the upgrade, and
//! the upgraded stream belongs to whoever took it (sessions run on
//! `gateway.tasks`, not here).

use std::{convert::Infallible, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Response,
    http::{HeaderMap, HeaderValue, StatusCode, header, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::ServerConfig, runtime::handshake::json_error};

/// The smallest read buffer hyper accepts (it panics below it).
const MIN_BUF_SIZE: usize = 8192;

/// The read buffer per connection, in multiples of `max_header_bytes`.
const BUF_HEADERS: usize = 16;

/// Pause after an accept error that is not one connection's own (such as
/// running out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every connection of a listener is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for one request head (`server.header_timeout_ms`).
    pub header_timeout: Duration,
    /// Largest name + value of one header (`server.max_header_bytes`).
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn from_config(config: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            max_header_bytes: config.max_header_bytes,
        }
    }

    /// hyper's read buffer: the bound on one connection's request head.
    pub fn max_buf_size(&self) -> usize {
        self.max_header_bytes
            .saturating_mul(BUF_HEADERS)
            .max(MIN_BUF_SIZE)
    }
}

/// Serves `endpoint` on `listener` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is serving (idle
/// ones close at once), and after `grace` drops those still open.
///
/// # Errors
/// The listener has no local address.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let endpoint = Arc::new(endpoint.into_endpoint().map_to_response());
    let local = LocalAddr(poem::Addr::SocketAddr(listener.local_addr()?));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf_size());
    let connections = TaskTracker::new();
    // Cancelled at shutdown: finish the request in flight, then close.
    let closing = CancellationToken::new();
    // Cancelled when the grace period is over: close now.
    let closed = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        connections.spawn(serve_connection(
            stream,
            Peer {
                local: local.clone(),
                remote: peer,
            },
            endpoint.clone(),
            builder.clone(),
            limits.max_header_bytes,
            Stops {
                closing: closing.clone(),
                closed: closed.clone(),
            },
        ));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!(
            open = connections.len(),
            "closing the connections still open after the grace period"
        );
        closed.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// The two ends of one connection, as poem's requests report them.
struct Peer {
    local: LocalAddr,
    remote: SocketAddr,
}

struct Stops {
    closing: CancellationToken,
    closed: CancellationToken,
}

async fn serve_connection<T>(
    stream: TcpStream,
    peer: Peer,
    endpoint: Arc<T>,
    builder: http1::Builder,
    max_header_bytes: usize,
    stops: Stops,
) where
    T: Endpoint<Output = Response> + 'static,
{
    let Peer { local, remote } = peer;
    let remote_addr = RemoteAddr(poem::Addr::SocketAddr(remote));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = endpoint.clone();
        let local = local.clone();
        let remote_addr = remote_addr.clone();
        async move {
            let response = match oversized_header(request.headers(), max_header_bytes) {
                Some(refusal) => refusal,
                None => {
                    endpoint
                        .get_response((request, local, remote_addr, Scheme::HTTP).into())
                        .await
                }
            };
            Ok::<hyper::Response<_>, Infallible>(response.into())
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        () = stops.closing.cancelled() => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                () = stops.closed.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
        // Timeouts, malformed requests and clients that went away: theirs.
        tracing::debug!(%error, %remote, "connection ended");
    }
}

/// The 431 for the first header whose name and value together exceed
/// `max_bytes`, if any.
fn oversized_header(headers: &HeaderMap, max_bytes: usize) -> Option<Response> {
    let (name, size) = headers
        .iter()
        .map(|(name, value)| (name, name.as_str().len() + value.len()))
        .find(|&(_, size)| size > max_bytes)?;
    // Header names are ASCII tokens: any byte is a character boundary.
    let shown = name.as_str().get(..64).unwrap_or(name.as_str());
    let mut response = json_error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header_too_large",
        &format!(
            "the header {shown} is {size} bytes (name and value); at most {max_bytes} are accepted: send a smaller one"
        ),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// An accept error that concerns only the connection being accepted.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("a header value"),
                )
            })
            .collect()
    }

    #[test]
    fn a_header_of_the_limit_passes_and_one_byte_more_is_refused() {
        // "x-pad" is 5 bytes.
        let at_limit = headers(&[("host", "a".into()), ("x-pad", "v".repeat(95))]);
        assert!(oversized_header(&at_limit, 100).is_none());
        let over = headers(&[("host", "a".into()), ("x-pad", "v".repeat(96))]);
        let refusal = oversized_header(&over, 100).expect("refused");
        assert_eq!(
            refusal.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            refusal.headers().get(header::CONNECTION),
            Some(&HeaderValue::from_static("close"))
        );
    }

    #[test]
    fn the_buffer_is_sixteen_headers_and_never_below_hyper_minimum() {
        let limits = |max_header_bytes| Limits {
            header_timeout: Duration::from_secs(1),
            max_header_bytes,
        };
        assert_eq!(limits(8192).max_buf_size(), 131_072);
        assert_eq!(limits(512).max_buf_size(), MIN_BUF_SIZE);
    }
}
