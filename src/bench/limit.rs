//! `tickgate bench limit`: what this machine's loopback absorbs. A trivial
//! server on 127.0.0.1:0 writes one pre-encoded WebSocket text frame (a
//! flat quote) to each of N built-in clients as fast as it can, first one
//! frame per write, then frames coalesced into 64 KiB writes. The clients
//! read into a 64 KiB buffer and count bytes; frames/s is bytes / frame
//! size over the measured time. Every scenario of `bench run` is stated as a
//! fraction of the batched number of the same run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use clap::Args;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{BenchError, parse_duration, report::round3};

#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Built-in clients (one server connection each).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Measured time of each of the two phases.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
}

/// Bytes per coalesced write.
const BATCH_BYTES: usize = 64 * 1024;
/// Time before each phase's measurement starts.
const LEAD_IN: Duration = Duration::from_millis(300);

/// A quote as the quotes dialect encodes it, framed as an unmasked server
/// text frame.
pub fn quote_frame() -> Vec<u8> {
    let payload = br#"{"ticker":"T123","timestamp":"2026-11-29T17:35:54.123456Z","open":150.25,"high":151.1,"low":150.05,"close":150.9,"volume":1000000,"bid":150.88,"ask":150.92}"#;
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.push(0x81);
    if payload.len() < 126 {
        frame.push(payload.len() as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

pub async fn run(args: LimitArgs) -> Result<String, BenchError> {
    let clients = args.clients.max(1);
    let frame = quote_frame();
    let single = phase(clients, args.duration, &frame, false).await?;
    let batched = phase(clients, args.duration, &frame, true).await?;
    Ok(json!({
        "mode": "limit",
        "clients": clients,
        "duration_s": args.duration.as_secs_f64(),
        "frame_bytes": frame.len(),
        "single_write_frames_per_second": single.round(),
        "batched_frames_per_second": batched.round(),
        "batch_bytes": BATCH_BYTES,
        "batched_over_single": if single > 0.0 { round3(batched / single) } else { 0.0 },
    })
    .to_string())
}

/// One phase: frames/s received by all clients over `duration`.
async fn phase(
    clients: usize,
    duration: Duration,
    frame: &[u8],
    batched: bool,
) -> Result<f64, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let write: Arc<[u8]> = if batched {
        let n = (BATCH_BYTES / frame.len()).max(1);
        frame.repeat(n).into()
    } else {
        frame.into()
    };
    let running = Arc::new(AtomicBool::new(true));
    let counting = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    // Writers wait for every client to connect: writing while hundreds of
    // connections are still being made starved the connecting task, so the
    // phase's time ran out before it was measured. `go` carries the deadline.
    let (go, ready) = tokio::sync::watch::channel(None::<Instant>);
    let setup_deadline = Instant::now() + Duration::from_secs(30);

    let accept = {
        let (running, write, ready) = (running.clone(), write.clone(), ready.clone());
        tokio::spawn(async move {
            let mut writers = Vec::with_capacity(clients);
            for _ in 0..clients {
                let Ok(Ok((mut socket, _))) =
                    tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
                else {
                    break;
                };
                let _ = socket.set_nodelay(true);
                let (running, write, mut ready) = (running.clone(), write.clone(), ready.clone());
                writers.push(tokio::spawn(async move {
                    let Ok(deadline) = ready.wait_for(Option::is_some).await.map(|d| *d) else {
                        return;
                    };
                    let deadline = deadline.unwrap_or_else(Instant::now);
                    // Bounded by `running` and by the phase's deadline.
                    while running.load(Relaxed) && Instant::now() < deadline {
                        if socket.write_all(&write).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            writers
        })
    };
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (running, counting, bytes) = (running.clone(), counting.clone(), bytes.clone());
        let mut ready = ready.clone();
        readers.push(tokio::spawn(async move {
            let Ok(deadline) = ready.wait_for(Option::is_some).await.map(|d| *d) else {
                return;
            };
            let deadline = deadline.unwrap_or_else(Instant::now);
            let mut buffer = vec![0u8; BATCH_BYTES];
            while running.load(Relaxed) && Instant::now() < deadline {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if counting.load(Relaxed) {
                            bytes.fetch_add(n as u64, Relaxed);
                        }
                    }
                }
            }
        }));
    }
    let writers = tokio::time::timeout_at(setup_deadline.into(), accept)
        .await
        .map_err(|_| BenchError::Timeout("limit server accept"))?
        .unwrap_or_default();
    go.send_replace(Some(
        Instant::now() + LEAD_IN + duration + Duration::from_secs(10),
    ));
    tokio::time::sleep(LEAD_IN).await;
    counting.store(true, Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    counting.store(false, Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    running.store(false, Relaxed);
    // Readers and writers stop on `running`; sockets close when dropped.
    for task in readers {
        task.abort();
    }
    for task in writers {
        task.abort();
    }
    Ok(bytes.load(Relaxed) as f64 / frame.len() as f64 / seconds.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_a_text_frame_with_its_length() {
        let frame = quote_frame();
        assert_eq!(frame[0], 0x81);
        let (len, header) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), header + len);
        let payload: serde_json::Value = serde_json::from_slice(&frame[header..]).unwrap();
        assert_eq!(payload["ticker"], "T123");
    }
}
