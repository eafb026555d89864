//! Every `ErrorCode` of asyncapi.yaml is provoked by something a client does,
//! and observed as an `error` frame with that code (echoing the frame's id
//! where the frame had one).

use std::collections::{BTreeMap, BTreeSet};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    common::schema_enum,
    support::{Client, TestServer, set_channel, subscribe, test_config, token, unsubscribe},
};

/// The code with no client trigger: it reports a server fault.
const NOT_PROVOKABLE: &str = "internal_error";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_is_provoked_by_a_client_action() {
    let enumerated = schema_enum("ErrorCode");
    assert!(
        enumerated.contains(NOT_PROVOKABLE),
        "ErrorCode no longer lists {NOT_PROVOKABLE}; revisit this test's exclusion"
    );

    // Independent servers (several need their own configuration) run at once.
    let (basic, expired, forbidden, full, limit, rate, large) = tokio::join!(
        basic_errors(),
        auth_expired(),
        forbidden(),
        channel_full(),
        subscription_limit(),
        rate_limited(),
        frame_too_large(),
    );
    let mut provoked: BTreeMap<String, Value> = BTreeMap::new();
    for frame in basic
        .into_iter()
        .chain([expired, forbidden, full, limit, rate, large])
    {
        assert_eq!(frame["type"], "error", "{frame}");
        let code = frame["code"].as_str().expect("code").to_owned();
        assert!(
            provoked.insert(code.clone(), frame).is_none(),
            "{code} provoked twice; each trigger should name a distinct code"
        );
    }

    let provoked: BTreeSet<String> = provoked.into_keys().collect();
    let wanted: BTreeSet<String> = enumerated
        .iter()
        .filter(|code| *code != NOT_PROVOKABLE)
        .cloned()
        .collect();
    assert!(
        !provoked.contains(NOT_PROVOKABLE),
        "{NOT_PROVOKABLE} was provoked by a client"
    );
    assert_eq!(
        provoked,
        wanted,
        "the codes provoked are exactly ErrorCode minus {NOT_PROVOKABLE} (missing: {:?}, extra: {:?})",
        wanted.difference(&provoked).collect::<Vec<_>>(),
        provoked.difference(&wanted).collect::<Vec<_>>()
    );
}

/// Sends `frame` with `id` and returns the error frame that echoes it.
async fn error_for(client: &mut Client, frame: Value, id: Value) -> Value {
    let reply = client.request(frame, id.clone()).await;
    assert_eq!(reply["type"], "error", "expected an error: {reply}");
    assert_eq!(
        reply["id"], id,
        "the error echoes the id exactly as sent: {reply}"
    );
    reply
}

fn assert_code(frame: &Value, code: &str) {
    assert_eq!(frame["code"], code, "{frame}");
    assert!(
        frame["message"].as_str().is_some_and(|m| !m.is_empty()),
        "the error says what went wrong: {frame}"
    );
}

/// Errors a default gateway answers on one connection, which stays open
/// throughout.
async fn basic_errors() -> Vec<Value> {
    let server = TestServer::start(test_config()).await;
    let mut client = Client::connect(&server).await;
    let mut frames = Vec::new();

    client.send_text("not json").await;
    let error = client.recv_type("error").await;
    assert_code(&error, "invalid_json");
    assert!(
        error.get("id").is_none(),
        "no id can be read from invalid JSON: {error}"
    );
    frames.push(error);

    client
        .ws
        .send(Message::binary(vec![0x01, 0x02, 0x03]))
        .await
        .expect("send binary");
    let error = client.recv_type("error").await;
    assert_code(&error, "unsupported_frame");
    frames.push(error);

    let error = error_for(&mut client, json!({"type": "bogus"}), json!("req-unknown")).await;
    assert_code(&error, "unknown_type");
    frames.push(error);

    let error = error_for(
        &mut client,
        json!({"type": "subscribe", "channel": 5}),
        json!(7),
    )
    .await;
    assert_code(&error, "schema_violation");
    assert_eq!(
        error["field"], "/channel",
        "field names the offending pointer: {error}"
    );
    frames.push(error);

    let error = error_for(
        &mut client,
        json!({"type": "subscribe", "channel": "nope"}),
        json!("chan-1"),
    )
    .await;
    assert_code(&error, "unknown_channel");
    frames.push(error);

    let error = error_for(
        &mut client,
        subscribe("market_data", Some("ZZZZ")),
        json!(-17),
    )
    .await;
    assert_code(&error, "unknown_symbol");
    assert_eq!(error["channel"], "market_data", "{error}");
    frames.push(error);

    let error = error_for(
        &mut client,
        subscribe("account", None),
        json!("sub-account"),
    )
    .await;
    assert_code(&error, "auth_required");
    assert_eq!(error["channel"], "account", "{error}");
    frames.push(error);

    let error = error_for(
        &mut client,
        json!({"type": "auth", "token": "not.a.token"}),
        json!(3),
    )
    .await;
    assert_code(&error, "auth_failed");
    frames.push(error);
    // A bad token leaves the connection open.
    let pong = client
        .request(json!({"type": "ping"}), json!(9_007_199_254_740_993_i64))
        .await;
    assert_eq!(
        pong["type"], "pong",
        "the connection stays open after auth_failed: {pong}"
    );
    assert_eq!(
        pong["id"],
        json!(9_007_199_254_740_993_i64),
        "a large integer id is echoed exactly"
    );

    let error = error_for(
        &mut client,
        unsubscribe("trades", Some("AAPL")),
        json!("unsub-none"),
    )
    .await;
    assert_code(&error, "not_subscribed");
    assert_eq!(error["channel"], "trades", "{error}");
    frames.push(error);

    frames
}

