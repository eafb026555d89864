// Generated from asyncapi.yaml by tools/generate-typescript.mjs; do not edit.

/**
 * Any frame of any tickgate WebSocket dialect.
 */
export type AnyFrame =
  | CandlesClientFrame
  | CandlesServerFrame
  | EnhancedClientFrame
  | EnhancedServerFrame
  | UsdcopClientFrame
  | UsdcopServerFrame
  | V1ClientFrame
  | V1ServerFrame
  | Quote
  | RedisBook
  | RedisPrivate
  | RedisQuote
  | RedisTrade;
/**
 * Every frame the client sends on the candles channel (asyncapi.yaml operations with action receive).
 */
export type CandlesClientFrame = CandlesPing | CandlesSubscribe | CandlesUnsubscribe;
/**
 * Every frame the server sends on the candles channel (asyncapi.yaml operations with action send).
 */
export type CandlesServerFrame = CandlesError | CandlesInitial | CandlesPong | CandlesUpdate;
/**
 * Start of a candle, UTC, ISO 8601 with exactly three fractional digits (`2024-10-24T10:00:00.000Z`), aligned to the interval.
 */
export type CandlesTime = string;
/**
 * A candle interval.
 */
export type CandlesInterval = "1m" | "5m" | "15m" | "1h" | "4h" | "1D" | "1W";
/**
 * Every frame the client sends on the enhanced channel (asyncapi.yaml operations with action receive).
 */
export type EnhancedClientFrame = EnhancedHeartbeat;
/**
 * Every frame the server sends on the enhanced channel (asyncapi.yaml operations with action send).
 */
export type EnhancedServerFrame = EnhancedError | EnhancedHeartbeatResponse | UsdcopMarketData;
/**
 * UTC, ISO 8601 to the second (`2025-10-22T10:30:05Z`), as seed 000 writes it.
 */
export type UsdcopTime = string;
/**
 * Every frame the client sends on the marketStream channel (asyncapi.yaml operations with action receive).
 */
export type UsdcopClientFrame = UsdcopPong | UsdcopSubscribe | UsdcopUnsubscribe;
/**
 * Symbols (case-insensitive on input, upper case on output).
 *
 * @maxItems 100
 */
export type UsdcopSymbols = string[];
/**
 * Every frame the server sends on the marketStream channel (asyncapi.yaml operations with action send).
 */
export type UsdcopServerFrame =
  UsdcopAck | UsdcopError | UsdcopHeartbeat | UsdcopMarketData | UsdcopSystemStatus;
/**
 * Seed 000's codes, plus `INVALID_MESSAGE` (a frame that is not JSON or
 * not a client message).
 *
 */
export type UsdcopErrorCode =
  | "INVALID_SYMBOL"
  | "RATE_LIMIT_EXCEEDED"
  | "MARKET_CLOSED"
  | "AUTHENTICATION_FAILED"
  | "INTERNAL_ERROR"
  | "INVALID_MESSAGE";
export type UsdcopStatus =
  "market_opening" | "market_closing" | "market_closed" | "maintenance_mode" | "degraded_service";
/**
 * Every frame the client sends on the v1 channel (asyncapi.yaml operations with action receive).
 */
export type V1ClientFrame = Auth | Ping | Subscribe | Unsubscribe;
/**
 * A client-chosen request id, echoed as sent in the reply.
 */
export type RequestId = string | number;
/**
 * A JWT in compact serialization.
 */
export type Token = string;
/**
 * A logical channel of the v1 API.
 */
export type Channel =
  | "market_data"
  | "orderbook"
  | "trades"
  | "chart_data"
  | "system"
  | "heartbeat"
  | "account"
  | "positions"
  | "orders"
  | "notifications";
/**
 * An instrument symbol, e.g. AAPL. Case-insensitive in client frames, upper-case in server frames.
 */
export type Symbol = string;
/**
 * Every frame the server sends on the v1 channel (asyncapi.yaml operations with action send).
 */
export type V1ServerFrame =
  | AccountUpdate
  | Authenticated
  | Candle
  | Error
  | Heartbeat
  | MarketTick
  | Notification
  | OrderUpdate
  | OrderbookSnapshot
  | OrderbookUpdate
  | Pong
  | PositionUpdate
  | Subscribed
  | SystemStatus
  | Trade
  | Unsubscribed
  | Welcome;
/**
 * Per-topic sequence number; starts at 1 and grows by one per event of the topic.
 */
export type Sequence = number;
/**
 * UTC, ISO 8601 with exactly six fractional digits, e.g. 2025-10-11T08:30:00.123456Z.
 */
export type Timestamp = string;
/**
 * The candle interval of chart_data.
 */
