//! `tickgate bench idle` and `tickgate bench churn`: the server's memory per
//! idle connection, and whether subscribe/unsubscribe cycles leak or draw
//! undocumented errors.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{
    BenchError, ClientArgs, SourceIps, Target, Ws, connect, parse_duration,
    report::{round3, rss_kib, string_field},
};

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub clients: ClientArgs,
    /// A frame each client sends after connecting (a v1 subscribe, say);
    /// the quotes dialect subscribes in its URL (`?tickers=T000`).
    #[arg(long)]
    pub subscribe: Option<String>,
    /// How long the connections settle before RSS is read.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub settle: Duration,
}

#[derive(Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub clients: ClientArgs,
    /// Subscribe/unsubscribe cycles per client.
    #[arg(long, default_value_t = 100)]
    pub cycles: usize,
    /// Symbols the cycles go through (`market_data`).
    #[arg(long, value_delimiter = ',', default_value = "AAPL,MSFT,TSLA,NVDA")]
    pub symbols: Vec<String>,
    /// Frames per second each client sends (the gateway allows 20/s by
    /// default; above it `rate_limited` errors are expected).
    #[arg(long, default_value_t = 15.0)]
    pub pace: f64,
    /// How long the server settles after the clients closed before RSS is
    /// read again.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub settle: Duration,
}

/// How long one connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take in all.
const CONNECT_BUDGET: Duration = Duration::from_secs(120);

fn server_rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| rss_kib(&p.to_string()))
}

/// The clients `open_all` started.
struct Opened<T> {
    tasks: Vec<tokio::task::JoinHandle<Option<T>>>,
    connected: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

/// Opens `args.clients` connections with bounded concurrency; each runs
/// `body` once connected.
fn open_all<F, Fut, T>(
    args: &ClientArgs,
    read_buffer: usize,
    body: F,
) -> Result<Opened<T>, BenchError>
where
    F: Fn(usize, Ws) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let target = Target::parse(&args.url)?;
    let sources = args.sources()?;
    let semaphore = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let connected = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(args.clients);
    for n in 0..args.clients {
        let (target, semaphore, body) = (target.clone(), semaphore.clone(), body.clone());
        let (connected, errors) = (connected.clone(), errors.clone());
        let source = SourceIps::pick(sources.as_ref(), n);
        tasks.push(tokio::spawn(async move {
            let ws = {
                let _permit = semaphore.acquire().await.ok()?;
                match connect(&target, source, read_buffer, CONNECT_TIMEOUT).await {
                    Ok(ws) => ws,
                    Err(error) => {
                        tracing::debug!(%error, "connect failed");
                        errors.fetch_add(1, Relaxed);
                        return None;
                    }
                }
            };
            connected.fetch_add(1, Relaxed);
            Some(body(n, ws).await)
        }));
    }
    Ok(Opened {
        tasks,
        connected,
        errors,
    })
}