/// A token that expires while the connection is open.
async fn auth_expired() -> Value {
    let server = TestServer::start(test_config()).await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .request(
            json!({"type": "auth", "token": token("user_a", &[], 2)}),
            json!("short"),
        )
        .await;
    assert_eq!(reply["type"], "authenticated", "{reply}");
    client
        .send(json!({"type": "subscribe", "channel": "account", "id": "acct"}))
        .await;
    // Waits (within the harness's bound) for the expiry.
    let error = client
        .recv_until(|f| f["type"] == "error" && f["code"] == "auth_expired")
        .await;
    assert_code(&error, "auth_expired");
    // The connection stays open, and private channels need auth again.
    let again = client
        .request(subscribe("account", None), json!("acct-2"))
        .await;
    assert_eq!(again["code"], "auth_required", "after expiry: {again}");
    error
}

/// A scope rule the token does not satisfy.
async fn forbidden() -> Value {
    let mut config = test_config();
    config
        .auth
        .channel_scopes
        .insert("orders".into(), "trading:read".into());
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    let reply = client
        .request(
            json!({"type": "auth", "token": token("user_a", &[], 3600)}),
            json!(1),
        )
        .await;
    assert_eq!(reply["type"], "authenticated", "{reply}");
    let error = error_for(&mut client, subscribe("orders", None), json!("orders-1")).await;
    assert_code(&error, "forbidden");
    assert_eq!(error["channel"], "orders", "{error}");
    // Control: channels without a rule open, and the scope opens orders.
    let ok = client
        .request(subscribe("account", None), json!("acct"))
        .await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let reply = client
        .request(
            json!({"type": "auth", "token": token("user_a", &["trading:read"], 3600)}),
            json!(2),
        )
        .await;
    assert_eq!(reply["scopes"], json!(["trading:read"]), "{reply}");
    let ok = client
        .request(subscribe("orders", None), json!("orders-2"))
        .await;
    assert_eq!(ok["type"], "subscribed", "with the scope: {ok}");
    error
}

/// A channel at its subscriber cap.
async fn channel_full() -> Value {
    let mut config = test_config();
    set_channel(&mut config, "heartbeat", 1, 1);
    let server = TestServer::start(config).await;
    let mut first = Client::connect(&server).await;
    let mut second = Client::connect(&server).await;
    let ok = first.request(subscribe("heartbeat", None), json!(1)).await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let error = error_for(&mut second, subscribe("heartbeat", None), json!("hb-2")).await;
    assert_code(&error, "channel_full");
    assert_eq!(error["channel"], "heartbeat", "{error}");
    // Control: a freed slot can be taken.
    let left = first
        .request(unsubscribe("heartbeat", None), json!(2))
        .await;
    assert_eq!(left["type"], "unsubscribed", "{left}");
    let ok = second
        .request(subscribe("heartbeat", None), json!("hb-3"))
        .await;
    assert_eq!(ok["type"], "subscribed", "after the first left: {ok}");
    error
}

/// A connection at its subscription cap.
async fn subscription_limit() -> Value {
    let mut config = test_config();
    config.ws.max_subscriptions = 2;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    for (channel, id) in [("system", json!(1)), ("heartbeat", json!(2))] {
        let ok = client.request(subscribe(channel, None), id).await;
        assert_eq!(ok["type"], "subscribed", "{ok}");
    }
    let error = error_for(
        &mut client,
        subscribe("trades", Some("AAPL")),
        json!("third"),
    )
    .await;
    assert_code(&error, "subscription_limit");
    assert_eq!(error["channel"], "trades", "{error}");
    error
}

/// More inbound frames than the rate allows.
async fn rate_limited() -> Value {
    let mut config = test_config();
    config.ws.inbound_per_second = 1;
    config.ws.inbound_burst = 1;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    for id in 0..8 {
        client.send(json!({"type": "ping", "id": id})).await;
    }
    let error = client.recv_until(|f| f["type"] == "error").await;
    assert_code(&error, "rate_limited");
    error
}

/// An inbound frame above the size limit: the error, then close 1009.
async fn frame_too_large() -> Value {
    let mut config = test_config();
    config.ws.max_frame_bytes = 1024;
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;
    let empty = json!({"type": "ping", "id": "big", "pad": ""}).to_string();
    let pad = "x".repeat(2000 - empty.len());
    let text = json!({"type": "ping", "id": "big", "pad": pad}).to_string();
    assert_eq!(text.len(), 2000);
    client.send_text(&text).await;
    let error = client.recv_type("error").await;
    assert_code(&error, "frame_too_large");
    let close = client.expect_close().await.expect("a close frame follows");
    assert_eq!(
        u16::from(close.code),
        1009,
        "close code after frame_too_large: {close:?}"
    );
    error
}
