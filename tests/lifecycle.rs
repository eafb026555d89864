//! Starting, stopping and configuring the gateway: graceful shutdown, the
//! binary's commands, configuration sources.

use std::{process::Command, time::Duration};

use serde_json::json;
use tickgate::Config;

use crate::support::{Client, TestServer, subscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_closes_with_1001() {
    let server = TestServer::default().await;
    let addr = server.addr;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", Some("AAPL")), json!(1))
        .await;
    let stopping = tokio::spawn(server.stop());
    let notice = client.recv_until(|f| f["type"] == "system_status").await;
    assert_eq!(notice["status"], "shutting_down");
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    stopping.await.expect("join").expect("run returns Ok");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is gone"
    );
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickgate"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command.env_remove("TICKGATE_JWT_SECRET");
    command
}

#[test]
fn binary_serves_on_defaults_and_exits_0_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = binary()
        .args(["--port", &port.to_string()])
        .spawn()
        .expect("starts");
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let healthy = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(response) = reqwest::get(&url).await {
                return response.status().as_u16() == 200;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(healthy, "the binary answered /api/v1/health");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn token_command_mints_a_verifiable_token() {
    let output = binary()
        .args([
            "token", "--sub", "cli-user", "--scope", "a:read", "--ttl", "60",
        ])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let auth = tickgate::auth::Authenticator::from_config(&Config::default().auth).expect("auth");
    let identity = auth.verify(token.trim()).expect("valid token");
    assert_eq!(
        (&*identity.user, identity.scopes.as_slice()),
        ("cli-user", ["a:read".to_owned()].as_slice())
    );
    let expires_in = identity.expires_at.as_second() - jiff::Timestamp::now().as_second();
    assert!((50..=60).contains(&expires_in), "{expires_in}");
}

#[test]
fn generated_files_are_fresh() {
    let output = binary()
        .args(["generate", "--check"])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "run `cargo run -- generate`: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn config_file_and_environment_are_applied_and_bad_keys_rejected() {
    let dir = std::env::temp_dir().join(format!("tickgate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[server]\nport = 9123\n[channels.market_data]\nrate_per_second = 5\nmax_subscribers = 6\n",
    )
    .expect("write");
    let config = Config::load(Some(&good)).expect("loads");
    assert_eq!(config.server.port, 9123);
    assert_eq!(
        config
            .channels
            .limits(tickgate::spec::messages::Channel::MarketData)
            .max_subscribers,
        6
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nprot = 1\n").expect("write");
    let error = Config::load(Some(&bad)).expect_err("unknown key rejected");
    assert!(error.to_string().contains("prot"), "{error}");
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        "[channels.bogus]\nrate_per_second = 1\nmax_subscribers = 1\n",
    )
    .expect("write");
    assert!(Config::load(Some(&wrong)).is_err());
    let output = binary()
        .env("TICKGATE_CONFIG", &good)
        .args(["token", "--sub", "x"])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "TICKGATE_CONFIG names the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = binary()
        .env("TICKGATE_CONFIG", &bad)
        .args(["token", "--sub", "x"])
        .output()
        .expect("runs");
    assert!(!output.status.success(), "and that file is read");
    let output = binary()
        .env("TICKGATE_WS__MAX_FRAME_BYTES", "10")
        .args(["token", "--sub", "x"])
        .output()
        .expect("runs");
    assert!(
        !output.status.success(),
        "an invalid environment value is refused"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_frame_bytes"));
    for (variable, key) in [
        (
            "TICKGATE_SERVER__HEADER_TIMEOUT_MS",
            "server.header_timeout_ms",
        ),
        (
            "TICKGATE_SERVER__MAX_HEADER_BYTES",
            "server.max_header_bytes",
        ),
        ("TICKGATE_WS__CLOSE_GRACE_MS", "ws.close_grace_ms"),
    ] {
        let output = binary()
            .env(variable, "0")
            .args(["token", "--sub", "x"])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{variable}=0 is refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{variable}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The rules that need a runtime module are checked when the gateway
/// starts, by that module, with a message naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_of_the_runtime_fail_at_start_naming_the_key() {
    type Spoil = fn(&mut Config);
    let cases: [(&str, Spoil); 4] = [
        ("clock.start_at", |c| {
            c.clock.start_at = Some("not an instant".into());
        }),
        ("calendar.default", |c| {
            c.calendar.default = tickgate::config::ScheduleConfig::Keyword("sometimes".into());
        }),
        ("candles.max_initial_bars", |c| {
            c.candles.max_initial_bars = 5001
        }),
        ("upstream.twelvedata.symbols.usd cop", |c| {
            c.upstream.twelvedata.symbols = [("usd cop".to_owned(), "USD/COP".to_owned())].into();
        }),
    ];
    for (key, spoil) in cases {
        let mut config = crate::support::test_config();
        spoil(&mut config);
        config.validate().expect("the data alone is valid");
        let Err(error) = tickgate::bind(config).await else {
            panic!("{key}: the gateway started");
        };
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
}

/// A fresh process (the Prometheus recorder is process-wide, so the other
/// tests of this binary would have made the series already): every series
/// docs/http.md documents is in the first scrape, before any connection,
/// with Redis configured so its series count too.
#[test]
fn every_documented_metric_exists_from_the_first_scrape() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/http.md"))
        .expect("docs/http.md");
    let documented: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `tickgate_"))
        .filter_map(|rest| rest.split(['`', '{']).next())
        .collect();
    assert!(
        documented.len() >= 20,
        "the metrics table parses: {documented:?}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = crate::support::temp_dir("metrics");
    let mut child = binary()
        .args(["--port", &port.to_string()])
        .env("TICKGATE_STORE__DATA_DIR", &data)
        .env("TICKGATE_CANDLES__PORT", "0")
        .env("TICKGATE_MARKET_STREAM__PORT", "0")
        .env("TICKGATE_RT_ORCHESTRATOR__PORT", "0")
        .env("TICKGATE_ENHANCED__PORT", "0")
        .env("TICKGATE_REDIS__URL", "redis://127.0.0.1:6379")
        .env(
            "TICKGATE_REDIS__PREFIX",
            format!("metrics-{}.", std::process::id()),
        )
        .spawn()
        .expect("starts");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let body = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
                return response.text().await.ok();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("GET /metrics answered");
    let missing: Vec<&&str> = documented
        .iter()
        .filter(|name| {
            !body
                .lines()
                .any(|line| line.starts_with(&format!("tickgate_{name}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in the first scrape: {missing:?}\n{body}"
    );
    // Labelled families come with every label value they can take.
    for series in [
        r#"tickgate_disconnects_total{code="1002"} 0"#,
        r#"tickgate_disconnects_total{code="1007"} 0"#,
        r#"tickgate_error_frames_total{code="frame_too_large"} 0"#,
        r#"tickgate_error_frames_total{code="usdcop_RATE_LIMIT_EXCEEDED"} 0"#,
        r#"tickgate_handshakes_refused_total{reason="shutting_down"} 0"#,
    ] {
        assert!(
            body.lines().any(|line| line == series),
            "{series} in\n{body}"
        );
    }
}
