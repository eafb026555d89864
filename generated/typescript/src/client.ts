// Hand-written runtime for the tickgate v1 WebSocket API. Every message type
// comes from ./messages.ts, which is generated from asyncapi.yaml.
import type {
  Authenticated,
  Channel,
  Error as ErrorFrame,
  Pong,
  RequestId,
  Subscribed,
  Unsubscribed,
  V1ClientFrame,
  V1ServerFrame,
  Welcome,
} from "./messages.js";

/** The `type` of any server frame. */
export type ServerFrameType = V1ServerFrame["type"];
/** The server frame whose `type` is T, e.g. `FrameOf<"market_tick">` is `MarketTick`. */
export type FrameOf<T extends ServerFrameType> = Extract<V1ServerFrame, { type: T }>;
/** Frames that carry channel data (everything but the control frames). */
export type DataFrame = Exclude<
  V1ServerFrame,
  Welcome | Subscribed | Unsubscribed | Authenticated | Pong | ErrorFrame
>;
export type FrameHandler<T extends ServerFrameType> = (frame: FrameOf<T>) => void;

/** The constructor of a browser-compatible WebSocket (globalThis.WebSocket or the `ws` package). */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface TickgateClientOptions {
  /** WebSocket implementation; default globalThis.WebSocket, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect automatically when the connection drops (default true). */
  reconnect?: boolean;
  /** First reconnect delay in ms (default 100); doubles per failed attempt. */
  minBackoffMs?: number;
  /** Largest reconnect delay in ms (default 5000). */
  maxBackoffMs?: number;
  /** How long a request waits for its reply, in ms (default 10000). */
  requestTimeoutMs?: number;
  /** How long opening a connection waits for `welcome`, in ms (default 10000). */
  connectTimeoutMs?: number;
  /** Called after a reconnect has re-authenticated and re-subscribed. */
  onReconnect?: (welcome: Welcome) => void;
  /** Called with errors that no promise reports (e.g. a failed re-subscribe, a bad frame). */
  onError?: (error: unknown) => void;
}

/** A request answered with an `error` frame; `code` and `frame` tell why. */
export class TickgateError extends Error {
  readonly code: ErrorFrame["code"];
  constructor(readonly frame: ErrorFrame) {
    super(`${frame.code}: ${frame.message}`);
    this.name = "TickgateError";
    this.code = frame.code;
  }
}

interface Pending {
  expect: ServerFrameType;
  resolve: (frame: V1ServerFrame) => void;
  reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Subscription {
  channel: Channel;
  symbol?: string;
}

/** Turns http(s)://host:port into ws(s)://host:port/api/v1/ws/v1; a ws(s) URL with a path is kept. */
export function websocketUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/api/v1/ws/v1";
  return u.toString();
}

const subscriptionKey = (channel: string, symbol?: string) =>
  `${channel}\u0000${symbol === undefined ? "" : symbol.toUpperCase()}`;

export class TickgateClient {
  readonly url: string;
  private readonly options: Required<Omit<TickgateClientOptions, "WebSocket" | "onReconnect" | "onError">> &
    Pick<TickgateClientOptions, "WebSocket" | "onReconnect" | "onError">;
  private socket: WebSocket | undefined;
  private connected = false;
  private closed = false;
  private nextId = 1;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private token: string | undefined;
  private readonly pending = new Map<RequestId, Pending>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly listeners = new Map<string, Set<(frame: V1ServerFrame) => void>>();

  constructor(url: string, options: TickgateClientOptions = {}) {
    this.url = websocketUrl(url);
    this.options = {
      reconnect: true,
      minBackoffMs: 100,
      maxBackoffMs: 5000,
      requestTimeoutMs: 10_000,
      connectTimeoutMs: 10_000,
      ...options,
    };
  }

  /** True while a connection is open and has been welcomed. */
  get isConnected(): boolean {
    return this.connected;
  }