export type CandleInterval = "1m";
/**
 * `invalid_json` the frame is not a JSON object; `unsupported_frame` a binary
 * frame; `unknown_type` no such message type (the message lists the supported
 * ones); `schema_violation` a field is missing, of the wrong type or not
 * allowed (`field` names it); `unknown_channel`; `unknown_symbol`;
 * `auth_required` a private channel without auth; `auth_failed` a bad token;
 * `auth_expired` the token expired and private subscriptions were dropped;
 * `forbidden` the token's scopes do not open the channel; `channel_full` the
 * channel's subscriber cap is reached; `subscription_limit` the connection's
 * subscription cap is reached; `not_subscribed` nothing to unsubscribe;
 * `rate_limited` too many inbound frames (the frame was not applied);
 * `frame_too_large` the frame exceeded the size limit (the connection closes
 * with 1009); `internal_error` an unexpected server fault.
 *
 */
export type ErrorCode =
  | "invalid_json"
  | "unsupported_frame"
  | "unknown_type"
  | "schema_violation"
  | "unknown_channel"
  | "unknown_symbol"
  | "auth_required"
  | "auth_failed"
  | "auth_expired"
  | "forbidden"
  | "channel_full"
  | "subscription_limit"
  | "not_subscribed"
  | "rate_limited"
  | "frame_too_large"
  | "internal_error";
export type NotificationLevel = "info" | "warning" | "alert";
export type OrderType = "market" | "limit";
export type Side = "buy" | "sell";
export type OrderStatus = "new" | "partially_filled" | "filled" | "cancelled" | "rejected";
/**
 * `operational` all feeds nominal; `notice` an informational message;
 * `degraded` a source or dependency is impaired; `maintenance` operator
 * maintenance; `shutting_down` the gateway is stopping (close code 1001 follows).
 *
 */
export type SystemState = "operational" | "notice" | "degraded" | "maintenance" | "shutting_down";
/**
 * [price, size]; size 0 removes the level.
 *
 * @minItems 2
 * @maxItems 2
 */
export type RedisLevel = [number, number];
/**
 * The tickgate instance that published the message; an instance ignores its own. External publishers leave it out.
 */
export type RedisOrigin = string;
/**
 * An ISO 8601 time with a zone (`Z` or an offset), any precision; tickgate keeps it to the microsecond.
 */
export type RedisTimestamp = string;
export type RedisPrice = number;

