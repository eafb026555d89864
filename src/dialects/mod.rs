//! The edges of the wire dialects: each one's endpoints, handshake checks,
//! rules and connection handler over the shared runtime (`runtime`), and
//! the USD/COP REST APIs. Their codecs live in `protocol`.

use std::{net::SocketAddr, sync::Arc};

use poem::{EndpointExt, endpoint::BoxEndpoint};

use crate::{
    config::Config,
    gateway::Gateway,
    hub::TooManyDialects,
    protocol::{self, NoEvents},
    runtime::{handshake::Policy, ip::IpLimits},
};

pub mod candles;
pub mod enhanced;
pub mod market_stream;
pub mod quotes;
pub mod rt_orchestrator;
pub mod v1;

/// The listener a WebSocket path is served on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Port {
    /// `server.port` (8000): v1, quotes and REST.
    Main,
    /// `candles.port` (7000).
    Candles,
    /// `market_stream.port` (8082).
    MarketStream,
    /// `enhanced.port` (8080).
    Enhanced,
}

/// Every WebSocket path the gateway serves, in poem's syntax (`:name` for a
/// path parameter). The routers mount these constants, and a contract test
/// compares the list with asyncapi.yaml's channels, so no served path is
/// undocumented.
pub fn websocket_paths() -> Vec<(Port, &'static str)> {
    let mut paths = vec![(Port::Main, v1::PATH)];
    paths.extend(quotes::PATHS.map(|path| (Port::Main, path)));
    paths.push((Port::Candles, candles::PATH));
    paths.push((Port::MarketStream, market_stream::PATH));
    paths.extend(enhanced::PATHS.map(|path| (Port::Enhanced, path)));
    paths
}

/// A dialect listener besides the main one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Seed 003's candles (`candles.port`).
    Candles,
    /// Seed 000's market-data stream (`market_stream.port`).
    MarketStream,
    /// Seed 000's RT orchestrator REST API (`rt_orchestrator.port`).
    RtOrchestrator,
    /// Seed 001's enhanced service: REST and streams (`enhanced.port`).
    Enhanced,
}

impl Listener {
    pub const ALL: [Listener; 4] = [
        Listener::Candles,
        Listener::MarketStream,
        Listener::RtOrchestrator,
        Listener::Enhanced,
    ];

    /// The listener's port, when `config` enables it.
    pub fn port(self, config: &Config) -> Option<u16> {
        let (enabled, port) = match self {
            Listener::Candles => (config.candles.enabled, config.candles.port),
            Listener::MarketStream => (config.market_stream.enabled, config.market_stream.port),
            Listener::RtOrchestrator => {
                (config.rt_orchestrator.enabled, config.rt_orchestrator.port)
            }
            Listener::Enhanced => (config.enhanced.enabled, config.enhanced.port),
        };
        enabled.then_some(port)
    }

    /// The log line of the bound listener.
    pub fn describe(self, addr: SocketAddr) -> String {
        match self {
            Listener::Candles => format!("candles dialect listening; ws://{addr}/"),
            Listener::MarketStream => {
                format!("market-data stream listening; ws://{addr}/ws/market-data")
            }
            Listener::RtOrchestrator => {
                format!("RT orchestrator API listening; http://{addr}/docs")
            }
            Listener::Enhanced => {
                format!("enhanced service listening; ws://{addr}/ws, http://{addr}/docs")
            }
        }
    }
}

/// The dialects mounted on one gateway: the routes each adds to the main
/// listener, and the routes of each of their own listeners.
pub struct Mounted {
    pub main: Vec<(&'static str, BoxEndpoint<'static>)>,
    pub listeners: Vec<(Listener, BoxEndpoint<'static>)>,
}

/// Mounts every dialect: registers its encoder with the hub, builds its
/// state and routes, and starts its background tasks (on `gateway.tasks`,
/// stopped by the shutdown token). `listeners` are the enabled ones.
///
/// # Errors
/// More dialects than the hub serves.
pub fn mount(gateway: &Arc<Gateway>, listeners: &[Listener]) -> Result<Mounted, TooManyDialects> {
    let hub = &gateway.hub;
    let v1 = hub.dialect("v1", Arc::new(protocol::v1::V1))?;
    let quotes = hub.dialect("quotes", Arc::new(protocol::quotes::Quotes))?;
    // Seeds 000 and 001 share their market_data frames: one dialect.
    let usdcop = hub.dialect("usdcop", Arc::new(protocol::usdcop::MarketData))?;
    let candles = hub.dialect("candles", Arc::new(NoEvents))?;

    // Per-address limits, one set per listener.
    let server = &gateway.config.server;
    let policy = |max_open: usize,
                  code: Option<&'static str>,
                  origins: &[String],
                  origins_key: &'static str| {
        Arc::new(Policy {
            ip: IpLimits::new(
                max_open,
                server.handshakes_per_ip_per_second,
                server.trusted_proxies.clone(),
                code,
            ),
            origins: origins.to_vec(),
            origins_key,
        })
    };
    let config = &gateway.config;
    let main_policy = policy(
        server.max_connections_per_ip,
        None,
        &server.allowed_origins,
        "server.allowed_origins",
    );
    let quotes_endpoint = quotes::endpoint(gateway.clone(), quotes, main_policy.clone());
    let mut main: Vec<(&'static str, BoxEndpoint<'static>)> = vec![(
        v1::PATH,
        v1::endpoint(gateway.clone(), v1, main_policy)
            .map_to_response()
            .boxed(),
    )];
    for path in quotes::PATHS {
        main.push((path, quotes_endpoint.clone().map_to_response().boxed()));
    }
    main.push(("/health", quotes::health.map_to_response().boxed()));

    let streams = Arc::new(market_stream::Streams::default());
    gateway.tasks.spawn(market_stream::run_market_events(
        gateway.clone(),
        streams.clone(),
    ));
    let mut mounted = Vec::new();
    for &listener in listeners {
        let routes = match listener {
            Listener::Candles => {
                let rooms = Arc::new(candles::Rooms::default());
                gateway
                    .tasks
                    .spawn(candles::run_broadcaster(gateway.clone(), rooms.clone()));
                let policy = policy(
                    server.max_connections_per_ip,
                    None,
                    &config.candles.allowed_origins,
                    "candles.allowed_origins",
                );
                candles::routes(gateway.clone(), rooms, candles.clone(), policy)
                    .map_to_response()
                    .boxed()
            }
            Listener::MarketStream => {
                // Seed 000's own limit and word for it.
                let policy = policy(
                    config.market_stream.max_connections_per_ip,
                    Some("RATE_LIMIT_EXCEEDED"),
                    &config.market_stream.allowed_origins,
                    "market_stream.allowed_origins",
                );
                market_stream::routes(gateway.clone(), streams.clone(), usdcop.clone(), policy)
                    .map_to_response()
                    .boxed()
            }
            Listener::RtOrchestrator => rt_orchestrator::routes(gateway.clone(), streams.clone())
                .map_to_response()
                .boxed(),
            Listener::Enhanced => enhanced::routes(
                gateway.clone(),
                usdcop.clone(),
                policy(
                    server.max_connections_per_ip,
                    None,
                    &config.enhanced.allowed_origins,
                    "enhanced.allowed_origins",
                ),
            )
            .map_to_response()
            .boxed(),
        };
        mounted.push((listener, routes));
    }
    Ok(Mounted {
        main,
        listeners: mounted,
    })
}
