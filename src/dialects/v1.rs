//! The v1 dialect's edge: its endpoint and what one connection holds (its
//! subscriptions and auth state). Frames are decoded and encoded by
//! `protocol::v1`; the connection itself (limits, pings, the outbox, the
//! close) is run by `runtime::driver`.

use std::{collections::HashSet, num::NonZeroU32, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    auth::Identity,
    event::{Event, Payload, Symbol, SystemNotice, Topic, TopicKey},
    gateway::Gateway,
    hub::{Dialect, HubError, Outbox, Subscriber, Symbols},
    protocol::{
        Text,
        v1::{self, ProtocolError},
    },
    runtime::{
        driver::{Conn, Handler, Refusal, Rules},
        handshake::{Policy, upgrade},
    },
    spec::{
        Timestamp,
        messages::{
            Channel, ChannelInfo, ConnectionLimits, ErrorCode, HeartbeatSettings, RequestId,
            SystemState, V1ClientFrame, V1ServerFrame,
        },
    },
};

/// A subscription as the connection records it: the channel and the symbol
/// (None for all symbols, and for channels without symbols).
type SubKey = (Channel, Option<Symbol>);

/// The v1 endpoint's path.
pub const PATH: &str = "/api/v1/ws/v1";

/// `GET /api/v1/ws/v1`: the v1 endpoint, as a poem endpoint holding the
/// dialect's shared state.
pub fn endpoint(
    gateway: Arc<Gateway>,
    dialect: Dialect,
    policy: Arc<Policy>,
) -> impl poem::Endpoint {
    let shared = Arc::new(Shared::default());
    let rules = Arc::new(Rules::standard(
        &gateway,
        dialect,
        gateway.outbox_limits.clone(),
    ));
    poem::endpoint::make_sync(move |request| {
        let shared = shared.clone();
        upgrade(&request, &gateway, &policy, || {
            Ok((rules.clone(), move |conn: &Conn<'_>| {
                Session::open(conn, shared)
            }))
        })
    })
}

/// What every v1 connection shares.
#[derive(Default)]
struct Shared {
    /// The `system` frame announcing shutdown, encoded once (with one
    /// sequence number) for every connection.
    shutdown_notice: std::sync::OnceLock<Option<Text>>,
}

/// One connection: what it is subscribed to and who it is.
struct Session {
    gateway: Arc<Gateway>,
    shared: Arc<Shared>,
    subscriber: Subscriber,
    subscriptions: HashSet<SubKey>,
    identity: Option<Identity>,
    /// When the current token expires, as a timer deadline.
    auth_deadline: Option<Instant>,
}

impl Handler for Session {
    fn on_text(&mut self, _conn: &Conn<'_>, text: Text) {
        match v1::decode(&text) {
            Ok(frame) => self.apply(frame),
            Err(error) => self.send_error(error),
        }
    }

    fn refusal(&mut self, _conn: &Conn<'_>, refusal: Refusal) -> Option<Text> {
        let ws = &self.gateway.config.ws;
        let error = match refusal {
            Refusal::FrameTooLarge { size, max } => ProtocolError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {size} bytes exceeds the limit of {max} bytes; send smaller frames"
                ),
            ),
            // The close (4001) says it.
            Refusal::RateLimited { closing: true } => return None,
            Refusal::RateLimited { closing: false } => ProtocolError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} frames per second (burst {}); the frame was not applied, slow down",
                    ws.inbound_per_second, ws.inbound_burst
                ),
            ),
            Refusal::Binary => ProtocolError::new(
                ErrorCode::UnsupportedFrame,
                "binary frames are not supported; send JSON text frames",
            ),
        };
        self.gateway.stats.error_sent(error.code.to_string());
        Some(v1::encode_error(&error))
    }

    fn deadline(&self) -> Option<Instant> {
        self.auth_deadline
    }

    fn on_deadline(&mut self, _conn: &Conn<'_>) {
        self.expire_auth();
    }

    fn on_shutdown(&mut self, _conn: &Conn<'_>) {
        let notice = self.shared.shutdown_notice.get_or_init(|| {
            let event = Event {
                topic: Topic::global(Channel::System),
                timestamp: self.gateway.clock.now(),
                payload: Payload::System(SystemNotice {
                    status: SystemState::ShuttingDown,
                    message: "the gateway is shutting down; reconnect after a short backoff".into(),
                }),
            };
            v1::encode_event(&event, self.gateway.hub.next_seq(&event.topic))
        });
        if let Some(notice) = notice {
            self.outbox().push_control(notice.clone());
        }
    }
}