  /** Opens the connection; resolves with the server's `welcome`. */
  async connect(): Promise<Welcome> {
    this.closed = false;
    return this.open();
  }

  /** Listens for server frames of one type (or "*" for all); returns a function that removes the listener. */
  on<T extends ServerFrameType>(type: T, handler: FrameHandler<T>): () => void;
  on(type: "*", handler: (frame: V1ServerFrame) => void): () => void;
  on(type: string, handler: (frame: never) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    const h = handler as (frame: V1ServerFrame) => void;
    set.add(h);
    return () => set.delete(h);
  }

  /**
   * Subscribes to a channel (for one symbol, or for all symbols when `symbol`
   * is omitted on a per-symbol channel); resolves with `subscribed`. Data
   * frames go to the `on()` listeners and to `handler` when given (the
   * handler gets the channel's frames, for the symbol when one is given).
   * The subscription is restored after a reconnect.
   */
  async subscribe(channel: Channel, symbol?: string, handler?: (frame: DataFrame) => void): Promise<Subscribed> {
    const reply = await this.request<"subscribed">(
      symbol === undefined ? { type: "subscribe", channel } : { type: "subscribe", channel, symbol },
      "subscribed",
    );
    const canonical = reply.symbol ?? (symbol === undefined ? undefined : symbol.toUpperCase());
    this.subscriptions.set(subscriptionKey(channel, canonical), canonical === undefined ? { channel } : { channel, symbol: canonical });
    if (handler) {
      const off = this.on("*", (frame) => {
        if (!("seq" in frame) || frame.channel !== channel) return;
        if (canonical !== undefined && (!("symbol" in frame) || frame.symbol !== canonical)) return;
        handler(frame as DataFrame);
      });
      const offUnsub = this.on("unsubscribed", (frame) => {
        if (frame.channel === channel && frame.symbol === canonical && !this.subscriptions.has(subscriptionKey(channel, canonical))) {
          off();
          offUnsub();
        }
      });
    }
    return reply;
  }

  /** Undoes a subscription; resolves with `unsubscribed`. */
  async unsubscribe(channel: Channel, symbol?: string): Promise<Unsubscribed> {
    const reply = await this.request<"unsubscribed">(
      symbol === undefined ? { type: "unsubscribe", channel } : { type: "unsubscribe", channel, symbol },
      "unsubscribed",
    );
    this.subscriptions.delete(subscriptionKey(channel, reply.symbol ?? symbol));
    return reply;
  }

  /** Authenticates with a JWT; resolves with `authenticated`, rejects with a TickgateError (auth_failed). The token is re-sent after a reconnect. */
  async auth(token: string): Promise<Authenticated> {
    const reply = await this.request<"authenticated">({ type: "auth", token }, "authenticated");
    this.token = token;
    return reply;
  }

  /** Sends `ping`; resolves with the matching `pong`. */
  ping(): Promise<Pong> {
    return this.request<"pong">({ type: "ping" }, "pong");
  }