/// Waits until `total` connects succeeded or failed, with a progress line
/// each second, at most `CONNECT_BUDGET`.
async fn wait_connected(total: usize, connected: &AtomicU64, errors: &AtomicU64) {
    let deadline = Instant::now() + CONNECT_BUDGET;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        let (ok, failed) = (connected.load(Relaxed), errors.load(Relaxed));
        if ok + failed >= total as u64 {
            return;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "bench: connecting {}/{total} ({failed} errors)",
                ok + failed
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn idle(args: IdleArgs) -> Result<String, BenchError> {
    let pid = args.clients.server_pid;
    let before = server_rss(pid);
    let stop = CancellationToken::new();
    let subscribe = args.subscribe.clone();
    let body = {
        let stop = stop.clone();
        move |_, mut ws: Ws| {
            let (stop, subscribe) = (stop.clone(), subscribe.clone());
            async move {
                if let Some(frame) = subscribe
                    && ws.send(Message::text(frame)).await.is_err()
                {
                    return;
                }
                // Read (and so answer pings) until told to stop.
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        message = ws.next() => if !matches!(message, Some(Ok(_))) { break },
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
            }
        }
    };
    // Idle clients: a small read buffer keeps this process small too.
    let Opened {
        tasks,
        connected,
        errors,
    } = open_all(&args.clients, 4096, body)?;
    wait_connected(args.clients.clients, &connected, &errors).await;
    tokio::time::sleep(args.settle).await;
    let open = connected.load(Relaxed);
    let after = server_rss(pid);
    stop.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    let per_connection = before
        .zip(after)
        .filter(|_| open > 0)
        .map(|(b, a)| round3((a as f64 - b as f64) * 1024.0 / open as f64));
    Ok(json!({
        "mode": "idle",
        "url": args.clients.url,
        "clients": args.clients.clients,
        "connected": open,
        "connect_errors": errors.load(Relaxed),
        "server_pid": pid,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": per_connection,
    })
    .to_string())
}

/// What one churning client saw.
#[derive(Default)]
struct Churned {
    cycles: u64,
    errors: BTreeMap<String, u64>,
    timeouts: u64,
    closed_early: bool,
}

pub async fn churn(args: ChurnArgs) -> Result<String, BenchError> {
    let pid = args.clients.server_pid;
    let before = server_rss(pid);
    let started = Instant::now();
    let symbols = Arc::new(args.symbols.clone());
    let (cycles, gap) = (
        args.cycles,
        Duration::from_secs_f64(1.0 / args.pace.max(0.1)),
    );
    // Each frame waits for its reply at most this long.
    let reply_timeout = Duration::from_secs(5);
    let body = move |n: usize, mut ws: Ws| {
        let symbols = symbols.clone();
        async move {
            let mut seen = Churned::default();
            let mut next_send = tokio::time::Instant::now();
            'cycles: for i in 0..cycles {
                let symbol = &symbols[(n + i) % symbols.len().max(1)];
                for (kind, reply) in [("subscribe", "subscribed"), ("unsubscribe", "unsubscribed")]
                {
                    tokio::time::sleep_until(next_send).await;
                    next_send += gap;
                    let id = format!("{kind}-{i}");
                    let frame =
                        json!({"type": kind, "channel": "market_data", "symbol": symbol, "id": id});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        seen.closed_early = true;
                        break 'cycles;
                    }
                    // Read until the reply to this frame, counting errors;
                    // data frames in between are skipped.
                    let deadline = tokio::time::Instant::now() + reply_timeout;
                    loop {
                        let message = match tokio::time::timeout_at(deadline, ws.next()).await {
                            Err(_) => {
                                seen.timeouts += 1;
                                break;
                            }
                            Ok(Some(Ok(message))) => message,
                            Ok(_) => {
                                seen.closed_early = true;
                                break 'cycles;
                            }
                        };
                        let Message::Text(text) = message else {
                            continue;
                        };
                        match string_field(&text, "type") {
                            Some(t)
                                if t == reply && string_field(&text, "id") == Some(id.as_str()) =>
                            {
                                break;
                            }
                            Some("error") => {
                                let code =
                                    string_field(&text, "code").unwrap_or("unknown").to_owned();
                                *seen.errors.entry(code).or_default() += 1;
                                if string_field(&text, "id") == Some(id.as_str()) {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                seen.cycles += 1;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
            seen
        }
    };
    let Opened {
        tasks,
        connected,
        errors,
    } = open_all(&args.clients, 16 * 1024, body)?;
    wait_connected(args.clients.clients, &connected, &errors).await;
    let during = server_rss(pid);
    // Each cycle is two paced frames; allow their time twice over, plus a margin.
    let budget = gap * (2 * cycles as u32) * 2 + Duration::from_secs(30);
    let mut total = Churned::default();
    let mut unfinished = 0u64;
    for task in tasks {
        let remaining =
            (started + CONNECT_BUDGET + budget).saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(Duration::from_millis(10)), task).await {
            Ok(Ok(Some(seen))) => {
                total.cycles += seen.cycles;
                total.timeouts += seen.timeouts;
                total.closed_early |= seen.closed_early;
                unfinished += u64::from(seen.closed_early);
                for (code, n) in seen.errors {
                    *total.errors.entry(code).or_default() += n;
                }
            }
            Ok(_) => {}
            Err(_) => unfinished += 1,
        }
    }
    tokio::time::sleep(args.settle).await;
    let after = server_rss(pid);
    let ratio = before
        .zip(after)
        .map(|(b, a)| round3(a as f64 / b.max(1) as f64));
    Ok(json!({
        "mode": "churn",
        "url": args.clients.url,
        "clients": args.clients.clients,
        "connected": connected.load(Relaxed),
        "connect_errors": errors.load(Relaxed),
        "cycles_per_client": cycles,
        "cycles_done": total.cycles,
        "reply_timeouts": total.timeouts,
        "clients_closed_early": unfinished,
        "error_codes": total.errors,
        "seconds": round3(started.elapsed().as_secs_f64()),
        "server_pid": pid,
        "rss_before_kib": before,
        "rss_connected_kib": during,
        "rss_after_kib": after,
        "rss_after_over_before": ratio,
    })
    .to_string())
}