impl Session {
    /// The connection is open: its welcome frame.
    fn open(conn: &Conn<'_>, shared: Arc<Shared>) -> Self {
        let session = Self {
            gateway: conn.gateway.clone(),
            shared,
            subscriber: conn.subscriber.clone(),
            subscriptions: HashSet::new(),
            identity: None,
            auth_deadline: None,
        };
        session
            .outbox()
            .push_control(welcome(conn.gateway, conn.id()));
        session
    }

    fn outbox(&self) -> &Outbox {
        &self.subscriber.outbox
    }

    fn apply(&mut self, frame: V1ClientFrame) {
        match frame {
            V1ClientFrame::Subscribe {
                channel,
                id,
                symbol,
            } => {
                let result =
                    self.subscribe(channel, symbol.as_deref().map(String::as_str), id.clone());
                self.report(result, id, channel);
            }
            V1ClientFrame::Unsubscribe {
                channel,
                id,
                symbol,
            } => {
                let result =
                    self.unsubscribe(channel, symbol.as_deref().map(String::as_str), id.clone());
                self.report(result, id, channel);
            }
            V1ClientFrame::Auth { id, token } => self.authenticate(&token, id),
            V1ClientFrame::Ping { id } => {
                self.outbox().push_control(v1::encode(&V1ServerFrame::Pong {
                    id,
                    timestamp: Timestamp(self.gateway.clock.now()),
                }));
            }
        }
    }