export interface CandlesPing {
  type: "ping";
}
export interface CandlesSubscribe {
  /**
   * Bars wanted in `initial` (default 100; more than `candles.max_initial_bars` is capped; below 1 gets an error).
   */
  initialBars?: number;
  /**
   * One of 1m, 5m, 15m, 1h, 4h, 1D, 1W; anything else gets `Invalid interval`.
   */
  interval: string;
  /**
   * A configured candles symbol (`candles.symbols`; `BTC/USDT` by default).
   */
  symbol: string;
  type: "subscribe";
}
export interface CandlesUnsubscribe {
  interval: string;
  symbol: string;
  type: "unsubscribe";
}
export interface CandlesError {
  message: string;
  type: "error";
}
export interface CandlesInitial {
  /**
   * Oldest first; the last bar is the one in progress.
   */
  bars: CandlesBar[];
  interval: CandlesInterval;
  symbol: string;
  type: "initial";
}
export interface CandlesBar {
  /**
   * The last price (the current price while in progress).
   */
  close: number;
  high: number;
  low: number;
  open: number;
  /**
   * Not sent by tickgate (the seed marks it optional).
   */
  quoteVolume?: number;
  time: CandlesTime;
  volume: number;
}
export interface CandlesPong {
  type: "pong";
}
export interface CandlesUpdate {
  bar: CandlesBar;
  interval: CandlesInterval;
  symbol: string;
  type: "update";
}
export interface EnhancedHeartbeat {
  type: "heartbeat";
}
export interface EnhancedError {
  message: string;
  timestamp: UsdcopTime;
  type: "error";
}
export interface EnhancedHeartbeatResponse {
  server_status: EnhancedServerStatus;
  timestamp: UsdcopTime;
  type: "heartbeat_response";
}
export interface EnhancedServerStatus {
  /**
   * Clients of this stream.
   */
  clients_connected: number;
  market_open: boolean;
  market_status: "open" | "closing" | "closed";
  /**
   * The orchestrator's state (seed 001's service states, lower case).
   */
  service_status:
    | "initializing"
    | "waiting_l0"
    | "checking_data"
    | "ready"
    | "active"
    | "market_closed"
    | "error"
    | "shutdown";
}
export interface UsdcopMarketData {
  data: UsdcopQuote;
  metadata: UsdcopMetadata;
  symbol: string;
  timestamp: UsdcopTime;
  type: "market_data";
}
export interface UsdcopQuote {
  ask: number;
  bid: number;
  /**
   * price - open.
   */
  change: number;
  /**
   * change / open * 100.
   */
  change_percent: number;
  /**
   * The current price.
   */
  close: number;
  high: number;
  low: number;
  /**
   * Open of the current session.
   */
  open: number;
  price: number;
  /**
   * ask - bid.
   */
  spread: number;
  volume: number;
}
export interface UsdcopMetadata {
  /**
   * `high` under 1 s of latency, `medium` under 5 s, `low` beyond.
   */
  data_quality: "high" | "medium" | "low";
  /**
   * Milliseconds from the price's timestamp to its encoding for the stream.
   */
  latency_ms: number;
  /**
   * `realtime` for live prices (tickgate sends only live prices on this stream).
   */
  source: "realtime" | "L0" | "backfill";
}
export interface UsdcopPong {
  action: "pong";
  /**
   * The client's clock, as it likes to write it (not interpreted).
   */
  client_time?: string;
}
export interface UsdcopSubscribe {
  action: "subscribe";
  symbols: UsdcopSymbols;
}
export interface UsdcopUnsubscribe {
  action: "unsubscribe";
  symbols: UsdcopSymbols;
}
export interface UsdcopAck {
  message: string;
  symbols: string[];
  timestamp: UsdcopTime;
  type: "ack";
}
export interface UsdcopError {
  code: UsdcopErrorCode;
  message: string;
  timestamp: UsdcopTime;
  type: "error";
}
export interface UsdcopHeartbeat {
  /**
   * Connections open on this stream.
   */
  clients_connected: number;
  server_time: UsdcopTime;
  timestamp: UsdcopTime;
  type: "heartbeat";
}
export interface UsdcopSystemStatus {
  details?: UsdcopStatusDetails;
  message: string;
  status: UsdcopStatus;
  timestamp: UsdcopTime;
  type: "system_status";
}
export interface UsdcopStatusDetails {
  market_close_time?: UsdcopTime;
  market_open_time?: UsdcopTime;
  next_session_start?: UsdcopTime;
  seconds_until_close?: number;
  seconds_until_open?: number;
}
export interface Auth {
  id?: RequestId;
  token: Token;
  type: "auth";
}
export interface Ping {
  id?: RequestId;
  type: "ping";
}
export interface Subscribe {
  channel: Channel;
  id?: RequestId;
  symbol?: Symbol;
  type: "subscribe";
}
export interface Unsubscribe {
  channel: Channel;
  id?: RequestId;
  symbol?: Symbol;
  type: "unsubscribe";
}
export interface AccountUpdate {
  available: number;
  balance: number;
  channel: Channel;
  currency: string;
  equity: number;
  seq: Sequence;
  timestamp: Timestamp;
  type: "account_update";
  user: string;
}
export interface Authenticated {
  expires_at: Timestamp;
  id?: RequestId;
  scopes: string[];
  type: "authenticated";
  /**
   * The token's `sub`.
   */
  user: string;
}
export interface Candle {
  channel: Channel;
  close: number;
  closed: boolean;
  high: number;
  interval: CandleInterval;
  low: number;
  open: number;
  seq: Sequence;
  symbol: Symbol;
  time: Timestamp;
  timestamp: Timestamp;
  type: "candle";
  volume: number;
}
export interface Error {
  channel?: Channel;
  code: ErrorCode;
  /**
   * With `schema_violation`, the JSON pointer of the offending field.
   */
  field?: string;
  id?: RequestId;
  /**
   * What went wrong and what to do next.
   */
  message: string;
  symbol?: Symbol;
  type: "error";
}
export interface Heartbeat {
  channel: Channel;
  /**
   * Open WebSocket connections on this gateway.
   */
  connections: number;
  seq: Sequence;
  timestamp: Timestamp;
  type: "heartbeat";
}
export interface MarketTick {
  ask: number;
  bid: number;
  /**
   * Price change since the session's reference price.
   */
  change: number;
  change_percent: number;
  channel: Channel;
  price: number;
  seq: Sequence;
  /**
   * Where the tick came from, e.g. simulator.
   */
  source: string;
  symbol: Symbol;
  timestamp: Timestamp;
  type: "market_tick";
  /**
   * Volume traded since the session opened.
   */
  volume: number;
}
export interface Notification {
  channel: Channel;
  level: NotificationLevel;
  message: string;
  seq: Sequence;
  timestamp: Timestamp;
  title: string;
  type: "notification";
  user: string;
}
export interface OrderUpdate {
  channel: Channel;
  filled_quantity: number;
  order_id: string;
  order_type: OrderType;
  /**
   * Limit price; absent for market orders.
   */
  price?: number;
  quantity: number;
  seq: Sequence;
  side: Side;
  status: OrderStatus;
  symbol: Symbol;
  timestamp: Timestamp;
  type: "order_update";
  user: string;
}
export interface OrderbookSnapshot {
  /**
   * Best (lowest) ask first.
   */
  asks: PriceLevel[];
  /**
   * Best (highest) bid first.
   */
  bids: PriceLevel[];
  channel: Channel;
  seq: Sequence;
  symbol: Symbol;
  timestamp: Timestamp;
  type: "orderbook_snapshot";
}
export interface PriceLevel {
  price: number;
  /**
   * Quantity at the price; 0 in an update removes the level.
   */
  size: number;
}
export interface OrderbookUpdate {
  asks: PriceLevel[];
  bids: PriceLevel[];
  channel: Channel;
  seq: Sequence;
  symbol: Symbol;
  timestamp: Timestamp;
  type: "orderbook_update";
}
export interface Pong {
  id?: RequestId;
  timestamp: Timestamp;
  type: "pong";
}
export interface PositionUpdate {
  avg_price: number;
  channel: Channel;
  market_price: number;
  quantity: number;
  seq: Sequence;
  symbol: Symbol;
  timestamp: Timestamp;
  type: "position_update";
  unrealized_pnl: number;
  user: string;
}
export interface Subscribed {
  channel: Channel;
  id?: RequestId;
  symbol?: Symbol;
  type: "subscribed";
}
export interface SystemStatus {
  channel: Channel;
  message: string;
  seq: Sequence;
  status: SystemState;
  timestamp: Timestamp;
  type: "system_status";
}
export interface Trade {
  channel: Channel;
  price: number;
  seq: Sequence;
  side: Side;
  size: number;
  symbol: Symbol;
  timestamp: Timestamp;
  trade_id: number;
  type: "trade";
}
export interface Unsubscribed {
  channel: Channel;
  id?: RequestId;
  symbol?: Symbol;
  type: "unsubscribed";
}
export interface Welcome {
  channels: ChannelInfo[];
  /**
   * The server's id of this connection, as it appears in its logs.
   */
  connection_id: number;
  heartbeat: HeartbeatSettings;
  limits: ConnectionLimits;
  /**
   * The symbols the gateway knows now.
   */
  symbols: Symbol[];
  timestamp: Timestamp;
  type: "welcome";
  /**
   * The v1 API version.
   */
  version: string;
}
export interface ChannelInfo {
  /**
   * The most connections that may subscribe to the channel at once.
   */
  max_subscribers: number;
  name: Channel;
  /**
   * True when the channel's topics are per symbol.
   */
  per_symbol: boolean;
  /**
   * True when the channel needs an authenticated connection.
   */
  private: boolean;
  /**
   * The most frames this channel sends one connection per second.
   */
  rate_per_second: number;
}
export interface HeartbeatSettings {
  idle_timeout_ms: number;
  ping_interval_ms: number;
}
export interface ConnectionLimits {
  inbound_burst: number;
  inbound_per_second: number;
  max_frame_bytes: number;
  max_subscriptions: number;
}
export interface Quote {
  ask?: number;
  bid?: number;
  /**
   * The current (last) price.
   */
  close: number;
  /**
   * The session's highest price.
   */
  high: number;
  /**
   * The session's lowest price.
   */
  low: number;
  /**
   * The session's opening price.
   */
  open: number;
  /**
   * The ticker, upper-case.
   */
  ticker: string;
  timestamp: Timestamp;
  /**
   * Volume accumulated in the session.
   */
  volume: number;
}
export interface RedisBook {
  /**
   * @maxItems 1000
   */
  asks: RedisLevel[];
  /**
   * @maxItems 1000
   */
  bids: RedisLevel[];
  origin?: RedisOrigin;
  /**
   * True when the levels are the whole book.
   */
  snapshot?: boolean;
  symbol: string;
  timestamp: RedisTimestamp;
}
export interface RedisPrivate {
  channel: "account" | "positions" | "orders" | "notifications";
  /**
   * The fields of the channel's v1 message (see the channel's description); checked against that message's schema.
   */
  data: {};
  origin?: RedisOrigin;
  timestamp: RedisTimestamp;
  user: string;
}
export interface RedisQuote {
  ask?: RedisPrice;
  bid?: RedisPrice;
  change?: number;
  change_percent?: number;
  close: RedisPrice;
  high: RedisPrice;
  low: RedisPrice;
  open: RedisPrice;
  origin?: RedisOrigin;
  /**
   * Size of the trade behind the quote (added to candle volume); 0 when absent.
   */
  size?: number;
  /**
   * Where the quote came from (`redis` when absent).
   */
  source?: string;
  /**
   * A symbol: 1 to 32 of A-Z, 0-9 and . / _ : - ^ =, any case.
   */
  ticker: string;
  timestamp: RedisTimestamp;
  volume: number;
}
export interface RedisTrade {
  origin?: RedisOrigin;
  price: RedisPrice;
  side: Side;
  size: number;
  symbol: string;
  timestamp: RedisTimestamp;
  trade_id: number;
}