  /** Closes the connection for good: no reconnect, pending requests reject. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    this.connected = false;
    this.rejectPending(new Error("client closed"));
    socket?.close(1000);
  }

  // --- internals -------------------------------------------------------------

  private request<T extends ServerFrameType>(frame: V1ClientFrame, expect: T): Promise<FrameOf<T>> {
    return new Promise<FrameOf<T>>((resolve, reject) => {
      const socket = this.socket;
      if (!socket || !this.connected) {
        reject(new Error("not connected"));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no ${expect} reply to ${frame.type} (id ${id}) within ${this.options.requestTimeoutMs} ms`));
      }, this.options.requestTimeoutMs);
      this.pending.set(id, { expect, resolve: resolve as (f: V1ServerFrame) => void, reject, timer });
      try {
        socket.send(JSON.stringify({ ...frame, id }));
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(error);
      }
    });
  }

  private async webSocketClass(): Promise<WebSocketConstructor> {
    if (this.options.WebSocket) return this.options.WebSocket;
    if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
    const ws = await import("ws");
    return ws.default;
  }

  /** Opens one socket; resolves on `welcome`, rejects if it closes or times out first. */
  private async open(): Promise<Welcome> {
    const WebSocketClass = await this.webSocketClass();
    return new Promise<Welcome>((resolve, reject) => {
      const socket = new WebSocketClass(this.url);
      this.socket = socket;
      let welcomed = false;
      const timer = setTimeout(() => {
        if (welcomed) return;
        reject(new Error(`no welcome from ${this.url} within ${this.options.connectTimeoutMs} ms`));
        socket.close();
      }, this.options.connectTimeoutMs);
      socket.onmessage = (event: MessageEvent) => {
        if (this.socket !== socket) return;
        let frame: V1ServerFrame;
        try {
          frame = JSON.parse(typeof event.data === "string" ? event.data : String(event.data)) as V1ServerFrame;
        } catch (error) {
          this.options.onError?.(error);
          return;
        }
        if (!welcomed && frame.type === "welcome") {
          welcomed = true;
          clearTimeout(timer);
          this.connected = true;
          resolve(frame);
        }
        this.dispatch(frame);
      };
      socket.onerror = () => {
        // A close event follows; the error event itself carries nothing useful.
      };
      socket.onclose = (event: CloseEvent) => {
        clearTimeout(timer);
        if (this.socket !== socket) return; // replaced or closed by close()
        this.socket = undefined;
        this.connected = false;
        this.rejectPending(new Error(`connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`));
        if (!welcomed) reject(new Error(`connection to ${this.url} closed before welcome (${event.code})`));
        else this.scheduleReconnect();
      };
    });
  }

  private dispatch(frame: V1ServerFrame): void {
    if ("id" in frame && frame.id !== undefined) {
      const pending = this.pending.get(frame.id);
      if (pending && (frame.type === pending.expect || frame.type === "error")) {
        this.pending.delete(frame.id);
        clearTimeout(pending.timer);
        if (frame.type === "error") pending.reject(new TickgateError(frame));
        else pending.resolve(frame);
      }
    } else if (frame.type === "unsubscribed") {
      // Dropped by the server (re-authentication as another user, token expiry).
      this.subscriptions.delete(subscriptionKey(frame.channel, frame.symbol));
    }
    for (const key of [frame.type, "*"]) {
      for (const handler of this.listeners.get(key) ?? []) {
        try {
          handler(frame);
        } catch (error) {
          this.options.onError?.(error);
        }
      }
    }
  }

  private rejectPending(error: Error): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(error);
    }
  }

  /** Exponential backoff with jitter: min·2^attempt capped at max, times a random factor in [0.5, 1]. */
  private backoffMs(): number {
    const { minBackoffMs, maxBackoffMs } = this.options;
    const base = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.min(this.attempt, 30));
    return Math.round(base * (0.5 + Math.random() / 2));
  }

  private scheduleReconnect(): void {
    if (this.closed || !this.options.reconnect || this.reconnectTimer) return;
    const delay = this.backoffMs();
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect();
    }, delay);
  }

  private async reconnect(): Promise<void> {
    if (this.closed) return;
    let welcome: Welcome;
    try {
      welcome = await this.open();
    } catch {
      this.scheduleReconnect();
      return;
    }
    try {
      if (this.token !== undefined) await this.auth(this.token);
      for (const sub of [...this.subscriptions.values()]) {
        await this.request(
          sub.symbol === undefined
            ? { type: "subscribe", channel: sub.channel }
            : { type: "subscribe", channel: sub.channel, symbol: sub.symbol },
          "subscribed",
        );
      }
    } catch (error) {
      this.options.onError?.(error);
      // The connection dropped again while restoring: its close schedules the next attempt.
      if (!this.connected) return;
    }
    this.attempt = 0;
    this.options.onReconnect?.(welcome);
  }
}