    /// Resolves what a (un)subscribe names: the hub key and the recorded key.
    fn resolve(
        &self,
        channel: Channel,
        symbol: Option<&str>,
        must_exist: bool,
    ) -> Result<(Option<TopicKey>, SubKey), ProtocolError> {
        if channel.is_private() {
            if symbol.is_some() {
                return Err(symbol_not_allowed(channel));
            }
            let Some(identity) = &self.identity else {
                return Err(ProtocolError::new(
                    ErrorCode::AuthRequired,
                    format!("channel {channel} is private: send an auth frame with a JWT first"),
                ));
            };
            if !self.gateway.auth.allows(identity, channel) {
                let scope = self
                    .gateway
                    .auth
                    .required_scope(channel)
                    .unwrap_or_default();
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    format!("channel {channel} needs a token with scope {scope}"),
                ));
            }
            return Ok((Some(TopicKey::User(identity.user.clone())), (channel, None)));
        }
        if !channel.per_symbol() {
            if symbol.is_some() {
                return Err(symbol_not_allowed(channel));
            }
            return Ok((Some(TopicKey::Global), (channel, None)));
        }
        let Some(name) = symbol else {
            return Ok((None, (channel, None)));
        };
        let symbols = self.gateway.hub.symbols();
        let symbol = match symbols.get(name) {
            Some(symbol) => symbol,
            None if !must_exist => match Symbols::canonical(name) {
                Ok(canonical) => Symbol::from(canonical),
                Err(error) => {
                    return Err(ProtocolError::new(
                        ErrorCode::UnknownSymbol,
                        error.to_string(),
                    ));
                }
            },
            None => {
                let known: Vec<Symbol> = symbols.all();
                let listed: Vec<&str> = known.iter().take(20).map(|s| &**s).collect();
                let more = if known.len() > 20 { ", ..." } else { "" };
                return Err(ProtocolError::new(
                    ErrorCode::UnknownSymbol,
                    format!(
                        "unknown symbol {}; known symbols: {}{more}",
                        serde_json::Value::String(name.chars().take(32).collect()),
                        listed.join(", ")
                    ),
                ));
            }
        };
        Ok((
            Some(TopicKey::Symbol(symbol.clone())),
            (channel, Some(symbol)),
        ))
    }

    fn subscribe(
        &mut self,
        channel: Channel,
        symbol: Option<&str>,
        id: Option<RequestId>,
    ) -> Result<(), ProtocolError> {
        let (key, sub_key) = self.resolve(channel, symbol, true)?;
        let wildcard = channel.per_symbol() && key.is_none();
        if !self.subscriptions.contains(&sub_key) {
            let replaced = if wildcard {
                self.subscriptions
                    .iter()
                    .filter(|(c, s)| *c == channel && s.is_some())
                    .count()
            } else {
                0
            };
            let covered =
                !wildcard && channel.per_symbol() && self.subscriptions.contains(&(channel, None));
            let max = self.gateway.config.ws.max_subscriptions;
            if !covered && self.subscriptions.len() - replaced + 1 > max {
                return Err(ProtocolError::new(
                    ErrorCode::SubscriptionLimit,
                    format!(
                        "this connection already holds {max} subscriptions; unsubscribe first or subscribe without a symbol"
                    ),
                ));
            }
        }
        let reply = v1::encode(&V1ServerFrame::Subscribed {
            channel,
            id,
            symbol: sub_key.1.as_deref().and_then(v1::wire_symbol),
        });
        match self
            .gateway
            .hub
            .subscribe(&self.subscriber, channel, key, reply)
        {
            Ok(true) => {
                if wildcard {
                    self.subscriptions
                        .retain(|(c, s)| *c != channel || s.is_none());
                }
                self.subscriptions.insert(sub_key);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(error @ HubError::ChannelFull { .. }) => Err(ProtocolError::new(
                ErrorCode::ChannelFull,
                error.to_string(),
            )),
        }
    }

    fn unsubscribe(
        &mut self,
        channel: Channel,
        symbol: Option<&str>,
        id: Option<RequestId>,
    ) -> Result<(), ProtocolError> {
        let (key, sub_key) = self.resolve(channel, symbol, false)?;
        if !self.subscriptions.contains(&sub_key) {
            let hint = if sub_key.1.is_some() && self.subscriptions.contains(&(channel, None)) {
                "; it is covered by the all-symbols subscription: unsubscribe without a symbol"
            } else {
                ""
            };
            let what = match &sub_key.1 {
                Some(symbol) => format!("{channel} {symbol}"),
                None if channel.per_symbol() => format!("{channel} (all symbols)"),
                None => channel.to_string(),
            };
            return Err(ProtocolError::new(
                ErrorCode::NotSubscribed,
                format!("not subscribed to {what}{hint}"),
            ));
        }
        let reply = v1::encode(&V1ServerFrame::Unsubscribed {
            channel,
            id,
            symbol: sub_key.1.as_deref().and_then(v1::wire_symbol),
        });
        self.gateway
            .hub
            .unsubscribe(&self.subscriber, channel, key, reply);
        self.subscriptions.remove(&sub_key);
        Ok(())
    }

    fn authenticate(&mut self, token: &str, id: Option<RequestId>) {
        let identity = match self.gateway.auth.verify(token) {
            Ok(identity) => identity,
            Err(error) => {
                self.send_error(
                    ProtocolError::new(
                        ErrorCode::AuthFailed,
                        format!("{error}; send a valid JWT (the connection stays open)"),
                    )
                    .with_id(id),
                );
                return;
            }
        };
        if self
            .identity
            .as_ref()
            .is_some_and(|old| old.user != identity.user)
        {
            self.drop_private_subscriptions();
        }
        self.outbox()
            .push_control(v1::encode(&V1ServerFrame::Authenticated {
                expires_at: Timestamp(identity.expires_at),
                id,
                scopes: identity.scopes.clone(),
                user: identity.user.to_string(),
            }));
        tracing::debug!(user = %identity.user, "authenticated");
        let left = identity.expires_at.duration_since(jiff::Timestamp::now());
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        self.auth_deadline = Some(Instant::now() + left);
        self.identity = Some(identity);
    }

    fn expire_auth(&mut self) {
        self.drop_private_subscriptions();
        self.identity = None;
        self.auth_deadline = None;
        self.send_error(ProtocolError::new(
            ErrorCode::AuthExpired,
            "the token expired and private subscriptions were dropped; authenticate again",
        ));
    }

    fn drop_private_subscriptions(&mut self) {
        let Some(identity) = &self.identity else {
            return;
        };
        let user = identity.user.clone();
        let private: Vec<SubKey> = self
            .subscriptions
            .iter()
            .filter(|(channel, _)| channel.is_private())
            .cloned()
            .collect();
        for sub_key in private {
            let channel = sub_key.0;
            let reply = v1::encode(&V1ServerFrame::Unsubscribed {
                channel,
                id: None,
                symbol: None,
            });
            self.gateway.hub.unsubscribe(
                &self.subscriber,
                channel,
                Some(TopicKey::User(user.clone())),
                reply,
            );
            self.subscriptions.remove(&sub_key);
        }
    }

    /// Sends the error frame of a failed (un)subscribe, if it failed.
    fn report(&self, result: Result<(), ProtocolError>, id: Option<RequestId>, channel: Channel) {
        if let Err(error) = result {
            self.send_error(error.with_id(id).with_channel(channel));
        }
    }

    fn send_error(&self, error: ProtocolError) {
        self.gateway.stats.error_sent(error.code.to_string());
        self.outbox().push_control(v1::encode_error(&error));
    }
}

