//! One connection on every channel: every server message of the spec is
//! seen, each data frame on the channel it was subscribed on, with a
//! per-topic sequence number that only grows.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    common::{data_channels, messages_of, schema_enum},
    support::{Client, TestServer, set_channel, subscribe, test_config, token, unsubscribe},
};

/// A generous bound on the whole collection, so a server that never sends
/// some message fails the test instead of hanging it (not a timing claim).
const COLLECT_BOUND: Duration = Duration::from_secs(120);

const USER: &str = "user_a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_message_is_seen_on_its_channel_in_sequence() {
    let expected: BTreeSet<String> = messages_of("v1", "send");
    let data_channel = data_channels();
    let all_channels = schema_enum("Channel");
    assert_eq!(
        data_channel.values().cloned().collect::<BTreeSet<_>>(),
        all_channels,
        "every channel has a send operation titled with its name"
    );

    // The simulator publishes book changes of seven symbols faster than the
    // orderbook channel's default 50 frames/s, so every update would be
    // conflated into a snapshot (as documented); a higher rate lets
    // orderbook_update through.
    let mut config = test_config();
    set_channel(&mut config, "orderbook", 5000, 200);
    let server = TestServer::start(config).await;
    let mut client = Client::connect(&server).await;

    // What welcome says about each channel decides what a topic is.
    let mut per_symbol = HashMap::new();
    let mut private = HashMap::new();
    for info in client.welcome["channels"]
        .as_array()
        .expect("welcome.channels")
    {
        let name = info["name"].as_str().expect("channel name").to_owned();
        per_symbol.insert(name.clone(), info["per_symbol"] == true);
        private.insert(name, info["private"] == true);
    }
    assert_eq!(
        per_symbol.keys().cloned().collect::<BTreeSet<_>>(),
        all_channels,
        "welcome lists every channel"
    );

    // Replies we are owed, by the id we sent (ids of several shapes, each
    // echoed exactly as sent).
    let mut pending: BTreeMap<String, Value> = BTreeMap::new();

    let public: [(&str, Option<&str>, Value); 6] = [
        ("market_data", Some("AAPL"), json!(1)),
        ("orderbook", None, json!("orderbook-all")),
        ("trades", None, json!(-2)),
        ("chart_data", None, json!("chart ✓ é")),
        ("system", None, json!(9_007_199_254_740_993_i64)),
        ("heartbeat", None, json!("h".repeat(64))),
    ];
    for (channel, symbol, id) in public {
        let mut reply = json!({"type": "subscribed", "id": id, "channel": channel});
        if let Some(symbol) = symbol {
            reply["symbol"] = json!(symbol);
        }
        send(
            &mut client,
            &mut pending,
            subscribe(channel, symbol),
            id,
            reply,
        )
        .await;
    }
    // Frames are applied in order, so the private subscriptions can follow
    // the auth frame without waiting for its reply.
    send(
        &mut client,
        &mut pending,
        json!({"type": "auth", "token": token(USER, &[], 3600)}),
        json!("auth-1"),
        json!({"type": "authenticated", "id": "auth-1", "user": USER, "scopes": []}),
    )
    .await;
    for (n, channel) in ["account", "positions", "orders", "notifications"]
        .into_iter()
        .enumerate()
    {
        let id = json!(100 + n);
        let reply = json!({"type": "subscribed", "id": id, "channel": channel});
        send(
            &mut client,
            &mut pending,
            subscribe(channel, None),
            id,
            reply,
        )
        .await;
    }
    send(
        &mut client,
        &mut pending,
        json!({"type": "ping"}),
        json!(4),
        json!({"type": "pong", "id": 4}),
    )
    .await;
    send(
        &mut client,
        &mut pending,
        json!({"type": "no_such_type"}),
        json!("provoke"),
        json!({"type": "error", "id": "provoke", "code": "unknown_type"}),
    )
    .await;

    // Subscriptions confirmed so far: (channel, symbol) with None for all
    // symbols or a channel without symbols.
    let mut active: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut last_seq: HashMap<(String, String), u64> = HashMap::new();
    let mut unsubscribe_sent = false;
    let mut data_frames = 0u64;
    let deadline = tokio::time::Instant::now() + COLLECT_BOUND;

    loop {
        let seen: BTreeSet<String> = client.seen.iter().cloned().collect();
        if pending.is_empty() && unsubscribe_sent && expected.is_subset(&seen) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every server message arrived; missing {:?}, replies still owed for ids {:?}",
            expected.difference(&seen).collect::<Vec<_>>(),
            pending.keys().collect::<Vec<_>>()
        );
        // Unsubscribe once a tick has shown that the subscription works.
        if !unsubscribe_sent && seen.contains("MarketTick") {
            unsubscribe_sent = true;
            send(
                &mut client,
                &mut pending,
                unsubscribe("market_data", Some("AAPL")),
                json!("unsub-1"),
                json!({"type": "unsubscribed", "id": "unsub-1", "channel": "market_data", "symbol": "AAPL"}),
            )
            .await;
        }

        let frame = client.recv().await;
        let kind = frame["type"].as_str().expect("type").to_owned();

        if let Some(channel) = data_channel.get(&kind) {
            data_frames += 1;
            assert_eq!(
                frame["channel"],
                channel.as_str(),
                "{kind} on the wrong channel: {frame}"
            );
            let symbol = frame["symbol"].as_str().map(str::to_owned);
            let topic = if private[channel] {
                assert_eq!(
                    frame["user"], USER,
                    "private frame of another user: {frame}"
                );
                USER.to_owned()
            } else if per_symbol[channel] {
                symbol
                    .clone()
                    .unwrap_or_else(|| panic!("per-symbol frame without symbol: {frame}"))
            } else {
                String::new()
            };
            let subscribed = active.contains(&(channel.clone(), None))
                || (per_symbol[channel] && active.contains(&(channel.clone(), symbol.clone())));
            assert!(
                subscribed,
                "a {kind} frame on {channel} {symbol:?} that is not subscribed (before `subscribed` or after `unsubscribed`): {frame}"
            );
            let seq = frame["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("seq: {frame}"));
            if let Some(previous) = last_seq.insert((channel.clone(), topic.clone()), seq) {
                assert!(
                    seq > previous,
                    "seq of topic ({channel}, {topic}) went from {previous} to {seq}: {frame}"
                );
            }
            continue;
        }

        // A control frame: it must answer one of our requests, echoing its id.
        if kind == "welcome" {
            panic!("a second welcome: {frame}");
        }
        let id = frame
            .get("id")
            .unwrap_or_else(|| panic!("a {kind} reply without the request's id: {frame}"));
        let want = pending
            .remove(&id.to_string())
            .unwrap_or_else(|| panic!("a reply to an id we did not send or already got: {frame}"));
        assert_eq!(frame["id"], want["id"], "id echoed exactly as sent");
        match kind.as_str() {
            "subscribed" | "unsubscribed" => {
                assert_eq!(frame, want, "reply");
                let key = (
                    frame["channel"].as_str().expect("channel").to_owned(),
                    frame["symbol"].as_str().map(str::to_owned),
                );
                if kind == "subscribed" {
                    active.insert(key);
                } else {
                    assert!(
                        active.remove(&key),
                        "unsubscribed from {key:?} which was not active"
                    );
                }
            }
            "authenticated" => {
                assert_eq!(
                    (&frame["type"], &frame["user"], &frame["scopes"]),
                    (&want["type"], &want["user"], &want["scopes"]),
                    "{frame}"
                );
            }
            "pong" => assert_eq!(frame["type"], want["type"], "{frame}"),
            "error" => assert_eq!(
                (&frame["type"], &frame["code"]),
                (&want["type"], &want["code"]),
                "{frame}"
            ),
            other => panic!("unexpected {other} frame: {frame}"),
        }
    }

    let seen: BTreeSet<String> = client.seen.iter().cloned().collect();
    assert_eq!(
        seen, expected,
        "the server messages seen are exactly those asyncapi.yaml's send operations declare"
    );
    assert_eq!(
        last_seq
            .keys()
            .map(|(c, _)| c.clone())
            .collect::<BTreeSet<_>>(),
        all_channels,
        "data frames arrived on every channel"
    );
    assert!(data_frames > 0);
}

/// Sends `frame` with `id` and records the reply it is owed.
async fn send(
    client: &mut Client,
    pending: &mut BTreeMap<String, Value>,
    mut frame: Value,
    id: Value,
    reply: Value,
) {
    frame["id"] = id.clone();
    client.send(frame).await;
    pending.insert(id.to_string(), reply);
}
