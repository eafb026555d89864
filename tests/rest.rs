//! The REST API over real HTTP: configuration, statistics, the datafeed and
//! metrics reflect what the gateway does.

use serde_json::{Value, json};

use crate::support::{Client, TestServer, set_channel, subscribe, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_config_reports_the_configured_limits() {
    let mut config = test_config();
    config.server.max_connections = 77;
    config.ws.max_subscriptions = 9;
    set_channel(&mut config, "orderbook", 7, 3);
    let server = TestServer::start(config).await;
    let (status, body) = server.get_json("/api/v1/ws/config").await;
    assert_eq!(status, 200);
    assert_eq!(body["endpoint"], "/api/v1/ws/v1");
    assert_eq!(body["connection"]["max_connections"], 77);
    assert_eq!(body["connection"]["max_subscriptions"], 9);
    let channels = body["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 10);
    let book = channels
        .iter()
        .find(|c| c["name"] == "orderbook")
        .expect("orderbook");
    assert_eq!(
        (
            book["rate_per_second"].clone(),
            book["max_subscribers"].clone()
        ),
        (json!(7), json!(3))
    );
    let private: Vec<&str> = channels
        .iter()
        .filter(|c| c["private"] == true)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(private, ["account", "positions", "orders", "notifications"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_stats_follow_connections_and_subscriptions() {
    let server = TestServer::default().await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.request(subscribe("market_data", Some("AAPL")), json!(1))
        .await;
    b.request(subscribe("market_data", None), json!(1)).await;
    b.request(subscribe("heartbeat", None), json!(2)).await;
    b.recv_type("heartbeat").await;
    let (_, stats) = server.get_json("/api/v1/ws/stats").await;
    assert_eq!(stats["connections"], 2);
    let subscribers = |name: &str| {
        stats["channels"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["subscribers"].clone())
    };
    assert_eq!(subscribers("market_data"), Some(json!(2)));
    assert_eq!(subscribers("heartbeat"), Some(json!(1)));
    assert_eq!(subscribers("orders"), Some(json!(0)));
    assert!(stats["frames_in"].as_u64() >= Some(3));
    assert!(stats["frames_out"].as_u64() >= Some(6));
    drop(a);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafeed_answers_like_a_udf_server() {
    let server = TestServer::default().await;
    let (status, root) = server.get_json("/api/v1/datafeed").await;
    let (_, config) = server.get_json("/api/v1/datafeed/config").await;
    assert_eq!(status, 200);
    assert_eq!(root, config, "the bare datafeed path answers like config");
    assert_eq!(
        config["supported_resolutions"],
        json!(["1", "5", "15", "60", "240", "1D", "1W"])
    );

    let (status, info) = server
        .get_json("/api/v1/datafeed/symbols?symbol=TICKGATE:aapl")
        .await;
    assert_eq!((status, info["ticker"].clone()), (200, json!("AAPL")));
    let (status, found) = server
        .get_json("/api/v1/datafeed/search?query=m&limit=10")
        .await;
    assert_eq!(status, 200);
    let found: Vec<&str> = found
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["symbol"].as_str())
        .collect();
    assert_eq!(found, ["AMZN", "META", "MSFT"]);

    let time = server
        .get("/api/v1/datafeed/time")
        .await
        .text()
        .await
        .expect("text");
    let now: i64 = time.trim().parse().expect("unix seconds");
    let expected = jiff::Timestamp::now().as_second();
    assert!((now - expected).abs() < 60, "{now} vs {expected}");

    let to = now + 60;
    let (_, minutes) = server
        .get_json(&format!(
            "/api/v1/datafeed/history?symbol=MSFT&resolution=1&from=0&to={to}"
        ))
        .await;
    let (_, fives) = server
        .get_json(&format!(
            "/api/v1/datafeed/history?symbol=MSFT&resolution=5&from=0&to={to}"
        ))
        .await;
    assert_eq!(minutes["s"], "ok");
    let t = minutes["t"].as_array().expect("t");
    assert!(
        t.len() >= 150,
        "the simulator backfills history: {}",
        t.len()
    );
    // Every 5-minute bar whose period the 1-minute history covers is the
    // aggregate of its 1-minute bars (older backfilled bars have none).
    let column = |v: &Value, k: &str| v[k].as_array().expect("column").clone();
    let (mt, mo, mh, ml, mc, mv) = (
        column(&minutes, "t"),
        column(&minutes, "o"),
        column(&minutes, "h"),
        column(&minutes, "l"),
        column(&minutes, "c"),
        column(&minutes, "v"),
    );
    let first_minute = mt[0].as_i64().expect("t");
    let closed = now - now.rem_euclid(300);
    let mut checked = 0;
    for (i, start) in column(&fives, "t").iter().enumerate() {
        let start = start.as_i64().expect("t");
        // Only periods that ended before the first request: ticks arriving
        // between the two requests move the bars in progress.
        if start < first_minute || start + 300 > closed {
            continue;
        }
        checked += 1;
        let inside: Vec<usize> = (0..mt.len())
            .filter(|&j| (start..start + 300).contains(&mt[j].as_i64().unwrap_or(-1)))
            .collect();
        assert!(!inside.is_empty());
        let first = inside[0];
        let last = inside[inside.len() - 1];
        assert_eq!(fives["o"][i], mo[first]);
        assert_eq!(fives["c"][i], mc[last]);
        let high = inside
            .iter()
            .map(|&j| mh[j].as_f64().unwrap_or(f64::MIN))
            .fold(f64::MIN, f64::max);
        let low = inside
            .iter()
            .map(|&j| ml[j].as_f64().unwrap_or(f64::MAX))
            .fold(f64::MAX, f64::min);
        let volume: u64 = inside.iter().map(|&j| mv[j].as_u64().unwrap_or(0)).sum();
        assert_eq!(
            (
                fives["h"][i].as_f64(),
                fives["l"][i].as_f64(),
                fives["v"][i].as_u64()
            ),
            (Some(high), Some(low), Some(volume))
        );
    }
    assert!(checked >= 28, "5-minute bars checked: {checked}");
    let (_, last3) = server
        .get_json(&format!(
            "/api/v1/datafeed/history?symbol=MSFT&resolution=1&from=0&to={closed}&countback=3"
        ))
        .await;
    assert_eq!(last3["t"].as_array().map(Vec::len), Some(3));
    let last_closed = mt
        .iter()
        .filter_map(Value::as_i64)
        .filter(|t| *t < closed)
        .max();
    assert_eq!(last3["t"][2].as_i64(), last_closed);
    // With countback, `from` is ignored, even past `to`.
    let (status, ignored) = server
        .get_json(&format!(
            "/api/v1/datafeed/history?symbol=MSFT&resolution=1&from={}&to={closed}&countback=3",
            to + 1000
        ))
        .await;
    assert_eq!((status, ignored["t"].clone()), (200, last3["t"].clone()));
    let (status, error) = server
        .get_json(&format!(
            "/api/v1/datafeed/history?symbol=MSFT&resolution=1&from={}&to={to}",
            to + 1000
        ))
        .await;
    assert_eq!((status, error["code"].clone()), (400, json!("bad_range")));
    let (status, error) = server
        .get_json("/api/v1/datafeed/history?symbol=MSFT&resolution=7&from=0&to=1")
        .await;
    assert_eq!((status, error["code"].clone()), (400, json!("bad_request")));
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("resolution"),
        "{error}"
    );
    let (_, empty) = server
        .get_json("/api/v1/datafeed/history?symbol=MSFT&resolution=1&from=0&to=1")
        .await;
    assert_eq!(empty, json!({"s": "no_data"}));
    let (status, error) = server
        .get_json("/api/v1/datafeed/history?symbol=NOPE&resolution=1&from=0&to=1")
        .await;
    assert_eq!(
        (status, error["code"].clone()),
        (404, json!("unknown_symbol"))
    );
    let (status, error) = server
        .get_json("/api/v1/datafeed/history?symbol=MSFT&resolution=1&from=0&to=1&countback=0")
        .await;
    assert_eq!((status, error["code"].clone()), (400, json!("bad_request")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_prometheus_counters() {
    let server = TestServer::default().await;
    let mut client = Client::connect(&server).await;
    client
        .request(subscribe("market_data", Some("AAPL")), json!(1))
        .await;
    client.recv_type("market_tick").await;
    let response = server.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    for metric in [
        "tickgate_connections ",
        "tickgate_connections_total ",
        "tickgate_frames_in_total ",
        "tickgate_frames_out_total ",
        "tickgate_events_published_total{",
        "tickgate_subscribers{",
        "tickgate_publish_to_send_seconds_bucket{",
    ] {
        assert!(
            text.contains(metric),
            "{metric} missing from /metrics:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncapi_page_is_served_with_its_embedded_assets() {
    let server = TestServer::default().await;
    let page = server.get("/api/v1/asyncapi").await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let html = page.text().await.expect("html");
    for needle in [
        r#"<script src="/api/v1/asyncapi/index.js"></script>"#,
        r#"href="/api/v1/asyncapi/default.min.css""#,
        "AsyncApiStandalone.render",
        "sendMarketData",
    ] {
        assert!(html.contains(needle), "{needle} missing from the page");
    }
    assert!(
        !html.contains(r#"src="http"#) && !html.contains(r#"href="http"#),
        "the page loads nothing from elsewhere"
    );
    for (path, file, kind) in [
        (
            "/api/v1/asyncapi/index.js",
            "assets/asyncapi-react/index.js",
            "text/javascript",
        ),
        (
            "/api/v1/asyncapi/default.min.css",
            "assets/asyncapi-react/default.min.css",
            "text/css",
        ),
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with(kind),
            "{path}"
        );
        let body = response.bytes().await.expect("body");
        let vendored = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .expect("vendored file");
        assert!(
            body.as_ref() == vendored.as_slice(),
            "{path} serves the vendored file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafeed_quotes_answer_the_newest_tick() {
    let server = TestServer::default().await;
    // Wait for AAPL's first tick.
    let mut client = crate::support::Client::connect(&server).await;
    client
        .request(
            crate::support::subscribe("market_data", Some("AAPL")),
            serde_json::json!(1),
        )
        .await;
    client.recv_type("market_tick").await;
    let (status, body) = server
        .get_json("/api/v1/datafeed/quotes?symbols=aapl,TICKGATE:AAPL,NOPE")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["s"], "ok");
    let d = body["d"].as_array().expect("d");
    assert_eq!(d.len(), 3);
    assert_eq!(
        (d[0]["s"].as_str(), d[0]["n"].as_str()),
        (Some("ok"), Some("aapl"))
    );
    assert_eq!(d[0]["v"]["short_name"], "AAPL");
    assert!(d[0]["v"]["lp"].as_f64().is_some());
    assert!(d[0]["v"]["time"].as_i64() >= Some(0));
    assert_eq!(d[1]["s"], "ok");
    assert_eq!(d[2]["s"], "error");
    assert!(d[2]["v"]["error"].is_string());
    let too_many = vec!["AAPL"; 101].join(",");
    let (status, body) = server
        .get_json(&format!("/api/v1/datafeed/quotes?symbols={too_many}"))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    server.stop().await.expect("clean stop");
}
