//! Every WebSocket path the gateway serves is a channel of asyncapi.yaml,
//! on its listener, and every such channel is served: the list the routers
//! mount (`dialects::websocket_paths`) equals the document's, and a
//! handshake on each documented address, as a client would make it, is
//! answered with 101.

use std::collections::BTreeSet;

use tickgate::dialects::{Port, websocket_paths};

use crate::{
    common::ASYNCAPI,
    support::{TestServer, test_config},
};

/// The listener of an asyncapi.yaml server, by its port.
fn port_of(server: &str) -> Option<Port> {
    let host = ASYNCAPI["servers"][server]["host"].as_str()?;
    if ASYNCAPI["servers"][server]["protocol"] != "ws" {
        return None;
    }
    match host.rsplit(':').next()? {
        "8000" => Some(Port::Main),
        "7000" => Some(Port::Candles),
        "8082" => Some(Port::MarketStream),
        "8080" => Some(Port::Enhanced),
        other => panic!("server {server}: port {other} is not a WebSocket listener"),
    }
}

/// `(port, address)` of every WebSocket channel, with `{name}` parameters
/// in poem's `:name` syntax.
fn documented() -> BTreeSet<(Port, String)> {
    let mut paths = BTreeSet::new();
    let channels = ASYNCAPI["channels"].as_object().expect("channels");
    for (name, channel) in channels {
        let address = channel["address"].as_str().expect("address");
        for server in channel["servers"].as_array().into_iter().flatten() {
            let reference = server["$ref"].as_str().expect("server $ref");
            let server = reference.trim_start_matches("#/servers/");
            let Some(port) = port_of(server) else {
                continue;
            };
            let poem = address
                .split('/')
                .map(
                    |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                        Some(parameter) => {
                            assert!(
                                channel["parameters"][parameter].is_object(),
                                "channel {name}: parameter {parameter} is documented"
                            );
                            format!(":{parameter}")
                        }
                        None => part.to_owned(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            paths.insert((port, poem));
        }
    }
    paths
}

#[test]
fn every_served_websocket_path_is_documented_and_back() {
    let served: BTreeSet<(Port, String)> = websocket_paths()
        .into_iter()
        .map(|(port, path)| (port, path.to_owned()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in asyncapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in asyncapi.yaml but not served: {unserved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_websocket_address_upgrades() {
    let server = TestServer::start(test_config()).await;
    for (port, path) in documented() {
        let addr = match port {
            Port::Main => server.addr,
            Port::Candles => server.candles_addr.expect("candles"),
            Port::MarketStream => server.market_stream_addr.expect("market stream"),
            Port::Enhanced => server.enhanced_addr.expect("enhanced"),
        };
        // A parameter takes the first of its documented examples.
        let path = path.replace(":symbol", "USDCOP");
        let url = format!("ws://{addr}{path}");
        let (mut ws, response) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("{url} upgrades: {e}"));
        assert_eq!(response.status().as_u16(), 101, "{url}");
        let _ = ws.close(None).await;
    }
}
