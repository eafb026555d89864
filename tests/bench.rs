//! `tickgate bench`, run as the binary it is, against a gateway of the test
//! harness: the JSON line has its fields and its loss accounting adds up.
//! No timing is asserted: the numbers themselves belong to
//! docs/benchmarks.md.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{TestServer, test_config};

/// Runs `tickgate bench ARGS...` off the runtime (the gateway under test
/// runs on it) and returns its output.
async fn bench(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tickgate"))
            .arg("bench")
            .args(args)
            .output()
            .expect("tickgate runs")
    })
    .await
    .expect("bench task")
}

/// The one JSON line on stdout of a successful run.
fn result_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {stdout}");
    serde_json::from_str(lines[0]).expect("a JSON line")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A gateway whose simulator runs in load mode at `rate` ticks/s.
async fn loaded_gateway(rate: u32) -> TestServer {
    let mut config = test_config();
    config.simulator.ticks_per_second = rate;
    TestServer::start(config).await
}

fn u64_of(result: &Value, key: &str) -> u64 {
    result[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a count: {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_counts_simulator_quotes_with_consistent_loss() {
    let server = loaded_gateway(400).await;
    let url = format!("ws://{}/ws/quotes", server.addr);
    let output = bench(args(&[
        "run",
        "--dialect",
        "quotes",
        "--url",
        &url,
        "--clients",
        "4",
        "--publish",
        "simulator",
        "--rate",
        "400",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--server-pid",
        &std::process::id().to_string(),
    ]))
    .await;
    let result = result_of(&output);
    assert_eq!(result["mode"], "run");
    assert_eq!(result["dialect"], "quotes");
    assert_eq!(u64_of(&result, "connected"), 4);
    assert_eq!(u64_of(&result, "connect_errors"), 0);
    let (expected, received, loss) = (
        u64_of(&result, "expected"),
        u64_of(&result, "received"),
        u64_of(&result, "loss"),
    );
    assert!(received > 0, "quotes arrived: {result}");
    assert!(received <= expected, "{result}");
    assert_eq!(loss, expected - received, "{result}");
    for key in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(result["latency"][key].is_u64(), "latency.{key}: {result}");
    }
    assert!(result["delivered_per_second"].is_number(), "{result}");
    // The server is this test process: its /proc entries are read.
    assert!(
        result["server"]["rss_kib"]
            .as_u64()
            .is_some_and(|kib| kib > 0),
        "{result}"
    );
    assert!(result["server"]["cpu_seconds"].is_number(), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_v1_market_data_and_its_rate_cap() {
    let server = loaded_gateway(400).await;
    let output = bench(args(&[
        "run",
        "--dialect",
        "v1",
        "--url",
        &server.ws_url(),
        "--clients",
        "3",
        "--publish",
        "simulator",
        "--rate",
        "400",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
    ]))
    .await;
    let result = result_of(&output);
    assert!(u64_of(&result, "received") > 0, "{result}");
    assert!(u64_of(&result, "received") <= u64_of(&result, "expected"));
    // The cap comes from `welcome` (market_data: 100/s by default).
    assert_eq!(result["v1"]["rate_cap"], 100, "{result}");
    assert!(result["v1"]["per_client_second_max"].is_u64(), "{result}");
    assert!(result["v1"]["seq_gaps"].is_u64(), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_measures_both_write_modes() {
    // 500 clients, as scripts/bench.sh runs it: at this size the 64 KiB phase
    // once ran out its time while connections were still being made and
    // measured 0 frames/s.
    let output = bench(args(&["limit", "--clients", "500", "--duration", "500ms"])).await;
    let result = result_of(&output);
    assert_eq!(result["mode"], "limit");
    for key in [
        "single_write_frames_per_second",
        "batched_frames_per_second",
    ] {
        assert!(
            result[key].as_f64().is_some_and(|n| n > 0.0),
            "{key}: {result}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_target_off_this_machine() {
    let output = bench(args(&[
        "run",
        "--url",
        "ws://192.0.2.1:8000/ws/quotes",
        "--publish",
        "none",
    ]))
    .await;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