fn symbol_not_allowed(channel: Channel) -> ProtocolError {
    ProtocolError {
        field: Some("/symbol".into()),
        ..ProtocolError::new(
            ErrorCode::SchemaViolation,
            format!("field /symbol: channel {channel} takes no symbol; omit it"),
        )
    }
}

/// The `welcome` frame of a new connection.
fn welcome(gateway: &Gateway, connection_id: u64) -> Text {
    let config = &gateway.config;
    let channels = Channel::ALL
        .iter()
        .map(|&channel| {
            let limits = config.channels.limits(channel);
            ChannelInfo {
                max_subscribers: nonzero(limits.max_subscribers),
                name: channel,
                per_symbol: channel.per_symbol(),
                private: channel.is_private(),
                rate_per_second: nonzero(limits.rate_per_second),
            }
        })
        .collect();
    v1::encode(&V1ServerFrame::Welcome {
        channels,
        connection_id,
        heartbeat: HeartbeatSettings {
            idle_timeout_ms: nonzero64(config.ws.idle_timeout_ms),
            ping_interval_ms: nonzero64(config.ws.ping_interval_ms),
        },
        limits: ConnectionLimits {
            inbound_burst: nonzero(config.ws.inbound_burst),
            inbound_per_second: nonzero(config.ws.inbound_per_second),
            max_frame_bytes: nonzero(u32::try_from(config.ws.max_frame_bytes).unwrap_or(u32::MAX)),
            max_subscriptions: nonzero(
                u32::try_from(config.ws.max_subscriptions).unwrap_or(u32::MAX),
            ),
        },
        symbols: gateway
            .hub
            .symbols()
            .all()
            .iter()
            .filter_map(|s| v1::wire_symbol(s))
            .collect(),
        timestamp: Timestamp(gateway.clock.now()),
        version: "1.0.0".into(),
    })
}

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

fn nonzero64(value: u64) -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(value).unwrap_or(std::num::NonZeroU64::MIN)
}
