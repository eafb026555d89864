//! `tickgate bench run`: connect N clients, publish (or let the simulator
//! publish) for warmup + duration, count what arrives, print one JSON line.
//!
//! Frames count when their timestamp (the publish time) falls in the
//! measured window `[start + warmup, start + warmup + duration)`. Expected
//! deliveries per ticker are what the Redis publisher stamped inside the
//! window; on the simulator path, where the tool does not see the ticks, the
//! schedule (`rate × window / tickers`) or what the best client received,
//! whichever is larger. Loss is expected minus received.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use clap::Args;
use rand::{SeedableRng, seq::index::sample};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{
    BenchError, ClientArgs, SourceIps, Target,
    client::{self, ClientState, Dialect, Shared, Universe},
    connect, parse_duration,
    report::{ProcWindow, histogram, latency_json, now_micros, round3},
};

/// Where the published data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// This tool publishes flat quotes on `quotes.realtime`.
    Redis,
    /// The gateway's simulator in load mode (`--sim-rate`) produces ticks.
    Simulator,
    /// Nothing is published (connections only).
    None,
}

/// How many tickers each client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerClient {
    All,
    Some(usize),
}

fn parse_per_client(text: &str) -> Result<PerClient, String> {
    if text == "all" {
        return Ok(PerClient::All);
    }
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not `all` or a positive number")),
        Ok(n) => Ok(PerClient::Some(n)),
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub clients: ClientArgs,
    /// Wire dialect of the clients.
    #[arg(long, value_enum, default_value_t = Dialect::Quotes)]
    pub dialect: Dialect,
    /// Tickers each client subscribes to: a number (random, per client) or
    /// `all`.
    #[arg(long, value_parser = parse_per_client, default_value = "all")]
    pub tickers_per_client: PerClient,
    /// Publisher of the data.
    #[arg(long, value_enum, default_value_t = Publish::Redis)]
    pub publish: Publish,
    /// Messages per second in all (Redis), or the gateway's `--sim-rate`.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Tickers T000, T001, ... the Redis publisher cycles through.
    #[arg(long, default_value_t = 300)]
    pub tickers: usize,
    /// The simulator's symbols (simulator path); default: the gateway's
    /// default `simulator.symbols`.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Measured time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Time before the measured window (published, not counted).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Redis (loopback) for `--publish redis`.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Redis channel of flat quotes (with the gateway's `redis.prefix`).
    #[arg(long, default_value = "quotes.realtime")]
    pub redis_channel: String,
    /// Seed of the random ticker choice.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// How long connecting may take in all, beyond which the run starts with
/// the clients it has.
const CONNECT_BUDGET: Duration = Duration::from_secs(60);
/// How long frames stamped in the window may still arrive after it.
const DRAIN: Duration = Duration::from_secs(2);

pub async fn run(args: RunArgs) -> Result<String, BenchError> {
    let target = Target::parse(&args.clients.url)?;
    let sources = args.clients.sources()?;
    if args.publish == Publish::Redis {
        check_redis_url(&args.redis_url)?;
    }
    let names: Vec<String> = match args.publish {
        Publish::Redis => (0..args.tickers.max(1))
            .map(|i| format!("T{i:03}"))
            .collect(),
        _ if !args.symbols.is_empty() => args.symbols.iter().map(|s| s.to_uppercase()).collect(),
        _ => crate::Config::default().simulator.symbols,
    };
    let universe = Universe::new(names);
    let window_seconds = args.duration.as_secs_f64();
    let clients = args.clients.clients;
    // Every deadline hangs off this one: connecting, then warmup, the
    // window, the drain, and a last margin.
    let began = Instant::now();
    let hard_deadline =
        began + CONNECT_BUDGET + args.warmup + args.duration + Duration::from_secs(10);

    // Choose each client's tickers up front (reproducible with --seed).
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed);
    let choices: Vec<Option<Vec<usize>>> = (0..clients)
        .map(|_| match args.tickers_per_client {
            PerClient::All => None,
            PerClient::Some(k) if k >= universe.names.len() => None,
            PerClient::Some(k) => {
                let mut picked = sample(&mut rng, universe.names.len(), k).into_vec();
                picked.sort_unstable();
                Some(picked)
            }
        })
        .collect();

    // The window is fixed once everyone is connected; until then it lies
    // in the far future so nothing counts.
    let stop = CancellationToken::new();
    let (release, released) = tokio::sync::watch::channel::<Option<Arc<Shared>>>(None);
    let connected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let connect_errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let semaphore = Arc::new(Semaphore::new(args.clients.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(clients);
    for (n, tickers) in choices.into_iter().enumerate() {
        let names: Option<Vec<String>> = tickers
            .as_ref()
            .map(|t| t.iter().map(|&i| universe.names[i].clone()).collect());
        let target = match (args.dialect, &names) {
            (Dialect::Quotes, Some(names)) => {
                let path = target
                    .url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                    .unwrap_or("/ws/quotes");
                let path = path.split('?').next().unwrap_or(path);
                target.with_path(&format!("{path}?tickers={}", names.join(",")))
            }
            _ => target.clone(),
        };
        let subscribe = client::subscribe_frames(args.dialect, names.as_deref());
        let source = SourceIps::pick(sources.as_ref(), n);
        let semaphore = semaphore.clone();
        let (connected, connect_errors) = (connected.clone(), connect_errors.clone());
        let (stop, mut released) = (stop.clone(), released.clone());
        let universe_len = universe.names.len();
        let seconds = window_seconds.ceil() as usize;
        handles.push(tokio::spawn(async move {
            let ws = {
                let Ok(_permit) = semaphore.acquire().await else {
                    return None;
                };
                match connect(&target, source, 64 * 1024, Duration::from_secs(10)).await {
                    Ok(ws) => ws,
                    Err(error) => {
                        tracing::debug!(%error, "connect failed");
                        connect_errors.fetch_add(1, Relaxed);
                        return None;
                    }
                }
            };
            connected.fetch_add(1, Relaxed);
            // Wait for the run to start (bounded by the hard deadline).
            let shared = tokio::select! {
                shared = released.wait_for(Option::is_some) => shared.ok()?.clone()?,
                () = stop.cancelled() => return None,
            };
            let state = ClientState::new(tickers, universe_len, seconds);
            Some(client::drive(ws, shared, subscribe, state, stop).await)
        }));
    }

    // Wait until every client connected or failed, or the budget is gone.
    let connect_deadline = began + CONNECT_BUDGET;
    let mut last_progress = Instant::now();
    while Instant::now() < connect_deadline {
        let done = connected.load(Relaxed) + connect_errors.load(Relaxed);
        if done >= clients as u64 {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "bench: connecting {done}/{clients} ({} errors)",
                connect_errors.load(Relaxed)
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected_now = connected.load(Relaxed);
    if connected_now == 0 && clients > 0 {
        stop.cancel();
        return Err(BenchError::NoClients(connect_errors.load(Relaxed)));
    }

    // The run starts: fix the window and release the clients.
    let start_us = now_micros();
    let window = (
        start_us + args.warmup.as_micros() as i64,
        start_us + (args.warmup + args.duration).as_micros() as i64,
    );
    let shared = Arc::new(Shared {
        dialect: args.dialect,
        universe,
        window,
        frames: Default::default(),
        connected: Default::default(),
    });
    shared.connected.store(connected_now, Relaxed);
    let _ = release.send(Some(shared.clone()));
    let started = Instant::now();

    let publisher = match args.publish {
        Publish::Redis => Some(tokio::spawn(publish_redis(
            args.redis_url.clone(),
            args.redis_channel.clone(),
            shared.universe.names.clone(),
            args.rate,
            window,
            started + args.warmup + args.duration,
            stop.clone(),
        ))),
        Publish::Simulator | Publish::None => None,
    };

    // Warmup, then the window, with a progress line once a second.
    let mut proc_window = ProcWindow::default();
    let mut measuring = false;
    let window_end = started + args.warmup + args.duration;
    let mut last_frames = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < window_end.min(hard_deadline) {
        let next_stop = if measuring {
            window_end
        } else {
            started + args.warmup
        };
        tokio::select! {
            _ = tick.tick() => {
                let frames = shared.frames.load(Relaxed);
                eprintln!(
                    "bench: {:.0}s {} clients ({} connect errors) {} frames/s",
                    started.elapsed().as_secs_f64(),
                    connected_now,
                    connect_errors.load(Relaxed),
                    frames - last_frames,
                );
                last_frames = frames;
            }
            () = tokio::time::sleep_until(next_stop.into()) => {
                if !measuring {
                    proc_window = ProcWindow::start(args.clients.server_pid);
                    measuring = true;
                }
            }
        }
    }
    let usage = proc_window.finish(args.clients.server_pid, window_seconds);
    let published = match publisher {
        Some(task) => match task.await {
            Ok(result) => Some(result?),
            Err(_) => None,
        },
        None => None,
    };
    // Let frames stamped in the window arrive, then stop everyone.
    tokio::time::sleep(DRAIN.min(hard_deadline.saturating_duration_since(Instant::now()))).await;
    stop.cancel();
    let mut states = Vec::with_capacity(handles.len());
    for handle in handles {
        let remaining = hard_deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        if let Ok(Ok(Some(state))) = tokio::time::timeout(remaining, handle).await {
            states.push(state);
        }
    }
    Ok(summarize(
        &args,
        &shared,
        &states,
        published,
        connect_errors.load(Relaxed),
        usage,
    )
    .to_string())
}

fn check_redis_url(url: &str) -> Result<(), BenchError> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| BenchError::Url(url.into()))?;
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = host.split(['/', ':']).next().unwrap_or(host);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(BenchError::NotLoopback(host.into()))
    }
}

/// What the Redis publisher sent: in-window messages per ticker, in all, and
/// failed pipelines.
struct Published {
    per_ticker: Vec<u64>,
    total: u64,
    failed: u64,
}

/// Publishes `rate` flat quotes per second, round-robin over `tickers`,
/// until `until`. A 1 ms schedule decides how many are due; each batch is one
/// pipeline of PUBLISH commands stamped with the time it is built. After a
/// stall, at most one second of backlog is sent.
async fn publish_redis(
    url: String,
    channel: String,
    tickers: Vec<String>,
    rate: u32,
    window: (i64, i64),
    until: Instant,
    stop: CancellationToken,
) -> Result<Published, BenchError> {
    let client = redis::Client::open(url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut result = Published {
        per_ticker: vec![0; tickers.len()],
        total: 0,
        failed: 0,
    };
    let began = Instant::now();
    let mut sent: u64 = 0;
    let mut next = 0usize;
    let mut timer = tokio::time::interval(Duration::from_millis(1));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut volume: u64 = 1_000;
    while Instant::now() < until {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = timer.tick() => {}
        }
        let due = (began.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        let batch = due.saturating_sub(sent).min(u64::from(rate.max(1)));
        if batch == 0 {
            continue;
        }
        let stamp = jiff::Timestamp::now();
        let micros = stamp.as_microsecond();
        let stamp = format!("{stamp:.6}");
        let mut pipe = redis::pipe();
        let mut indices = Vec::with_capacity(batch as usize);
        for _ in 0..batch {
            let price = 100.0 + (volume % 1000) as f64 / 100.0;
            volume += 1;
            let quote = format!(
                r#"{{"ticker":"{}","timestamp":"{stamp}","open":100.0,"high":111.0,"low":99.0,"close":{price:.2},"volume":{volume},"bid":{:.2},"ask":{:.2}}}"#,
                tickers[next],
                price - 0.01,
                price + 0.01,
            );
            pipe.cmd("PUBLISH").arg(&channel).arg(quote).ignore();
            indices.push(next);
            next = (next + 1) % tickers.len();
        }
        sent = sent.max(due.saturating_sub(u64::from(rate))) + batch;
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) => {
                result.total += batch;
                if micros >= window.0 && micros < window.1 {
                    for i in indices {
                        result.per_ticker[i] += 1;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "publish failed");
                result.failed += batch;
            }
        }
    }
    Ok(result)
}

fn summarize(
    args: &RunArgs,
    shared: &Shared,
    states: &[ClientState],
    published: Option<Published>,
    connect_errors: u64,
    usage: serde_json::Value,
) -> serde_json::Value {
    let universe = shared.universe.names.len();
    let window = args.duration.as_secs_f64();
    // Expected messages per ticker in the window.
    let mut per_ticker: Vec<u64> = match &published {
        Some(p) => p.per_ticker.clone(),
        None if args.publish == Publish::Simulator => {
            let each = (f64::from(args.rate) * window / universe.max(1) as f64).floor() as u64;
            vec![each; universe]
        }
        None => vec![0; universe],
    };
    for state in states {
        for (t, &count) in state.counts.iter().enumerate() {
            per_ticker[t] = per_ticker[t].max(count);
        }
    }
    let mut latency = histogram();
    let (mut expected, mut received, mut frames, mut unexpected) = (0u64, 0u64, 0u64, 0u64);
    let (mut seq_gaps, mut closed_early, mut second_max) = (0u64, 0u64, 0u64);
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    let mut rate_cap = None;
    for state in states {
        expected += match &state.tickers {
            None => per_ticker.iter().sum::<u64>(),
            Some(t) => t.iter().map(|&i| per_ticker[i]).sum(),
        };
        received += state.counts.iter().sum::<u64>();
        frames += state.frames;
        unexpected += state.unexpected;
        seq_gaps += state.seq_gaps;
        closed_early += u64::from(state.closed_early);
        // Whole seconds only: the last bucket may be partial.
        let whole = (window.floor() as usize).min(state.per_second.len());
        second_max = second_max.max(state.per_second[..whole].iter().copied().max().unwrap_or(0));
        for (code, n) in &state.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
        rate_cap = rate_cap.or(state.rate_cap);
        let _ = latency.add(&state.latency);
    }
    let loss = expected - received;
    let mut result = json!({
        "mode": "run",
        "dialect": args.dialect,
        "url": args.clients.url,
        "publish": args.publish,
        "rate": args.rate,
        "tickers": universe,
        "tickers_per_client": match args.tickers_per_client { PerClient::All => json!("all"), PerClient::Some(k) => json!(k) },
        "duration_s": window,
        "warmup_s": args.warmup.as_secs_f64(),
        "clients": args.clients.clients,
        "connected": shared.connected.load(Relaxed),
        "connect_errors": connect_errors,
        "closed_early": closed_early,
        "published": published.as_ref().map(|p| p.total),
        "publish_failed": published.as_ref().map(|p| p.failed),
        "published_in_window": published.as_ref().map(|p| p.per_ticker.iter().sum::<u64>()),
        "expected": expected,
        "received": received,
        "loss": loss,
        "loss_ratio": if expected > 0 { round3(loss as f64 / expected as f64 * 1e3) / 1e3 } else { 0.0 },
        "unexpected": unexpected,
        "frames_total": frames,
        "delivered_per_second": (received as f64 / window.max(1e-9)).round(),
        "latency": latency_json(&latency),
    });
    if args.dialect == Dialect::V1 {
        result["v1"] = json!({
            "rate_cap": rate_cap,
            "per_client_second_max": second_max,
            // A stream at exactly `cap`/s spaced 1/cap apart puts cap + 1
            // frames in some 1 s buckets once receive times jitter by a
            // microsecond: one frame over is the bucket edge, not the cap.
            "cap_held": rate_cap.map(|cap| second_max <= cap + 1),
            "seq_gaps": seq_gaps,
            "error_codes": errors,
        });
    } else if !errors.is_empty() {
        result["error_codes"] = json!(errors);
    }
    if let serde_json::Value::Object(usage) = usage {
        for (key, value) in usage {
            result[key] = value;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_values() {
        assert_eq!(parse_per_client("all"), Ok(PerClient::All));
        assert_eq!(parse_per_client("5"), Ok(PerClient::Some(5)));
        assert!(parse_per_client("0").is_err());
        assert!(parse_per_client("many").is_err());
    }

    #[test]
    fn redis_only_on_loopback() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://localhost:6379/0").is_ok());
        assert!(check_redis_url("redis://10.1.2.3:6379").is_err());
        assert!(check_redis_url("rediss://127.0.0.1").is_err());
    }
}
