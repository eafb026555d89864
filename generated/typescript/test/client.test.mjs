// Tests the built client (dist/) against live gateways: the one at
// GATEWAY_URL (with a token for it in GATEWAY_TOKEN), and, for reconnects,
// one this file starts itself from target/debug/tickgate.
// Run by scripts/ts-check.sh: node --test generated/typescript/test/
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { TickgateClient, TickgateError } from "../dist/index.js";

const URL_ = process.env.GATEWAY_URL;
const TOKEN = process.env.GATEWAY_TOKEN;
if (!URL_ || !TOKEN) throw new Error("set GATEWAY_URL and GATEWAY_TOKEN (scripts/ts-check.sh does)");
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const TIMEOUT = 20_000;

const clients = [];
function client(url = URL_, options = {}) {
  const c = new TickgateClient(url, { requestTimeoutMs: 5000, connectTimeoutMs: 5000, ...options });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

/** Resolves with the next frame of `type` matching `pred`, or rejects after `ms`. */
function nextFrame(c, type, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} within ${ms} ms`));
    }, ms);
    const off = c.on(type, (frame) => {
      if (!pred(frame)) return;
      clearTimeout(timer);
      off();
      resolve(frame);
    });
  });
}

test("connect receives welcome", { timeout: TIMEOUT }, async () => {
  const c = client();
  const welcome = await c.connect();
  assert.equal(welcome.type, "welcome");
  assert.ok(welcome.symbols.includes("AAPL"));
  assert.ok(welcome.channels.some((ch) => ch.name === "market_data"));
  assert.equal(c.isConnected, true);
  c.close();
  assert.equal(c.isConnected, false);
});

test("subscribe market_data AAPL delivers market_tick", { timeout: TIMEOUT }, async () => {
  const c = client();
  await c.connect();
  const viaOn = nextFrame(c, "market_tick", (t) => t.symbol === "AAPL");
  const viaHandler = new Promise((resolve) => {
    void c.subscribe("market_data", "aapl", resolve).then((reply) => {
      assert.equal(reply.type, "subscribed");
      assert.equal(reply.channel, "market_data");
      assert.equal(reply.symbol, "AAPL");
      assert.equal(typeof reply.id, "number");
    });
  });
  const tick = await viaOn;
  assert.equal(tick.type, "market_tick");
  assert.equal(tick.channel, "market_data");
  assert.equal(typeof tick.price, "number");
  assert.ok(tick.seq >= 1);
  const handled = await viaHandler;
  assert.equal(handled.type, "market_tick");
  assert.equal(handled.symbol, "AAPL");
  const unsub = await c.unsubscribe("market_data", "AAPL");
  assert.equal(unsub.type, "unsubscribed");
  c.close();
});

test("auth then account delivers account_update for the user", { timeout: TIMEOUT }, async () => {
  const c = client();
  await c.connect();
  const authenticated = await c.auth(TOKEN);
  assert.equal(authenticated.type, "authenticated");
  assert.equal(authenticated.user, "ts-user");
  const update = nextFrame(c, "account_update");
  const sub = await c.subscribe("account");
  assert.equal(sub.channel, "account");
  const frame = await update;
  assert.equal(frame.user, "ts-user");
  assert.equal(frame.channel, "account");
  assert.equal(typeof frame.balance, "number");
  c.close();
});

test("ping resolves with the pong that echoes its id", { timeout: TIMEOUT }, async () => {
  const c = client();
  await c.connect();
  const seen = [];
  c.on("pong", (p) => seen.push(p.id));
  const first = await c.ping();
  const second = await c.ping();
  assert.equal(first.type, "pong");
  assert.equal(typeof first.id, "number");
  assert.equal(second.id, first.id + 1);
  assert.deepEqual(seen, [first.id, second.id]);
  assert.match(second.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  c.close();
});

test("errors reject the request with the error frame", { timeout: TIMEOUT }, async () => {
  const c = client();
  await c.connect();
  const errors = [];
  c.on("error", (e) => errors.push(e));
  await assert.rejects(c.subscribe("market_data", "NOPE"), (e) => {
    assert.ok(e instanceof TickgateError);
    assert.equal(e.code, "unknown_symbol");
    assert.equal(e.frame.type, "error");
    assert.equal(typeof e.frame.id, "number");
    return true;
  });
  await assert.rejects(c.auth("not-a-jwt"), (e) => e instanceof TickgateError && e.code === "auth_failed");
  assert.deepEqual(errors.map((e) => e.code), ["unknown_symbol", "auth_failed"]);
  // The connection stays usable.
  assert.equal((await c.ping()).type, "pong");
  c.close();
});

// --- reconnect, against a gateway this test starts and restarts --------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startGateway(port) {
  // Its own store, and no candles listener on the default port 7000 (a
  // gateway started by the test script may hold it).
  const env = {
    ...process.env,
    TICKGATE_CANDLES__PORT: "0",
    TICKGATE_MARKET_STREAM__PORT: "0",
    TICKGATE_RT_ORCHESTRATOR__PORT: "0",
    TICKGATE_ENHANCED__PORT: "0",
    TICKGATE_STORE__DATA_DIR: mkdtempSync(join(tmpdir(), "tickgate-ts-")),
  };
  const child = spawn(`${repoRoot}target/debug/tickgate`, ["--port", String(port)], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/health`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`gateway did not answer on port ${port} within 10 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

test("reconnects, re-authenticates and re-subscribes after a gateway restart", { timeout: 45_000 }, async () => {
  const port = await freePort();
  let gateway = await startGateway(port);
  const reconnected = [];
  try {
    const c = client(`http://127.0.0.1:${port}`, {
      minBackoffMs: 100,
      maxBackoffMs: 1000,
      onReconnect: (w) => reconnected.push(w),
    });
    const firstWelcome = await c.connect();
    await c.auth(TOKEN);
    let firstTick = nextFrame(c, "market_tick", (t) => t.symbol === "AAPL");
    await c.subscribe("market_data", "AAPL");
    await firstTick;
    let account = nextFrame(c, "account_update");
    await c.subscribe("account");
    await account;

    await gateway.stop();
    // Let the client see the drop and fail at least one reconnect attempt.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.isConnected, false);

    const welcomeAgain = nextFrame(c, "welcome", () => true, 20_000);
    const tickAgain = nextFrame(c, "market_tick", (t) => t.symbol === "AAPL", 20_000);
    const accountAgain = nextFrame(c, "account_update", (a) => a.user === "ts-user", 20_000);
    gateway = await startGateway(port);
    const welcome = await welcomeAgain;
    assert.equal(welcome.type, "welcome");
    assert.ok(welcome.connection_id >= 1);
    assert.ok(firstWelcome.timestamp < welcome.timestamp);
    const tick = await tickAgain;
    assert.equal(tick.symbol, "AAPL");
    const acct = await accountAgain;
    assert.equal(acct.user, "ts-user");
    assert.equal(reconnected.length, 1);
    assert.equal(c.isConnected, true);
    c.close();
  } finally {
    await gateway.stop();
  }
});
