//! The USD/COP streams against the `marketStream` (seed 000) and `enhanced`
//! (seed 001) channels of asyncapi.yaml: one client of each sees every
//! server message its channel declares, each validated by the harness.

use std::collections::BTreeSet;

use serde_json::json;

use crate::{
    common::messages_of,
    support::{Client, TestServer, pin_clock, test_config},
};

fn seen_all(client: &Client, expected: &BTreeSet<String>) {
    let seen: BTreeSet<String> = client.seen.iter().cloned().collect();
    assert_eq!(
        seen.intersection(expected)
            .cloned()
            .collect::<BTreeSet<_>>(),
        *expected,
        "every server message of {} was seen and validated",
        client.channel
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_market_stream_and_enhanced_server_message_is_seen() {
    let mut config = test_config();
    config.market_stream.heartbeat_ms = 500;
    // Two seconds before the closing window of a Monday session.
    pin_clock(&mut config, "2026-11-30T12:49:58-05:00", true);
    let server = TestServer::start(config).await;

    let expected = messages_of("marketStream", "send");
    assert_eq!(expected.len(), 5, "{expected:?}");
    let addr = server.market_stream_addr.expect("market stream on");
    let mut client =
        Client::connect_dialect(&format!("ws://{addr}/ws/market-data"), "marketStream").await;
    client
        .send(json!({"action": "subscribe", "symbols": ["USDCOP", "NOSUCH"]}))
        .await;
    client.recv_type("ack").await;
    client.recv_type("error").await;
    client.recv_type("market_data").await;
    client.recv_type("heartbeat").await;
    client.send(json!({"action": "pong"})).await;
    server
        .gateway
        .clock
        .set("2026-11-30T12:50:00-05:00".parse().expect("time"));
    client.recv_type("system_status").await;
    seen_all(&client, &expected);

    let expected = messages_of("enhanced", "send");
    assert_eq!(expected.len(), 3, "{expected:?}");
    let addr = server.enhanced_addr.expect("enhanced on");
    let mut client = Client::connect_dialect(&format!("ws://{addr}/ws/USDCOP"), "enhanced").await;
    client.send(json!({"type": "heartbeat"})).await;
    client.recv_type("heartbeat_response").await;
    client.send_text("{}").await;
    client.recv_type("error").await;
    client.recv_type("market_data").await;
    seen_all(&client, &expected);
    server.stop().await.expect("clean stop");
}
