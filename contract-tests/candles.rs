//! The candles dialect against the `candles` channel of asyncapi.yaml: one
//! client sees every server message the channel declares, each validated
//! against its schema by the harness.

use std::collections::BTreeSet;

use serde_json::json;

use crate::{
    common::messages_of,
    support::{Client, TestServer},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_candles_server_message_is_seen() {
    let expected = messages_of("candles", "send");
    assert_eq!(
        expected.len(),
        4,
        "initial, update, error, pong: {expected:?}"
    );
    let server = TestServer::default().await;
    let addr = server.candles_addr.expect("the candles listener is on");
    let mut client = Client::connect_dialect(&format!("ws://{addr}/"), "candles").await;
    client
        .send(
            json!({"type": "subscribe", "symbol": "BTC/USDT", "interval": "1m", "initialBars": 3}),
        )
        .await;
    client.recv_type("initial").await;
    client.recv_type("update").await;
    client.send(json!({"type": "ping"})).await;
    client.recv_type("pong").await;
    client.send_text("not json").await;
    client.recv_type("error").await;
    let seen: BTreeSet<String> = client.seen.iter().cloned().collect();
    assert_eq!(
        seen.intersection(&expected)
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected,
        "every candles server message was seen and validated"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_streams_only_valid_quotes() {
    let expected = messages_of("quotes", "send");
    assert_eq!(expected, BTreeSet::from(["Quote".to_owned()]));
    assert!(
        messages_of("quotes", "receive").is_empty(),
        "quotes clients send nothing"
    );
    let server = TestServer::default().await;
    for path in ["/ws/quotes", "/ws", "/v1/ws/quotes", "/v1/ws"] {
        let mut client =
            Client::connect_dialect(&format!("ws://{}{path}", server.addr), "quotes").await;
        for _ in 0..5 {
            client.recv().await;
        }
        assert_eq!(
            client.seen.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{path}"
        );
    }
    server.stop().await.expect("clean stop");
}
